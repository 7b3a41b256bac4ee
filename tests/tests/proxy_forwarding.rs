//! The data path end to end: mTLS in TCP and HTTP mode, half-close, PROXY protocol v2,
//! ALPN-chosen HTTP/2, `X-Forwarded-Client-Cert` handling, and a proxy limited to one CPU.

use portcullis_tests::client::{self, https_get, plain_round_trip, tls_round_trip};
use portcullis_tests::pki::TestPki;
use portcullis_tests::proxy::{Portcullis, admin_table, files_source};
use portcullis_tests::upstream::{HttpUpstream, TcpUpstream};

const CLIENT_ID: &str = "spiffe://test.local/client";

fn config(pki: &TestPki, listeners: &str) -> String {
    let source = files_source(&pki.server_files("server"), "");
    let auth =
        "[auth]\nmode = \"permissive\"\n[auth.allow]\nspiffe_trust_domains = [\"test.local\"]";
    format!("{}{source}\n{auth}\n{listeners}", admin_table(""))
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_mode_round_trip_with_half_close_and_proxy_protocol() {
    let pki = TestPki::new("forwarding CA");
    let plain_upstream = TcpUpstream::start().await;
    let pp_upstream = TcpUpstream::start().await;
    let listeners = format!(
        r#"
[[listener]]
name = "tcp"
listen = "127.0.0.1:0"
upstream = "{plain}"

[[listener]]
name = "pp"
listen = "127.0.0.1:0"
upstream = "{pp}"
proxy_protocol = true
"#,
        plain = plain_upstream.address,
        pp = pp_upstream.address,
    );
    let proxy = Portcullis::start(&config(&pki, &listeners)).await;
    let tcp = proxy.listener("tcp").await;
    let pp = proxy.listener("pp").await;
    let client = pki.client(CLIENT_ID);
    let tls = client::config(&pki.ca_cert(), Some(&client), &[]);

    // The client half-closes after its request; the upstream only answers after EOF.
    let reply = tls_round_trip(tcp, tls.clone(), b"hello upstream")
        .await
        .expect("round trip");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "got 14 bytes: hello upstream"
    );
    assert_eq!(
        plain_upstream.received.lock().unwrap()[0],
        b"hello upstream"
    );

    let reply = tls_round_trip(pp, tls, b"payload")
        .await
        .expect("round trip");
    assert!(
        String::from_utf8_lossy(&reply).starts_with("got "),
        "{reply:?}"
    );
    let received = pp_upstream.received.lock().unwrap()[0].clone();
    assert_eq!(
        &received[..12],
        b"\r\n\r\n\0\r\nQUIT\n",
        "PROXY v2 signature first"
    );
    assert_eq!(received[13], 0x11, "TCP over IPv4");
    assert!(received.ends_with(b"payload"), "payload after the header");
    let header = &received[..received.len() - 7];
    assert!(
        header
            .windows(CLIENT_ID.len())
            .any(|w| w == CLIENT_ID.as_bytes()),
        "SPIFFE TLV"
    );
    assert!(
        header.windows(11).any(|w| w == b"test-client"),
        "CN sub-TLV"
    );

    // A bulk upload crosses the small-to-large buffer switch and many TLS records.
    let bulk: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let tls = client::config(&pki.ca_cert(), Some(&client), &[]);
    let reply = tls_round_trip(tcp, tls, &bulk).await.expect("bulk");
    assert!(
        String::from_utf8_lossy(&reply).starts_with("got 3145728 bytes"),
        "{reply:?}"
    );
    assert_eq!(
        plain_upstream.received.lock().unwrap()[1],
        bulk,
        "bytes changed on the way"
    );

    // Permissive mode forwards plaintext on the same port, with no TLS details.
    let reply = plain_round_trip(tcp, b"plain").await.expect("plaintext");
    assert_eq!(String::from_utf8_lossy(&reply), "got 5 bytes: plain");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mode_passes_identity_and_strips_forged_xfcc() {
    let pki = TestPki::new("http CA");
    let upstream = HttpUpstream::start().await;
    let listeners = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n\
         protocol = \"http\"\n",
        upstream.address
    );
    let proxy = Portcullis::start(&config(&pki, &listeners)).await;
    let web = proxy.listener("web").await;
    let client = pki.client(CLIENT_ID);
    let forged = [("x-forwarded-client-cert", "URI=spiffe://test.local/admin")];

    // HTTP/1.1 with a client certificate: the upstream sees the real identity only.
    let tls = client::config(&pki.ca_cert(), Some(&client), &["http/1.1"]);
    let reply = https_get(web, tls, "/one", &forged)
        .await
        .expect("http/1.1");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, http::Version::HTTP_11);
    assert_eq!(reply.body, "upstream saw /one");

    // HTTP/2 chosen by ALPN.
    let tls = client::config(&pki.ca_cert(), Some(&client), &["h2", "http/1.1"]);
    let reply = https_get(web, tls, "/two", &forged).await.expect("h2");
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(reply.body, "upstream saw /two");

    // No client certificate (permissive): forwarded, and the forged header is gone.
    let tls = client::config(&pki.ca_cert(), None, &["http/1.1"]);
    let reply = https_get(web, tls, "/three", &forged)
        .await
        .expect("no cert");
    assert_eq!(reply.body, "upstream saw /three");

    let seen = upstream.header_values("x-forwarded-client-cert");
    assert_eq!(seen.len(), 3);
    for values in &seen[..2] {
        assert_eq!(values.len(), 1, "exactly one XFCC: {values:?}");
        assert!(
            values[0].contains(&format!("URI={CLIENT_ID}")),
            "{values:?}"
        );
        assert!(values[0].starts_with("Hash="), "{values:?}");
        assert!(
            !values[0].contains("admin"),
            "forged value leaked: {values:?}"
        );
    }
    assert!(
        seen[2].is_empty(),
        "no XFCC without a verified certificate: {:?}",
        seen[2]
    );
    let protos = upstream.header_values("x-forwarded-proto");
    assert_eq!(protos[0], vec!["https".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn limited_to_one_cpu_it_runs_single_threaded_and_forwards_both_modes() {
    let pki = TestPki::new("one CPU CA");
    let tcp_upstream = TcpUpstream::start().await;
    let http_upstream = HttpUpstream::start().await;
    let listeners = format!(
        r#"
[[listener]]
name = "tcp"
listen = "127.0.0.1:0"
upstream = "{tcp}"

[[listener]]
name = "http"
listen = "127.0.0.1:0"
upstream = "{http}"
protocol = "http"
"#,
        tcp = tcp_upstream.address,
        http = http_upstream.address,
    );
    let proxy = Portcullis::start_on_one_cpu(&config(&pki, &listeners)).await;
    assert!(
        proxy.log().contains("CurrentThread"),
        "expected the single-threaded runtime on one CPU; log:\n{}",
        proxy.log()
    );

    let client = pki.client(CLIENT_ID);
    let tls = client::config(&pki.ca_cert(), Some(&client), &[]);
    let tcp = proxy.listener("tcp").await;
    for _ in 0..3 {
        let reply = tls_round_trip(tcp, tls.clone(), b"one cpu")
            .await
            .expect("round trip");
        assert_eq!(String::from_utf8_lossy(&reply), "got 7 bytes: one cpu");
    }

    let http = proxy.listener("http").await;
    let tls = client::config(&pki.ca_cert(), Some(&client), &["h2", "http/1.1"]);
    for path in ["/first", "/second"] {
        let reply = https_get(http, tls.clone(), path, &[])
            .await
            .expect("https get");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, format!("upstream saw {path}"));
    }
}
