//! The crypto provider Portcullis uses everywhere: rustls lets one provider mix primitives.
//!
//! Measured with `cargo bench -p portcullis-bench` on two kinds of x86_64 CPU:
//! - with AVX2, VAES and SHA extensions but no AVX-512, ring seals AES-128-GCM records about
//!   2.3x faster than aws-lc-rs (5.5 against 2.4 GiB/s);
//! - with AVX-512 and VAES, aws-lc-rs is the faster one (11.7 against 9.6 GiB/s), with its
//!   AVX-512 AES-GCM code.
//!
//! So record protection (AEAD) comes from aws-lc-rs on CPUs with AVX-512 VAES and from ring
//! elsewhere ([`aead_source`]). Every suite takes its hash, HKDF and PRF from aws-lc-rs (ring's
//! suites whole made full handshakes slower than aws-lc-rs alone), and the key exchange groups
//! and signing keys come from aws-lc-rs: X25519 about 2.4x faster than ring, and the only
//! X25519MLKEM768 hybrid.
//!
//! Suites are ordered AES-128-GCM first: on servers with AES instructions it is the cheapest
//! (SHA-256 transcript) and is as strong as needed; the server applies its own order.

use std::sync::{Arc, OnceLock};

use rustls::crypto::{CryptoProvider, SupportedKxGroup, aws_lc_rs, ring};
use rustls::{NamedGroup, SupportedCipherSuite};

/// The mixed provider, built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(build_provider())).clone()
}

fn build_provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: default_suites(),
        kx_groups: default_groups(),
        ..aws_lc_rs::default_provider()
    }
}

/// Cipher suites offered by default, most preferred first.
pub fn default_suites() -> Vec<SupportedCipherSuite> {
    use rustls::CipherSuite::*;

    let order = [
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let all = all_suites();
    order
        .iter()
        .filter_map(|wanted| all.iter().find(|suite| suite.suite() == *wanted).copied())
        .collect()
}

/// The library whose record protection (AEAD) the suites use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeadSource {
    /// *ring*: the faster AES-GCM without AVX-512.
    Ring,
    /// aws-lc-rs: the faster AES-GCM with AVX-512 and VAES.
    AwsLcRs,
}

impl AeadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::AwsLcRs => "aws-lc-rs",
        }
    }
}

/// Where record protection comes from on this CPU: aws-lc-rs where it has its AVX-512 AES-GCM
/// code path to run, ring everywhere else. Decided once; the suites and the start-up log both
/// read this answer.
pub fn aead_source() -> AeadSource {
    static SOURCE: OnceLock<AeadSource> = OnceLock::new();
    *SOURCE.get_or_init(detect_aead_source)
}

fn detect_aead_source() -> AeadSource {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512_aes = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("vpclmulqdq");
        if avx512_aes {
            return AeadSource::AwsLcRs;
        }
    }
    AeadSource::Ring
}

/// Every suite, each made of the [`aead_source`]'s AEAD and aws-lc-rs's hash and key
/// derivation. Built once; the suites live for the whole process, as rustls requires.
fn mixed_suites() -> &'static [SupportedCipherSuite] {
    static SUITES: OnceLock<Vec<SupportedCipherSuite>> = OnceLock::new();
    SUITES.get_or_init(|| suites_with_aead_from(aead_source()))
}

/// Every suite with `source`'s AEAD. Mixed suites are leaked, so call this once per source.
fn suites_with_aead_from(source: AeadSource) -> Vec<SupportedCipherSuite> {
    match source {
        AeadSource::AwsLcRs => aws_lc_rs::ALL_CIPHER_SUITES.to_vec(),
        AeadSource::Ring => ring::ALL_CIPHER_SUITES
            .iter()
            .filter_map(|ring_suite| {
                let aws_suite = aws_lc_rs::ALL_CIPHER_SUITES
                    .iter()
                    .find(|aws_suite| aws_suite.suite() == ring_suite.suite())?;
                Some(combine(*ring_suite, *aws_suite).unwrap_or(*ring_suite))
            })
            .collect(),
    }
}

