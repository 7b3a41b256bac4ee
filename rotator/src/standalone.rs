//! `portcullis rotate`: the rotator alone, for daemons that read certificates from files
//! (the Consul, Nomad and Vault agents' own TLS).
//!
//! Each publication (a renewal, a trust bundle change, a cold start from the cache) is written
//! to every `[[sink]]` file; when any file changed, every `[[reload]]` action runs. A failed
//! action is logged, counted and retried with backoff; the new files stay, since they are
//! valid. With `once`, the first publication is written, the actions run, and it returns: for
//! prestart tasks and init containers.
//!
//! ```toml
//! [source]                      # required: the same table as the proxy's
//! kind = "vault"
//! address = "https://vault.example:8200"
//! role = "consul-agent"
//! common_name = "server.dc1.consul"
//! auth = { method = "approle", role_id_file = "/etc/portcullis/role_id",
//!          secret_id_file = "/etc/portcullis/secret_id" }
//!
//! [identity]                    # optional: what every certificate must carry
//! dns_name = "server.dc1.consul"
//!
//! [cache]                       # optional: last-known-good copy for a cold start
//! dir = "/var/lib/portcullis/consul"
//!
//! [[sink]]
//! path = "/etc/consul.d/tls/agent.pem"
//! layout = "chain"              # cert | key | chain | ca | combined
//! owner = "consul"              # default: unchanged
//! group = "consul"              # default: unchanged
//! mode = "0644"                 # default: 0600 with a key, 0644 without
//!
//! [[reload]]
//! signal = "HUP"                # or: command = ["systemctl", "reload", "consul"]
//! pid_file = "/run/consul/consul.pid"
//! timeout = "10s"               # default 10s
//!
//! [metrics]                     # optional: Prometheus text at http://LISTEN/metrics
//! listen = "127.0.0.1:9903"     # default: no metrics endpoint
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use crate::cache::CacheConfig;
use crate::exposition::{MetricsConfig, Render};
use crate::identity::Identity;
use crate::rotator::Rotator;
use crate::schedule::Backoff;
use crate::sink::{ReloadConfig, SinkConfig};
use crate::source::{AnySource, SourceConfig, SourceError};
use crate::store::IdentityStore;
use crate::validate::{ExpectedIdentity, Validator};

/// The `portcullis rotate` configuration file.
///
/// # Defaults
/// No `[identity]` check, no `[cache]`, no `[[reload]]` action, no `[metrics]`,
/// `once_timeout` `60s`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandaloneConfig {
    /// Where certificates come from (`kind = "files" | "dev" | "vault"`). Required.
    pub source: SourceConfig,
    /// The identity every certificate must carry (`spiffe_id`, `dns_name`).
    #[serde(default)]
    pub identity: ExpectedIdentity,
    /// The last-known-good cache.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// Files to write. At least one.
    #[serde(rename = "sink")]
    pub sinks: Vec<SinkConfig>,
    /// Actions run after the files changed.
    #[serde(default, rename = "reload")]
    pub reloads: Vec<ReloadConfig>,
    /// Where to answer `GET /metrics` (needs a renderer: see [`run_with_metrics`]).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// With `--once`: how long to wait for the first certificate before giving up.
    #[serde(default = "default_once_timeout", with = "crate::schedule::humantime")]
    pub once_timeout: Duration,
}

