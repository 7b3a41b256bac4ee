//! Permissive and strict mode end to end: who is refused, that refused clients never reach
//! the upstream, how each connection is classified, and switching at run time.

use std::time::Duration;

use portcullis_tests::client::{self, plain_round_trip, server_serial, tls_round_trip};
use portcullis_tests::pki::TestPki;
use portcullis_tests::proxy::{Portcullis, admin_table, files_source, main_listener};
use portcullis_tests::upstream::TcpUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALLOWED: &str = "spiffe://test.local/ns/prod/web";
const NOT_ALLOWED: &str = "spiffe://test.local/ns/dev/web";

fn config(pki: &TestPki, upstream: &TcpUpstream, mode: &str) -> String {
    let source = files_source(&pki.server_files("server"), "");
    let allow = "spiffe_prefixes = [\"spiffe://test.local/ns/prod/\"]";
    let listener = main_listener(upstream.address, "");
    format!(
        "{}{source}\n[auth]\nmode = \"{mode}\"\n[auth.allow]\n{allow}\n{listener}",
        admin_table("")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_refuses_everyone_but_authorized_clients_and_upstream_sees_nothing() {
    let pki = TestPki::new("strict CA");
    let other_ca = TestPki::new("some other CA");
    let upstream = TcpUpstream::start().await;
    let proxy = Portcullis::start(&config(&pki, &upstream, "strict")).await;
    let address = proxy.listener("main").await;
    let ca = pki.ca_cert();

    let refused = [
        ("no client certificate", client::config(&ca, None, &[])),
        (
            "wrong CA",
            client::config(&ca, Some(&other_ca.client(ALLOWED)), &[]),
        ),
        (
            "expired",
            client::config(&ca, Some(&pki.expired_client(ALLOWED)), &[]),
        ),
        (
            "unauthorized SPIFFE ID",
            client::config(&ca, Some(&pki.client(NOT_ALLOWED)), &[]),
        ),
    ];
    for (case, tls) in refused {
        // With TLS 1.3 the client's handshake may succeed; the refusal shows on read.
        let result = tls_round_trip(address, tls, b"secret request").await;
        match result {
            Err(_) => {}
            Ok(reply) => assert!(
                reply.is_empty(),
                "{case}: got {:?}",
                String::from_utf8_lossy(&reply)
            ),
        }
    }
    let plain = plain_round_trip(address, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(
        plain.map(|reply| reply.is_empty()).unwrap_or(true),
        "plaintext got a reply"
    );

    assert_eq!(
        upstream.connections(),
        0,
        "a refused client reached the upstream"
    );

    let tls = client::config(&ca, Some(&pki.client(ALLOWED)), &[]);
    let reply = tls_round_trip(address, tls, b"hello")
        .await
        .expect("authorized client");
    assert_eq!(String::from_utf8_lossy(&reply), "got 5 bytes: hello");
    assert_eq!(upstream.connections(), 1);

    for (reason, count) in [
        ("tls_no_client_cert", 1.0),
        ("mtls_invalid", 2.0),
        ("mtls_unauthorized", 1.0),
        ("plaintext", 1.0),
    ] {
        let labels = [("reason", reason)];
        let refused = proxy
            .metric("portcullis_connections_refused_total", &labels)
            .await;
        assert_eq!(refused, count, "refused {reason}");
    }
    let authorized = proxy.metric(
        "portcullis_connections_accepted_total",
        &[("class", "mtls_authorized")],
    );
    assert_eq!(authorized.await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn permissive_forwards_everyone_and_classifies_each_connection() {
    let pki = TestPki::new("permissive CA");
    let other_ca = TestPki::new("another CA");
    let upstream = TcpUpstream::start().await;
    let proxy = Portcullis::start(&config(&pki, &upstream, "permissive")).await;
    let address = proxy.listener("main").await;
    let ca = pki.ca_cert();

    let cases = [
        ("tls_no_client_cert", client::config(&ca, None, &[])),
        (
            "mtls_invalid",
            client::config(&ca, Some(&other_ca.client(ALLOWED)), &[]),
        ),
        (
            "mtls_unauthorized",
            client::config(&ca, Some(&pki.client(NOT_ALLOWED)), &[]),
        ),
        (
            "mtls_authorized",
            client::config(&ca, Some(&pki.client(ALLOWED)), &[]),
        ),
    ];
    for (class, tls) in cases {
        let reply = tls_round_trip(address, tls, class.as_bytes())
            .await
            .expect(class);
        assert!(
            String::from_utf8_lossy(&reply).ends_with(class),
            "{class}: {reply:?}"
        );
    }
    let reply = plain_round_trip(address, b"plaintext")
        .await
        .expect("plaintext");
    assert_eq!(String::from_utf8_lossy(&reply), "got 9 bytes: plaintext");
    assert_eq!(upstream.connections(), 5);

    for class in [
        "plaintext",
        "tls_no_client_cert",
        "mtls_invalid",
        "mtls_unauthorized",
        "mtls_authorized",
    ] {
        let labels = [("class", class)];
        let accepted = proxy
            .metric("portcullis_connections_accepted_total", &labels)
            .await;
        assert_eq!(accepted, 1.0, "accepted {class}");
    }
    let would = |labels: &'static [(&'static str, &'static str)]| {
        proxy.metric("portcullis_would_reject_total", labels)
    };
    assert_eq!(would(&[("reason", "plaintext")]).await, 1.0);
    assert_eq!(would(&[("reason", "tls_no_client_cert")]).await, 1.0);
    assert_eq!(
        would(&[("reason", "mtls_unauthorized"), ("client_id", NOT_ALLOWED)]).await,
        1.0
    );
    assert_eq!(
        would(&[("reason", "mtls_invalid"), ("client_id", ALLOWED)]).await,
        1.0
    );
    let refused = proxy
        .metric("portcullis_connections_refused_total", &[])
        .await;
    assert_eq!(refused, 0.0, "permissive mode refused something");
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_mode_keeps_open_connections_and_changes_the_next_ones_fate() {
    let pki = TestPki::new("switch CA");
    let upstream = TcpUpstream::start().await;
    let proxy = Portcullis::start(&config(&pki, &upstream, "permissive")).await;
    let address = proxy.listener("main").await;
    let ca = pki.ca_cert();
    let anonymous = client::config(&ca, None, &[]);

    // An anonymous client connects in permissive mode and starts sending.
    let mut open = client::connect(address, anonymous.clone())
        .await
        .expect("connect");
    open.write_all(b"before the switch; ").await.expect("write");
    open.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (code, _) = proxy
        .admin_request("PUT", "/mode", r#"{"mode":"strict"}"#)
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(proxy.status().await["mode"], "strict");

    // The next anonymous connection is refused...
    let refused = tls_round_trip(address, anonymous.clone(), b"new").await;
    assert!(
        refused.map(|reply| reply.is_empty()).unwrap_or(true),
        "strict let it through"
    );

    // ...while the open one still works to the end.
    open.write_all(b"after the switch")
        .await
        .expect("write after switch");
    open.shutdown().await.expect("half-close");
    let mut reply = Vec::new();
    open.read_to_end(&mut reply).await.expect("read");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "got 35 bytes: before the switch; after the switch"
    );

    // The CLI switches back.
    let output = std::process::Command::new(portcullis_tests::proxy::binary())
        .args(["mode", "permissive", "--admin", &proxy.admin.to_string()])
        .output()
        .expect("portcullis mode");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply = tls_round_trip(address, anonymous, b"again")
        .await
        .expect("permissive again");
    assert_eq!(String::from_utf8_lossy(&reply), "got 5 bytes: again");
    let strict = proxy.metric("portcullis_mode", &[("mode", "strict")]).await;
    assert_eq!(strict, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_rechecks_resumed_sessions() {
    let pki = TestPki::new("resumption CA");
    let upstream = TcpUpstream::start().await;
    let proxy = Portcullis::start(&config(&pki, &upstream, "permissive")).await;
    let address = proxy.listener("main").await;

    // An unauthorized client gets a session ticket in permissive mode...
    let tls = client::config(&pki.ca_cert(), Some(&pki.client(NOT_ALLOWED)), &[]);
    let reply = tls_round_trip(address, tls.clone(), b"first")
        .await
        .expect("permissive");
    assert!(!reply.is_empty());

    // ...and resuming it after the switch to strict does not get it through.
    proxy.set_mode("strict").await;
    let mut stream = client::connect(address, tls).await.expect("connect");
    assert_eq!(
        stream.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the session should resume"
    );
    assert!(!server_serial(&stream).is_empty());
    let _ = stream.write_all(b"second").await;
    let _ = stream.shutdown().await;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    assert!(
        reply.is_empty(),
        "resumed unauthorized session got {reply:?}"
    );
    assert_eq!(upstream.connections(), 1);
    let refused = proxy
        .metric(
            "portcullis_connections_refused_total",
            &[("reason", "mtls_unauthorized")],
        )
        .await;
    assert_eq!(refused, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reloaded_allow_list_applies_to_a_client_seen_before() {
    let pki = TestPki::new("allow-list CA");
    let upstream = TcpUpstream::start().await;
    let proxy = Portcullis::start(&config(&pki, &upstream, "strict")).await;
    let address = proxy.listener("main").await;
    let tls = client::config(&pki.ca_cert(), Some(&pki.client(ALLOWED)), &[]);

    // The same certificate twice: the second connection reuses the verified chain.
    for round in 0..2 {
        let reply = tls_round_trip(address, tls.clone(), b"hi")
            .await
            .expect("allowed");
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "got 2 bytes: hi",
            "round {round}"
        );
    }

    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    let narrowed = text.replace(
        "spiffe://test.local/ns/prod/",
        "spiffe://test.local/ns/ops/",
    );
    std::fs::write(&proxy.config_path, narrowed).unwrap();
    let (code, body) = proxy.admin_request("POST", "/reload", "").await.unwrap();
    assert_eq!(code, 200, "{body}");

    let refused = tls_round_trip(address, tls, b"again").await;
    assert!(
        refused.map(|reply| reply.is_empty()).unwrap_or(true),
        "still allowed"
    );
    assert_eq!(upstream.connections(), 2);
}
