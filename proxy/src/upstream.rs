//! Where a listener forwards to: a TCP address or a Unix socket, connected with a timeout.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A parsed upstream address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `host:port`, resolved at each connect.
    Tcp(String),
    /// `unix:/path/to/socket`.
    Unix(PathBuf),
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => f.write_str(address),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Upstream {
    /// Parses `host:port` or `unix:/path`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("upstream \"unix:\" needs a socket path".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let valid_port = text
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid_port {
            return Err(format!(
                "upstream {text:?} is neither host:port nor unix:/path"
            ));
        }
        Ok(Self::Tcp(text.to_owned()))
    }

    /// Connects within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> io::Result<UpstreamStream> {
        let connect = async {
            match self {
                Self::Tcp(address) => {
                    let stream = TcpStream::connect(address).await?;
                    stream.set_nodelay(true)?;
                    Ok(UpstreamStream::Tcp(stream))
                }
                Self::Unix(path) => Ok(UpstreamStream::Unix(UnixStream::connect(path).await?)),
            }
        };
        tokio::time::timeout(timeout, connect).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {self} timed out"),
            )
        })?
    }
}

/// A connected upstream.
#[derive(Debug)]
pub enum UpstreamStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Self::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_unix() {
        assert_eq!(
            Upstream::parse("127.0.0.1:80"),
            Ok(Upstream::Tcp("127.0.0.1:80".into()))
        );
        assert_eq!(
            Upstream::parse("[::1]:80"),
            Ok(Upstream::Tcp("[::1]:80".into()))
        );
        assert_eq!(
            Upstream::parse("unix:/run/app.sock"),
            Ok(Upstream::Unix("/run/app.sock".into()))
        );
        assert!(Upstream::parse("localhost").is_err());
        assert!(Upstream::parse("unix:").is_err());
        assert!(Upstream::parse(":80").is_err());
    }
}
