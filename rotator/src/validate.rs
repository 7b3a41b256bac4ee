//! The checks every candidate identity passes before it is published.
//!
//! A candidate is refused, and the current identity keeps serving, unless:
//! - the chain and key parse, and the key belongs to the leaf certificate;
//! - the leaf is valid now (its `notBefore` may be up to `skew` in the future);
//! - the chain verifies against the trust bundle published with it;
//! - the leaf carries the expected identity (SPIFFE ID or DNS name), when one is configured.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use rustls_pki_types::UnixTime;
use serde::Deserialize;

use crate::crypto;
use crate::identity::{Identity, Issued};
use crate::inspect::{CertSummary, unix_seconds};

/// Default allowance for clocks that disagree about `notBefore`.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(60);

/// Why a candidate identity was refused. The `Display` of [`ValidationError::reason`] is the
/// metric label.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("the chain is empty")]
    EmptyChain,
    #[error("certificate {index} of the chain does not parse: {reason}")]
    Unparsable { index: usize, reason: String },
    #[error("the private key is unusable: {0}")]
    BadKey(String),
    #[error("the private key does not belong to the leaf certificate")]
    KeyMismatch,
    #[error("the leaf (serial {serial}) is not valid until {not_before} (unix seconds)")]
    NotYetValid { serial: String, not_before: i64 },
    #[error("the leaf (serial {serial}) expired at {not_after} (unix seconds)")]
    Expired { serial: String, not_after: i64 },
    #[error("the trust bundle is empty")]
    EmptyTrust,
    #[error("the chain does not verify against the trust bundle: {0}")]
    Untrusted(String),
    #[error("the leaf's identity {found:?} is not the expected {expected}")]
    WrongIdentity {
        expected: String,
        found: Vec<String>,
    },
}

impl ValidationError {
    /// A stable `snake_case` name, used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::EmptyChain => "empty_chain",
            Self::Unparsable { .. } => "unparsable",
            Self::BadKey(_) => "bad_key",
            Self::KeyMismatch => "key_mismatch",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::Expired { .. } => "expired",
            Self::EmptyTrust => "empty_trust",
            Self::Untrusted(_) => "untrusted",
            Self::WrongIdentity { .. } => "wrong_identity",
        }
    }
}

/// The identity a published certificate must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedIdentity {
    /// The exact SPIFFE ID (a `spiffe://` URI SAN) the leaf must carry.
    #[serde(default)]
    pub spiffe_id: Option<String>,
    /// A DNS name the leaf must carry among its SANs.
    #[serde(default)]
    pub dns_name: Option<String>,
}

/// Checks candidates; cheap to clone.
#[derive(Debug, Clone)]
pub struct Validator {
    /// How far in the future `notBefore` may be.
    pub skew: Duration,
    /// The identity the leaf must carry, when set.
    pub expected: ExpectedIdentity,
}

impl Default for Validator {
    fn default() -> Self {
        Self {
            skew: DEFAULT_SKEW,
            expected: ExpectedIdentity::default(),
        }
    }
}

impl Validator {
    /// Checks `issued` as of `now`; on success it is ready to publish.
    pub fn check(&self, issued: Issued, now: SystemTime) -> Result<Identity, ValidationError> {
        let Issued { chain, key, trust } = issued;
        let leaf_der = chain.first().ok_or(ValidationError::EmptyChain)?;
        let leaf = parse(leaf_der, 0)?;
        for (index, cert) in chain.iter().enumerate().skip(1) {
            parse(cert, index)?;
        }

        let provider = crypto::provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|err| ValidationError::BadKey(err.to_string()))?;
        let certified = CertifiedKey::new(chain.clone(), signing_key);
        certified
            .keys_match()
            .map_err(|_| ValidationError::KeyMismatch)?;

        self.check_validity(&leaf, now)?;

        if trust.is_empty() {
            return Err(ValidationError::EmptyTrust);
        }
        let trust_summaries = trust
            .iter()
            .enumerate()
            .map(|(index, cert)| parse(cert, index))
            .collect::<Result<Vec<_>, _>>()?;
        verify_chain(&chain, &trust, now)?;

