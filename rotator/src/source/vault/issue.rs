//! Asking Vault's PKI engine for a certificate: `sign` with a CSR made here (the key never
//! leaves the process) or `issue` (Vault makes the key and returns it).

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use vaultrs::api::pki::requests::{GenerateCertificateRequest, SignCertificateRequest};

use super::client::{Vault, VaultError, measured};
use super::config::{IssueMethod, VaultConfig};
use crate::identity::{certs_from_pem, key_from_pem};
use crate::inspect::CertSummary;

/// A certificate Vault made: leaf first, then the intermediates it returned.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The CA that signed the leaf, to be sure the trust bundle holds it.
    pub issuing_ca: Vec<CertificateDer<'static>>,
    pub serial: String,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("serial", &self.serial)
            .field("chain_len", &self.chain.len())
            .field("key", &"...")
            .finish()
    }
}

/// Obtains one certificate as `config` says.
pub async fn obtain(vault: &Vault, config: &VaultConfig) -> Result<Leaf, VaultError> {
    match config.method {
        IssueMethod::Sign => sign(vault, config).await,
        IssueMethod::Issue => issue(vault, config).await,
    }
}

async fn sign(vault: &Vault, config: &VaultConfig) -> Result<Leaf, VaultError> {
    let key = KeyPair::generate().map_err(csr_error)?;
    let csr = csr(config, &key)?;

    let mut request = SignCertificateRequest::builder();
    request
        .mount(&config.mount)
        .role(&config.role)
        .csr(csr)
        .common_name(&config.common_name)
        .format("pem");
    let fields = Fields::from_config(config);
    if let Some(value) = fields.alt_names {
        request.alt_names(value);
    }
    if let Some(value) = fields.uri_sans {
        request.uri_sans(value);
    }
    if let Some(value) = fields.ip_sans {
        request.ip_sans(value);
    }
    if let Some(value) = fields.ttl {
        request.ttl(value);
    }
    let endpoint = request
        .build()
        .map_err(|err| VaultError::Config(err.to_string()))?;
    let response = measured("sign", async {
        vaultrs::api::exec_with_result(vault.api(), endpoint)
            .await
            .map_err(|err| VaultError::from_client("sign", err))
    })
    .await?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    assemble(
        "sign",
        &response.certificate,
        response.ca_chain.unwrap_or_default(),
        &response.issuing_ca,
        key,
        response.serial_number,
    )
}

async fn issue(vault: &Vault, config: &VaultConfig) -> Result<Leaf, VaultError> {
    let mut request = GenerateCertificateRequest::builder();
    request
        .mount(&config.mount)
        .role(&config.role)
        .common_name(&config.common_name)
        .format("pem")
        .private_key_format("pkcs8");
    let fields = Fields::from_config(config);
    if let Some(value) = fields.alt_names {
        request.alt_names(value);
    }
    if let Some(value) = fields.uri_sans {
        request.uri_sans(value);
    }
    if let Some(value) = fields.ip_sans {
        request.ip_sans(value);
    }
    if let Some(value) = fields.ttl {
        request.ttl(value);
    }
    let endpoint = request
        .build()
        .map_err(|err| VaultError::Config(err.to_string()))?;
    let response = measured("issue", async {
        vaultrs::api::exec_with_result(vault.api(), endpoint)
            .await
            .map_err(|err| VaultError::from_client("issue", err))
    })
    .await?;

    // The key error names the endpoint only: its text could quote key material.
    let key =
        key_from_pem(response.private_key.as_bytes(), "issued private key").map_err(|_| {
            VaultError::Response {
                endpoint: "issue",
                detail: "the private key in the answer is unreadable".into(),
            }
        })?;
    assemble(
        "issue",
        &response.certificate,
        response.ca_chain.unwrap_or_default(),
        &response.issuing_ca,
        key,
        response.serial_number,
    )
}

/// The optional request fields the configuration fills, as Vault spells them.
struct Fields {
    alt_names: Option<String>,
    uri_sans: Option<String>,
    ip_sans: Option<String>,
    ttl: Option<String>,
}

impl Fields {
    fn from_config(config: &VaultConfig) -> Self {
        let join = |items: Vec<String>| (!items.is_empty()).then(|| items.join(","));
        Self {
            alt_names: join(config.dns_names.clone()),
            uri_sans: join(config.uri_sans.clone()),
            ip_sans: join(config.ip_sans.iter().map(ToString::to_string).collect()),
            ttl: config.ttl.map(|ttl| format!("{}s", ttl.as_secs().max(1))),
        }
    }
}

/// A PEM CSR carrying the configured names, signed by `key`.
fn csr(config: &VaultConfig, key: &KeyPair) -> Result<String, VaultError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, config.common_name.as_str());
    params.distinguished_name = name;
    for dns in &config.dns_names {
        let dns = dns.clone().try_into().map_err(csr_error)?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    for uri in &config.uri_sans {
        let uri = uri.clone().try_into().map_err(csr_error)?;
        params.subject_alt_names.push(SanType::URI(uri));
    }
    for ip in &config.ip_sans {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(csr_error)
}

fn csr_error(err: rcgen::Error) -> VaultError {
    VaultError::Config(format!("cannot make the CSR: {err}"))
}

/// Leaf first, then the intermediates of `ca_chain` (self-signed roots are left out: peers
/// must already trust them, and sending them only costs bytes).
fn assemble(
    endpoint: &'static str,
    certificate: &str,
    ca_chain: Vec<String>,
    issuing_ca: &str,
    key: PrivateKeyDer<'static>,
    serial: String,
) -> Result<Leaf, VaultError> {
    let bad = |what: &str, err: crate::identity::IdentityError| VaultError::Response {
        endpoint,
        detail: format!("{what}: {err}"),
    };
    let mut chain = certs_from_pem(certificate.as_bytes(), "certificate")
        .map_err(|err| bad("certificate", err))?;
    for pem in &ca_chain {
        for cert in
            certs_from_pem(pem.as_bytes(), "ca_chain").map_err(|err| bad("ca_chain", err))?
        {
            let self_signed = CertSummary::from_der(&cert)
                .map(|summary| summary.subject == summary.issuer)
                .unwrap_or(false);
            if !self_signed && !chain.contains(&cert) {
                chain.push(cert);
            }
        }
    }
    let issuing_ca = certs_from_pem(issuing_ca.as_bytes(), "issuing_ca").unwrap_or_default();
    Ok(Leaf {
        chain,
        key,
        issuing_ca,
        serial,
    })
}