/// A suite with `aead`'s record protection and `hashing`'s hash, HKDF/PRF and limits.
fn combine(
    aead: SupportedCipherSuite,
    hashing: SupportedCipherSuite,
) -> Option<SupportedCipherSuite> {
    use rustls::crypto::CipherSuiteCommon;
    use rustls::{Tls12CipherSuite, Tls13CipherSuite};

    let common = |from: &CipherSuiteCommon| CipherSuiteCommon {
        suite: from.suite,
        hash_provider: from.hash_provider,
        confidentiality_limit: from.confidentiality_limit,
    };
    match (aead, hashing) {
        (SupportedCipherSuite::Tls13(aead), SupportedCipherSuite::Tls13(hashing)) => {
            let suite: &'static Tls13CipherSuite = Box::leak(Box::new(Tls13CipherSuite {
                common: common(&hashing.common),
                hkdf_provider: hashing.hkdf_provider,
                aead_alg: aead.aead_alg,
                quic: aead.quic,
            }));
            Some(SupportedCipherSuite::Tls13(suite))
        }
        (SupportedCipherSuite::Tls12(aead), SupportedCipherSuite::Tls12(hashing)) => {
            let suite: &'static Tls12CipherSuite = Box::leak(Box::new(Tls12CipherSuite {
                common: common(&hashing.common),
                prf_provider: hashing.prf_provider,
                kx: hashing.kx,
                sign: hashing.sign,
                aead_alg: aead.aead_alg,
            }));
            Some(SupportedCipherSuite::Tls12(suite))
        }
        _ => None,
    }
}

/// Key exchange groups offered by default, most preferred first.
pub fn default_groups() -> Vec<&'static dyn SupportedKxGroup> {
    vec![
        aws_lc_rs::kx_group::X25519MLKEM768,
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
        aws_lc_rs::kx_group::SECP384R1,
    ]
}

/// Every key exchange group Portcullis can offer, by its IANA name (as `rustls` spells it).
pub fn all_groups() -> Vec<&'static dyn SupportedKxGroup> {
    aws_lc_rs::ALL_KX_GROUPS.to_vec()
}

/// Every cipher suite Portcullis can offer ([`aead_source`]'s AEAD, aws-lc-rs hash and key
/// derivation).
pub fn all_suites() -> Vec<SupportedCipherSuite> {
    mixed_suites().to_vec()
}

/// Looks a key exchange group up by name, for example `X25519` or `X25519MLKEM768`.
pub fn group_by_name(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    all_groups()
        .into_iter()
        .find(|group| group_name(group.name()).eq_ignore_ascii_case(name))
}

/// Looks a cipher suite up by its IANA name, for example `TLS13_AES_128_GCM_SHA256`.
pub fn suite_by_name(name: &str) -> Option<SupportedCipherSuite> {
    all_suites()
        .into_iter()
        .find(|suite| format!("{:?}", suite.suite()).eq_ignore_ascii_case(name))
}

