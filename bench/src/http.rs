//! Just enough HTTP/1.1 for benchmarks, both sides: message heads, fixed-length and chunked
//! bodies, keep-alive. Everything a peer sends is bounded and checked; malformed input is an
//! `InvalidData` error, never a panic.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest message head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Read buffer size; also the write chunk size for bulk bodies.
pub const IO_CHUNK: usize = 64 * 1024;

/// What the benchmarks need from a request or response head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// The first line, split on spaces: method, target, version (or version, status, reason).
    pub start: Vec<String>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub close: bool,
}

impl Head {
    /// The response status code, when this is a response head.
    pub fn status(&self) -> Option<u16> {
        self.start.get(1).and_then(|code| code.parse().ok())
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Parses a head (without the final empty line).
pub fn parse_head(bytes: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let start: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .splitn(3, ' ')
        .map(str::to_string)
        .collect();
    if start.len() < 2 {
        return Err(invalid("malformed start line"));
    }
    let mut head = Head {
        start,
        ..Head::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("malformed header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value.parse().map_err(|_| invalid("bad content-length"))?;
            head.content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(head)
}

/// A buffered reader of HTTP messages over any byte stream.
#[derive(Debug)]
pub struct MessageReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for MessageReader {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageReader {
    /// An empty reader with a 64 KiB buffer.
    pub fn new() -> Self {
        Self {
            buf: vec![0; IO_CHUNK],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes; `Ok(0)` at end of stream.
    async fn fill<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let read = stream.read(&mut self.buf[self.end..]).await?;
        self.end += read;
        Ok(read)
    }

    /// Reads the next head. `Ok(None)` when the stream ends cleanly before a new message.
    pub async fn read_head<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> io::Result<Option<Head>> {
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = parse_head(&pending[..at])?;
                self.start += at + 4;
                return Ok(Some(head));
            }
            if pending.len() >= MAX_HEAD {
                return Err(invalid("message head too long"));
            }
            if self.fill(stream).await? == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Reads and discards the body that `head` announces; returns its length in bytes.
    pub async fn skip_body<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        head: &Head,
    ) -> io::Result<u64> {
        if head.chunked {
            return self.skip_chunked(stream).await;
        }
        let length = head.content_length.unwrap_or(0);
        self.skip_exact(stream, length).await?;
        Ok(length)
    }

    /// Drops up to `max` bytes already read from the stream; returns how many it dropped.
    pub(crate) fn consume_buffered(&mut self, max: u64) -> u64 {
        let take = max.min((self.end - self.start) as u64);
        self.start += take as usize;
        take
    }

    pub(crate) async fn skip_exact<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        mut remaining: u64,
    ) -> io::Result<()> {
        while remaining > 0 {
            if self.start == self.end && self.fill(stream).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = remaining.min((self.end - self.start) as u64);
            self.start += take as usize;
            remaining -= take;
        }
        Ok(())
    }

    async fn read_line<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> io::Result<String> {
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(at) = pending.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&pending[..at]).into_owned();
                self.start += at + 2;
                return Ok(line);
            }
            if pending.len() >= MAX_HEAD {
                return Err(invalid("chunk line too long"));
            }
            if self.fill(stream).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn skip_chunked<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let line = self.read_line(stream).await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.read_line(stream).await?.is_empty() {}
                return Ok(total);
            }
            self.skip_exact(stream, size).await?;
            if !self.read_line(stream).await?.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
            total += size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_fixed_and_chunked_responses() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n2\r\nab\r\n0\r\n\r\n";
        let mut stream = &wire[..];
        let mut reader = MessageReader::new();
        let head = reader.read_head(&mut stream).await.unwrap().unwrap();
        assert_eq!(head.status(), Some(200));
        assert_eq!(reader.skip_body(&mut stream, &head).await.unwrap(), 3);
        let head = reader.read_head(&mut stream).await.unwrap().unwrap();
        assert!(head.chunked);
        assert_eq!(reader.skip_body(&mut stream, &head).await.unwrap(), 6);
        assert!(reader.read_head(&mut stream).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn malformed_input_is_an_error() {
        let mut stream = &b"garbage\r\n\r\n"[..];
        let mut reader = MessageReader::new();
        assert!(reader.read_head(&mut stream).await.is_err());
        let mut stream = &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"[..];
        let mut reader = MessageReader::new();
        let head = reader.read_head(&mut stream).await.unwrap().unwrap();
        assert!(reader.skip_body(&mut stream, &head).await.is_err());
    }
}
