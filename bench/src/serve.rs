//! The benchmark server side, shared by `bench-upstream` (plaintext) and `bare-terminator`
//! (TLS): a fixed keep-alive response, `GET /bytes/N` streams N bytes, and any request with a
//! body (`POST /upload`) is read to the end and acknowledged. How bodies move depends on the
//! stream (see [`crate::bodies`]).

use std::io;

use tokio::io::AsyncWriteExt;

use crate::bodies::ServedStream;
use crate::http::MessageReader;

/// The largest `/bytes/N` served, so a request cannot ask for an endless stream.
pub const MAX_DOWNLOAD: u64 = 64 * 1024 * 1024 * 1024;

/// The fixed response, prepared once.
#[derive(Debug, Clone)]
pub struct FixedResponse {
    bytes: Vec<u8>,
}

impl FixedResponse {
    /// A `200 OK` with a body of `body_size` bytes.
    pub fn new(body_size: usize) -> Self {
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body_size}\r\n\r\n"
        )
        .into_bytes();
        bytes.extend((0..body_size).map(|i| b"portcullis-bench\n"[i % 17]));
        Self { bytes }
    }
}

/// What one connection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Serves requests on one connection until the client closes it or asks to.
pub async fn serve_connection<S>(stream: &mut S, fixed: &FixedResponse) -> io::Result<Served>
where
    S: ServedStream,
{
    let mut reader = MessageReader::new();
    let mut served = Served::default();
    while let Some(head) = reader.read_head(stream).await? {
        let received = match head.content_length {
            Some(length) if !head.chunked => {
                stream.discard(&mut reader, length).await?;
                length
            }
            _ => reader.skip_body(stream, &head).await?,
        };
        served.bytes_in += received;
        served.requests += 1;

        let target = head.start.get(1).map(String::as_str).unwrap_or("/");
        if let Some(size) = target.strip_prefix("/bytes/") {
            let size: u64 = size.parse().unwrap_or(0).min(MAX_DOWNLOAD);
            served.bytes_out += stream_bytes(stream, size).await?;
        } else if head.content_length.is_some() || head.chunked {
            let body = format!("received {received}\n");
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).await?;
        } else {
            stream.write_all(&fixed.bytes).await?;
        }
        stream.flush().await?;

        if head.close {
            break;
        }
    }
    stream.shutdown().await?;
    Ok(served)
}

async fn stream_bytes<S: ServedStream>(stream: &mut S, size: u64) -> io::Result<u64> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
Content-Length: {size}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_zeroes(size).await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn answers_fixed_bytes_and_uploads() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let fixed = FixedResponse::new(5);
        let task = tokio::spawn(async move { serve_connection(&mut server, &fixed).await });
        client
            .write_all(
                b"GET / HTTP/1.1\r\n\r\nGET /bytes/10 HTTP/1.1\r\n\r\n\
POST /upload HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
            )
            .await
            .unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        let text = String::from_utf8_lossy(&reply);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3);
        assert!(text.ends_with("received 4\n"));
        let served = task.await.unwrap().unwrap();
        assert_eq!(served.requests, 3);
        assert_eq!(served.bytes_in, 4);
        assert_eq!(served.bytes_out, 10);
    }
}
