//! The load client against an in-process bare terminator: successes are counted, a refused
//! client certificate is counted as a failure (TLS 1.3 shows it only on the first read), and
//! the serial of the server certificate is recorded.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use portcullis_bench::serve::{FixedResponse, serve_connection};
use portcullis_bench::server::{ServerTlsOptions, server_config};
use portcullis_bench::{LoadOptions, run};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Starts a bare terminator on a free loopback port; returns its address.
async fn bare(certs: &Path) -> String {
    let options = ServerArgs::try_parse_from([
        "bare",
        "--cert",
        &certs.join("server.pem").display().to_string(),
        "--key",
        &certs.join("server.key").display().to_string(),
        "--ca",
        &certs.join("ca.pem").display().to_string(),
    ])
    .expect("server options")
    .tls;
    let acceptor = TlsAcceptor::from(server_config(&options).expect("server config"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let fixed = Arc::new(FixedResponse::new(13));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, fixed) = (acceptor.clone(), fixed.clone());
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = serve_connection(&mut tls, &fixed).await;
                }
            });
        }
    });
    address
}

fn options(target: &str, certs: &Path, extra: &[&str]) -> LoadOptions {
    let ca = certs.join("ca.pem").display().to_string();
    let mut args = vec![
        "load", "--target", target, "--ca", &ca, "-d", "20s", "-c", "2",
    ];
    args.extend_from_slice(extra);
    LoadOptions::try_parse_from(args).expect("load options")
}

/// The bare terminator's TLS options, parsed as its command line would be.
#[derive(Debug, Parser)]
struct ServerArgs {
    #[command(flatten)]
    tls: ServerTlsOptions,
}

/// A certificate set in a temporary folder and a bare terminator serving it.
struct Bench {
    dir: tempfile::TempDir,
    target: String,
    cert: String,
    key: String,
}

impl Bench {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        portcullis_bench::certs::write_set(dir.path(), 0, Duration::from_secs(3600))
            .expect("certificates");
        let target = bare(dir.path()).await;
        let file = |name: &str| dir.path().join(name).display().to_string();
        let (cert, key) = (file("client.pem"), file("client.key"));
        Self {
            dir,
            target,
            cert,
            key,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_successes_refusals_and_serials() {
    let bench = Bench::start().await;
    let (certs, target) = (bench.dir.path(), bench.target.as_str());
    let (cert, key) = (bench.cert.as_str(), bench.key.as_str());
    let client = ["--cert", cert, "--key", key];

    for mode in ["full", "resumed", "keepalive"] {
        let mut extra = vec!["--mode", mode, "-n", "20"];
        extra.extend_from_slice(&client);
        let report = run(options(target, certs, &extra)).await.unwrap();
        assert_eq!(report.successes, 20, "{mode}: {}", report.to_text());
        assert_eq!(report.failed, 0, "{mode}: {}", report.to_text());
        assert_eq!(report.distinct_serials, 1, "{mode}");
        if mode == "resumed" {
            assert!(report.handshakes_resumed > 0, "{}", report.to_text());
        }
    }

    // Every connection after each worker's first resumes, however many run at once: the
    // client keeps more tickets than rustls' default store (eight per server).
    let mut extra = vec!["--mode", "resumed", "-n", "400"];
    extra.extend_from_slice(&client);
    let mut wide = options(target, certs, &extra);
    wide.concurrency = 32;
    let report = run(wide).await.unwrap();
    assert_eq!(report.successes, 400, "{}", report.to_text());
    assert!(report.handshakes_full <= 32, "{}", report.to_text());
    assert!(report.handshakes_resumed >= 368, "{}", report.to_text());

    // A warm-up records nothing: its full handshakes fill the ticket pool, so every measured
    // handshake resumes. Keep-alive workers then open the connection they measure on; its
    // handshake is reported, before the clock starts.
    for (mode, full, resumed) in [("resumed", 0, 50), ("keepalive", 2, 0)] {
        let mut extra = vec!["--mode", mode, "-n", "50", "--warm-up", "300ms"];
        extra.extend_from_slice(&client);
        let report = run(options(target, certs, &extra)).await.unwrap();
        assert_eq!(report.successes, 50, "{mode}: {}", report.to_text());
        assert_eq!(report.handshakes_full, full, "{mode}: {}", report.to_text());
        assert_eq!(
            report.handshakes_resumed,
            resumed,
            "{mode}: {}",
            report.to_text()
        );
        assert_eq!(report.distinct_serials, 1, "{mode}: {}", report.to_text());
    }

    // Without a client certificate the TLS 1.3 handshake "succeeds" on the client side; the
    // refusal arrives with the first read, after a request or after close_notify.
    for after in ["request", "close"] {
        let report = run(options(
            target,
            certs,
            &["--mode", "full", "-n", "6", "--after", after],
        ))
        .await
        .unwrap();
        assert_eq!(report.successes, 0, "{after}: {}", report.to_text());
        assert_eq!(
            report.failures.get("tls_alert_certificate_required"),
            Some(&6),
            "{after}: {}",
            report.to_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_upstream_cpu_and_busy_cores() {
    let bench = Bench::start().await;
    let (certs, target) = (bench.dir.path(), bench.target.as_str());
    let (cert, key) = (bench.cert.as_str(), bench.key.as_str());
    // The terminator runs in this process, so it stands in for both the server and the
    // upstream: each reading must show the CPU the handshakes took here.
    let pid = std::process::id().to_string();
    let extra = [
        "--mode",
        "full",
        "-n",
        "200",
        "--cert",
        cert,
        "--key",
        key,
        "--server-pid",
        &pid,
        "--upstream-pid",
        &pid,
    ];

    let report = run(options(target, certs, &extra)).await.unwrap();

    assert_eq!(report.successes, 200, "{}", report.to_text());
    let usage = &report.usage;
    assert_eq!(usage.upstream_pids, vec![std::process::id()]);
    let upstream = usage
        .upstream_cpu_per_op_us
        .expect("upstream CPU per operation");
    assert!(upstream > 0.0, "{}", report.to_text());
    assert!(
        usage
            .server_cpu_per_op_us
            .is_some_and(|server| server > 0.0)
    );
    assert!(!usage.core_busy_percent.is_empty());
    assert!(
        usage
            .core_busy_percent
            .iter()
            .all(|busy| (0.0..=100.0).contains(busy)),
        "{:?}",
        usage.core_busy_percent
    );
    let text = report.to_text();
    assert!(
        text.contains("upstream CPU") && text.contains("busy: cpu0 "),
        "{text}"
    );
}
