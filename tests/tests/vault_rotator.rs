//! The rotator's Vault source against a real OpenBao dev server: sign and issue, repeated
//! renewals, AppRole with token renewal, Vault going away and coming back, a cold start from
//! the cache, a CA rotation, and a certificate for the wrong identity.

use std::time::Duration;

use portcullis_rotator::rotator::Outcome;
use portcullis_rotator::schedule::Backoff;
use portcullis_rotator::source::vault::VaultConfig;
use portcullis_rotator::source::{SourceConfig, VaultSource};
use portcullis_rotator::{CacheConfig, ExpectedIdentity, IdentityStore, Rotator, Validator};
use portcullis_tests::bao::{Bao, PKI_POLICY};

const SPIFFE_ID: &str = "spiffe://example.org/web";

/// A `[source]` table for `bao`, with `extra` TOML lines appended.
fn vault_config(bao: &Bao, extra: &str) -> VaultConfig {
    let text = format!(
        r#"
        address = "{}"
        role = "web"
        common_name = "web.example.org"
        dns_names = ["web.example.org", "localhost"]
        uri_sans = ["{SPIFFE_ID}"]
        ip_sans = ["127.0.0.1"]
        {extra}
        "#,
        bao.addr()
    );
    toml::from_str(&text).expect("vault config")
}

fn token_auth(bao: &Bao) -> String {
    let path = bao.dir().join("token");
    std::fs::write(&path, bao.token()).expect("write token");
    format!(
        "auth = {{ method = \"token\", token_file = \"{}\" }}",
        path.display()
    )
}

fn validator() -> Validator {
    Validator {
        expected: ExpectedIdentity {
            spiffe_id: Some(SPIFFE_ID.into()),
            dns_name: None,
        },
        ..Validator::default()
    }
}

async fn source(config: VaultConfig) -> VaultSource {
    VaultSource::new(config).await.expect("vault source")
}

fn quick_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(2))
}

