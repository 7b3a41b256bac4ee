//! The real `portcullis` binary with its certificate from a real OpenBao: a client with a
//! Vault-issued certificate goes through in strict mode while the server certificate renews
//! again and again; clients of the old and the new issuer both pass across a CA rotation;
//! Vault going down mid-run changes nothing for clients; a restart while Vault is down serves
//! the last-known-good certificate from the cache, until Vault is back and a fresh one comes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_rotator::identity::{certs_from_pem, key_from_pem};
use portcullis_tests::bao::Bao;
use portcullis_tests::client::{self, server_serial};
use portcullis_tests::pki::ClientCert;
use portcullis_tests::proxy::Portcullis;
use portcullis_tests::upstream::TcpUpstream;
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_ID: &str = "spiffe://example.org/client";

/// PKI with a short-lived server role `web` (`server_ttl`) and a role `client` whose
/// certificates outlive the test.
fn bootstrap(bao: &Bao, server_ttl: &str) {
    bao.bootstrap_pki(server_ttl);
    bao.cli(&[
        "write",
        "pki/roles/client",
        "allowed_uri_sans=spiffe://example.org/*",
        "allow_any_name=true",
        "client_flag=true",
        "server_flag=false",
        "key_type=ec",
        "key_bits=256",
        "max_ttl=10m",
        "not_before_duration=5s",
    ]);
}

/// A client certificate issued by Vault's current default issuer.
fn client_cert(bao: &Bao) -> ClientCert {
    let answer = bao.cli_json(&[
        "write",
        "pki/issue/client",
        "common_name=client",
        &format!("uri_sans={CLIENT_ID}"),
        "ttl=10m",
    ]);
    let field = |name: &str| answer["data"][name].as_str().expect("field").to_owned();
    ClientCert {
        chain: certs_from_pem(field("certificate").as_bytes(), "client").expect("cert"),
        key: key_from_pem(field("private_key").as_bytes(), "client key").expect("key"),
    }
}

/// Every issuer's certificate in the mount, as a client would trust them.
fn roots(bao: &Bao) -> Vec<CertificateDer<'static>> {
    let list = bao.cli_json(&["list", "pki/issuers"]);
    // `bao list -format=json` prints the bare array of keys.
    let ids = list.as_array().expect("issuer ids").clone();
    ids.iter()
        .map(|id| {
            let issuer =
                bao.cli_json(&["read", &format!("pki/issuer/{}", id.as_str().expect("id"))]);
            let pem = issuer["data"]["certificate"].as_str().expect("issuer pem");
            certs_from_pem(pem.as_bytes(), "issuer")
                .expect("issuer cert")
                .remove(0)
        })
        .collect()
}