        self.check_expected(&leaf)?;

        Ok(Identity::new(
            Arc::new(certified),
            key,
            trust,
            leaf,
            trust_summaries,
        ))
    }

    fn check_validity(&self, leaf: &CertSummary, now: SystemTime) -> Result<(), ValidationError> {
        let now = unix_seconds(now);
        if leaf.not_before > now + self.skew.as_secs() as i64 {
            return Err(ValidationError::NotYetValid {
                serial: leaf.serial.clone(),
                not_before: leaf.not_before,
            });
        }
        if leaf.not_after <= now {
            return Err(ValidationError::Expired {
                serial: leaf.serial.clone(),
                not_after: leaf.not_after,
            });
        }
        Ok(())
    }

    fn check_expected(&self, leaf: &CertSummary) -> Result<(), ValidationError> {
        if let Some(expected) = &self.expected.spiffe_id {
            if !leaf.uris.iter().any(|uri| uri == expected) {
                return Err(ValidationError::WrongIdentity {
                    expected: expected.clone(),
                    found: leaf.uris.clone(),
                });
            }
        }
        if let Some(expected) = &self.expected.dns_name {
            if !leaf
                .dns_names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(expected))
            {
                return Err(ValidationError::WrongIdentity {
                    expected: expected.clone(),
                    found: leaf.dns_names.clone(),
                });
            }
        }
        Ok(())
    }
}

fn parse(der: &[u8], index: usize) -> Result<CertSummary, ValidationError> {
    CertSummary::from_der(der).map_err(|err| ValidationError::Unparsable {
        index,
        reason: err.to_string(),
    })
}

