//! Certificates swapped in memory: the next handshake gets the new one while open connections
//! keep theirs; bad candidates are refused and the old certificate keeps serving; reloads by
//! SIGHUP, by `POST /reload`, and by an atomic symlink swap of the certificate folder.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_tests::client::{self, server_serial};
use portcullis_tests::pki::{ServerFiles, TestPki, replace_atomically, write};
use portcullis_tests::proxy::{Portcullis, admin_table, files_source, main_listener};
use portcullis_tests::upstream::TcpUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_ID: &str = "spiffe://test.local/client";

fn config(cert: &Path, key: &Path, ca: &Path, upstream: &TcpUpstream, poll: &str) -> String {
    let files = ServerFiles {
        cert: cert.into(),
        key: key.into(),
        ca: ca.into(),
    };
    let source = files_source(&files, &format!("poll_interval = \"{poll}\""));
    format!(
        "{}{source}{}",
        admin_table(""),
        main_listener(upstream.address, "")
    )
}

async fn wait_for_new_serial(proxy: &Portcullis, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let serial = proxy.serving_serial().await;
        if serial != old {
            return serial;
        }
        assert!(
            Instant::now() < deadline,
            "serial never changed; log:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A proxy serving files it polls every 100 ms, and what it was started with.
async fn polling_proxy(ca_name: &str) -> (TestPki, ServerFiles, TcpUpstream, Portcullis) {
    let pki = TestPki::new(ca_name);
    let files = pki.server_files("server");
    let upstream = TcpUpstream::start().await;
    let text = config(&files.cert, &files.key, &files.ca, &upstream, "100ms");
    let proxy = Portcullis::start(&text).await;
    (pki, files, upstream, proxy)
}

async fn handshake_serial(proxy: &Portcullis, pki: &TestPki) -> String {
    let address = proxy.listener("main").await;
    let tls = client::config(&pki.ca_cert(), Some(&pki.client(CLIENT_ID)), &[]);
    let stream = client::connect(address, tls).await.expect("handshake");
    server_serial(&stream)
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_swap_serves_the_new_certificate_while_old_connections_keep_working() {
    let (pki, files, _upstream, proxy) = polling_proxy("rotation CA").await;
    let address = proxy.listener("main").await;
    let tls = client::config(&pki.ca_cert(), Some(&pki.client(CLIENT_ID)), &[]);

    let mut old = client::connect(address, tls.clone())
        .await
        .expect("connect");
    let first = server_serial(&old);
    old.write_all(b"started before; ").await.expect("write");
    old.flush().await.expect("flush");

    // Replace key and certificate; for a moment they do not match, which must be refused.
    let (chain, key) = pki.server_pem();
    replace_atomically(&files.key, &key);
    replace_atomically(&files.cert, &chain);
    let second = wait_for_new_serial(&proxy, &first).await;

    let new = client::connect(address, tls).await.expect("new handshake");
    assert_eq!(
        server_serial(&new),
        second,
        "the next handshake gets the new certificate"
    );

    old.write_all(b"finished after")
        .await
        .expect("old connection still writable");
    old.shutdown().await.expect("half-close");
    let mut reply = Vec::new();
    old.read_to_end(&mut reply)
        .await
        .expect("old connection still readable");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "got 30 bytes: started before; finished after"
    );
    assert_eq!(
        server_serial(&old),
        first,
        "the old connection keeps what it negotiated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_candidates_are_refused_and_the_old_certificate_keeps_serving() {
    let pki = TestPki::new("validation CA");
    let other = TestPki::new("unrelated CA");
    let files = pki.server_files("server");
    let upstream = TcpUpstream::start().await;
    // Polling is slow here so only `POST /reload` picks the candidates up.
    let proxy =
        Portcullis::start(&config(&files.cert, &files.key, &files.ca, &upstream, "1h")).await;
    let serving = proxy.serving_serial().await;
    let (good_chain, good_key) = (
        std::fs::read_to_string(&files.cert).unwrap(),
        std::fs::read_to_string(&files.key).unwrap(),
    );

    let (new_chain, _) = pki.server_pem();
    let (expired_chain, expired_key) = pki.expired_server_pem();
    let (foreign_chain, foreign_key) = other.server_pem();
    let candidates = [
        ("key_mismatch", new_chain, good_key.clone()),
        ("expired", expired_chain, expired_key),
        ("untrusted", foreign_chain, foreign_key),
        (
            "parse",
            "-----BEGIN CERTIFICATE-----\ntruncated".to_owned(),
            good_key.clone(),
        ),
    ];
    for (reason, chain, key) in candidates {
        write(&files.cert, &chain);
        write(&files.key, &key);
        let (code, body) = proxy
            .admin_request("POST", "/reload", "")
            .await
            .expect("reload");
        assert_eq!(code, 200, "{body}");
        let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let certificate = &report["certificate"];
        assert!(
            certificate["result"] == "refused" || certificate["result"] == "source_failed",
            "{reason}: {report}"
        );
        assert_eq!(certificate["reason"], reason, "{report}");

        assert_eq!(
            proxy.serving_serial().await,
            serving,
            "{reason}: serial changed"
        );
        assert_eq!(
            handshake_serial(&proxy, &pki).await,
            serving,
            "{reason}: handshake"
        );
    }
    let refused = proxy
        .metric(
            "portcullis_certificate_reloads_total",
            &[("result", "refused")],
        )
        .await;
    // Each refusal also schedules a retry after a backoff of about a second; on a loaded machine
    // one may fire between two candidates and refuse again, so count at least the three.
    assert!(refused >= 3.0, "refused {refused}");

    // A good candidate afterwards is taken.
    write(&files.cert, &good_chain);
    write(&files.key, &good_key);
    let (chain, key) = pki.server_pem();
    write(&files.key, &key);
    write(&files.cert, &chain);
    let (code, _) = proxy
        .admin_request("POST", "/reload", "")
        .await
        .expect("reload");
    assert_eq!(code, 200);
    assert_ne!(proxy.serving_serial().await, serving);
    assert!(proxy.status().await["ready"].as_bool().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_certificates_and_configuration_and_refuses_a_bad_file() {
    let pki = TestPki::new("sighup CA");
    let files = pki.server_files("server");
    let upstream = TcpUpstream::start().await;
    let proxy =
        Portcullis::start(&config(&files.cert, &files.key, &files.ca, &upstream, "1h")).await;
    let first = proxy.serving_serial().await;

    // New certificate and a config that says strict: both apply on SIGHUP.
    let (chain, key) = pki.server_pem();
    write(&files.key, &key);
    write(&files.cert, &chain);
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    let strict = text.replacen("[source]", "[auth]\nmode = \"strict\"\n\n[source]", 1);
    write(&proxy.config_path, &strict);
    proxy.signal(libc::SIGHUP);
    let second = wait_for_new_serial(&proxy, &first).await;
    assert_ne!(second, first);
    assert_eq!(proxy.status().await["mode"], "strict");

    // A broken file is refused whole: mode and certificate stay, the report says why.
    write(
        &proxy.config_path,
        &strict.replace("mode = \"strict\"", "mode = \"lenient\""),
    );
    proxy.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = proxy.status().await;
        if status["last_reload"]["result"] == "refused" {
            break status;
        }
        assert!(Instant::now() < deadline, "no refused reload: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status["last_reload"]["detail"]
            .as_str()
            .unwrap()
            .contains("lenient"),
        "{status}"
    );
    assert_eq!(status["mode"], "strict");
    assert_eq!(status["certificate"]["serial"], second.as_str());
    assert_eq!(handshake_serial(&proxy, &pki).await, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_an_atomic_symlink_swap_of_the_certificate_folder() {
    let pki = TestPki::new("symlink CA");
    let root = tempfile::tempdir().unwrap();
    let publish = |generation: &str| {
        let folder = root.path().join(generation);
        std::fs::create_dir(&folder).unwrap();
        let (chain, key) = pki.server_pem();
        write(&folder.join("tls.crt"), &chain);
        write(&folder.join("tls.key"), &key);
        write(&folder.join("ca.crt"), &pki.ca.certificate_pem());
        // The way Kubernetes and Nomad templates flip a folder: one rename of a symlink.
        let staging = root.path().join("..data_tmp");
        std::os::unix::fs::symlink(generation, &staging).unwrap();
        std::fs::rename(&staging, root.path().join("..data")).unwrap();
    };
    publish("..gen_1");
    for name in ["tls.crt", "tls.key", "ca.crt"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), root.path().join(name)).unwrap();
    }

    let upstream = TcpUpstream::start().await;
    let dir = root.path();
    let text = config(
        &dir.join("tls.crt"),
        &dir.join("tls.key"),
        &dir.join("ca.crt"),
        &upstream,
        "100ms",
    );
    let proxy = Portcullis::start(&text).await;
    let first = proxy.serving_serial().await;

    publish("..gen_2");
    let second = wait_for_new_serial(&proxy, &first).await;
    assert_eq!(handshake_serial(&proxy, &pki).await, second);
    let refused = proxy
        .metric(
            "portcullis_certificate_reloads_total",
            &[("result", "refused")],
        )
        .await;
    assert_eq!(
        refused, 0.0,
        "a symlink flip must never expose a half-written pair"
    );
}

/// A TLS 1.2-only client that resumes by session ID, as older clients do.
fn tls12_session_id_client(pki: &TestPki) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_cert()).expect("CA");
    let cert = pki.client(CLIENT_ID);
    let mut config =
        rustls::ClientConfig::builder_with_provider(portcullis_rotator::crypto::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2")
            .with_root_certificates(roots)
            .with_client_auth_cert(cert.chain, cert.key)
            .expect("client cert");
    config.resumption = rustls::client::Resumption::in_memory_sessions(16)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    std::sync::Arc::new(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_resume_across_a_rotation() {
    let (pki, files, _upstream, proxy) = polling_proxy("resumption rotation CA").await;
    let address = proxy.listener("main").await;
    let tls13 = client::config(&pki.ca_cert(), Some(&pki.client(CLIENT_ID)), &[]);
    let tls12 = tls12_session_id_client(&pki);

    // A full handshake each, read to the end so the TLS 1.3 tickets are taken in.
    for (version, tls) in [("1.3", &tls13), ("1.2", &tls12)] {
        let mut stream = client::connect(address, tls.clone())
            .await
            .expect("connect");
        assert_eq!(
            stream.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "TLS {version}"
        );
        let reply = client::round_trip(&mut stream, b"before")
            .await
            .expect("reply");
        assert_eq!(String::from_utf8_lossy(&reply), "got 6 bytes: before");
    }
    let before = proxy.serving_serial().await;

    let (chain, key) = pki.server_pem();
    replace_atomically(&files.key, &key);
    replace_atomically(&files.cert, &chain);
    let after = wait_for_new_serial(&proxy, &before).await;
    assert_ne!(after, before);

    // The ticket key and the TLS 1.2 session cache outlive the certificate: both resume.
    for (version, tls) in [("1.3", &tls13), ("1.2", &tls12)] {
        let mut stream = client::connect(address, tls.clone())
            .await
            .expect("connect");
        assert_eq!(
            stream.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "TLS {version} after the rotation; log:\n{}",
            proxy.log()
        );
        let reply = client::round_trip(&mut stream, b"after")
            .await
            .expect("reply");
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "got 5 bytes: after",
            "TLS {version}"
        );
    }
    // New clients get the new certificate.
    assert_eq!(handshake_serial(&proxy, &pki).await, after);
}
