//! Where certificates come from.
//!
//! A [`CertificateSource`] obtains raw material on demand; the [`crate::Rotator`] decides when
//! to ask (from [`CertificateSource::refresh`]), validates what comes back and publishes it.
//! Adding a source (Vault, Consul Connect) means implementing this trait, nothing in the proxy.

pub mod any;
pub mod dev;
pub mod files;
pub mod vault;

use std::future::Future;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use crate::identity::{IdentityError, Issued};
use crate::schedule::RenewPolicy;

pub use any::{AnySource, DevConfig, SourceConfig};
pub use dev::{DevCa, DevSource, LeafSpec};
pub use files::{FilesConfig, FilesSource};
pub use vault::{VaultConfig, VaultSource};

/// How a source wants to be refreshed.
#[derive(Debug, Clone, PartialEq)]
pub enum Refresh {
    /// Renew at a point in the certificate's lifetime (issuing sources).
    Lifetime(RenewPolicy),
    /// Ask again at this interval and publish only when the material changed (files).
    Poll(Duration),
}

/// Why a source could not produce material.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("issuing failed: {0}")]
    Issue(String),
    #[error("the issuer is unreachable: {0}")]
    Unavailable(String),
    #[error("the issuer refused the request: {0}")]
    Refused(String),
}

impl SourceError {
    /// A stable `snake_case` name, used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::Identity(_) => "parse",
            Self::Issue(_) => "issue",
            Self::Unavailable(_) => "unavailable",
            Self::Refused(_) => "refused",
        }
    }
}

/// Something that can produce a certificate chain, its key and a trust bundle.
pub trait CertificateSource: Send + 'static {
    /// A short description for logs and `/status`, such as `files /etc/tls/cert.pem`.
    fn describe(&self) -> String;

    /// A short `snake_case` kind for metric labels, such as `files`, `dev` or `vault`.
    fn kind(&self) -> &'static str;

    /// How this source wants to be refreshed.
    fn refresh(&self) -> Refresh;

    /// Obtains material now. Called by the rotator only; never concurrently.
    fn obtain(&mut self) -> impl Future<Output = Result<Issued, SourceError>> + Send;

    /// Refreshes the source's own time-dependent gauges (such as a token's TTL); called every
    /// few seconds by the rotator. Default: nothing.
    fn record_gauges(&self) {}

    /// How long until the source wants to do background upkeep (keeping a login alive,
    /// refreshing the trust bundle), if ever. Default: never.
    fn upkeep_in(&self) -> Option<Duration> {
        None
    }

    /// Background upkeep between renewals. Returns the trust bundle when it changed, for the
    /// rotator to republish with the certificate in force. Default: nothing to do.
    fn upkeep(
        &mut self,
    ) -> impl Future<Output = Result<Option<Vec<CertificateDer<'static>>>, SourceError>> + Send
    {
        std::future::ready(Ok(None))
    }
}
