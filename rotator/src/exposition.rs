//! A minimal `GET /metrics` responder for `portcullis rotate`, which has no admin API.
//!
//! The caller installs the metrics recorder and hands over a function that renders it; this
//! module only answers HTTP/1.x requests on a loopback address: `/metrics` gets the rendered
//! text, anything else a 404. Each connection is one request, time-boxed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

/// Renders the metrics in the Prometheus text format.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The `[metrics]` table of `portcullis rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to answer `GET /metrics`, such as `127.0.0.1:9903`. Required in the table.
    pub listen: SocketAddr,
}

/// Time allowed to read a request and write the answer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head read.
const MAX_REQUEST: usize = 8192;

/// Binds `config.listen`; the returned future answers until dropped.
pub async fn bind(
    config: &MetricsConfig,
    render: Render,
) -> std::io::Result<impl Future<Output = ()> + use<>> {
    let socket = TcpListener::bind(config.listen).await?;
    info!(listen = %socket.local_addr()?, "serving /metrics");
    Ok(async move {
        loop {
            let Ok((stream, peer)) = socket.accept().await else {
                // Out of descriptors or similar: pause instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let exchange = answer(stream, render);
                if tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
                    .await
                    .is_err()
                {
                    debug!(peer.addr = %peer, "metrics request timed out");
                }
            });
        }
    })
}

async fn answer(mut stream: TcpStream, render: Render) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", render()),
        _ => ("404 Not Found", "only GET /metrics here\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn answers_metrics_and_nothing_else() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .expect("free port")
            .port();
        let config = MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let render: Render = Arc::new(|| "portcullis_up 1\n".to_owned());
        let server = bind(&config, render).await.expect("bind");
        let task = tokio::spawn(server);

        let answer = get(config.listen, "/metrics").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("portcullis_up 1\n"), "{answer}");
        assert!(get(config.listen, "/").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
