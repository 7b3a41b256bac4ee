//! `bench-upstream`: the plaintext HTTP/1.1 upstream every proxy forwards to in the
//! side-by-side runs (fixed keep-alive response, `GET /bytes/N`, uploads), on TCP or on a
//! Unix socket.

use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use portcullis_bench::bodies::ServedStream;
use portcullis_bench::serve::{FixedResponse, serve_connection};
use tokio::net::{TcpListener, UnixListener};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "bench-upstream",
    about = "Fast HTTP/1.1 keep-alive upstream for benchmarks"
)]
struct Options {
    /// Address to listen on: `host:port` (loopback) or `unix:/path/to/socket`.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: Listen,
    /// Size of the fixed response body.
    #[arg(long, default_value_t = 13)]
    body_size: usize,
    /// Runtime worker threads; the CPUs this process may use if unset.
    #[arg(long)]
    threads: Option<usize>,
}

/// Where the upstream listens.
#[derive(Debug, Clone)]
enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

fn parse_listen(text: &str) -> Result<Listen, String> {
    match text.strip_prefix("unix:") {
        Some("") => Err("\"unix:\" needs a socket path".into()),
        Some(path) => Ok(Listen::Unix(path.into())),
        None => text
            .parse()
            .map(Listen::Tcp)
            .map_err(|err| format!("{text:?} is neither host:port nor unix:/path: {err}")),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = Options::parse();
    let threads = options
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("building the runtime")?
        .block_on(serve(options))
}

async fn serve(options: Options) -> anyhow::Result<()> {
    let fixed = Arc::new(FixedResponse::new(options.body_size));
    match options.listen {
        Listen::Tcp(address) => {
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("binding {address}"))?;
            tracing::info!(listen = %address, "upstream ready");
            loop {
                if let Some((tcp, _)) = accepted(listener.accept().await).await {
                    let _ = tcp.set_nodelay(true);
                    spawn_connection(tcp, fixed.clone());
                }
            }
        }
        Listen::Unix(path) => {
            // A socket left by an earlier run would make the bind fail; anything else at that
            // path is not ours to remove.
            let stale =
                std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_socket());
            if stale {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing the old socket {}", path.display()))?;
            }
            let listener =
                UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
            tracing::info!(listen = %path.display(), "upstream ready");
            loop {
                if let Some((unix, _)) = accepted(listener.accept().await).await {
                    spawn_connection(unix, fixed.clone());
                }
            }
        }
    }
}

/// The accepted connection, or None after logging a failed accept and pausing briefly (the
/// usual cause is running out of file descriptors).
async fn accepted<T>(result: std::io::Result<T>) -> Option<T> {
    match result {
        Ok(accepted) => Some(accepted),
        Err(err) => {
            tracing::warn!(error = %err, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

fn spawn_connection<S: ServedStream + 'static>(mut stream: S, fixed: Arc<FixedResponse>) {
    tokio::spawn(async move {
        if let Err(err) = serve_connection(&mut stream, &fixed).await {
            tracing::debug!(error = %err, "connection ended with an error");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_tcp_or_a_unix_socket() {
        assert!(matches!(parse_listen("127.0.0.1:8080"), Ok(Listen::Tcp(_))));
        let Ok(Listen::Unix(path)) = parse_listen("unix:/run/up.sock") else {
            panic!("a unix: address is a Unix socket");
        };
        assert_eq!(path, std::path::Path::new("/run/up.sock"));
        assert!(parse_listen("unix:").is_err());
        assert!(parse_listen("localhost").is_err());
    }
}
