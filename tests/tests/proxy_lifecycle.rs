//! Process lifecycle and limits: `check`, drain on SIGTERM, the connection cap, and the
//! handshake timeout.

use std::time::{Duration, Instant};

use portcullis_tests::client::{self, tls_round_trip};
use portcullis_tests::pki::TestPki;
use portcullis_tests::proxy::{Portcullis, admin_table, binary, files_source, main_listener};
use portcullis_tests::upstream::TcpUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_ID: &str = "spiffe://test.local/client";

fn config(pki: &TestPki, upstream: &TcpUpstream, listener_extra: &str) -> String {
    let source = files_source(&pki.server_files("server"), "");
    let listener = main_listener(upstream.address, listener_extra);
    format!(
        "{}{source}\n[shutdown]\ndrain_timeout = \"10s\"\n{listener}",
        admin_table("")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn check_accepts_a_good_file_and_names_what_is_wrong_in_a_bad_one() {
    let pki = TestPki::new("check CA");
    let upstream = TcpUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        config(&pki, &upstream, "").replace("{admin}", "127.0.0.1:9901"),
    )
    .unwrap();
    let output = std::process::Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let cases = [
        ("idle_timout = \"5s\"", "idle_timout"),
        ("protocol = \"smtp\"", "smtp"),
        ("max_connections = 0", "max_connections"),
    ];
    for (line, named) in cases {
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            config(&pki, &upstream, line).replace("{admin}", "127.0.0.1:9901"),
        )
        .unwrap();
        let output = std::process::Command::new(binary())
            .arg("check")
            .arg("--config")
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{line} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{line}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_accepting_and_drains_open_connections_then_exits_zero() {
    let pki = TestPki::new("drain CA");
    let upstream = TcpUpstream::start().await;
    let mut proxy = Portcullis::start(&config(&pki, &upstream, "")).await;
    let address = proxy.listener("main").await;
    let tls = client::config(&pki.ca_cert(), Some(&pki.client(CLIENT_ID)), &[]);

    let mut open = client::connect(address, tls.clone())
        .await
        .expect("connect");
    open.write_all(b"in flight; ").await.unwrap();
    open.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    proxy.signal(libc::SIGTERM);

    // New connections are no longer accepted...
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if tls_round_trip(address, tls.clone(), b"late").await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // ...but the open one finishes its exchange.
    open.write_all(b"done").await.expect("write during drain");
    open.shutdown().await.unwrap();
    let mut reply = Vec::new();
    open.read_to_end(&mut reply)
        .await
        .expect("read during drain");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "got 15 bytes: in flight; done"
    );

    let status = proxy.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_are_refused_and_counted() {
    let pki = TestPki::new("cap CA");
    let upstream = TcpUpstream::start().await;
    let proxy = Portcullis::start(&config(&pki, &upstream, "max_connections = 2")).await;
    let address = proxy.listener("main").await;
    let tls = client::config(&pki.ca_cert(), Some(&pki.client(CLIENT_ID)), &[]);

    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = client::connect(address, tls.clone())
            .await
            .expect("connect");
        stream.write_all(b"x").await.unwrap();
        stream.flush().await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tls_round_trip(address, tls.clone(), b"third")
            .await
            .is_err(),
        "third got in"
    );
    let refused = proxy
        .metric(
            "portcullis_connections_refused_total",
            &[("reason", "over_capacity")],
        )
        .await;
    assert!(refused >= 1.0);

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tls_round_trip(address, tls.clone(), b"later")
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "slots never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_client_is_closed_at_the_handshake_timeout() {
    let pki = TestPki::new("timeout CA");
    let upstream = TcpUpstream::start().await;
    let proxy = Portcullis::start(&config(&pki, &upstream, "handshake_timeout = \"300ms\"")).await;
    let address = proxy.listener("main").await;

    let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {read:?}"
    );
    let timeouts = proxy
        .metric(
            "portcullis_handshake_failures_total",
            &[("reason", "timeout")],
        )
        .await;
    assert_eq!(timeouts, 1.0);
    assert_eq!(upstream.connections(), 0);
}
