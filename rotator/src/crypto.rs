//! The crypto provider Portcullis uses everywhere: rustls lets one provider mix primitives.
//!
//! Measured on the target CPU (AVX2, VAES, SHA extensions; `cargo bench -p
//! portcullis-bench`): ring seals AES-128-GCM records about 2.3x faster than aws-lc-rs, while a
//! provider with ring's suites whole made full handshakes slower than aws-lc-rs alone; aws-lc-rs
//! also does X25519 about 2.4x faster and is the only one with the X25519MLKEM768 hybrid. So
//! each cipher suite takes its record protection (AEAD) from ring and its hash, HKDF and PRF
//! from aws-lc-rs, and the key exchange groups and signing keys come from aws-lc-rs.
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

/// Every suite, each made of ring's AEAD and aws-lc-rs's hash and key derivation. Built once;
/// the suites live for the whole process, as rustls requires.
fn mixed_suites() -> &'static [SupportedCipherSuite] {
    static SUITES: OnceLock<Vec<SupportedCipherSuite>> = OnceLock::new();
    SUITES.get_or_init(|| {
        ring::ALL_CIPHER_SUITES
            .iter()
            .filter_map(|ring_suite| {
                let aws_suite = aws_lc_rs::ALL_CIPHER_SUITES
                    .iter()
                    .find(|aws_suite| aws_suite.suite() == ring_suite.suite())?;
                Some(combine(*ring_suite, *aws_suite).unwrap_or(*ring_suite))
            })
            .collect()
    })
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

/// Every cipher suite Portcullis can offer (ring AEAD, aws-lc-rs hash and key derivation).
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
    use super::*;

    #[test]
    fn provider_mixes_ring_suites_and_aws_groups() {
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
}
