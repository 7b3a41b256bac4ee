//! Certificates made at test time: a CA per test, server and client leaves, PEM files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_rotator::source::{DevCa, LeafSpec};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

/// A test CA with a scratch folder for PEM files.
#[derive(Debug)]
pub struct TestPki {
    pub ca: DevCa,
    pub dir: tempfile::TempDir,
}

/// PEM files for the proxy's `files` source.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A client's chain and key, in memory.
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TestPki {
    pub fn new(name: &str) -> Self {
        let ca = DevCa::new(name, Duration::from_secs(86400)).expect("test CA");
        let dir = tempfile::tempdir().expect("temp dir");
        Self { ca, dir }
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> CertificateDer<'static> {
        self.ca.certificate().clone()
    }

    /// A server leaf for localhost / 127.0.0.1, written as `NAME.pem`, `NAME-key.pem` and
    /// `ca.pem` in the scratch folder.
    pub fn server_files(&self, name: &str) -> ServerFiles {
        let leaf = self
            .ca
            .issue(&server_spec(), Duration::from_secs(3600))
            .expect("leaf");
        let files = ServerFiles {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
            ca: self.dir.path().join("ca.pem"),
        };
        write(&files.cert, &leaf.chain_pem());
        write(&files.key, &leaf.key_pem());
        write(&files.ca, &self.ca.certificate_pem());
        files
    }

    /// A server leaf as PEM text (chain, key).
    pub fn server_pem(&self) -> (String, String) {
        let leaf = self
            .ca
            .issue(&server_spec(), Duration::from_secs(3600))
            .expect("leaf");
        (leaf.chain_pem(), leaf.key_pem())
    }

    /// An expired server leaf as PEM text (chain, key).
    pub fn expired_server_pem(&self) -> (String, String) {
        let now = OffsetDateTime::now_utc();
        let leaf = self
            .ca
            .issue_between(
                &server_spec(),
                now - Duration::from_secs(7200),
                now - Duration::from_secs(60),
            )
            .expect("leaf");
        (leaf.chain_pem(), leaf.key_pem())
    }

    /// A client certificate carrying `spiffe_id`, valid for an hour.
    pub fn client(&self, spiffe_id: &str) -> ClientCert {
        let spec = LeafSpec {
            common_name: "test-client".into(),
            uris: vec![spiffe_id.into()],
            ..Default::default()
        };
        let leaf = self
            .ca
            .issue(&spec, Duration::from_secs(3600))
            .expect("client leaf");
        ClientCert {
            chain: leaf.chain,
            key: leaf.key,
        }
    }

    /// A client certificate that expired a minute ago.
    pub fn expired_client(&self, spiffe_id: &str) -> ClientCert {
        let spec = LeafSpec {
            common_name: "expired-client".into(),
            uris: vec![spiffe_id.into()],
            ..Default::default()
        };
        let now = OffsetDateTime::now_utc();
        let leaf = self
            .ca
            .issue_between(
                &spec,
                now - Duration::from_secs(7200),
                now - Duration::from_secs(60),
            )
            .expect("client leaf");
        ClientCert {
            chain: leaf.chain,
            key: leaf.key,
        }
    }
}

fn server_spec() -> LeafSpec {
    LeafSpec {
        common_name: "portcullis-test".into(),
        dns_names: vec!["localhost".into()],
        uris: vec!["spiffe://test.local/proxy".into()],
        ip_addresses: vec![std::net::IpAddr::from([127, 0, 0, 1])],
    }
}

/// Writes a file whole (tests replace files atomically where that matters).
pub fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

/// Replaces `path` atomically: write a temporary file beside it, then rename.
pub fn replace_atomically(path: &Path, contents: &str) {
    let temporary = path.with_extension("tmp-replace");
    write(&temporary, contents);
    std::fs::rename(&temporary, path).expect("rename into place");
}
