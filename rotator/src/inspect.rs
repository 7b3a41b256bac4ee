//! What an operator wants to know about a certificate, read with `x509-parser`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// Failure to parse a certificate.
#[derive(Debug, thiserror::Error)]
#[error("certificate is not valid DER X.509: {0}")]
pub struct ParseError(String);

/// The facts about one certificate that logs, `/status` and `portcullis inspect` show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    pub subject: String,
    pub common_name: Option<String>,
    pub issuer: String,
    /// Serial number as colon-free lowercase hex.
    pub serial: String,
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
    pub ip_addresses: Vec<String>,
    /// The first `spiffe://` URI SAN, when there is one.
    pub spiffe_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub key_type: String,
    /// SHA-256 of the DER encoding, lowercase hex.
    pub sha256: String,
}

impl CertSummary {
    /// Parses `der` and summarises it.
    pub fn from_der(der: &[u8]) -> Result<Self, ParseError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|err| ParseError(err.to_string()))?;
        Ok(summarize(&cert, der))
    }

    /// The certificate's lifetime.
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs((self.not_after - self.not_before).max(0) as u64)
    }

    /// Time left until `not_after`, zero when expired.
    pub fn remaining_at(&self, now: SystemTime) -> Duration {
        let now = unix_seconds(now);
        Duration::from_secs((self.not_after - now).max(0) as u64)
    }

    /// The point in time given by `not_after`.
    pub fn not_after_time(&self) -> SystemTime {
        from_unix_seconds(self.not_after)
    }

    /// The point in time given by `not_before`.
    pub fn not_before_time(&self) -> SystemTime {
        from_unix_seconds(self.not_before)
    }
}

fn summarize(cert: &X509Certificate<'_>, der: &[u8]) -> CertSummary {
    let mut summary = CertSummary {
        subject: cert.subject().to_string(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial())
            .trim_start_matches("00")
            .to_owned(),
        dns_names: Vec::new(),
        uris: Vec::new(),
        ip_addresses: Vec::new(),
        spiffe_id: None,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        key_type: key_type(cert),
        sha256: sha256_hex(der),
    };
    if summary.serial.is_empty() {
        summary.serial = "0".into();
    }

    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => summary.dns_names.push((*dns).to_owned()),
                GeneralName::URI(uri) => summary.uris.push((*uri).to_owned()),
                GeneralName::IPAddress(bytes) => summary.ip_addresses.push(ip_to_string(bytes)),
                _ => {}
            }
        }
    }
    summary.spiffe_id = summary
        .uris
        .iter()
        .find(|uri| uri.starts_with("spiffe://"))
        .cloned();
    summary
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => "ECDSA P-256".into(),
            384 => "ECDSA P-384".into(),
            521 => "ECDSA P-521".into(),
            bits => format!("ECDSA {bits}"),
        },
        Ok(_) if cert.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            "Ed25519".into()
        }
        Ok(_) | Err(_) => cert.public_key().algorithm.algorithm.to_id_string(),
    }
}

fn ip_to_string(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => hex::encode(bytes),
    }
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    }
}

fn from_unix_seconds(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}