/// Verifies that `chain` (leaf first) leads to one of `trust` at `now`.
///
/// The verification time is moved forward by the skew allowance only through the caller;
/// here `now` is taken as given, clamped to the leaf's `notBefore` so that a freshly issued
/// certificate from a clock slightly ahead is not refused twice.
fn verify_chain(
    chain: &[rustls_pki_types::CertificateDer<'static>],
    trust: &[rustls_pki_types::CertificateDer<'static>],
    now: SystemTime,
) -> Result<(), ValidationError> {
    let anchors = trust
        .iter()
        .map(|cert| webpki::anchor_from_trusted_cert(cert).map(|anchor| anchor.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| ValidationError::Untrusted(format!("unusable trust anchor: {err}")))?;
    let leaf = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|err| ValidationError::Untrusted(err.to_string()))?;

    let leaf_not_before = CertSummary::from_der(&chain[0])
        .map(|summary| summary.not_before_time())
        .unwrap_or(now);
    let at = UnixTime::since_unix_epoch(
        now.max(leaf_not_before)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );

    let provider = crypto::provider();
    leaf.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &anchors,
        &chain[1..],
        at,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|err| ValidationError::Untrusted(err.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;
    use crate::source::dev::{DevCa, LeafSpec};

    fn ca() -> DevCa {
        DevCa::new("test CA", Duration::from_secs(3600)).expect("CA")
    }

    fn spec() -> LeafSpec {
        LeafSpec {
            common_name: "web".into(),
            dns_names: vec!["web.local".into()],
            uris: vec!["spiffe://example.org/web".into()],
            ..Default::default()
        }
    }

    fn issued(ca: &DevCa) -> Issued {
        let leaf = ca.issue(&spec(), Duration::from_secs(600)).expect("leaf");
        Issued {
            chain: leaf.chain,
            key: leaf.key,
            trust: vec![ca.certificate().clone()],
        }
    }

    #[test]
    fn accepts_a_good_identity_and_summarises_it() {
        let ca = ca();
        let identity = Validator::default()
            .check(issued(&ca), SystemTime::now())
            .expect("valid");
        assert_eq!(
            identity.leaf.spiffe_id.as_deref(),
            Some("spiffe://example.org/web")
        );
        assert_eq!(identity.leaf.common_name.as_deref(), Some("web"));
        assert_eq!(identity.trust_summaries.len(), 1);
        assert!(format!("{identity:?}").contains("key: \"...\""));
    }

    #[test]
    fn refuses_a_key_that_belongs_to_another_certificate() {
        let ca = ca();
        let mut candidate = issued(&ca);
        candidate.key = issued(&ca).key;
        let err = Validator::default()
            .check(candidate, SystemTime::now())
            .unwrap_err();
        assert_eq!(err.reason(), "key_mismatch");
    }

    #[test]
    fn refuses_an_expired_leaf() {
        let ca = ca();
        let now = OffsetDateTime::now_utc();
        let leaf = ca
            .issue_between(
                &spec(),
                now - Duration::from_secs(600),
                now - Duration::from_secs(60),
            )
            .expect("leaf");
        let candidate = Issued {
            chain: leaf.chain,
            key: leaf.key,
            trust: vec![ca.certificate().clone()],
        };
        let err = Validator::default()
            .check(candidate, SystemTime::now())
            .unwrap_err();
        assert_eq!(err.reason(), "expired");
    }

    #[test]
    fn refuses_a_leaf_from_another_ca() {
        let mut candidate = issued(&ca());
        candidate.trust = vec![ca().certificate().clone()];
        let err = Validator::default()
            .check(candidate, SystemTime::now())
            .unwrap_err();
        assert_eq!(err.reason(), "untrusted");
    }

    #[test]
    fn refuses_the_wrong_identity() {
        let validator = Validator {
            expected: ExpectedIdentity {
                spiffe_id: Some("spiffe://example.org/db".into()),
                dns_name: None,
            },
            ..Validator::default()
        };
        let err = validator
            .check(issued(&ca()), SystemTime::now())
            .unwrap_err();
        assert_eq!(err.reason(), "wrong_identity");

        let validator = Validator {
            expected: ExpectedIdentity {
                spiffe_id: None,
                dns_name: Some("WEB.local".into()),
            },
            ..Validator::default()
        };
        assert!(validator.check(issued(&ca()), SystemTime::now()).is_ok());
    }

    #[test]
    fn accepts_a_trust_bundle_with_several_cas() {
        let ca = ca();
        let mut candidate = issued(&ca);
        candidate.trust.insert(0, self::ca().certificate().clone());
        let identity = Validator::default()
            .check(candidate, SystemTime::now())
            .expect("valid");
        assert_eq!(identity.trust.len(), 2);
    }

    /// A CA rotation with a cross-signed new root: a leaf of the new root, sent with the new
    /// root cross-signed by the old one, must verify whichever roots the bundle holds.
    #[test]
    fn verifies_chains_through_a_cross_signed_root() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

        let root = |name: &str| {
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
        };
        let old_key = KeyPair::generate().unwrap();
        let old_params = root("old root");
        let old_self = old_params.self_signed(&old_key).unwrap().der().clone();
        let old = Issuer::new(old_params, old_key);

        let new_key = KeyPair::generate().unwrap();
        let new_params = root("new root");
        let new_self = new_params.self_signed(&new_key).unwrap().der().clone();
        let new_by_old = new_params.signed_by(&new_key, &old).unwrap().der().clone();
        let new = Issuer::new(new_params, new_key);

        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params = CertificateParams::new(vec!["web.local".to_owned()]).unwrap();
        let leaf = leaf_params
            .signed_by(&leaf_key, &new)
            .unwrap()
            .der()
            .clone();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());

        for trust in [
            vec![old_self.clone()],
            vec![new_self.clone()],
            vec![old_self, new_self],
        ] {
            let candidate = Issued {
                chain: vec![leaf.clone(), new_by_old.clone()],
                key: key.clone_key(),
                trust: trust.clone(),
            };
            let checked = Validator::default().check(candidate, SystemTime::now());
            assert!(
                checked.is_ok(),
                "{} anchor(s): {:?}",
                trust.len(),
                checked.err()
            );
        }
    }
}
