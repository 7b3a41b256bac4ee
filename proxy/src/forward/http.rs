//! HTTP mode: terminate HTTP/1.1 or HTTP/2 (chosen by ALPN) and forward each request.
//!
//! The verified client identity travels to the upstream in `X-Forwarded-Client-Cert`, in the
//! field format Envoy uses (`Hash`, `Subject`, `URI`, `DNS`). Whatever a client sent in that
//! header is removed first and never trusted. Upstream connections are pooled (HTTP/1.1).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics::Counter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::debug;

use portcullis_rotator::inspect::CertSummary;

use super::Activity;
use crate::upstream::{Upstream, UpstreamStream};

/// The header carrying the client's verified identity.
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// The error a served connection ends with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the upstream is told about the client of one downstream connection.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    /// The `X-Forwarded-Client-Cert` value, for a client whose certificate verified.
    pub xfcc: Option<HeaderValue>,
    /// Whether the client connected over TLS.
    pub tls: bool,
}

impl ClientContext {
    /// Builds the context for a client; `verified` is its certificate, if it verified.
    pub fn new(tls: bool, verified: Option<&CertSummary>) -> Self {
        // `from_bytes` keeps non-ASCII subjects (as obs-text) instead of dropping the header.
        let xfcc =
            verified.and_then(|cert| HeaderValue::from_bytes(xfcc_value(cert).as_bytes()).ok());
        Self { xfcc, tls }
    }
}

/// Encodes a certificate summary in Envoy's `X-Forwarded-Client-Cert` element format.
pub fn xfcc_value(cert: &CertSummary) -> String {
    let mut value = format!("Hash={}", cert.sha256);
    let subject = cert.subject.replace('\\', "\\\\").replace('"', "\\\"");
    value.push_str(&format!(";Subject=\"{subject}\""));
    for uri in &cert.uris {
        value.push_str(&format!(";URI={}", escape_field(uri)));
    }
    for dns in &cert.dns_names {
        value.push_str(&format!(";DNS={}", escape_field(dns)));
    }
    value
}

fn escape_field(value: &str) -> String {
    if value.contains([',', ';', '=', '"']) {
        format!("\"{}\"", value.replace('"', "\\\""))
    } else {
        value.to_owned()
    }
}

/// Forwards requests of downstream connections to one upstream.
#[derive(Debug, Clone)]
pub struct HttpForwarder {
    client: Client<UpstreamConnector, Incoming>,
    authority: Arc<str>,
}

impl HttpForwarder {
    pub fn new(upstream: Upstream, connect_timeout: Duration, connect_failures: Counter) -> Self {
        let authority: Arc<str> = match &upstream {
            Upstream::Tcp(address) => address.as_str().into(),
            Upstream::Unix(_) => "localhost".into(),
        };
        let connector = UpstreamConnector {
            upstream: Arc::new(upstream),
            connect_timeout,
            connect_failures,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self { client, authority }
    }

    /// Serves one downstream connection until it closes, idles out, or shutdown is signalled
    /// (then in-flight requests finish first).
    pub async fn serve<S>(
        &self,
        io: S,
        context: ClientContext,
        mut shutdown: watch::Receiver<bool>,
        activity: &Activity,
        idle_timeout: Duration,
    ) -> Result<(), BoxError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let forwarder = self.clone();
        let context = Arc::new(context);
        let service = hyper::service::service_fn(move |request| {
            let forwarder = forwarder.clone();
            let context = context.clone();
            async move {
                let response = forwarder.forward(request, &context).await;
                Ok::<_, std::convert::Infallible>(response)
            }
        });

        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);

        let mut draining = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    return match result {
                        Ok(()) => Ok(()),
                        Err(err) if is_closed(err.as_ref()) => Ok(()),
                        Err(err) => Err(err),
                    };
                }
                changed = shutdown.changed(), if !draining => {
                    if changed.is_err() || *shutdown.borrow() {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
                () = activity.idle_for(idle_timeout), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        context: &ClientContext,
    ) -> Response<ProxyBody> {
        let request = match self.rewrite(request, context) {
            Ok(request) => request,
            Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
        };
        match self.client.request(request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Err(err) => {
                debug!(error = %err, "upstream request failed");
                error_response(StatusCode::BAD_GATEWAY, "upstream unavailable")
            }
        }
    }

    fn rewrite(
        &self,
        request: Request<Incoming>,
        context: &ClientContext,
    ) -> Result<Request<Incoming>, &'static str> {
        let (mut parts, body) = request.into_parts();

        if !parts.headers.contains_key(header::HOST) {
            let host = parts
                .uri
                .authority()
                .map(|authority| authority.as_str().to_owned());
            if let Some(value) = host.and_then(|host| HeaderValue::from_str(&host).ok()) {
                parts.headers.insert(header::HOST, value);
            }
        }
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(&XFCC);
        if let Some(xfcc) = &context.xfcc {
            parts.headers.insert(XFCC, xfcc.clone());
        }
        let proto = if context.tls { "https" } else { "http" };
        parts
            .headers
            .insert("x-forwarded-proto", HeaderValue::from_static(proto));

        let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        parts.uri = Uri::builder()
            .scheme("http")
            .authority(&*self.authority)
            .path_and_query(path)
            .build()
            .map_err(|_| "invalid request target")?;
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body))
    }
}

/// Errors that only mean the client went away.
fn is_closed(err: &(dyn std::error::Error + 'static)) -> bool {
    match err.downcast_ref::<hyper::Error>() {
        Some(err) => err.is_closed() || err.is_incomplete_message() || err.is_canceled(),
        None => false,
    }
}

/// Removes the headers that describe one hop, not the message.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TRAILER,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn error_response(status: StatusCode, message: &'static str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from_static(message.as_bytes()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Opens upstream connections for the pooled HTTP client.
#[derive(Debug, Clone)]
struct UpstreamConnector {
    upstream: Arc<Upstream>,
    connect_timeout: Duration,
    connect_failures: Counter,
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<UpstreamIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            match connector.upstream.connect(connector.connect_timeout).await {
                Ok(stream) => Ok(UpstreamIo(TokioIo::new(stream))),
                Err(err) => {
                    connector.connect_failures.increment(1);
                    debug!(upstream = %connector.upstream, error = %err, "upstream connect failed");
                    Err(err)
                }
            }
        })
    }
}

/// An upstream connection as hyper's client wants it.
#[derive(Debug)]
struct UpstreamIo(TokioIo<UpstreamStream>);

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