/// The display name of a group, as accepted by [`group_by_name`].
pub fn group_name(group: NamedGroup) -> String {
    match group {
        NamedGroup::X25519 => "X25519".into(),
        NamedGroup::secp256r1 => "secp256r1".into(),
        NamedGroup::secp384r1 => "secp384r1".into(),
        NamedGroup::secp521r1 => "secp521r1".into(),
        NamedGroup::X25519MLKEM768 => "X25519MLKEM768".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn provider_mixes_suites_and_aws_groups() {
        let provider = provider();
        assert_eq!(
            provider.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(provider.cipher_suites.len(), 9);
        assert_eq!(provider.kx_groups[0].name(), NamedGroup::X25519MLKEM768);
        assert!(group_by_name("x25519mlkem768").is_some());
        assert!(suite_by_name("TLS13_AES_128_GCM_SHA256").is_some());
        assert!(suite_by_name("nonsense").is_none());
    }

    /// Both AEAD sources, whichever this CPU uses, against clients of each plain provider:
    /// every suite completes a handshake and carries data both ways.
    #[test]
    fn suites_of_either_aead_source_talk_to_plain_providers() {
        use std::time::Duration;

        use rustls::pki_types::PrivateKeyDer;
        use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};
        use rustls::{ServerConnection, SupportedProtocolVersion};

        use crate::source::dev::{DevCa, LeafSpec};

        let ca = DevCa::new("crypto test CA", Duration::from_secs(3600)).expect("ca");
        let spec = LeafSpec {
            common_name: "server".into(),
            dns_names: vec!["server.test".into()],
            ..Default::default()
        };
        let leaf = ca.issue(&spec, Duration::from_secs(600)).expect("leaf");
        let mut roots = RootCertStore::empty();
        roots.add(ca.certificate().clone()).expect("root");
        let clients = [
            ("ring", ring::default_provider()),
            ("aws-lc-rs", aws_lc_rs::default_provider()),
        ];

        for source in [AeadSource::Ring, AeadSource::AwsLcRs] {
            for suite in suites_with_aead_from(source) {
                // The test certificate is ECDSA: TLS 1.2 suites for RSA keys cannot be chosen.
                if !suite.usable_for_signature_algorithm(rustls::SignatureAlgorithm::ECDSA) {
                    continue;
                }
                let version: &SupportedProtocolVersion = suite.version();
                let server_provider = CryptoProvider {
                    cipher_suites: vec![suite],
                    ..build_provider()
                };
                let server = ServerConfig::builder_with_provider(Arc::new(server_provider))
                    .with_protocol_versions(&[version])
                    .expect("versions")
                    .with_no_client_auth()
                    .with_single_cert(leaf.chain.clone(), PrivateKeyDer::clone_key(&leaf.key))
                    .expect("server config");
                let server = Arc::new(server);
                for (client_name, client_provider) in &clients {
                    let client =
                        ClientConfig::builder_with_provider(Arc::new(client_provider.clone()))
                            .with_protocol_versions(&[version])
                            .expect("versions")
                            .with_root_certificates(roots.clone())
                            .with_no_client_auth();
                    let name = "server.test".try_into().expect("name");
                    let mut client = ClientConnection::new(Arc::new(client), name).expect("client");
                    let mut server = ServerConnection::new(server.clone()).expect("server");
                    let what = format!(
                        "{:?} ({}) with a {client_name} client",
                        suite.suite(),
                        source.as_str()
                    );

                    client.writer().write_all(b"ping").expect("write");
                    server.writer().write_all(b"pong").expect("write");
                    for _ in 0..10 {
                        move_bytes(&mut client, &mut server, &what);
                        move_bytes(&mut server, &mut client, &what);
                    }
                    assert_eq!(read_all(&mut server), b"ping", "{what}");
                    assert_eq!(read_all(&mut client), b"pong", "{what}");
                    assert_eq!(server.negotiated_cipher_suite(), Some(suite), "{what}");
                }
            }
        }
    }

    fn move_bytes<A, B, DA, DB>(from: &mut A, to: &mut B, what: &str)
    where
        A: std::ops::DerefMut<Target = rustls::ConnectionCommon<DA>>,
        B: std::ops::DerefMut<Target = rustls::ConnectionCommon<DB>>,
        DA: rustls::SideData,
        DB: rustls::SideData,
    {
        let mut wire = Vec::new();
        from.write_tls(&mut wire).expect("write_tls");
        let mut cursor = &wire[..];
        while !cursor.is_empty() {
            to.read_tls(&mut cursor).expect("read_tls");
        }
        to.process_new_packets()
            .unwrap_or_else(|err| panic!("{what}: {err}"));
    }

    fn read_all<C, D>(connection: &mut C) -> Vec<u8>
    where
        C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
        D: rustls::SideData,
    {
        let mut out = Vec::new();
        let _ = connection.reader().read_to_end(&mut out);
        out
    }
}
