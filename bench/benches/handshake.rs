//! In-memory handshake cost: rustls client and server connections driven over buffers (no
//! sockets), mutual TLS with ECDSA P-256 certificates, the Portcullis provider on the server.
//! Only the time spent inside the server's calls is counted, so the figure is the server's
//! CPU per handshake, per suite and group, full and resumed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis_bench::certs::{client_spec, server_spec};
use portcullis_bench::tls::pinned_provider;
use portcullis_rotator::crypto;
use portcullis_rotator::source::DevCa;
use rustls::client::Resumption;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::ServerName;

/// The (suite, group) pairs measured; TLS 1.2 suites run with TLS 1.2 only.
const CASES: &[(&str, &str)] = &[
    ("TLS13_AES_128_GCM_SHA256", "X25519"),
    ("TLS13_AES_128_GCM_SHA256", "secp256r1"),
    ("TLS13_AES_128_GCM_SHA256", "X25519MLKEM768"),
    ("TLS13_AES_256_GCM_SHA384", "X25519"),
    ("TLS13_CHACHA20_POLY1305_SHA256", "X25519"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "X25519"),
];

struct Pki {
    server_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    server_key: rustls_pki_types::PrivateKeyDer<'static>,
    client_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    client_key: rustls_pki_types::PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

fn pki() -> Pki {
    let ttl = Duration::from_secs(3600);
    let ca = DevCa::new("bench CA", ttl).expect("CA");
    let server = ca.issue(&server_spec(), ttl).expect("server leaf");
    let client = ca.issue(&client_spec(), ttl).expect("client leaf");
    let mut roots = RootCertStore::empty();
    roots.add(ca.certificate().clone()).expect("root");
    Pki {
        server_chain: server.chain,
        server_key: server.key,
        client_chain: client.chain,
        client_key: client.key,
        roots: Arc::new(roots),
    }
}

/// A server with `provider`, a required client certificate, tickets and a session cache.
fn server_config(
    pki: &Pki,
    provider: Arc<rustls::crypto::CryptoProvider>,
    tickets: usize,
) -> Arc<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(pki.roots.clone(), provider.clone())
        .build()
        .expect("verifier");
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .expect("server config");
    config.session_storage = ServerSessionMemoryCache::new(4096);
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer");
    config.send_tls13_tickets = tickets;
    Arc::new(config)
}

fn client_config(pki: &Pki, suite: &str, group: &str, resume: bool) -> Arc<ClientConfig> {
    let provider = pinned_provider(group, Some(suite)).expect("provider");
    let versions: &[&rustls::SupportedProtocolVersion] = if suite.starts_with("TLS13") {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(pki.roots.clone())
        .with_client_auth_cert(pki.client_chain.clone(), pki.client_key.clone_key())
        .expect("client config");
    config.resumption = if resume {
        Resumption::in_memory_sessions(64)
    } else {
        Resumption::disabled()
    };
    Arc::new(config)
}

/// Runs one handshake to completion (tickets included); returns the time spent in the server.
fn handshake(client_config: &Arc<ClientConfig>, server_config: &Arc<ServerConfig>) -> Duration {
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(client_config.clone(), name).expect("client");
    let mut in_server = Duration::ZERO;
    let began = Instant::now();
    let mut server = ServerConnection::new(server_config.clone()).expect("server");
    in_server += began.elapsed();
    let mut buf = Vec::with_capacity(16 * 1024);

    for _ in 0..16 {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("client write");
        }
        let began = Instant::now();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("server read");
            server.process_new_packets().expect("server process");
        }
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("server write");
        }
        in_server += began.elapsed();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).expect("client read");
            client.process_new_packets().expect("client process");
        }
        let idle = !client.wants_write() && !server.wants_write();
        if idle && !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
    }
    assert!(!server.is_handshaking(), "handshake did not complete");
    in_server
}

fn bench_full(c: &mut Criterion) {
    let pki = pki();
    let server = server_config(&pki, crypto::provider(), 2);
    let mut group = c.benchmark_group("server_cpu_full_handshake");
    for (suite, kx) in CASES {
        let config = client_config(&pki, suite, kx, false);
        group.bench_function(BenchmarkId::new(*suite, kx), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| handshake(&config, &server)).sum())
        });
    }
    group.finish();
}

fn bench_resumed(c: &mut Criterion) {
    let pki = pki();
    let two_tickets = server_config(&pki, crypto::provider(), 2);
    let one_ticket = server_config(&pki, crypto::provider(), 1);
    let mut group = c.benchmark_group("server_cpu_resumed_handshake");
    let cases = [
        (CASES[0], &two_tickets, "2 tickets"),
        (CASES[0], &one_ticket, "1 ticket"),
        (CASES[5], &two_tickets, "session id"),
    ];
    for ((suite, kx), server, how) in cases {
        let config = client_config(&pki, suite, kx, true);
        // The first handshake is full and leaves a ticket or a session ID behind.
        handshake(&config, server);
        let id = BenchmarkId::new(suite, format!("{kx}, {how}"));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| handshake(&config, server)).sum())
        });
    }
    group.finish();
}

/// The same full handshake with the server on the Portcullis mix (ring suites, aws-lc-rs
/// groups and keys) and on aws-lc-rs alone: the suite's hash comes from the suite's provider.
fn bench_provider(c: &mut Criterion) {
    let pki = pki();
    let mix = server_config(&pki, crypto::provider(), 2);
    let aws = server_config(
        &pki,
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        2,
    );
    let mut group = c.benchmark_group("server_cpu_full_by_provider");
    for suite in ["TLS13_AES_128_GCM_SHA256", "TLS13_AES_256_GCM_SHA384"] {
        let config = client_config(&pki, suite, "X25519", false);
        for (name, server) in [("portcullis mix", &mix), ("aws-lc-rs", &aws)] {
            group.bench_function(BenchmarkId::new(suite, name), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| handshake(&config, server)).sum())
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = bench_full, bench_resumed, bench_provider
}
criterion_main!(benches);
