//! The certificates every peer is benchmarked with, made once by the development CA: an ECDSA
//! P-256 CA, a server certificate for `localhost` / `127.0.0.1`, a client certificate, a second
//! CA (for trust-bundle changes) and prepared server pairs for file rotation.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use portcullis_rotator::source::{DevCa, LeafSpec, SourceError};

/// Why the certificate set could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(transparent)]
    Issue(#[from] SourceError),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// The server's identity: `localhost`, `127.0.0.1` and a SPIFFE ID.
pub fn server_spec() -> LeafSpec {
    LeafSpec {
        common_name: "localhost".into(),
        dns_names: vec!["localhost".into()],
        uris: vec!["spiffe://portcullis.bench/server".into()],
        ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    }
}

/// The load client's identity.
pub fn client_spec() -> LeafSpec {
    LeafSpec {
        common_name: "portcullis-load".into(),
        dns_names: Vec::new(),
        uris: vec!["spiffe://portcullis.bench/load".into()],
        ip_addresses: Vec::new(),
    }
}

/// Writes the set into `dir`:
/// `ca.pem`, `ca2.pem`, `bundle.pem` (both CAs), `server.pem`, `server.key`,
/// `server-combined.pem` (key then chain, for hitch and haproxy), `client.pem`, `client.key`,
/// `client2.pem`, `client2.key` (issued by the second CA), and `rotation/N/{cert,key}.pem`
/// for `N` in `0..rotation_pairs`.
pub fn write_set(dir: &Path, rotation_pairs: usize, ttl: Duration) -> Result<(), CertsError> {
    let ca = DevCa::new("Portcullis bench CA", ttl * 2)?;
    let ca2 = DevCa::new("Portcullis bench CA 2", ttl * 2)?;
    let server = ca.issue(&server_spec(), ttl)?;
    let client = ca.issue(&client_spec(), ttl)?;
    let client2 = ca2.issue(&client_spec(), ttl)?;

    write(&dir.join("ca.pem"), &ca.certificate_pem())?;
    write(&dir.join("ca2.pem"), &ca2.certificate_pem())?;
    let bundle = format!("{}{}", ca.certificate_pem(), ca2.certificate_pem());
    write(&dir.join("bundle.pem"), &bundle)?;
    write(&dir.join("server.pem"), &server.chain_pem())?;
    write(&dir.join("server.key"), &server.key_pem())?;
    let combined = format!("{}{}", server.key_pem(), server.chain_pem());
    write(&dir.join("server-combined.pem"), &combined)?;
    write(&dir.join("client.pem"), &client.chain_pem())?;
    write(&dir.join("client.key"), &client.key_pem())?;
    write(&dir.join("client2.pem"), &client2.chain_pem())?;
    write(&dir.join("client2.key"), &client2.key_pem())?;

    for index in 0..rotation_pairs {
        let pair = ca.issue(&server_spec(), ttl)?;
        let pair_dir = dir.join("rotation").join(index.to_string());
        write(&pair_dir.join("cert.pem"), &pair.chain_pem())?;
        write(&pair_dir.join("key.pem"), &pair.key_pem())?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), CertsError> {
    let fail = |source| CertsError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, text).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_usable_set() {
        let dir = std::env::temp_dir().join(format!("bench-certs-{}", std::process::id()));
        write_set(&dir, 2, Duration::from_secs(3600)).unwrap();
        for name in [
            "ca.pem",
            "bundle.pem",
            "server.pem",
            "server.key",
            "client.pem",
        ] {
            assert!(dir.join(name).is_file(), "{name} missing");
        }
        assert!(dir.join("rotation/1/key.pem").is_file());
        let bundle = std::fs::read_to_string(dir.join("bundle.pem")).unwrap();
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
