//! Upstream services for the proxy to forward to, recording what reaches them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A TCP service that reads until the client half-closes, then answers
/// `got N bytes: <first 64 bytes>` and closes. Records every connection's bytes.
#[derive(Debug, Clone)]
pub struct TcpUpstream {
    pub address: SocketAddr,
    /// Everything each connection sent, in order of arrival.
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl TcpUpstream {
    pub async fn start() -> Self {
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let address = socket.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = socket.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut bytes = Vec::new();
                    let _ = stream.read_to_end(&mut bytes).await;
                    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
                    let reply = format!("got {} bytes: {shown}", bytes.len());
                    log.lock().expect("log").push(bytes);
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { address, received }
    }

    /// How many connections reached the upstream.
    pub fn connections(&self) -> usize {
        self.received.lock().expect("log").len()
    }
}

/// An HTTP service that records request headers and answers `upstream saw PATH`.
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    pub address: SocketAddr,
    pub requests: Arc<Mutex<Vec<http::HeaderMap>>>,
}

impl HttpUpstream {
    pub async fn start() -> Self {
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let address = socket.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = socket.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<_>| {
                        let log = log.clone();
                        async move {
                            log.lock().expect("log").push(request.headers().clone());
                            let body = format!("upstream saw {}", request.uri().path());
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { address, requests }
    }

    /// The values of `name` in every request received so far.
    pub fn header_values(&self, name: &str) -> Vec<Vec<String>> {
        self.requests
            .lock()
            .expect("log")
            .iter()
            .map(|headers| {
                headers
                    .get_all(name)
                    .iter()
                    .map(|value| value.to_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .collect()
    }
}