/// Waits (bounded) until `check` holds, polling every 100 ms.
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_a_local_csr_and_issues_and_vault_caps_the_ttl() {
    let bao = Bao::start();
    bao.bootstrap_pki("30s");

    for method in ["sign", "issue"] {
        // Ask for an hour: the role caps it at 30 s without refusing.
        let extra = format!("method = \"{method}\"\nttl = \"1h\"\n{}", token_auth(&bao));
        let store = IdentityStore::new();
        let (mut rotator, _handle) = Rotator::new(
            source(vault_config(&bao, &extra)).await,
            validator(),
            store.clone(),
        );
        let outcome = rotator.attempt().await;
        assert!(
            matches!(outcome, Outcome::Published { .. }),
            "{method}: {outcome:?}"
        );

        let identity = store.load().expect("published");
        assert_eq!(identity.leaf.spiffe_id.as_deref(), Some(SPIFFE_ID));
        assert!(
            identity
                .leaf
                .dns_names
                .contains(&"web.example.org".to_owned())
        );
        assert_eq!(identity.leaf.ip_addresses, vec!["127.0.0.1".to_owned()]);
        let lifetime = identity.leaf.lifetime().as_secs();
        assert!(
            (30..=32).contains(&lifetime),
            "{method}: lifetime {lifetime}s"
        );
        assert_eq!(identity.trust.len(), 1, "{method}: one issuer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_repeatedly_from_the_certificates_own_lifetime() {
    let bao = Bao::start();
    bao.bootstrap_pki("6s");
    let extra = format!("renew = {{ min_interval = \"1s\" }}\n{}", token_auth(&bao));
    let store = IdentityStore::new();
    let (rotator, handle) = Rotator::new(
        source(vault_config(&bao, &extra)).await,
        validator(),
        store.clone(),
    );
    let task = tokio::spawn(rotator.run());

    // 6 s certificates renewed at about 2/3: three publications within ~15 s.
    let mut serials = Vec::new();
    let mut generations = store.subscribe();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), generations.changed())
            .await
            .expect("a renewal within 10 s")
            .expect("store alive");
        let identity = store.load().expect("published");
        assert!(
            !serials.contains(&identity.leaf.serial),
            "a new serial each time"
        );
        serials.push(identity.leaf.serial.clone());
    }
    let status = handle.status();
    assert!(status.next_attempt.is_some() && status.serial.is_some());
    assert_eq!(status.consecutive_failures, 0);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_logs_in_once_and_renews_its_token() {
    let bao = Bao::start();
    bao.bootstrap_pki("60s");
    bao.policy("portcullis", PKI_POLICY);
    // A secret ID good for one login only: success after the token's TTL proves renewal.
    let (role_id, secret_id) = bao.approle("portcullis", "4s", "10m", 1);
    let extra = format!(
        "auth = {{ method = \"approle\", role_id_file = \"{}\", secret_id_file = \"{}\" }}",
        role_id.display(),
        secret_id.display()
    );
    let store = IdentityStore::new();
    let (rotator, handle) = Rotator::new(
        source(vault_config(&bao, &extra)).await,
        validator(),
        store.clone(),
    );
    let task = tokio::spawn(rotator.run());
    eventually("first certificate", Duration::from_secs(10), || {
        store.load().is_some()
    })
    .await;
    let first = store.load().expect("published").leaf.serial.clone();

    // Past the 4 s token TTL: the rotator's upkeep must have renewed it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let outcome = handle.rotate_now().await.expect("rotator running");
    assert!(matches!(outcome, Outcome::Published { .. }), "{outcome:?}");
    assert_ne!(store.load().expect("published").leaf.serial, first);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_while_vault_is_down_and_recovers() {
    let mut bao = Bao::start();
    bao.bootstrap_pki("20s");
    let store = IdentityStore::new();
    let (rotator, handle) = Rotator::new(
        source(vault_config(&bao, &token_auth(&bao))).await,
        validator(),
        store.clone(),
    );
    let task = tokio::spawn(rotator.with_backoff(quick_backoff()).run());
    eventually("first certificate", Duration::from_secs(10), || {
        store.load().is_some()
    })
    .await;
    let first = store.load().expect("published");

    bao.stop();
    let outcome = handle.rotate_now().await.expect("rotator running");
    assert!(
        matches!(outcome, Outcome::SourceFailed { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        store.load().expect("still serving").leaf.serial,
        first.leaf.serial
    );
    eventually("retries with backoff", Duration::from_secs(10), || {
        handle.status().consecutive_failures >= 3
    })
    .await;
    assert_eq!(
        store.load().expect("still serving").leaf.serial,
        first.leaf.serial
    );

    // Vault comes back empty (a dev server keeps nothing): set the PKI up again.
    bao.restart();
    bao.bootstrap_pki("20s");
    eventually("recovery", Duration::from_secs(10), || {
        store
            .load()
            .is_some_and(|now| now.leaf.serial != first.leaf.serial)
    })
    .await;
    assert_eq!(handle.status().consecutive_failures, 0);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_from_the_cache_while_vault_is_down() {
    let mut bao = Bao::start();
    bao.bootstrap_pki("60s");
    let cache = tempfile::tempdir().expect("tempdir");
    let cache_config = CacheConfig {
        dir: cache.path().join("lkg"),
    };
    let config = vault_config(&bao, &token_auth(&bao));

    let store = IdentityStore::new();
    let (rotator, _handle) = Rotator::new(source(config.clone()).await, validator(), store.clone());
    let mut rotator = rotator.with_cache(cache_config.clone());
    assert!(rotator.attempt().await.is_success());
    let cached = store.load().expect("published").leaf.serial.clone();
    drop(rotator);

    bao.stop();
    let store = IdentityStore::new();
    let (rotator, handle) = Rotator::new(source(config).await, validator(), store.clone());
    let task = tokio::spawn(
        rotator
            .with_cache(cache_config)
            .with_backoff(quick_backoff())
            .run(),
    );
    eventually("served from the cache", Duration::from_secs(10), || {
        store.load().is_some()
    })
    .await;
    assert_eq!(store.load().expect("cached").leaf.serial, cached);
    assert!(handle.status().from_cache);

    // Vault returns: the rotator leaves the cache behind.
    bao.restart();
    bao.bootstrap_pki("60s");
    eventually("a fresh certificate", Duration::from_secs(10), || {
        store.load().is_some_and(|now| now.leaf.serial != cached)
    })
    .await;
    assert!(!handle.status().from_cache);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusts_every_issuer_across_a_ca_rotation() {
    let bao = Bao::start();
    bao.bootstrap_pki("60s");
    let store = IdentityStore::new();
    let (rotator, handle) = Rotator::new(
        source(vault_config(&bao, &token_auth(&bao))).await,
        validator(),
        store.clone(),
    );
    let task = tokio::spawn(rotator.run());
    eventually("first certificate", Duration::from_secs(10), || {
        store.load().is_some()
    })
    .await;
    let old = store.load().expect("published");
    assert_eq!(old.trust.len(), 1);

    bao.new_root("second");
    bao.make_default("second");
    let outcome = handle.rotate_now().await.expect("rotator running");
    assert!(matches!(outcome, Outcome::Published { .. }), "{outcome:?}");
    let new = store.load().expect("published");
    assert_ne!(
        new.leaf.issuer, old.leaf.issuer,
        "signed by the new default issuer"
    );
    assert_eq!(
        new.trust.len(),
        2,
        "both issuers trusted during the overlap"
    );
    assert!(new.trust.contains(&old.trust[0]));

    // A peer still holding a certificate of the old issuer verifies against the new bundle.
    let peer = portcullis_rotator::Issued {
        chain: old.chain().to_vec(),
        key: old.private_key().clone_key(),
        trust: new.trust.clone(),
    };
    validator()
        .check(peer, std::time::SystemTime::now())
        .expect("old issuer's certificate still trusted");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_certificate_for_the_wrong_identity_and_keeps_the_old_one() {
    let bao = Bao::start();
    bao.bootstrap_pki("60s");
    let store = IdentityStore::new();
    let (mut good, _) = Rotator::new(
        source(vault_config(&bao, &token_auth(&bao))).await,
        validator(),
        store.clone(),
    );
    assert!(good.attempt().await.is_success());
    let serial = store.load().expect("published").leaf.serial.clone();

    // Same store, a source that asks Vault for another SPIFFE ID.
    let mut wrong = vault_config(&bao, &token_auth(&bao));
    wrong.uri_sans = vec!["spiffe://example.org/db".into()];
    let (mut bad, _) = Rotator::new(source(wrong).await, validator(), store.clone());
    let outcome = bad.attempt().await;
    match outcome {
        Outcome::Refused { reason, .. } => assert_eq!(reason, "wrong_identity"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(store.load().expect("kept").leaf.serial, serial);
}

#[test]
fn the_source_table_accepts_kind_vault() {
    let config: SourceConfig = toml::from_str(
        r#"
        kind = "vault"
        address = "http://127.0.0.1:8200"
        role = "web"
        common_name = "web"
        "#,
    )
    .expect("vault source table");
    assert!(matches!(config, SourceConfig::Vault(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_the_trust_bundle_between_renewals() {
    let bao = Bao::start();
    bao.bootstrap_pki("60s");
    let extra = format!("trust_refresh = \"1s\"\n{}", token_auth(&bao));
    let store = IdentityStore::new();
    let (rotator, _handle) = Rotator::new(
        source(vault_config(&bao, &extra)).await,
        validator(),
        store.clone(),
    );
    let task = tokio::spawn(rotator.run());
    eventually("first certificate", Duration::from_secs(10), || {
        store.load().is_some()
    })
    .await;
    let serial = store.load().expect("published").leaf.serial.clone();

    // A second issuer appears (not yet the default): trusted before any renewal.
    bao.new_root("next");
    eventually(
        "the new issuer in the bundle",
        Duration::from_secs(10),
        || {
            store
                .load()
                .is_some_and(|identity| identity.trust.len() == 2)
        },
    )
    .await;
    assert_eq!(
        store.load().expect("published").leaf.serial,
        serial,
        "same certificate"
    );
    task.abort();
}

/// Base64url without padding, as JWTs use it.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, byte)| {
            acc | u32::from(*byte) << (16 - 8 * i)
        });
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A JWT for `audience`, signed with `key` (EdDSA), valid for ten minutes.
fn jwt(key: &rcgen::KeyPair, audience: &str) -> String {
    use rcgen::SigningKey;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = base64url(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": "portcullis-web", "aud": audience, "iat": now, "nbf": now, "exp": now + 600,
    });
    let claims = base64url(claims.to_string().as_bytes());
    let signed = format!("{header}.{claims}");
    let signature = key.sign(signed.as_bytes()).expect("sign");
    format!("{signed}.{}", base64url(&signature))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_login_reads_the_token_file_again_at_each_login() {
    let bao = Bao::start();
    bao.bootstrap_pki("60s");
    bao.policy("portcullis", PKI_POLICY);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    let public_key = bao.dir().join("jwt-public.pem");
    std::fs::write(&public_key, key.public_key_pem()).expect("write key");
    bao.cli(&["auth", "enable", "jwt"]);
    bao.cli(&[
        "write",
        "auth/jwt/config",
        &format!("jwt_validation_pubkeys=@{}", public_key.display()),
        "jwt_supported_algs=EdDSA",
    ]);
    bao.cli(&[
        "write",
        "auth/jwt/role/portcullis",
        "role_type=jwt",
        "bound_audiences=vault.io",
        "user_claim=sub",
        "token_policies=portcullis",
        "token_ttl=1h",
    ]);

    // First a JWT for the wrong audience: Vault refuses and says why.
    let jwt_file = bao.dir().join("vault.jwt");
    std::fs::write(&jwt_file, jwt(&key, "someone-else")).expect("write jwt");
    let extra = format!(
        "auth = {{ method = \"jwt\", jwt_file = \"{}\", role = \"portcullis\" }}",
        jwt_file.display()
    );
    let store = IdentityStore::new();
    let (mut rotator, _handle) = Rotator::new(
        source(vault_config(&bao, &extra)).await,
        validator(),
        store.clone(),
    );
    match rotator.attempt().await {
        Outcome::SourceFailed { detail, .. } => {
            assert!(
                detail.contains("login_jwt") && detail.contains("aud"),
                "{detail}"
            )
        }
        other => panic!("expected a refused login, got {other:?}"),
    }

    // The file is renewed (as Nomad does): the next login reads it again.
    std::fs::write(&jwt_file, jwt(&key, "vault.io")).expect("write jwt");
    let outcome = rotator.attempt().await;
    assert!(matches!(outcome, Outcome::Published { .. }), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talks_to_vault_over_tls_with_its_ca_file_and_server_name() {
    let bao = Bao::start_tls();
    bao.bootstrap_pki("60s");
    let ca = bao.ca_file();
    let attempt = |tls: String| {
        let config = vault_config(&bao, &format!("{tls}\n{}", token_auth(&bao)));
        async move {
            let (mut rotator, _) =
                Rotator::new(source(config).await, validator(), IdentityStore::new());
            rotator.attempt().await
        }
    };

    let trusted = format!("tls = {{ ca_file = \"{}\" }}", ca.display());
    let outcome = attempt(trusted).await;
    assert!(outcome.is_success(), "{outcome:?}");

    // The address is an IP; the name checked is the one given.
    let named = format!(
        "tls = {{ ca_file = \"{}\", tls_server_name = \"localhost\" }}",
        ca.display()
    );
    let outcome = attempt(named).await;
    assert!(outcome.is_success(), "{outcome:?}");

    let wrong_name = format!(
        "tls = {{ ca_file = \"{}\", tls_server_name = \"vault.example.org\" }}",
        ca.display()
    );
    match attempt(wrong_name).await {
        Outcome::SourceFailed { reason, .. } => assert_eq!(reason, "unavailable"),
        other => panic!("a server name the certificate lacks must fail, got {other:?}"),
    }

    // Without the CA file, the system roots do not know the dev CA.
    match attempt(String::new()).await {
        Outcome::SourceFailed { reason, .. } => assert_eq!(reason, "unavailable"),
        other => panic!("an unknown CA must fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_from_a_file_is_kept_alive_with_renew_self() {
    let bao = Bao::start();
    bao.bootstrap_pki("60s");
    bao.policy("portcullis", PKI_POLICY);
    let created = bao.cli(&[
        "token",
        "create",
        "-format=json",
        "-policy=portcullis",
        "-ttl=4s",
        "-explicit-max-ttl=10m",
    ]);
    let created: serde_json::Value = serde_json::from_str(&created).expect("token JSON");
    let token = created["auth"]["client_token"].as_str().expect("token");
    let token_file = bao.dir().join("short-token");
    std::fs::write(&token_file, token).expect("token file");
    let extra = format!(
        "auth = {{ method = \"token\", token_file = \"{}\" }}",
        token_file.display()
    );
    let store = IdentityStore::new();
    let (rotator, handle) = Rotator::new(
        source(vault_config(&bao, &extra)).await,
        validator(),
        store.clone(),
    );
    let task = tokio::spawn(rotator.run());
    eventually("first certificate", Duration::from_secs(10), || {
        store.load().is_some()
    })
    .await;

    // Past the token's 4 s TTL: only renew-self can have kept it valid.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let outcome = handle.rotate_now().await.expect("rotator running");
    assert!(matches!(outcome, Outcome::Published { .. }), "{outcome:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presents_a_client_certificate_to_a_vault_listener_that_requires_one() {
    use portcullis_rotator::source::dev::{DevCa, LeafSpec};

    let ca = DevCa::new("Vault listener CA", Duration::from_secs(3600)).expect("CA");
    let leaf = |name: &str| {
        let spec = LeafSpec {
            common_name: name.into(),
            dns_names: vec!["localhost".into()],
            ip_addresses: vec![std::net::IpAddr::from([127, 0, 0, 1])],
            ..LeafSpec::default()
        };
        ca.issue(&spec, Duration::from_secs(3600)).expect("leaf")
    };
    let files = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: String| {
        let path = files.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let server = leaf("vault");
    let client = leaf("portcullis");
    let ca_file = write("ca.pem", ca.certificate_pem());
    let server_cert = write("server.pem", server.chain_pem());
    let server_key = write("server-key.pem", server.key_pem());
    let client_cert = write("client.pem", client.chain_pem());
    let client_key = write("client-key.pem", client.key_pem());

    let port = portcullis_tests::bao::free_port();
    let bao = Bao::start_with_config(&format!(
        r#"
        listener "tcp" {{
          address = "127.0.0.1:{port}"
          cluster_address = "127.0.0.1:{cluster}"
          tls_cert_file = "{cert}"
          tls_key_file = "{key}"
          tls_client_ca_file = "{ca}"
          tls_require_and_verify_client_cert = true
        }}
        "#,
        cluster = portcullis_tests::bao::free_port(),
        cert = server_cert.display(),
        key = server_key.display(),
        ca = ca_file.display(),
    ));
    bao.bootstrap_pki("60s");

    let attempt = |tls: String| {
        let mut config = vault_config(&bao, &format!("{tls}\n{}", token_auth(&bao)));
        config.address = format!("https://127.0.0.1:{port}");
        async move {
            let (mut rotator, _) =
                Rotator::new(source(config).await, validator(), IdentityStore::new());
            rotator.attempt().await
        }
    };
    let with_client = format!(
        "tls = {{ ca_file = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}",
        ca_file.display(),
        client_cert.display(),
        client_key.display()
    );
    let outcome = attempt(with_client).await;
    assert!(outcome.is_success(), "{outcome:?}");

    let without_client = format!("tls = {{ ca_file = \"{}\" }}", ca_file.display());
    let outcome = attempt(without_client).await;
    assert!(
        matches!(outcome, Outcome::SourceFailed { .. }),
        "the listener requires a client certificate: {outcome:?}"
    );
}
