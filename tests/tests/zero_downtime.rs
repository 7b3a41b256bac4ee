//! Zero downtime under load: the real binary serves sustained mTLS load (new handshakes and
//! keep-alive requests) while its certificate is replaced every second, its trust bundle gains
//! a second CA and its mode switches from permissive to strict. Not one handshake or request
//! may fail, and the clients must see the served serial change.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use portcullis_bench::serve::{FixedResponse, serve_connection};
use portcullis_bench::{LoadOptions, Report};
use portcullis_tests::proxy::Portcullis;
use tokio::net::TcpListener;

/// How long the load runs; rotations start after one second.
const RUN: &str = "10s";

/// A plaintext HTTP/1.1 upstream on a free loopback port, for the life of the test.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let address = listener.local_addr().expect("upstream address");
    let fixed = Arc::new(FixedResponse::new(13));
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let fixed = fixed.clone();
            tokio::spawn(async move { serve_connection(&mut tcp, &fixed).await });
        }
    });
    address
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn options(args: &[String]) -> LoadOptions {
    let mut all = vec!["portcullis-load".to_string()];
    all.extend(args.iter().cloned());
    LoadOptions::try_parse_from(all).expect("load options")
}

fn assert_clean(what: &str, report: &Report) {
    eprintln!("{what}:\n{}", report.to_text());
    assert_eq!(
        report.failed,
        0,
        "{what}: failures {:?}\n{}",
        report.failures,
        report.to_text()
    );
    assert!(
        report.successes > 0,
        "{what}: nothing succeeded\n{}",
        report.to_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_trust_change_and_strict_switch_fail_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    portcullis_bench::certs::write_set(&certs, 10, Duration::from_secs(3600)).unwrap();
    let serving = dir.path().join("serving");
    std::fs::create_dir_all(&serving).unwrap();
    for (from, to) in [
        ("server.pem", "cert.pem"),
        ("server.key", "key.pem"),
        ("ca.pem", "ca.pem"),
    ] {
        std::fs::copy(certs.join(from), serving.join(to)).unwrap();
    }

    let upstream = upstream().await;
    let config = format!(
        r#"
[admin]
listen = "{{admin}}"

[auth]
mode = "permissive"

[source]
kind = "files"
cert = "{cert}"
key = "{key}"
ca = "{ca}"
poll_interval = "200ms"

[[listener]]
name = "zero"
listen = "127.0.0.1:0"
upstream = "{upstream}"
protocol = "tcp"
"#,
        cert = path(&serving, "cert.pem"),
        key = path(&serving, "key.pem"),
        ca = path(&serving, "ca.pem"),
    );
    let proxy = Portcullis::start(&config).await;
    let target = proxy.listener("zero").await.to_string();
    let initial_serial = proxy.serving_serial().await;

    let common = |client: &str| {
        vec![
            "--target".into(),
            target.clone(),
            "--ca".into(),
            path(&certs, "ca.pem"),
            "--cert".into(),
            path(&certs, &format!("{client}.pem")),
            "--key".into(),
            path(&certs, &format!("{client}.key")),
            "--timeout".into(),
            "10s".into(),
        ]
    };
    let rotations: Vec<String> = (0..10)
        .map(|n: usize| path(&certs.join("rotation"), &n.to_string()))
        .collect();

    // Keep-alive requests over persistent connections, carrying the injected events.
    let mut keepalive = common("client");
    keepalive.extend(
        [
            "--mode",
            "keepalive",
            "-c",
            "8",
            "--rate",
            "400",
            "-d",
            RUN,
            "--rotate-every",
            "1s",
            "--mode-switch",
            "6s:strict",
        ]
        .map(String::from),
    );
    keepalive.extend([
        "--admin".into(),
        proxy.admin.to_string(),
        "--rotate-cert-to".into(),
        path(&serving, "cert.pem"),
        "--rotate-key-to".into(),
        path(&serving, "key.pem"),
        "--rotate-from".into(),
        rotations.join(","),
        "--replace-file".into(),
        format!(
            "4500ms:{}:{}",
            path(&certs, "bundle.pem"),
            path(&serving, "ca.pem")
        ),
    ]);
    // New full handshakes throughout, each followed by a request.
    let mut handshakes = common("client");
    handshakes.extend(["--mode", "full", "-c", "4", "--rate", "60", "-d", RUN].map(String::from));

    let (keepalive, handshakes) = tokio::join!(
        portcullis_bench::run(options(&keepalive)),
        portcullis_bench::run(options(&handshakes)),
    );
    let (keepalive, handshakes) = (keepalive.unwrap(), handshakes.unwrap());

    assert_clean("keep-alive requests", &keepalive);
    assert_clean("full handshakes", &handshakes);
    let failed_events: Vec<_> = keepalive.events.iter().filter(|e| !e.ok).collect();
    assert!(failed_events.is_empty(), "events failed: {failed_events:?}");
    let rotations = keepalive
        .events
        .iter()
        .filter(|e| e.kind == "rotate")
        .count();
    assert!(
        rotations >= 7,
        "only {rotations} rotations:\n{}",
        keepalive.to_text()
    );
    assert!(keepalive.events.iter().any(|e| e.kind == "mode_strict"));
    assert!(keepalive.events.iter().any(|e| e.kind == "replace_file"));
    assert!(
        handshakes.distinct_serials >= 5,
        "the clients saw {} serials:\n{}",
        handshakes.distinct_serials,
        handshakes.to_text()
    );
    assert_ne!(proxy.serving_serial().await, initial_serial);

    // Strict mode is in force, and the CA added to the bundle is trusted.
    let (code, body) = proxy.admin_request("GET", "/mode", "").await.unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("strict"), "{body}");
    let mut second_ca = common("client2");
    second_ca.extend(["--mode", "full", "-c", "2", "-n", "10", "-d", "10s"].map(String::from));
    let second_ca = portcullis_bench::run(options(&second_ca)).await.unwrap();
    assert_clean("client of the added CA", &second_ca);
    assert_eq!(second_ca.successes, 10);
}
