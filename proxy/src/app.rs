//! Wiring: configuration → rotator → TLS state → listeners and admin API, then signals.
//!
//! [`App`] holds what the admin API and the signal handlers act on: the mode switch, the
//! allow-list, the rotator handle and the configuration in force. [`start`] builds and binds
//! everything; [`Running::serve_until_signal`] runs until SIGTERM or SIGINT and drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use portcullis_rotator::inspect::unix_seconds;
use portcullis_rotator::rotator::Outcome;
use portcullis_rotator::source::{AnySource, DevCa, SourceConfig};
use portcullis_rotator::{IdentityStore, Rotator, RotatorHandle};

use crate::authz::AllowList;
use crate::config::{Config, Protocol};
use crate::listener::{Drain, Listener};
use crate::mode::{Mode, ModeSwitch};
use crate::tls::{TlsState, settings_from_config};

/// The result of the last configuration reload, for `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Unix seconds.
    pub at: i64,
    /// `applied` or `refused`.
    pub result: &'static str,
    pub detail: String,
    /// Sections that changed in the file but only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
    /// What re-reading the certificate source gave.
    pub certificate: Option<Outcome>,
}

/// A listener as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerInfo {
    pub name: String,
    pub address: SocketAddr,
    pub upstream: String,
    pub protocol: Protocol,
}

/// Shared state for the admin API and the signal handlers.
#[derive(Debug)]
pub struct App {
    pub mode: Arc<ModeSwitch>,
    pub allow: Arc<ArcSwap<AllowList>>,
    pub tls: Arc<TlsState>,
    pub store: Arc<IdentityStore>,
    pub rotator: RotatorHandle,
    pub config: ArcSwap<Config>,
    /// The file to re-read on reload; `None` for `portcullis demo`.
    pub config_path: Option<PathBuf>,
    pub listeners: Vec<ListenerInfo>,
    pub last_reload: ArcSwap<Option<ReloadReport>>,
    pub metrics: PrometheusHandle,
    /// Bearer token for the mutating admin endpoints.
    pub admin_token: Option<String>,
}

impl App {
    /// Sets the client authentication mode; established connections are not touched.
    pub fn set_mode(&self, mode: Mode, origin: &str) -> Mode {
        let previous = self.mode.set(mode);
        if previous != mode {
            info!(from = %previous, to = %mode, origin, "client authentication mode switched");
        }
        previous
    }

    /// True while a certificate that has not expired is being served.
    pub fn ready(&self) -> bool {
        let ready = self.tls.load().is_some_and(|configs| {
            configs.identity.leaf.not_after > unix_seconds(SystemTime::now())
        });
        metrics::gauge!("portcullis_ready").set(if ready { 1.0 } else { 0.0 });
        ready
    }

    /// Re-reads the configuration file (when there is one) and, for a `files` source, the
    /// certificate files.
    ///
    /// A file that fails to load or validate is refused whole: nothing changes. Otherwise the
    /// mode and the allow-list take effect at once; other changed sections are reported as
    /// needing a restart.
    pub async fn reload(&self, origin: &str) -> ReloadReport {
        let mut report = ReloadReport {
            at: unix_seconds(SystemTime::now()),
            result: "applied",
            detail: String::new(),
            needs_restart: Vec::new(),
            certificate: None,
        };

        if let Some(path) = &self.config_path {
            match Config::load(path) {
                Err(err) => {
                    warn!(origin, error = %err, "configuration refused; the running one stays");
                    report.result = "refused";
                    report.detail = err.to_string();
                }
                Ok(new) => {
                    report.needs_restart = restart_sections(&self.config.load(), &new);
                    self.allow.store(Arc::new(new.auth.allow.clone()));
                    self.set_mode(new.auth.mode, origin);
                    self.config.store(Arc::new(new));
                    info!(origin, needs_restart = ?report.needs_restart, "configuration reloaded");
                    report.detail = format!("reloaded {}", path.display());
                }
            }
        }
        metrics::counter!("portcullis_config_reloads_total", "result" => report.result)
            .increment(1);

        // Files are re-read on reload; issuing sources are not asked for a new certificate
        // (a fleet-wide reload would otherwise be a burst of signing requests): `POST /rotate`
        // does that explicitly.
        let reads_files = matches!(self.config.load().source, SourceConfig::Files(_));
        if report.result == "applied" && reads_files {
            report.certificate = self.rotator.rotate_now().await.ok();
        }
        self.last_reload.store(Arc::new(Some(report.clone())));
        report
    }
}

/// Sections of the file that a reload cannot apply to a running process.
fn restart_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut sections = Vec::new();
    if old.listeners != new.listeners {
        sections.push("listener");
    }
    if old.source != new.source {
        sections.push("source");
    }
    if old.identity != new.identity {
        sections.push("identity");
    }
    if old.tls != new.tls {
        sections.push("tls");
    }
    if old.admin != new.admin {
        sections.push("admin");
    }
    if old.log != new.log {
        sections.push("log");
    }
    if old.shutdown != new.shutdown {
        sections.push("shutdown");
    }
    sections
}

