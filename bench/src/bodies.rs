//! How the benchmark servers write a generated body and drop an uploaded one.
//!
//! Through any stream, bodies go through ordinary reads and writes. On a plain TCP socket (the
//! upstream every proxy forwards to) they skip user space: `GET /bytes/N` is sent with
//! `sendfile` from an in-memory file of zeroes, and an upload is dropped in the kernel with
//! `recv(MSG_TRUNC)`. The upstream shares the load core with the load client, so every
//! microsecond it does not spend copying bytes is left to the client, and bulk runs measure
//! the proxy in between rather than the harness.

use std::future::Future;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use rustix::fs::MemfdFlags;
use rustix::net::RecvFlags;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, Interest};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

use crate::http::{IO_CHUNK, MessageReader};

/// Size of the in-memory file of zeroes that `sendfile` reads from, over and over.
const ZERO_FILE_LEN: u64 = 1024 * 1024;
/// Most bytes one truncating `recv` drops.
const DISCARD_CHUNK: usize = 1024 * 1024;

/// A stream the benchmark servers answer on.
pub trait ServedStream: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// Writes `size` zero bytes of body.
    fn write_zeroes(&mut self, size: u64) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            static ZEROES: [u8; IO_CHUNK] = [0; IO_CHUNK];
            let mut remaining = size;
            while remaining > 0 {
                let take = remaining.min(IO_CHUNK as u64) as usize;
                self.write_all(&ZEROES[..take]).await?;
                remaining -= take as u64;
            }
            Ok(())
        }
    }

    /// Reads and drops `size` bytes of body: first what `reader` already holds, then the
    /// rest from the stream.
    fn discard(
        &mut self,
        reader: &mut MessageReader,
        size: u64,
    ) -> impl Future<Output = io::Result<()>> + Send {
        async move { reader.skip_exact(self, size).await }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ServedStream for TlsStream<S> {}

impl ServedStream for DuplexStream {}

/// Through ordinary reads and writes: the Unix-socket upstream serves handshake runs, where
/// bodies are a few bytes.
impl ServedStream for UnixStream {}

impl ServedStream for TcpStream {
    async fn write_zeroes(&mut self, size: u64) -> io::Result<()> {
        let zeroes = zero_file()?;
        let stream = &*self;
        let mut remaining = size;
        let mut offset = 0;
        while remaining > 0 {
            if offset == ZERO_FILE_LEN {
                offset = 0;
            }
            let count = remaining.min(ZERO_FILE_LEN - offset) as usize;
            stream.writable().await?;
            let sent = stream.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(stream, zeroes, Some(&mut offset), count).map_err(Into::into)
            });
            match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(sent) => remaining -= sent as u64,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    async fn discard(&mut self, reader: &mut MessageReader, size: u64) -> io::Result<()> {
        let stream = &*self;
        let mut remaining = size - reader.consume_buffered(size);
        if remaining == 0 {
            return Ok(());
        }
        // Never written to: with MSG_TRUNC the kernel drops the bytes instead of copying them.
        let mut scratch = vec![0u8; remaining.min(DISCARD_CHUNK as u64) as usize];
        while remaining > 0 {
            let want = remaining.min(scratch.len() as u64) as usize;
            stream.readable().await?;
            let dropped = stream.try_io(Interest::READABLE, || {
                rustix::net::recv(stream, &mut scratch[..want], RecvFlags::TRUNC)
                    .map(|(_, dropped)| dropped)
                    .map_err(Into::into)
            });
            match dropped {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(dropped) => remaining -= (dropped as u64).min(remaining),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// The process's file of zeroes, made on first use.
fn zero_file() -> io::Result<&'static OwnedFd> {
    static FILE: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(file) = FILE.get() {
        return Ok(file);
    }
    let fd = rustix::fs::memfd_create("bench-zeroes", MemfdFlags::CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&vec![0u8; ZERO_FILE_LEN as usize])?;
    Ok(FILE.get_or_init(|| file.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn sends_exactly_the_zeroes_asked_for() {
        let (mut client, mut server) = tcp_pair().await;
        let size = 3 * ZERO_FILE_LEN + 12_345;
        let writer = tokio::spawn(async move {
            server.write_zeroes(size).await.unwrap();
            server.shutdown().await.unwrap();
        });
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap();
        assert_eq!(received.len() as u64, size);
        assert!(received.iter().all(|&byte| byte == 0));
    }

    #[tokio::test]
    async fn drops_the_body_and_keeps_what_follows() {
        let (mut client, mut server) = tcp_pair().await;
        let body = 2 * DISCARD_CHUNK + 777;
        let writer = tokio::spawn(async move {
            let mut bytes =
                format!("POST /upload HTTP/1.1\r\nContent-Length: {body}\r\n\r\n").into_bytes();
            bytes.extend(std::iter::repeat_n(7u8, body));
            bytes.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
            client.write_all(&bytes).await.unwrap();
            client
        });
        let mut reader = MessageReader::new();
        let upload = reader.read_head(&mut server).await.unwrap().unwrap();
        assert_eq!(upload.content_length, Some(body as u64));
        server.discard(&mut reader, body as u64).await.unwrap();
        let next = reader.read_head(&mut server).await.unwrap().unwrap();
        assert_eq!(next.start.get(1).map(String::as_str), Some("/next"));
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error() {
        let (mut client, mut server) = tcp_pair().await;
        client.write_all(&[1u8; 1000]).await.unwrap();
        drop(client);
        let mut reader = MessageReader::new();
        let err = server.discard(&mut reader, 5000).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
