//! Choosing a source from configuration.
//!
//! [`CertificateSource`] has an `async` method, so sources are not object-safe; [`AnySource`]
//! dispatches to the configured one instead.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::dev::{DevCa, DevSource, LeafSpec};
use super::files::{FilesConfig, FilesSource};
use super::vault::{VaultConfig, VaultSource};
use super::{CertificateSource, Refresh, SourceError};
use crate::identity::Issued;
use crate::schedule::RenewPolicy;

/// The `[source]` table: where the identity comes from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// PEM files on disk, polled for changes.
    Files(FilesConfig),
    /// The embedded development CA (demos and tests).
    Dev(DevConfig),
    /// Vault (or OpenBao) PKI.
    Vault(Box<VaultConfig>),
}

/// The `[source]` table for `kind = "dev"`.
///
/// # Defaults
/// `common_name` `localhost`, `dns_names` `["localhost"]`, `ip_addresses` `["127.0.0.1"]`,
/// `ttl` `1h`, renewal at 2/3 of the lifetime.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevConfig {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
    pub ip_addresses: Vec<std::net::IpAddr>,
    #[serde(with = "crate::schedule::humantime")]
    pub ttl: Duration,
    pub renew: RenewPolicy,
}

impl Default for DevConfig {
    fn default() -> Self {
        Self {
            common_name: "localhost".into(),
            dns_names: vec!["localhost".into()],
            uris: Vec::new(),
            ip_addresses: vec![std::net::IpAddr::from([127, 0, 0, 1])],
            ttl: Duration::from_secs(3600),
            renew: RenewPolicy::default(),
        }
    }
}

impl DevConfig {
    /// What the issued leaves say about their holder.
    pub fn leaf_spec(&self) -> LeafSpec {
        LeafSpec {
            common_name: self.common_name.clone(),
            dns_names: self.dns_names.clone(),
            uris: self.uris.clone(),
            ip_addresses: self.ip_addresses.clone(),
        }
    }
}

/// One of the configured sources.
#[derive(Debug)]
pub enum AnySource {
    Files(FilesSource),
    Dev(DevSource),
    Vault(Box<VaultSource>),
}

impl AnySource {
    /// Builds the source `config` describes. A `dev` source gets a fresh CA unless one is given.
    pub async fn from_config(
        config: &SourceConfig,
        dev_ca: Option<Arc<DevCa>>,
    ) -> Result<Self, SourceError> {
        match config {
            SourceConfig::Files(files) => Ok(Self::Files(FilesSource::new(files.clone()))),
            SourceConfig::Dev(dev) => {
                let ca = match dev_ca {
                    Some(ca) => ca,
                    None => Arc::new(DevCa::new("Portcullis development CA", ca_validity())?),
                };
                Ok(Self::Dev(DevSource::new(
                    ca,
                    dev.leaf_spec(),
                    dev.ttl,
                    dev.renew.clone(),
                )))
            }
            SourceConfig::Vault(vault) => Ok(Self::Vault(Box::new(
                VaultSource::new(VaultConfig::clone(vault)).await?,
            ))),
        }
    }
}

/// How long a development CA lives: long enough for any demo or test run.
fn ca_validity() -> Duration {
    Duration::from_secs(30 * 86400)
}

impl CertificateSource for AnySource {
    fn describe(&self) -> String {
        match self {
            Self::Files(source) => source.describe(),
            Self::Dev(source) => source.describe(),
            Self::Vault(source) => source.describe(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Files(source) => source.kind(),
            Self::Dev(source) => source.kind(),
            Self::Vault(source) => source.kind(),
        }
    }

    fn refresh(&self) -> Refresh {
        match self {
            Self::Files(source) => source.refresh(),
            Self::Dev(source) => source.refresh(),
            Self::Vault(source) => source.refresh(),
        }
    }

    async fn obtain(&mut self) -> Result<Issued, SourceError> {
        match self {
            Self::Files(source) => source.obtain().await,
            Self::Dev(source) => source.obtain().await,
            Self::Vault(source) => source.obtain().await,
        }
    }

    fn record_gauges(&self) {
        match self {
            Self::Files(source) => source.record_gauges(),
            Self::Dev(source) => source.record_gauges(),
            Self::Vault(source) => source.record_gauges(),
        }
    }

    fn upkeep_in(&self) -> Option<Duration> {
        match self {
            Self::Files(source) => source.upkeep_in(),
            Self::Dev(source) => source.upkeep_in(),
            Self::Vault(source) => source.upkeep_in(),
        }
    }

    async fn upkeep(
        &mut self,
    ) -> Result<Option<Vec<rustls_pki_types::CertificateDer<'static>>>, SourceError> {
        match self {
            Self::Files(source) => source.upkeep().await,
            Self::Dev(source) => source.upkeep().await,
            Self::Vault(source) => source.upkeep().await,
        }
    }
}
