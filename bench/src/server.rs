//! The bare terminator's TLS side: the Portcullis crypto provider, a certificate from PEM
//! files, client certificates verified against a CA bundle, TLS 1.3 tickets and a TLS 1.2
//! session cache. Nothing else: it is the limit that a proxy is measured against.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use portcullis_rotator::crypto;
use portcullis_rotator::identity::{certs_from_pem, key_from_pem};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

use crate::options::TlsVersion;
use crate::tls::{TlsSetupError, versions};

/// Server TLS options.
#[derive(Debug, Clone, Args)]
pub struct ServerTlsOptions {
    /// Server certificate chain (PEM), leaf first.
    #[arg(long)]
    pub cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// CA bundle (PEM) that client certificates must chain to.
    #[arg(long)]
    pub ca: PathBuf,
    /// Accept clients without a certificate (mTLS is required by default).
    #[arg(long)]
    pub optional_client_cert: bool,
    /// TLS version(s) to accept.
    #[arg(long = "tls", value_enum, default_value = "any")]
    pub version: TlsVersion,
    /// TLS 1.2 session cache size (session-ID resumption); 0 disables it.
    #[arg(long, default_value_t = 20_000)]
    pub session_cache: usize,
    /// Issue session tickets (TLS 1.3, and TLS 1.2 RFC 5077).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tickets: bool,
    /// TLS 1.3 tickets sent after each full handshake.
    #[arg(long, default_value_t = 2)]
    pub tls13_tickets: usize,
    /// ALPN protocols to accept, comma-separated (none by default).
    #[arg(long, value_delimiter = ',')]
    pub alpn: Vec<String>,
}

/// Builds the rustls server configuration.
pub fn server_config(options: &ServerTlsOptions) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = crypto::provider();
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsSetupError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let chain = certs_from_pem(&read(&options.cert)?, "server certificate")?;
    let key = key_from_pem(&read(&options.key)?, "server key")?;
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(&read(&options.ca)?, "client CA bundle")? {
        roots.add(cert)?;
    }

    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = if options.optional_client_cert {
        verifier.allow_unauthenticated()
    } else {
        verifier
    };
    let verifier = verifier
        .build()
        .map_err(|err| TlsSetupError::Rustls(rustls::Error::General(err.to_string())))?;

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(options.version))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.session_storage = if options.session_cache > 0 {
        ServerSessionMemoryCache::new(options.session_cache)
    } else {
        Arc::new(rustls::server::NoServerSessionStorage {})
    };
    if options.tickets {
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    }
    config.send_tls13_tickets = options.tls13_tickets;
    config.alpn_protocols = options.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}
