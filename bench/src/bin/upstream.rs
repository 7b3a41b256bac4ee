//! `bench-upstream`: the plaintext HTTP/1.1 upstream every proxy forwards to in the
//! side-by-side runs (fixed keep-alive response, `GET /bytes/N`, uploads).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use portcullis_bench::serve::{FixedResponse, serve_connection};
use tokio::net::TcpListener;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "bench-upstream",
    about = "Fast HTTP/1.1 keep-alive upstream for benchmarks"
)]
struct Options {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Size of the fixed response body.
    #[arg(long, default_value_t = 13)]
    body_size: usize,
    /// Runtime worker threads; the CPUs this process may use if unset.
    #[arg(long)]
    threads: Option<usize>,
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
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    tracing::info!(listen = %options.listen, "upstream ready");
    loop {
        let (mut tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let fixed = fixed.clone();
        tokio::spawn(async move {
            if let Err(err) = serve_connection(&mut tcp, &fixed).await {
                tracing::debug!(peer.addr = %peer, error = %err, "connection ended with an error");
            }
        });
    }
}
