//! What kind of client a connection is, and why strict mode would refuse it.

use crate::tls::ChainCheck;
use portcullis_rotator::inspect::CertSummary;

/// The classification of every accepted connection; the names are metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClass {
    Plaintext = 0,
    TlsNoClientCert = 1,
    MtlsInvalid = 2,
    MtlsUnauthorized = 3,
    MtlsAuthorized = 4,
}

impl ConnectionClass {
    pub const ALL: [Self; 5] = [
        Self::Plaintext,
        Self::TlsNoClientCert,
        Self::MtlsInvalid,
        Self::MtlsUnauthorized,
        Self::MtlsAuthorized,
    ];

    /// The `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::TlsNoClientCert => "tls_no_client_cert",
            Self::MtlsInvalid => "mtls_invalid",
            Self::MtlsUnauthorized => "mtls_unauthorized",
            Self::MtlsAuthorized => "mtls_authorized",
        }
    }

    /// Why strict mode refuses this class, or `None` when it lets it through.
    pub fn refusal(self) -> Option<Refusal> {
        match self {
            Self::Plaintext => Some(Refusal::Plaintext),
            Self::TlsNoClientCert => Some(Refusal::TlsNoClientCert),
            Self::MtlsInvalid => Some(Refusal::MtlsInvalid),
            Self::MtlsUnauthorized => Some(Refusal::MtlsUnauthorized),
            Self::MtlsAuthorized => None,
        }
    }
}

/// Why a connection was (or would be) refused; the names are metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Plaintext = 0,
    TlsNoClientCert = 1,
    MtlsInvalid = 2,
    MtlsUnauthorized = 3,
    OverCapacity = 4,
}

impl Refusal {
    pub const ALL: [Self; 5] = [
        Self::Plaintext,
        Self::TlsNoClientCert,
        Self::MtlsInvalid,
        Self::MtlsUnauthorized,
        Self::OverCapacity,
    ];

    /// The `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::TlsNoClientCert => "tls_no_client_cert",
            Self::MtlsInvalid => "mtls_invalid",
            Self::MtlsUnauthorized => "mtls_unauthorized",
            Self::OverCapacity => "over_capacity",
        }
    }
}

/// A classified TLS client: its class and, when it showed one, its certificate.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub class: ConnectionClass,
    pub client: Option<CertSummary>,
}

impl Verdict {
    /// The client's identity for logs and labels: SPIFFE ID, else first URI, DNS name or CN.
    pub fn client_id(&self) -> Option<&str> {
        let client = self.client.as_ref()?;
        client
            .spiffe_id
            .as_deref()
            .or(client.uris.first().map(String::as_str))
            .or(client.dns_names.first().map(String::as_str))
            .or(client.common_name.as_deref())
    }
}

impl From<ChainCheck> for Verdict {
    fn from(check: ChainCheck) -> Self {
        match check {
            ChainCheck::NoCertificate => Self {
                class: ConnectionClass::TlsNoClientCert,
                client: None,
            },
            ChainCheck::Invalid(client) => Self {
                class: ConnectionClass::MtlsInvalid,
                client,
            },
            ChainCheck::Unauthorized(client) => Self {
                class: ConnectionClass::MtlsUnauthorized,
                client: Some(client),
            },
            ChainCheck::Authorized(client) => Self {
                class: ConnectionClass::MtlsAuthorized,
                client: Some(client),
            },
        }
    }
}

/// Maps a failed strict-mode handshake to the refusal it stands for, when it stands for one;
/// otherwise returns the handshake failure reason label.
pub fn handshake_failure(err: &std::io::Error) -> Result<Refusal, &'static str> {
    use rustls::{CertificateError, Error};

    if err.kind() == std::io::ErrorKind::TimedOut {
        return Err("timeout");
    }
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return Err(match err.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            std::io::ErrorKind::ConnectionReset => "reset",
            _ => "io",
        });
    };
    match tls {
        Error::NoCertificatesPresented => Ok(Refusal::TlsNoClientCert),
        Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure) => {
            Ok(Refusal::MtlsUnauthorized)
        }
        Error::InvalidCertificate(_) => Ok(Refusal::MtlsInvalid),
        Error::AlertReceived(_) => Err("alert_received"),
        Error::PeerIncompatible(_) => Err("incompatible"),
        Error::PeerMisbehaved(_) => Err("misbehaved"),
        Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            Err("unexpected_message")
        }
        Error::InvalidMessage(_) => Err("invalid_message"),
        _ => Err("other"),
    }
}
