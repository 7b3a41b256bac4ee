//! One client connection: tell TLS from plaintext, handshake, classify, decide, forward.
//!
//! The upstream is connected only after the client has been classified and let through, so a
//! refused client never causes a byte to reach the upstream, and never receives one from it.
//! This matters with TLS 1.3, where a client considers the handshake done before the server
//! has checked its certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::HandshakeKind;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use portcullis_rotator::inspect::CertSummary;

use crate::classify::{self, ConnectionClass, Refusal, Verdict};
use crate::config::Protocol;
use crate::forward::http::ClientContext;
use crate::forward::tcp::{CopyEnd, ReadReady, copy_both_ways};
use crate::forward::{Activity, Metered};
use crate::listener::ListenerContext;
use crate::mode::Mode;
use crate::proxy_protocol::{self, TlsDetails};
use crate::sniff::{FirstBytes, classify_first_bytes};

/// Keeps `portcullis_connections_active` right however the connection ends.
struct ActiveGuard<'a>(&'a metrics::Gauge);

impl<'a> ActiveGuard<'a> {
    fn new(gauge: &'a metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The two ends of a client connection.
#[derive(Debug, Clone, Copy)]
struct Peer {
    remote: SocketAddr,
    local: SocketAddr,
}

/// Handles one accepted connection to the end.
pub async fn handle(context: Arc<ListenerContext>, stream: TcpStream, remote: SocketAddr) {
    let _active = ActiveGuard::new(&context.metrics.active);
    // The local address is only ever shown in a PROXY protocol header: skip the syscall
    // otherwise.
    let local = if context.config.proxy_protocol {
        stream.local_addr().unwrap_or(context.config.listen)
    } else {
        context.config.listen
    };
    let peer = Peer { remote, local };
    let mode = context.mode.get();
    let deadline = Instant::now() + context.config.handshake_timeout;

    let mut first = [0u8; 2];
    let peeked = match timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(read)) => read,
        Ok(Err(err)) => {
            debug!(error = %err, "connection failed before its first byte");
            return;
        }
        Err(_) => {
            context.metrics.handshake_failed("timeout");
            debug!("no bytes before the handshake timeout");
            return;
        }
    };

    match classify_first_bytes(&first[..peeked]) {
        FirstBytes::NeedMore => debug!("closed before sending anything"),
        FirstBytes::Plaintext => plaintext(&context, stream, peer, mode).await,
        FirstBytes::Tls => tls(&context, stream, peer, mode, deadline).await,
    }
}

async fn plaintext(context: &ListenerContext, stream: TcpStream, peer: Peer, mode: Mode) {
    if mode == Mode::Strict {
        context.metrics.refused(Refusal::Plaintext);
        debug!(reason = "plaintext", "refused");
        return;
    }
    context.metrics.would_reject(Refusal::Plaintext, None);
    context.metrics.accepted(ConnectionClass::Plaintext);
    debug!(class = "plaintext", "forwarding");
    forward(context, stream, peer, ClientContext::new(false, None), None).await;
}