fn tls(roots: &[CertificateDer<'static>], client: &ClientCert) -> Arc<ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("root");
    }
    let mut config = ClientConfig::builder_with_provider(portcullis_rotator::crypto::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_client_auth_cert(client.chain.clone(), client.key.clone_key())
        .expect("client cert");
    // Full handshakes only: a resumed session reports the certificate of the first one.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn proxy_config(bao: &Bao, upstream: &TcpUpstream, cache: &std::path::Path) -> String {
    let token_file = bao.dir().join("proxy-token");
    std::fs::write(&token_file, bao.token()).expect("token file");
    format!(
        r#"
[admin]
listen = "{{admin}}"

[auth]
mode = "strict"
[auth.allow]
spiffe_ids = ["{CLIENT_ID}"]

[source]
kind = "vault"
address = "{addr}"
role = "web"
common_name = "web.example.org"
dns_names = ["localhost"]
uri_sans = ["spiffe://example.org/web"]
auth = {{ method = "token", token_file = "{token}" }}
renew = {{ min_interval = "1s" }}

[identity]
spiffe_id = "spiffe://example.org/web"

[cache]
dir = "{cache}"

[[listener]]
name = "main"
listen = "127.0.0.1:0"
upstream = "{upstream}"
"#,
        addr = bao.addr(),
        token = token_file.display(),
        cache = cache.display(),
        upstream = upstream.address,
    )
}

/// One request through the proxy; returns the server's serial and the upstream's reply.
async fn request(
    address: std::net::SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<(String, String)> {
    let mut stream = client::connect(address, config).await?;
    let serial = server_serial(&stream);
    let exchange = async {
        stream.write_all(b"hello").await?;
        stream.shutdown().await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(client::STEP, exchange).await??;
    Ok((serial, String::from_utf8_lossy(&reply).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_repeatedly_while_a_vault_client_keeps_making_requests() {
    let bao = Bao::start();
    bootstrap(&bao, "6s");
    let upstream = TcpUpstream::start().await;
    let cache = tempfile::tempdir().expect("tempdir");
    let proxy = Portcullis::start(&proxy_config(&bao, &upstream, cache.path())).await;
    let address = proxy.listener("main").await;
    let config = tls(&roots(&bao), &client_cert(&bao));

    // 6 s certificates renewed at about 2/3: at least three serials within 18 s of requests.
    let mut serials: Vec<String> = Vec::new();
    let mut requests = 0;
    let deadline = Instant::now() + Duration::from_secs(18);
    while Instant::now() < deadline && serials.len() < 4 {
        let (serial, reply) = request(address, config.clone())
            .await
            .unwrap_or_else(|err| panic!("request {requests} failed: {err}\n{}", proxy.log()));
        assert_eq!(reply, "got 5 bytes: hello", "request {requests}");
        requests += 1;
        if !serials.contains(&serial) {
            serials.push(serial);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        serials.len() >= 3,
        "served serials {serials:?} over {requests} requests"
    );
    let status = proxy.status().await;
    assert!(status["rotation"]["next_attempt"].is_i64(), "{status}");
    assert_eq!(status["rotation"]["consecutive_failures"], 0, "{status}");

    // The series the alert rules are written against.
    let vault = [("source", "vault")];
    let published = [("source", "vault"), ("result", "published")];
    assert!(
        proxy
            .metric("portcullis_certificate_reloads_total", &published)
            .await
            >= 3.0
    );
    assert!(
        proxy
            .metric("portcullis_certificate_seconds_to_expiry", &vault)
            .await
            > 0.0
    );
    let used = proxy
        .metric("portcullis_certificate_lifetime_used_ratio", &vault)
        .await;
    assert!((0.0..=1.0).contains(&used), "{used}");
    for name in [
        "portcullis_certificate_not_after_seconds",
        "portcullis_certificate_not_before_seconds",
        "portcullis_certificate_last_renewal_timestamp_seconds",
        "portcullis_source_request_seconds_count",
    ] {
        assert!(proxy.metric(name, &vault).await > 0.0, "{name}");
    }
    let signed = [("endpoint", "sign"), ("result", "ok")];
    assert!(
        proxy
            .metric("portcullis_vault_requests_total", &signed)
            .await
            >= 3.0
    );
    let (_, metrics) = proxy
        .admin_request("GET", "/metrics", "")
        .await
        .expect("metrics");
    assert!(
        metrics.contains("portcullis_vault_token_ttl_seconds"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_the_old_and_the_new_issuer_pass_across_a_ca_rotation() {
    let bao = Bao::start();
    bootstrap(&bao, "60s");
    let upstream = TcpUpstream::start().await;
    let cache = tempfile::tempdir().expect("tempdir");
    let proxy = Portcullis::start(&proxy_config(&bao, &upstream, cache.path())).await;
    let address = proxy.listener("main").await;
    let old_client = client_cert(&bao);

    bao.new_root("second");
    bao.make_default("second");
    let new_client = client_cert(&bao);
    let (code, body) = proxy
        .admin_request("POST", "/rotate", "")
        .await
        .expect("rotate");
    assert_eq!(code, 200, "{body}");

    let roots = roots(&bao);
    assert_eq!(roots.len(), 2);
    for (name, client) in [("old issuer", &old_client), ("new issuer", &new_client)] {
        let (_, reply) = request(address, tls(&roots, client))
            .await
            .unwrap_or_else(|err| panic!("{name} client refused: {err}\n{}", proxy.log()));
        assert_eq!(reply, "got 5 bytes: hello", "{name}");
    }
    let status = proxy.status().await;
    let trust = status.to_string();
    assert!(
        trust.contains("Test Root first") && trust.contains("Test Root second"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_without_vault_and_restarts_from_the_cache() {
    let mut bao = Bao::start();
    bootstrap(&bao, "60s");
    let upstream = TcpUpstream::start().await;
    let cache = tempfile::tempdir().expect("tempdir");
    let config_text = proxy_config(&bao, &upstream, cache.path());
    let roots = roots(&bao);
    let client = tls(&roots, &client_cert(&bao));

    let mut proxy = Portcullis::start(&config_text).await;
    let serial = proxy.serving_serial().await;
    bao.stop();

    // Vault is gone: a forced renewal fails, the certificate in force keeps serving.
    let (code, _) = proxy
        .admin_request("POST", "/rotate", "")
        .await
        .expect("rotate");
    assert_ne!(code, 0);
    let address = proxy.listener("main").await;
    let (served, reply) = request(address, client.clone()).await.expect("request");
    assert_eq!(
        (served.as_str(), reply.as_str()),
        (serial.as_str(), "got 5 bytes: hello")
    );

    // A restart while Vault is still down starts from the last-known-good cache.
    proxy.signal(15);
    proxy.wait_exit(Duration::from_secs(10)).await;
    drop(proxy);
    let proxy = Portcullis::start(&config_text).await;
    assert_eq!(proxy.serving_serial().await, serial);
    let status = proxy.status().await;
    assert_eq!(status["rotation"]["from_cache"], true, "{status}");
    let address = proxy.listener("main").await;
    let (served, _) = request(address, client).await.expect("request from cache");
    assert_eq!(served, serial);

    // Vault comes back (empty: a dev server keeps nothing, so the PKI is set up again): the
    // retries with backoff pick it up and a fresh certificate replaces the cached one.
    bao.restart();
    bootstrap(&bao, "60s");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = proxy.status().await;
        if status["rotation"]["from_cache"] == false && status["certificate"]["serial"] != serial {
            assert_eq!(status["rotation"]["consecutive_failures"], 0, "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {status}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = tls(&self::roots(&bao), &client_cert(&bao));
    let (served, reply) = request(address, client)
        .await
        .expect("request after recovery");
    assert_ne!(served, serial);
    assert_eq!(reply, "got 5 bytes: hello");
}
