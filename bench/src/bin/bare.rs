//! `bare-terminator`: the limit a proxy is measured against. A minimal tokio-rustls mTLS server
//! with the Portcullis crypto provider that answers every request itself (fixed keep-alive
//! response, `GET /bytes/N`, uploads) and proxies nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use portcullis_bench::serve::{FixedResponse, serve_connection};
use portcullis_bench::server::{ServerTlsOptions, server_config};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "bare-terminator",
    about = "Minimal rustls mTLS server: the benchmark limit"
)]
struct Options {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: ServerTlsOptions,
    /// Size of the fixed response body.
    #[arg(long, default_value_t = 13)]
    body_size: usize,
    /// Runtime worker threads; the CPUs this process may use if unset. One means a
    /// single-threaded runtime.
    #[arg(long)]
    threads: Option<usize>,
    /// Handshake timeout in seconds.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
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
    // The same rule as Portcullis: on one CPU a single-threaded runtime, which spares the
    // hand-off between the accepting main thread and a lone worker.
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder
        .enable_all()
        .build()
        .context("building the runtime")?
        .block_on(serve(options))
}

async fn serve(options: Options) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(server_config(&options.tls)?);
    let fixed = Arc::new(FixedResponse::new(options.body_size));
    let timeout = Duration::from_secs(options.handshake_timeout);
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    tracing::info!(listen = %options.listen, "bare terminator ready");

    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, fixed) = (acceptor.clone(), fixed.clone());
        tokio::spawn(async move {
            let mut tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(peer.addr = %peer, error = %err, "handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer.addr = %peer, "handshake timed out");
                    return;
                }
            };
            if let Err(err) = serve_connection(&mut tls, &fixed).await {
                tracing::debug!(peer.addr = %peer, error = %err, "connection ended with an error");
            }
        });
    }
}
