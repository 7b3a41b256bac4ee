//! Certificates read from PEM files: chain, key and CA bundle.
//!
//! The rotator polls the files (default every second) and publishes only when their content
//! changed and passes validation. Polling by content follows atomic symlink swaps (the
//! `..data` directory flip of Kubernetes and Nomad templates) and rename-into-place writes,
//! which event-based watches on the old inode miss. A half-written file does not parse or
//! does not match its key, so it is refused and picked up on the next poll once complete.
//! A poll that finds the material already being served costs three reads: the rotator does not
//! check the same bytes again until the leaf expires.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{CertificateSource, Refresh, SourceError};
use crate::identity::Issued;

/// Where the files are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of CA certificates trusted for client certificates.
    pub ca: PathBuf,
    /// How often to look for changes. Default `1s`.
    #[serde(default = "default_poll", with = "crate::schedule::humantime")]
    pub poll_interval: Duration,
}

fn default_poll() -> Duration {
    Duration::from_secs(1)
}

/// Reads a chain, a key and a CA bundle from files.
#[derive(Debug)]
pub struct FilesSource {
    config: FilesConfig,
}

impl FilesSource {
    pub fn new(config: FilesConfig) -> Self {
        Self { config }
    }
}

impl CertificateSource for FilesSource {
    fn describe(&self) -> String {
        format!("files {}", self.config.cert.display())
    }

    fn kind(&self) -> &'static str {
        "files"
    }

    fn refresh(&self) -> Refresh {
        Refresh::Poll(self.config.poll_interval)
    }

    async fn obtain(&mut self) -> Result<Issued, SourceError> {
        let chain = read(&self.config.cert).await?;
        let key = read(&self.config.key).await?;
        let ca = read(&self.config.ca).await?;
        let what = self.config.cert.display().to_string();
        Ok(Issued::from_pem(&chain, &key, &ca, &what)?)
    }
}

async fn read(path: &Path) -> Result<Vec<u8>, SourceError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| SourceError::Read {
            path: path.display().to_string(),
            source,
        })
}
