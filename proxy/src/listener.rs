//! One listening socket: accepts connections, caps their number, and drains on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::classify::Refusal;
use crate::config::{ListenerConfig, Protocol};
use crate::connection;
use crate::forward::http::HttpForwarder;
use crate::metrics::ListenerMetrics;
use crate::mode::ModeSwitch;
use crate::tls::TlsState;
use crate::upstream::Upstream;

/// What every connection of a listener shares.
#[derive(Debug)]
pub struct ListenerContext {
    pub name: String,
    pub config: ListenerConfig,
    pub upstream: Upstream,
    /// The TLS configuration in force, swapped on each certificate publication.
    pub tls: Arc<TlsState>,
    /// The client authentication mode, read once per connection at accept.
    pub mode: Arc<ModeSwitch>,
    pub metrics: ListenerMetrics,
    /// The pooled upstream client, for `protocol = "http"`.
    pub http: Option<HttpForwarder>,
    /// Becomes `true` when the process starts draining.
    pub shutdown: watch::Receiver<bool>,
}

/// A bound listener, ready to run.
#[derive(Debug)]
pub struct Listener {
    context: Arc<ListenerContext>,
    socket: TcpListener,
    /// One permit per open connection; all permits back means fully drained.
    slots: Arc<Semaphore>,
}

impl Listener {
    /// Binds the listener's address.
    pub async fn bind(
        config: ListenerConfig,
        tls: Arc<TlsState>,
        mode: Arc<ModeSwitch>,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let socket = TcpListener::bind(config.listen).await?;
        let name = config.display_name();
        let upstream = Upstream::parse(&config.upstream)
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
        let metrics = ListenerMetrics::new(&name);
        let http = (config.protocol == Protocol::Http).then(|| {
            HttpForwarder::new(
                upstream.clone(),
                config.connect_timeout,
                metrics.upstream_connect_failures.clone(),
            )
        });
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let context = Arc::new(ListenerContext {
            name,
            config,
            upstream,
            tls,
            mode,
            metrics,
            http,
            shutdown,
        });
        Ok(Self {
            context,
            socket,
            slots,
        })
    }

    /// The bound address (useful when the configuration asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Accepts until shutdown; returns a [`Drain`] to wait for open connections.
    pub async fn run(self) -> Drain {
        let Self {
            context,
            socket,
            slots,
        } = self;
        let mut shutdown = context.shutdown.clone();
        info!(listener = %context.name, address = %context.config.listen,
            upstream = %context.upstream, protocol = ?context.config.protocol, "listening");

        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                accepted = socket.accept() => accepted,
                _ = shutdown.wait_for(|draining| *draining) => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    backoff = Duration::from_millis(5);
                    accepted
                }
                Err(err) => {
                    // Out of descriptors or memory: wait rather than spin.
                    warn!(listener = %context.name, error = %err, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };

            let Ok(permit) = slots.clone().try_acquire_owned() else {
                context.metrics.refused(Refusal::OverCapacity);
                debug!(listener = %context.name, peer.addr = %peer, "over capacity, refused");
                continue;
            };
            // Without TCP_NODELAY the connection still works, only with Nagle's delays.
            if let Err(err) = stream.set_nodelay(true) {
                debug!(listener = %context.name, peer.addr = %peer, error = %err,
                    "cannot set TCP_NODELAY");
            }
            let span = debug_span!("conn", listener = %context.name, peer.addr = %peer);
            let context = context.clone();
            tokio::spawn(
                async move {
                    connection::handle(context, stream, peer).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }

        info!(listener = %context.name, "stopped accepting");
        Drain {
            name: context.name.clone(),
            slots,
            capacity: context.config.max_connections,
        }
    }
}

/// Waits for a stopped listener's connections to finish.
#[derive(Debug)]
pub struct Drain {
    name: String,
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl Drain {
    /// Resolves when every connection has closed, or returns how many were still open when
    /// `timeout` ran out.
    pub async fn wait(self, timeout: Duration) -> Result<(), usize> {
        let all = u32::try_from(self.capacity).unwrap_or(u32::MAX);
        match tokio::time::timeout(timeout, self.slots.acquire_many(all)).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let open = self.capacity - self.slots.available_permits();
                warn!(listener = %self.name, open, "drain timeout: closing open connections");
                Err(open)
            }
        }
    }
}
