//! The unit of publication: a certificate chain, its private key and the trust bundle.
//!
//! Sources hand over an [`Issued`] (raw material, unchecked); the [`crate::Validator`] turns it
//! into an [`Identity`] (checked, summarised, ready to serve). Neither type prints key bytes in
//! `Debug`.

use std::fmt;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::inspect::CertSummary;

/// Errors turning PEM text into certificates and keys.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: String },
    #[error("{what}: no PEM private key found")]
    NoKey { what: String },
    #[error("{what}: malformed PEM: {reason}")]
    BadPem { what: String, reason: String },
}

/// Certificate material as a source obtained it, not yet checked.
pub struct Issued {
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Every CA certificate that peers' certificates may chain to.
    pub trust: Vec<CertificateDer<'static>>,
}

impl Issued {
    /// Parses PEM text for the chain, key and trust bundle. `what` names the origin in errors.
    pub fn from_pem(
        chain: &[u8],
        key: &[u8],
        trust: &[u8],
        what: &str,
    ) -> Result<Self, IdentityError> {
        Ok(Self {
            chain: certs_from_pem(chain, &format!("{what} chain"))?,
            key: key_from_pem(key, &format!("{what} key"))?,
            trust: certs_from_pem(trust, &format!("{what} trust bundle"))?,
        })
    }

    /// Clones the material (the key included) so it can be validated and kept.
    pub fn clone_material(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            trust: self.trust.clone(),
        }
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("chain_len", &self.chain.len())
            .field("key", &"...")
            .field("trust_len", &self.trust.len())
            .finish()
    }
}

/// A checked identity, ready to serve. Cheap to share: the proxy holds it behind an `Arc`.
pub struct Identity {
    /// The chain and signing key, as rustls serves them.
    pub certified_key: Arc<CertifiedKey>,
    /// The private key, kept for sinks that write files and for the last-known-good cache.
    key: PrivateKeyDer<'static>,
    /// Every CA certificate that peers' certificates may chain to.
    pub trust: Vec<CertificateDer<'static>>,
    /// A summary of the leaf certificate.
    pub leaf: CertSummary,
    /// Summaries of the trust bundle's certificates.
    pub trust_summaries: Vec<CertSummary>,
}

impl Identity {
    pub(crate) fn new(
        certified_key: Arc<CertifiedKey>,
        key: PrivateKeyDer<'static>,
        trust: Vec<CertificateDer<'static>>,
        leaf: CertSummary,
        trust_summaries: Vec<CertSummary>,
    ) -> Self {
        Self {
            certified_key,
            key,
            trust,
            leaf,
            trust_summaries,
        }
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified_key.cert
    }

    /// The private key. Only for writing files an operator asked for, never for logs.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The chain as PEM text, leaf first.
    pub fn chain_pem(&self) -> String {
        self.chain()
            .iter()
            .map(|cert| pem_encode("CERTIFICATE", cert))
            .collect()
    }

    /// The trust bundle as PEM text.
    pub fn trust_pem(&self) -> String {
        self.trust
            .iter()
            .map(|cert| pem_encode("CERTIFICATE", cert))
            .collect()
    }

    /// The private key as PEM text. Only for files an operator asked for.
    pub fn key_pem(&self) -> String {
        let label = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem_encode(label, self.key.secret_der())
    }

    /// True when `other` serves the same leaf with the same trust bundle.
    pub fn same_as(&self, other: &Identity) -> bool {
        self.chain() == other.chain() && self.trust == other.trust
    }

    /// True when `issued` is exactly this identity's material: chain, key and trust bundle.
    pub fn holds(&self, issued: &Issued) -> bool {
        self.chain() == issued.chain.as_slice()
            && self.key == issued.key
            && self.trust == issued.trust
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("leaf", &self.leaf)
            .field("chain_len", &self.chain().len())
            .field("key", &"...")
            .field("trust_len", &self.trust.len())
            .finish()
    }
}

/// Parses every `CERTIFICATE` block in `pem`; fails when there is none.
pub fn certs_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| IdentityError::BadPem {
            what: what.into(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::NoCertificate { what: what.into() });
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) in `pem`.
pub fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, IdentityError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => IdentityError::NoKey { what: what.into() },
        // The PEM error may quote input bytes; name the kind of failure only.
        _ => IdentityError::BadPem {
            what: what.into(),
            reason: "unreadable key block".into(),
        },
    })
}

/// Encodes DER bytes as one PEM block.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;

    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