async fn tls(
    context: &ListenerContext,
    stream: TcpStream,
    peer: Peer,
    mode: Mode,
    deadline: Instant,
) {
    let Some(configs) = context.tls.load() else {
        context.metrics.handshake_failed("no_server_certificate");
        debug!("no certificate published yet");
        return;
    };
    let acceptor = TlsAcceptor::from(configs.server_config(mode, context.config.protocol));

    // Boxed: the handshake state is large and only lives until the handshake ends, while this
    // future lives as long as the connection.
    let stream = match timeout_at(deadline, Box::pin(acceptor.accept(stream))).await {
        Err(_) => {
            context.metrics.handshake_failed("timeout");
            debug!("handshake timed out");
            return;
        }
        Ok(Err(err)) => {
            match classify::handshake_failure(&err) {
                Ok(refusal) => {
                    context.metrics.handshake_failed(refusal.as_str());
                    context.metrics.refused(refusal);
                    debug!(reason = refusal.as_str(), error = %err, "refused in the handshake");
                }
                Err(reason) => {
                    context.metrics.handshake_failed(reason);
                    debug!(reason, error = %err, "handshake failed");
                }
            }
            return;
        }
        Ok(Ok(stream)) => stream,
    };

    let (_, connection) = stream.get_ref();
    let resumed = connection.handshake_kind() == Some(HandshakeKind::Resumed);
    let certs = connection.peer_certificates().unwrap_or_default();
    let verdict = if mode == Mode::Strict && !resumed {
        // The strict verifier checked chain and allow-list during this handshake. The
        // certificate is parsed again only when something downstream will show it.
        let shown = context.http.is_some()
            || context.config.proxy_protocol
            || tracing::enabled!(tracing::Level::DEBUG);
        let client = certs
            .first()
            .filter(|_| shown)
            .and_then(|leaf| CertSummary::from_der(leaf).ok());
        Verdict {
            class: ConnectionClass::MtlsAuthorized,
            client,
        }
    } else {
        // Permissive mode accepted any certificate, and a resumed session skipped
        // verification: check against today's trust bundle and allow-list.
        Verdict::from(configs.verifier.check_chain(certs))
    };
    let version = connection.protocol_version();

    if let Some(refusal) = verdict.class.refusal() {
        if mode == Mode::Strict {
            context.metrics.refused(refusal);
            debug!(
                reason = refusal.as_str(),
                client.id = verdict.client_id(),
                resumed,
                "refused after the handshake"
            );
            let mut stream = stream;
            let _ = tokio::time::timeout(deadline - Instant::now(), stream.shutdown()).await;
            return;
        }
        context.metrics.would_reject(refusal, verdict.client_id());
    }
    context.metrics.accepted(verdict.class);
    debug!(
        class = verdict.class.as_str(),
        client.id = verdict.client_id(),
        resumed,
        "forwarding"
    );

    let verified = matches!(
        verdict.class,
        ConnectionClass::MtlsAuthorized | ConnectionClass::MtlsUnauthorized
    );
    let verified_cert = verified.then_some(verdict.client.as_ref()).flatten();
    // Only a PROXY protocol header shows these details; most connections never build them.
    let details = context.config.proxy_protocol.then(|| TlsDetails {
        version: version
            .map(|version| format!("{version:?}").replace("TLSv1_", "TLSv1."))
            .unwrap_or_default(),
        verified_cert: verified,
        cert_on_this_connection: !resumed,
        common_name: verified_cert.and_then(|cert| cert.common_name.clone()),
        spiffe_id: verified_cert.and_then(|cert| cert.spiffe_id.clone()),
    });
    let client = ClientContext::new(true, verified_cert);
    forward(context, stream, peer, client, details).await;
}

/// Connects the upstream and moves bytes or requests until the connection ends. `tls` is what
/// the PROXY protocol header says about the handshake, present only when a header is sent.
async fn forward<S>(
    context: &ListenerContext,
    stream: S,
    peer: Peer,
    client: ClientContext,
    tls: Option<TlsDetails>,
) where
    S: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let idle = context.config.idle_timeout;
    let mut downstream = Metered::new(
        stream,
        context.metrics.bytes_to_upstream.clone(),
        context.metrics.bytes_to_client.clone(),
        activity.clone(),
    );

    if let Some(http) = &context.http {
        // Boxed so that TCP connections do not carry the size of an HTTP connection's state.
        let shutdown = context.shutdown.clone();
        let result = Box::pin(http.serve(downstream, client, shutdown, &activity, idle));
        if let Err(err) = result.await {
            debug!(error = %err, "http connection ended with an error");
        }
        return;
    }

    let mut upstream = match context
        .upstream
        .connect(context.config.connect_timeout)
        .await
    {
        Ok(upstream) => upstream,
        Err(err) => {
            context.metrics.upstream_connect_failures.increment(1);
            debug!(upstream = %context.upstream, error = %err, "upstream connect failed");
            return;
        }
    };

    if context.config.proxy_protocol {
        let header = proxy_protocol::encode(peer.remote, peer.local, tls.as_ref());
        if let Err(err) = upstream.write_all(&header).await {
            debug!(error = %err, "cannot send the PROXY protocol header");
            return;
        }
    }

    match copy_both_ways(&mut downstream, &mut upstream, &activity, idle).await {
        Ok(CopyEnd::Done {
            to_upstream,
            to_client,
        }) => {
            debug!(to_upstream, to_client, "connection closed");
        }
        Ok(CopyEnd::Idle) => debug!(idle_secs = idle.as_secs(), "idle timeout"),
        Err(err) => debug!(error = %err, "connection ended with an error"),
    }
    debug_assert_eq!(context.config.protocol, Protocol::Tcp);
}
