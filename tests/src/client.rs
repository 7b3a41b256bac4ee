//! Test clients: TLS with or without a client certificate, raw TCP, HTTP/1.1 and HTTP/2.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::pki::ClientCert;

/// Time any single client step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// A client configuration trusting `ca`, presenting `client` when given, offering `alpn`.
pub fn config(
    ca: &CertificateDer<'static>,
    client: Option<&ClientCert>,
    alpn: &[&str],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA");
    let builder = ClientConfig::builder_with_provider(portcullis_rotator::crypto::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match client {
        Some(client) => builder
            .with_client_auth_cert(client.chain.clone(), client.key.clone_key())
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// Connects and completes the handshake (which, in TLS 1.3, does not mean the server
/// accepted the client certificate: read to find out).
pub async fn connect(
    address: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(STEP, TcpStream::connect(address)).await??;
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(STEP, TlsConnector::from(config).connect(name, tcp)).await?
}

/// The serial (lowercase hex) of the certificate the server presented.
pub fn server_serial(stream: &TlsStream<TcpStream>) -> String {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate");
    portcullis_rotator::inspect::CertSummary::from_der(&certs[0])
        .expect("parse")
        .serial
}

/// Sends `payload`, half-closes, and reads the reply to the end. An error or an empty reply
/// means the proxy refused or the upstream said nothing.
pub async fn tls_round_trip(
    address: SocketAddr,
    config: Arc<ClientConfig>,
    payload: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut stream = connect(address, config).await?;
    round_trip(&mut stream, payload).await
}

/// The same over plaintext TCP.
pub async fn plain_round_trip(address: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::time::timeout(STEP, TcpStream::connect(address)).await??;
    round_trip(&mut stream, payload).await
}

/// Sends `payload` on an open stream, half-closes, and reads the reply to the end.
pub async fn round_trip<S>(stream: &mut S, payload: &[u8]) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let exchange = async {
        stream.write_all(payload).await?;
        stream.shutdown().await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok(reply)
    };
    tokio::time::timeout(STEP, exchange).await?
}

/// An HTTP response as the tests look at it.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub version: http::Version,
    pub body: String,
}

/// Sends one GET over a TLS connection, HTTP/2 when ALPN chose it, else HTTP/1.1.
pub async fn https_get(
    address: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<HttpReply, Box<dyn std::error::Error + Send + Sync>> {
    let stream = connect(address, config).await?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut request = http::Request::builder().uri(format!("https://localhost{path}"));
    if !h2 {
        request = request.uri(path).header("host", "localhost");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new())?;

    let exchange = async {
        let response = if h2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await?;
            tokio::spawn(connection);
            sender.send_request(request).await?
        } else {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            sender.send_request(request).await?
        };
        let status = response.status().as_u16();
        let version = response.version();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(HttpReply {
            status,
            version,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(STEP, exchange).await?
}