/// Everything started by [`start`].
#[derive(Debug)]
pub struct Running {
    pub app: Arc<App>,
    pub admin_address: SocketAddr,
    pub listener_addresses: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<Drain>>,
    admin: JoinHandle<()>,
    drain_timeout: Duration,
}

/// Builds the rotator, TLS state, listeners and admin API from `config` and starts them.
/// A development CA can be handed in so that the demo issues client certificates from it.
pub async fn start(
    config: Config,
    config_path: Option<PathBuf>,
    dev_ca: Option<Arc<DevCa>>,
) -> anyhow::Result<Running> {
    let metrics = crate::metrics::install().map_err(anyhow::Error::msg)?;
    let (shutdown, shutdown_rx) = watch::channel(false);

    let store = IdentityStore::new();
    let source = AnySource::from_config(&config.source, dev_ca)
        .await
        .context("cannot set up the certificate source")?;
    let (mut rotator, rotator_handle) =
        Rotator::new(source, config.identity.validator(), store.clone());
    if let Some(cache) = &config.cache {
        rotator = rotator.with_cache(cache.clone());
    }
    tokio::spawn(rotator.run());

    let settings = settings_from_config(&config.tls).map_err(anyhow::Error::msg)?;
    let allow = Arc::new(ArcSwap::from_pointee(config.auth.allow.clone()));
    let tls = Arc::new(TlsState::new(settings, allow.clone()).map_err(anyhow::Error::msg)?);
    tokio::spawn(tls.clone().follow(store.clone()));
    let mode = Arc::new(ModeSwitch::new(config.auth.mode));

    let mut bound = Vec::new();
    let mut listener_infos = Vec::new();
    for listener_config in &config.listeners {
        let listener = Listener::bind(
            listener_config.clone(),
            tls.clone(),
            mode.clone(),
            shutdown_rx.clone(),
        )
        .await
        .with_context(|| format!("cannot listen on {}", listener_config.listen))?;
        let address = listener.local_addr()?;
        listener_infos.push(ListenerInfo {
            name: listener_config.display_name(),
            address,
            upstream: listener_config.upstream.clone(),
            protocol: listener_config.protocol,
        });
        bound.push(listener);
    }

    let admin_token = match &config.admin.token_file {
        None => None,
        Some(path) => Some(read_token(path)?),
    };
    let admin_socket = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("cannot listen on the admin address {}", config.admin.listen))?;
    let admin_address = admin_socket.local_addr()?;

    let drain_timeout = config.shutdown.drain_timeout;
    let app = Arc::new(App {
        mode,
        allow,
        tls,
        store,
        rotator: rotator_handle,
        config: ArcSwap::from_pointee(config),
        config_path,
        listeners: listener_infos.clone(),
        last_reload: ArcSwap::from_pointee(None),
        metrics,
        admin_token,
    });

    let admin = tokio::spawn(crate::admin::serve(admin_socket, app.clone()));
    let listeners = bound
        .into_iter()
        .map(|listener| tokio::spawn(listener.run()))
        .collect();
    let runtime = tokio::runtime::Handle::current();
    info!(admin = %admin_address,
        record_protection = portcullis_rotator::crypto::aead_source().as_str(),
        runtime = ?runtime.runtime_flavor(),
        workers = runtime.metrics().num_workers(),
        "portcullis started");

    Ok(Running {
        app,
        admin_address,
        listener_addresses: listener_infos.iter().map(|info| info.address).collect(),
        shutdown,
        listeners,
        admin,
        drain_timeout,
    })
}

fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token file {}", path.display()))?;
    let token = token.trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "the admin token file {} is empty",
        path.display()
    );
    Ok(token)
}

impl Running {
    /// Waits until the first certificate is being served, or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.app.ready() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.app.ready()
    }

    /// Serves until SIGTERM or SIGINT (reloading on SIGHUP), then drains and returns.
    pub async fn serve_until_signal(self) -> anyhow::Result<()> {
        let mut hangup = signal(SignalKind::hangup())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    let report = self.app.reload("sighup").await;
                    info!(result = report.result, detail = %report.detail, "SIGHUP handled");
                }
                _ = terminate.recv() => { info!(signal = "SIGTERM", "shutting down"); break; }
                _ = interrupt.recv() => { info!(signal = "SIGINT", "shutting down"); break; }
            }
        }
        // A second SIGTERM or SIGINT while draining means "now".
        tokio::select! {
            () = self.shutdown() => {}
            _ = terminate.recv() => warn!("second signal: exiting without waiting for the drain"),
            _ = interrupt.recv() => warn!("second signal: exiting without waiting for the drain"),
        }
        Ok(())
    }

    /// Stops accepting, waits for open connections up to the drain timeout, stops the admin
    /// API.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        for listener in self.listeners {
            if let Ok(drain) = listener.await {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let _ = drain.wait(left).await;
            }
        }
        self.admin.abort();
        info!("drained; exiting");
    }
}