fn default_once_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Why the standalone rotator stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("cannot set up the certificate source: {0}")]
    Source(#[from] SourceError),
    #[error("no valid certificate within {0:?}")]
    NoCertificate(Duration),
    #[error("cannot write {0}")]
    Sink(#[from] crate::sink::SinkError),
    #[error("{0}")]
    Reload(#[from] crate::sink::ReloadError),
    #[error("cannot install a signal handler: {0}")]
    Signal(std::io::Error),
}

impl StandaloneConfig {
    /// Reads, parses and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, StandaloneError> {
        let text = std::fs::read_to_string(path).map_err(|source| StandaloneError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|err| StandaloneError::Parse {
            path: path.display().to_string(),
            message: err.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Checks what parsing cannot: at least one sink, valid modes, owners and actions.
    pub fn check(&self) -> Result<(), StandaloneError> {
        if self.sinks.is_empty() {
            return Err(StandaloneError::Invalid(
                "at least one [[sink]] is needed".into(),
            ));
        }
        for sink in &self.sinks {
            sink.check()
                .map_err(|err| StandaloneError::Invalid(err.to_string()))?;
        }
        for reload in &self.reloads {
            reload.check()?;
        }
        Ok(())
    }
}

/// Runs the standalone rotator: until SIGTERM/SIGINT, or with `once` until the first
/// certificate is written and the reload actions have run. A `[metrics]` table is an error
/// here: use [`run_with_metrics`].
pub async fn run(config: StandaloneConfig, once: bool) -> Result<(), StandaloneError> {
    run_with_metrics(config, once, None).await
}

/// [`run`], answering `GET /metrics` on `[metrics] listen` with what `render` returns (the
/// caller installs the metrics recorder; `portcullis rotate` passes the Prometheus one).
pub async fn run_with_metrics(
    config: StandaloneConfig,
    once: bool,
    render: Option<Render>,
) -> Result<(), StandaloneError> {
    config.check()?;
    let exposition = match (&config.metrics, render) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(StandaloneError::Invalid(
                "[metrics] is set but no metrics recorder was installed".into(),
            ));
        }
        (Some(metrics), Some(render)) => Some(tokio::spawn(
            crate::exposition::bind(metrics, render)
                .await
                .map_err(|err| {
                    StandaloneError::Invalid(format!("metrics listen {}: {err}", metrics.listen))
                })?,
        )),
    };
    let source = AnySource::from_config(&config.source, None).await?;
    let validator = Validator {
        expected: config.identity.clone(),
        ..Validator::default()
    };
    let store = IdentityStore::new();
    let (rotator, handle) = Rotator::new(source, validator, store.clone());
    let rotator = match &config.cache {
        Some(cache) => rotator.with_cache(cache.clone()),
        None => rotator,
    };
    let task = tokio::spawn(rotator.run());
    let result = if once {
        run_once(&config, &store).await
    } else {
        run_daemon(&config, &store).await
    };
    drop(handle);
    task.abort();
    if let Some(exposition) = exposition {
        exposition.abort();
    }
    result
}

async fn run_once(config: &StandaloneConfig, store: &IdentityStore) -> Result<(), StandaloneError> {
    let mut generations = store.subscribe();
    let wait = async {
        while store.load().is_none() {
            if generations.changed().await.is_err() {
                break;
            }
        }
    };
    // The rotator logs each failed attempt; this only bounds the wait.
    let _ = tokio::time::timeout(config.once_timeout, wait).await;
    let identity = store
        .load()
        .ok_or(StandaloneError::NoCertificate(config.once_timeout))?;
    write_sinks(config, &identity).await?;

    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    for reload in &config.reloads {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match reload.run().await {
                Ok(()) => break,
                Err(err) if attempts >= ONCE_RELOAD_ATTEMPTS => return Err(err.into()),
                Err(_) => tokio::time::sleep(backoff.next_delay()).await,
            }
        }
    }
    Ok(())
}

/// Attempts per reload action with `--once` before it gives up.
const ONCE_RELOAD_ATTEMPTS: u32 = 3;

async fn run_daemon(
    config: &StandaloneConfig,
    store: &IdentityStore,
) -> Result<(), StandaloneError> {
    let mut generations = store.subscribe();
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt())?;
    // Reload actions still owed, and the backoff between their retries.
    let mut pending: Vec<&ReloadConfig> = Vec::new();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut retry_in: Option<Duration> = None;
    let mut written_generation = 0;

    loop {
        let generation = store.generation();
        if generation != written_generation {
            if let Some(identity) = store.load() {
                match write_sinks(config, &identity).await {
                    Ok(changed) => {
                        written_generation = generation;
                        if changed {
                            pending = config.reloads.iter().collect();
                            backoff.reset();
                            retry_in = Some(Duration::ZERO);
                        }
                    }
                    // The old files stay; try again after a pause (the loop comes back here).
                    Err(err) => {
                        let wait = backoff.next_delay();
                        warn!(error = %err, retry_in_ms = wait.as_millis() as u64,
                            "cannot write sink files");
                        retry_in = Some(wait);
                    }
                }
            }
        }

        if retry_in == Some(Duration::ZERO) {
            let mut failed = Vec::new();
            for reload in pending {
                if reload.run().await.is_err() {
                    failed.push(reload);
                }
            }
            pending = failed;
            retry_in = (!pending.is_empty()).then(|| backoff.next_delay());
            if let Some(wait) = retry_in {
                warn!(
                    failed = pending.len(),
                    retry_in_ms = wait.as_millis() as u64,
                    "reload actions failed; the new files stay, retrying"
                );
            }
        }

        let sleep = tokio::time::sleep(retry_in.unwrap_or(Duration::from_secs(3600)));
        tokio::select! {
            changed = generations.changed() => if changed.is_err() { return Ok(()) },
            () = sleep => if retry_in.is_some() { retry_in = Some(Duration::ZERO) },
            _ = terminate.recv() => { info!("SIGTERM: stopping"); return Ok(()) },
            _ = interrupt.recv() => { info!("SIGINT: stopping"); return Ok(()) },
        }
    }
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, StandaloneError> {
    tokio::signal::unix::signal(kind).map_err(StandaloneError::Signal)
}

/// Writes every sink; true when any file changed.
async fn write_sinks(
    config: &StandaloneConfig,
    identity: &Arc<Identity>,
) -> Result<bool, StandaloneError> {
    let sinks = config.sinks.clone();
    let identity = identity.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut changed = false;
        for sink in &sinks {
            changed |= sink.write(&identity)?;
        }
        Ok::<_, crate::sink::SinkError>(changed)
    })
    .await
    .map_err(|err| StandaloneError::Invalid(format!("sink writer stopped: {err}")))??;
    Ok(written)
}
