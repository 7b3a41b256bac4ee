//! An embedded development CA that issues short-lived certificates in memory.
//!
//! For demos and tests only: the CA key lives in the process and dies with it. Leaves are
//! ECDSA P-256, usable for both server and client authentication, backdated like Vault's
//! default `not_before_duration` (30 s), but never by more than a quarter of their lifetime,
//! so that the renewal point of very short-lived certificates stays ahead of their issue.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use super::{CertificateSource, Refresh, SourceError};
use crate::identity::{Issued, pem_encode};
use crate::schedule::RenewPolicy;

const MAX_BACKDATE: Duration = Duration::from_secs(30);

/// What a leaf certificate says about its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeafSpec {
    pub common_name: String,
    pub dns_names: Vec<String>,
    /// URI SANs, such as a `spiffe://` ID.
    pub uris: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

/// A certificate and its key as issued by the [`DevCa`].
pub struct DevLeaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl DevLeaf {
    /// The chain as PEM text.
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|cert| pem_encode("CERTIFICATE", cert))
            .collect()
    }

    /// The key as PKCS#8 PEM text.
    pub fn key_pem(&self) -> String {
        pem_encode("PRIVATE KEY", self.key.secret_der())
    }
}

impl std::fmt::Debug for DevLeaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevLeaf")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A self-signed CA held in memory.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// Creates a CA valid for `validity`, named `common_name`.
    pub fn new(common_name: &str, validity: Duration) -> Result<Self, SourceError> {
        let key = KeyPair::generate().map_err(issue_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - MAX_BACKDATE;
        params.not_after = now + validity;

        let certificate = params.self_signed(&key).map_err(issue_error)?.der().clone();
        Ok(Self {
            issuer: Issuer::new(params, key),
            certificate,
        })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The CA certificate as PEM text.
    pub fn certificate_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.certificate)
    }

    /// Issues a leaf valid for `ttl` from now, backdated by up to 30 s for clock skew.
    pub fn issue(&self, spec: &LeafSpec, ttl: Duration) -> Result<DevLeaf, SourceError> {
        let now = OffsetDateTime::now_utc();
        self.issue_between(spec, now - MAX_BACKDATE.min(ttl / 4), now + ttl)
    }

    /// Issues a leaf valid between two arbitrary points (tests use it for expired leaves).
    pub fn issue_between(
        &self,
        spec: &LeafSpec,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<DevLeaf, SourceError> {
        let key = KeyPair::generate().map_err(issue_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&spec.common_name);
        params.subject_alt_names = subject_alt_names(spec)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial());
        params.not_before = not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;

        let certificate = params.signed_by(&key, &self.issuer).map_err(issue_error)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(DevLeaf {
            chain: vec![certificate.der().clone()],
            key,
        })
    }
}

/// A source that issues its own certificates from a [`DevCa`].
#[derive(Debug)]
pub struct DevSource {
    ca: Arc<DevCa>,
    spec: LeafSpec,
    ttl: Duration,
    policy: RenewPolicy,
}

impl DevSource {
    pub fn new(ca: Arc<DevCa>, spec: LeafSpec, ttl: Duration, policy: RenewPolicy) -> Self {
        Self {
            ca,
            spec,
            ttl,
            policy,
        }
    }
}

impl CertificateSource for DevSource {
    fn describe(&self) -> String {
        format!("development CA ({}s certificates)", self.ttl.as_secs())
    }

    fn kind(&self) -> &'static str {
        "dev"
    }

    fn refresh(&self) -> Refresh {
        Refresh::Lifetime(self.policy.clone())
    }

    async fn obtain(&mut self) -> Result<Issued, SourceError> {
        let leaf = self.ca.issue(&self.spec, self.ttl)?;
        Ok(Issued {
            chain: leaf.chain,
            key: leaf.key,
            trust: vec![self.ca.certificate.clone()],
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn subject_alt_names(spec: &LeafSpec) -> Result<Vec<SanType>, SourceError> {
    let mut sans = Vec::new();
    for dns in &spec.dns_names {
        sans.push(SanType::DnsName(
            dns.clone().try_into().map_err(issue_error)?,
        ));
    }
    for uri in &spec.uris {
        sans.push(SanType::URI(uri.clone().try_into().map_err(issue_error)?));
    }
    for ip in &spec.ip_addresses {
        sans.push(SanType::IpAddress(*ip));
    }
    Ok(sans)
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn issue_error(err: rcgen::Error) -> SourceError {
    SourceError::Issue(err.to_string())
}
