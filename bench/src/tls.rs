//! The load client's TLS configuration: pinned groups, optionally one suite, explicit versions,
//! a client certificate, and resumption on or off.

use std::path::Path;
use std::sync::Arc;

use portcullis_rotator::crypto;
use portcullis_rotator::identity::{certs_from_pem, key_from_pem};
use rustls::client::{Resumption, Tls12Resumption};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::ServerName;

use crate::options::{Mode, Tls12Resume, TlsOptions, TlsVersion};
use crate::tickets::{DEFAULT_TICKETS_PER_SERVER, DeepTicketStore};

/// Why a client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pem(#[from] portcullis_rotator::IdentityError),
    #[error("unknown key exchange group {0:?}")]
    UnknownGroup(String),
    #[error("unknown cipher suite {0:?}")]
    UnknownSuite(String),
    #[error("a client certificate needs both --cert and --key")]
    HalfClientAuth,
    #[error("invalid server name {0:?}")]
    ServerName(String),
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A ready client: the rustls configuration and the name to verify.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// The Portcullis provider restricted to the groups in `groups` (comma-separated, in order
/// of preference) and, optionally, one suite.
pub fn pinned_provider(groups: &str, suite: Option<&str>) -> Result<CryptoProvider, TlsSetupError> {
    let mut provider = (*crypto::provider()).clone();
    provider.kx_groups = groups
        .split(',')
        .map(str::trim)
        .map(|name| {
            crypto::group_by_name(name).ok_or_else(|| TlsSetupError::UnknownGroup(name.into()))
        })
        .collect::<Result<_, _>>()?;
    if let Some(name) = suite {
        let suite =
            crypto::suite_by_name(name).ok_or_else(|| TlsSetupError::UnknownSuite(name.into()))?;
        provider.cipher_suites = vec![suite];
    }
    Ok(provider)
}

/// The protocol versions to offer.
pub fn versions(version: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    static TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
    static ANY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    match version {
        TlsVersion::Tls13 => TLS13,
        TlsVersion::Tls12 => TLS12,
        TlsVersion::Any => ANY,
    }
}

/// Builds the client configuration for `mode` from the options.
pub fn client_tls(options: &TlsOptions, mode: Mode) -> Result<ClientTls, TlsSetupError> {
    let provider = pinned_provider(&options.group, options.suite.as_deref())?;

    let mut roots = RootCertStore::empty();
    let ca_pem = read(&options.ca)?;
    for cert in certs_from_pem(&ca_pem, "CA bundle")? {
        roots.add(cert)?;
    }

    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions(options.version))?
        .with_root_certificates(roots);
    let mut config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let chain = certs_from_pem(&read(cert)?, "client certificate")?;
            let key = key_from_pem(&read(key)?, "client key")?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsSetupError::HalfClientAuth),
    };

    config.resumption = match mode {
        Mode::Resumed => {
            let tls12 = match options.tls12_resume {
                Tls12Resume::SessionId => Tls12Resumption::SessionIdOnly,
                Tls12Resume::Tickets => Tls12Resumption::SessionIdOrTickets,
            };
            let store = DeepTicketStore::new(DEFAULT_TICKETS_PER_SERVER);
            Resumption::store(Arc::new(store)).tls12_resumption(tls12)
        }
        // Every other mode measures full handshakes (or none after the first).
        _ => Resumption::disabled(),
    };
    if let Some(alpn) = &options.alpn {
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    }

    let server_name = ServerName::try_from(options.server_name.clone())
        .map_err(|_| TlsSetupError::ServerName(options.server_name.clone()))?;
    Ok(ClientTls {
        config: Arc::new(config),
        server_name,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A stable `snake_case` reason for a failed operation, used as a report key.
pub fn failure_reason(err: &std::io::Error) -> String {
    if let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return tls_reason(tls);
    }
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect_refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection_reset".into(),
        std::io::ErrorKind::UnexpectedEof => "unexpected_eof".into(),
        std::io::ErrorKind::TimedOut => "timeout".into(),
        std::io::ErrorKind::BrokenPipe => "broken_pipe".into(),
        std::io::ErrorKind::InvalidData => "invalid_data".into(),
        other => format!("io_{}", snake(&format!("{other:?}"))),
    }
}

fn tls_reason(err: &rustls::Error) -> String {
    match err {
        rustls::Error::AlertReceived(alert) => {
            format!("tls_alert_{}", snake(&format!("{alert:?}")))
        }
        rustls::Error::InvalidCertificate(reason) => {
            format!("tls_invalid_certificate_{}", snake(&format!("{reason:?}")))
        }
        rustls::Error::PeerIncompatible(_) => "tls_peer_incompatible".into(),
        rustls::Error::PeerMisbehaved(_) => "tls_peer_misbehaved".into(),
        other => format!("tls_{}", snake(&format!("{other:?}"))),
    }
}

/// `CertificateRequired` → `certificate_required`; stops at the first non-identifier char.
fn snake(text: &str) -> String {
    let mut out = String::new();
    for ch in text.chars() {
        if !ch.is_ascii_alphanumeric() {
            break;
        }
        if ch.is_ascii_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_snake_case() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        assert_eq!(failure_reason(&io), "tls_alert_certificate_required");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(failure_reason(&refused), "connect_refused");
    }

    #[test]
    fn provider_is_pinned() {
        let provider = pinned_provider("X25519", Some("TLS13_AES_128_GCM_SHA256")).unwrap();
        assert_eq!(provider.kx_groups.len(), 1);
        assert_eq!(provider.cipher_suites.len(), 1);
        let two = pinned_provider("X25519,secp256r1", None).unwrap();
        assert_eq!(two.kx_groups.len(), 2);
        assert!(pinned_provider("nope", None).is_err());
    }
}
