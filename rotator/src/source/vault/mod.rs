//! Vault (or OpenBao) PKI as the certificate source.
//!
//! - [`config`]: the `[source]` table for `kind = "vault"`.
//! - [`client`]: one HTTP client for `vaultrs` and the raw calls it lacks; errors that keep
//!   Vault's own `errors[]`.
//! - [`auth`]: token, AppRole and JWT login; token renewal before it lapses.
//! - [`issue`]: `pki/sign/:role` with a CSR made here (default) or `pki/issue/:role`.
//! - [`trust`]: the trust bundle as the union of every issuer in the mount.
//!
//! Building a [`VaultSource`] does not contact Vault, so a proxy can start while Vault is down
//! (and serve from the last-known-good cache); every call happens in
//! [`CertificateSource::obtain`] and [`CertificateSource::upkeep`].

pub mod auth;
pub mod client;
pub mod config;
pub mod issue;
pub mod trust;

use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use tracing::{info, warn};

use self::auth::Auth;
use self::client::{Vault, VaultError};
pub use self::config::{AuthConfig, IssueMethod, VaultConfig, VaultTlsConfig};
use super::{CertificateSource, Refresh, SourceError};
use crate::identity::Issued;

/// Certificates from a Vault PKI mount.
#[derive(Debug)]
pub struct VaultSource {
    config: VaultConfig,
    vault: Vault,
    auth: Auth,
    /// The last trust bundle read and when.
    trust: Vec<CertificateDer<'static>>,
    trust_read: Option<Instant>,
}

impl VaultSource {
    /// Prepares the client from `config`; does not contact Vault.
    pub async fn new(config: VaultConfig) -> Result<Self, SourceError> {
        let vault = Vault::connect(&config).await?;
        let auth = Auth::new(config.auth.clone());
        Ok(Self {
            config,
            vault,
            auth,
            trust: Vec::new(),
            trust_read: None,
        })
    }

    /// Logs in (or renews) as needed, then runs `call`; after a refused token, logs in once
    /// more and tries again.
    async fn with_login(&mut self) -> Result<issue::Leaf, VaultError> {
        self.auth.ensure(&mut self.vault).await?;
        match issue::obtain(&self.vault, &self.config).await {
            Err(err) if err.is_permission_denied() => {
                warn!(error = %err, "Vault refused the token; logging in again");
                self.auth.invalidate();
                self.auth.ensure(&mut self.vault).await?;
                issue::obtain(&self.vault, &self.config).await
            }
            other => other,
        }
    }

    async fn refresh_trust(&mut self) -> Result<bool, VaultError> {
        let bundle = trust::fetch(&self.vault, &self.config.mount).await?;
        self.trust_read = Some(Instant::now());
        if bundle == self.trust {
            return Ok(false);
        }
        info!(mount = %self.config.mount, issuers = bundle.len(), "Vault trust bundle changed");
        self.trust = bundle;
        Ok(true)
    }
}

impl CertificateSource for VaultSource {
    fn describe(&self) -> String {
        let method = match self.config.method {
            IssueMethod::Sign => "sign",
            IssueMethod::Issue => "issue",
        };
        let config = &self.config;
        format!(
            "vault {} {}/{method}/{}",
            config.address, config.mount, config.role
        )
    }

    fn kind(&self) -> &'static str {
        "vault"
    }

    fn refresh(&self) -> Refresh {
        Refresh::Lifetime(self.config.renew.clone())
    }

    async fn obtain(&mut self) -> Result<Issued, SourceError> {
        let leaf = self.with_login().await?;
        // The bundle is read again at each renewal, so a new issuer is trusted as soon as
        // certificates from it appear.
        self.refresh_trust().await?;
        let mut trust = self.trust.clone();
        for ca in leaf.issuing_ca {
            if !trust.contains(&ca) {
                trust.push(ca);
            }
        }
        info!(serial = %leaf.serial, role = %self.config.role, "Vault issued a certificate");
        Ok(Issued {
            chain: leaf.chain,
            key: leaf.key,
            trust,
        })
    }

    fn record_gauges(&self) {
        self.auth.record_ttl();
    }

    fn upkeep_in(&self) -> Option<Duration> {
        let trust = self
            .trust_read
            .map(|at| (at + self.config.trust_refresh).saturating_duration_since(Instant::now()));
        match (trust, self.auth.upkeep_in()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn upkeep(&mut self) -> Result<Option<Vec<CertificateDer<'static>>>, SourceError> {
        self.auth.ensure(&mut self.vault).await?;
        self.auth.record_ttl();
        let due = self
            .trust_read
            .is_some_and(|at| at.elapsed() >= self.config.trust_refresh);
        if due && self.refresh_trust().await? {
            return Ok(Some(self.trust.clone()));
        }
        Ok(None)
    }
}
