//! The renewal loop: obtain, validate, publish, reschedule.
//!
//! One [`Rotator`] runs per managed identity. It asks its source for material when the
//! schedule says so (or when told to through a [`RotatorHandle`]), validates it, and publishes
//! it to the [`IdentityStore`]. A failure never unpublishes anything: the identity in force
//! keeps serving until it really expires, and the loop retries with backoff.
//!
//! Between renewals the loop also wakes for the source's upkeep (a Vault token to renew, a
//! trust bundle to read again; a changed bundle is republished with the certificate in force)
//! and every few seconds to refresh the time-dependent gauges. With a cache attached, every
//! publication is written to it, and a first attempt that fails serves the cached identity.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::cache::{Cache, CacheConfig};
use crate::identity::{Identity, Issued};
use crate::inspect::unix_seconds;
use crate::schedule::Backoff;
use crate::source::{CertificateSource, Refresh};
use crate::store::IdentityStore;
use crate::validate::{ValidationError, Validator};

/// What one attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// A new identity was validated and published.
    Published { serial: String, not_after: i64 },
    /// The source returned what is already in force.
    Unchanged { serial: String },
    /// The source returned material that failed validation; the old identity stays.
    Refused { reason: String, detail: String },
    /// The source failed; the old identity stays.
    SourceFailed { reason: String, detail: String },
}

impl Outcome {
    /// A stable `snake_case` name, used as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Published { .. } => "published",
            Self::Unchanged { .. } => "unchanged",
            Self::Refused { .. } => "refused",
            Self::SourceFailed { .. } => "source_failed",
        }
    }

    /// True when the identity in force is the source's latest.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Published { .. } | Self::Unchanged { .. })
    }
}

/// What `/status` shows about the rotator.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RotationStatus {
    pub source: String,
    /// Unix seconds of the last attempt, the last success and the next planned attempt.
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    pub next_attempt: Option<i64>,
    pub last_outcome: Option<Outcome>,
    pub consecutive_failures: u32,
    /// The serial and expiry (unix seconds) of the certificate in force.
    pub serial: Option<String>,
    pub not_after: Option<i64>,
    /// True while the certificate in force came from the last-known-good cache.
    pub from_cache: bool,
}

/// Sent by a [`RotatorHandle`].
#[derive(Debug)]
enum Command {
    RotateNow(oneshot::Sender<Outcome>),
}

/// Error from [`RotatorHandle::rotate_now`].
#[derive(Debug, thiserror::Error)]
#[error("the rotator is not running")]
pub struct RotatorStopped;

/// Lets other tasks (the admin API, signal handlers) force an attempt and read the status.
#[derive(Debug, Clone)]
pub struct RotatorHandle {
    commands: mpsc::Sender<Command>,
    status: Arc<ArcSwap<RotationStatus>>,
}

impl RotatorHandle {
    /// Obtains, validates and publishes now; returns what happened.
    pub async fn rotate_now(&self) -> Result<Outcome, RotatorStopped> {
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::RotateNow(reply))
            .await
            .map_err(|_| RotatorStopped)?;
        outcome.await.map_err(|_| RotatorStopped)
    }

    /// The latest status.
    pub fn status(&self) -> Arc<RotationStatus> {
        self.status.load_full()
    }
}

/// The loop for one identity.
#[derive(Debug)]
pub struct Rotator<S> {
    source: S,
    validator: Validator,
    store: Arc<IdentityStore>,
    commands: mpsc::Receiver<Command>,
    status: Arc<ArcSwap<RotationStatus>>,
    backoff: Backoff,
    cache: Option<Cache>,
    /// No upkeep before this instant (set after a failed upkeep, so it cannot spin).
    upkeep_not_before: Instant,
    /// Spacing of upkeep retries while the source keeps failing them.
    upkeep_backoff: Backoff,
}

/// How often the time-dependent gauges (seconds to expiry, lifetime used) are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// The first pause after a failed upkeep, and the longest.
const UPKEEP_RETRY: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(300));

impl<S: CertificateSource> Rotator<S> {
    /// A rotator publishing `source`'s identities to `store`, and the handle to drive it.
    pub fn new(
        source: S,
        validator: Validator,
        store: Arc<IdentityStore>,
    ) -> (Self, RotatorHandle) {
        let (sender, commands) = mpsc::channel(8);
        let status = RotationStatus {
            source: source.describe(),
            ..Default::default()
        };
        let status = Arc::new(ArcSwap::from_pointee(status));
        let handle = RotatorHandle {
            commands: sender,
            status: status.clone(),
        };
        let rotator = Self {
            source,
            validator,
            store,
            commands,
            status,
            backoff: Backoff::default(),
            cache: None,
            upkeep_not_before: Instant::now(),
            upkeep_backoff: Backoff::new(UPKEEP_RETRY.0, UPKEEP_RETRY.1),
        };
        (rotator, handle)
    }

    /// Replaces the backoff used after failures.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Keeps the last-known-good identity in `cache`: written after each publication, and
    /// served at start when the first attempt fails.
    pub fn with_cache(mut self, cache: CacheConfig) -> Self {
        self.cache = Some(Cache::new(&cache));
        self
    }

    /// Runs until every handle is dropped. The first attempt happens at once; when it fails
    /// and nothing is published yet, the cache (if any) is served meanwhile.
    pub async fn run(mut self) {
        let outcome = self.attempt().await;
        if !outcome.is_success() && self.store.load().is_none() {
            self.serve_from_cache().await;
        }
        let mut next_attempt = Instant::now() + self.next_delay(&outcome);

        loop {
            self.set_next_attempt(next_attempt);
            self.update_gauges();
            let upkeep_at = self
                .source
                .upkeep_in()
                .map(|wait| (Instant::now() + wait).max(self.upkeep_not_before));
            let wake = [
                Some(next_attempt),
                upkeep_at,
                Some(Instant::now() + GAUGE_INTERVAL),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_attempt);

            let reply = tokio::select! {
                () = tokio::time::sleep_until(wake.into()) => None,
                command = self.commands.recv() => match command {
                    Some(Command::RotateNow(reply)) => Some(reply),
                    None => return,
                },
            };

            let now = Instant::now();
            if reply.is_some() || now >= next_attempt {
                let outcome = self.attempt().await;
                next_attempt = Instant::now() + self.next_delay(&outcome);
                if let Some(reply) = reply {
                    // The caller may have gone away; the outcome is in the status either way.
                    let _ = reply.send(outcome);
                }
            } else if upkeep_at.is_some_and(|at| now >= at) {
                self.upkeep().await;
            }
        }
    }

    /// Source upkeep between renewals; republishes when the trust bundle changed.
    async fn upkeep(&mut self) {
        let kind = self.source.kind();
        let result = self.source.upkeep().await;
        if result.is_ok() {
            self.upkeep_backoff.reset();
            // Whatever the source says next, upkeep never runs more than once a second.
            self.upkeep_not_before = Instant::now() + Duration::from_secs(1);
        }
        let trust = match result {
            Ok(Some(trust)) => trust,
            Ok(None) => return,
            Err(err) => {
                let wait = self.upkeep_backoff.next_delay();
                warn!(source = kind, reason = err.reason(), error = %err,
                    retry_in_ms = wait.as_millis() as u64, "source upkeep failed");
                self.upkeep_not_before = Instant::now() + wait;
                return;
            }
        };
        let Some(current) = self.store.load() else {
            return;
        };
        let candidate = Issued {
            chain: current.chain().to_vec(),
            key: current.private_key().clone_key(),
            trust,
        };
        let outcome = match self.validator.check(candidate, SystemTime::now()) {
            Ok(identity) => self.publish(identity).await,
            Err(err) => self.refused(err),
        };
        info!(
            source = kind,
            result = outcome.label(),
            "trust bundle refresh"
        );
        metrics::counter!("portcullis_certificate_reloads_total",
            "source" => kind, "result" => outcome.label())
        .increment(1);
    }

    async fn serve_from_cache(&mut self) {
        let Some(cache) = &self.cache else {
            return;
        };
        let kind = self.source.kind();
        match cache.load(&self.validator).await {
            Some(identity) => {
                warn!(source = kind, serial = %identity.leaf.serial,
                    not_after = identity.leaf.not_after, cache = %cache.dir().display(),
                    "source unavailable at start; serving the last-known-good certificate");
                self.set_current(&identity, true);
                self.store.publish(identity);
            }
            None => warn!(source = kind, cache = %cache.dir().display(),
                "source unavailable at start and no usable cached certificate"),
        }
    }

    /// One obtain → validate → publish step.
    pub async fn attempt(&mut self) -> Outcome {
        let kind = self.source.kind();
        let started = std::time::Instant::now();
        let obtained = self.source.obtain().await;
        metrics::histogram!("portcullis_source_request_seconds", "source" => kind)
            .record(started.elapsed().as_secs_f64());

        let outcome = match obtained {
            Err(err) => {
                warn!(source = kind, reason = err.reason(), error = %err,
                    "certificate source failed; the current certificate keeps serving");
                Outcome::SourceFailed {
                    reason: err.reason().into(),
                    detail: err.to_string(),
                }
            }
            Ok(issued) => match self.already_serving(&issued) {
                Some(serial) => {
                    debug!(source = kind, serial = %serial, "certificate unchanged");
                    Outcome::Unchanged { serial }
                }
                None => match self.validator.check(issued, SystemTime::now()) {
                    Err(err) => self.refused(err),
                    Ok(identity) => self.publish(identity).await,
                },
            },
        };

        metrics::counter!("portcullis_certificate_reloads_total",
            "source" => kind, "result" => outcome.label())
        .increment(1);
        self.record(&outcome);
        outcome
    }

    /// The serial being served when `issued` is exactly its material and has not expired.
    ///
    /// Sources that poll (files) hand back the same bytes most of the time; checking them
    /// again (parsing, a signature to match the key, path validation) would only repeat the
    /// verdict given when they were published. An expired leaf goes through the checks again,
    /// so the status says why nothing newer is served.
    fn already_serving(&self, issued: &Issued) -> Option<String> {
        let current = self.store.load()?;
        let unexpired = current.leaf.not_after > unix_seconds(SystemTime::now());
        (unexpired && current.holds(issued)).then(|| current.leaf.serial.clone())
    }

    fn refused(&self, err: ValidationError) -> Outcome {
        let kind = self.source.kind();
        warn!(source = kind, reason = err.reason(), error = %err,
            "certificate refused; the current one keeps serving");
        metrics::counter!("portcullis_certificate_refused_total",
            "source" => kind, "reason" => err.reason())
        .increment(1);
        Outcome::Refused {
            reason: err.reason().into(),
            detail: err.to_string(),
        }
    }

    async fn publish(&mut self, identity: Identity) -> Outcome {
        let kind = self.source.kind();
        let serial = identity.leaf.serial.clone();
        if let Some(current) = self.store.load() {
            if current.same_as(&identity) {
                debug!(source = kind, serial = %serial, "certificate unchanged");
                return Outcome::Unchanged { serial };
            }
        }

        let not_after = identity.leaf.not_after;
        info!(source = kind, serial = %serial, subject = %identity.leaf.subject,
            not_after, trust_anchors = identity.trust.len(), "publishing certificate");
        if let Some(cache) = &self.cache {
            // A cache failure costs only the cold-start fallback: log it and go on.
            if let Err(err) = cache.store(&identity).await {
                warn!(source = kind, error = %err, "cannot write the last-known-good cache");
            }
        }
        metrics::gauge!("portcullis_certificate_last_renewal_timestamp_seconds", "source" => kind)
            .set(unix_seconds(SystemTime::now()) as f64);
        self.set_current(&identity, false);
        self.store.publish(identity);
        self.update_gauges();
        Outcome::Published { serial, not_after }
    }

    /// Records the identity about to be published in the status and the static gauges.
    fn set_current(&self, identity: &Identity, from_cache: bool) {
        let kind = self.source.kind();
        metrics::gauge!("portcullis_certificate_not_after_seconds", "source" => kind)
            .set(identity.leaf.not_after as f64);
        metrics::gauge!("portcullis_certificate_not_before_seconds", "source" => kind)
            .set(identity.leaf.not_before as f64);
        let mut status = RotationStatus::clone(&self.status.load());
        status.serial = Some(identity.leaf.serial.clone());
        status.not_after = Some(identity.leaf.not_after);
        status.from_cache = from_cache;
        self.status.store(Arc::new(status));
    }

    /// Refreshes the gauges that move with time.
    fn update_gauges(&self) {
        self.source.record_gauges();
        let Some(identity) = self.store.load() else {
            return;
        };
        let kind = self.source.kind();
        let now = unix_seconds(SystemTime::now());
        let (not_before, not_after) = (identity.leaf.not_before, identity.leaf.not_after);
        let lifetime = (not_after - not_before).max(1) as f64;
        metrics::gauge!("portcullis_certificate_seconds_to_expiry", "source" => kind)
            .set((not_after - now) as f64);
        metrics::gauge!("portcullis_certificate_lifetime_used_ratio", "source" => kind)
            .set(((now - not_before) as f64 / lifetime).clamp(0.0, 1.0));
    }

    fn next_delay(&mut self, outcome: &Outcome) -> Duration {
        if !outcome.is_success() {
            return self.backoff.next_delay();
        }
        self.backoff.reset();

        match self.source.refresh() {
            Refresh::Poll(interval) => interval,
            Refresh::Lifetime(policy) => match self.store.load() {
                Some(identity) => policy.delay_random(
                    identity.leaf.not_before_time(),
                    identity.leaf.not_after_time(),
                    SystemTime::now(),
                ),
                None => self.backoff.next_delay(),
            },
        }
    }

    fn record(&self, outcome: &Outcome) {
        let now = unix_seconds(SystemTime::now());
        let mut status = RotationStatus::clone(&self.status.load());
        status.last_attempt = Some(now);
        if outcome.is_success() {
            status.last_success = Some(now);
            status.consecutive_failures = 0;
        } else {
            status.consecutive_failures += 1;
        }
        status.last_outcome = Some(outcome.clone());
        self.status.store(Arc::new(status));
    }

    fn set_next_attempt(&self, at: Instant) {
        let delay = at.saturating_duration_since(Instant::now());
        let mut status = RotationStatus::clone(&self.status.load());
        status.next_attempt = Some(unix_seconds(SystemTime::now() + delay));
        self.status.store(Arc::new(status));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::source::SourceError;
    use crate::source::dev::{DevCa, LeafSpec};

    /// A source that issues from a development CA until told to fail, and can announce a new
    /// trust bundle through its upkeep.
    struct Scripted {
        ca: Arc<DevCa>,
        failing: Arc<std::sync::atomic::AtomicBool>,
        next_trust: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
    }

    impl CertificateSource for Scripted {
        fn describe(&self) -> String {
            "scripted".into()
        }

        fn kind(&self) -> &'static str {
            "scripted"
        }

        fn refresh(&self) -> Refresh {
            Refresh::Poll(Duration::from_secs(3600))
        }

        async fn obtain(&mut self) -> Result<Issued, SourceError> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SourceError::Unavailable("scripted outage".into()));
            }
            let spec = LeafSpec {
                common_name: "web".into(),
                ..Default::default()
            };
            let leaf = self.ca.issue(&spec, Duration::from_secs(600))?;
            Ok(Issued {
                chain: leaf.chain,
                key: leaf.key,
                trust: vec![self.ca.certificate().clone()],
            })
        }

        fn upkeep_in(&self) -> Option<Duration> {
            self.next_trust.as_ref().map(|_| Duration::ZERO)
        }

        async fn upkeep(
            &mut self,
        ) -> Result<Option<Vec<rustls_pki_types::CertificateDer<'static>>>, SourceError> {
            Ok(self.next_trust.take())
        }
    }

    /// A source that hands back the same material on every attempt, as a polled file does.
    struct Fixed(Issued);

    impl CertificateSource for Fixed {
        fn describe(&self) -> String {
            "fixed".into()
        }

        fn kind(&self) -> &'static str {
            "fixed"
        }

        fn refresh(&self) -> Refresh {
            Refresh::Poll(Duration::from_secs(3600))
        }

        async fn obtain(&mut self) -> Result<Issued, SourceError> {
            Ok(self.0.clone_material())
        }
    }

    fn issued_from(ca: &DevCa, not_before: SystemTime, not_after: SystemTime) -> Issued {
        let spec = LeafSpec {
            common_name: "web".into(),
            ..Default::default()
        };
        let leaf = ca
            .issue_between(&spec, not_before.into(), not_after.into())
            .expect("leaf");
        Issued {
            chain: leaf.chain,
            key: leaf.key,
            trust: vec![ca.certificate().clone()],
        }
    }

    fn scripted(failing: bool) -> (Scripted, Arc<std::sync::atomic::AtomicBool>) {
        let ca = Arc::new(DevCa::new("rotator test CA", Duration::from_secs(3600)).expect("CA"));
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(failing));
        let source = Scripted {
            ca,
            failing: flag.clone(),
            next_trust: None,
        };
        (source, flag)
    }

    #[tokio::test]
    async fn a_failed_start_serves_the_cache_and_the_status_says_so() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = CacheConfig {
            dir: tmp.path().join("cache"),
        };
        let (source, failing) = scripted(false);
        let store = IdentityStore::new();
        let (rotator, _) = Rotator::new(source, Validator::default(), store.clone());
        let mut rotator = rotator.with_cache(cache.clone());
        assert!(rotator.attempt().await.is_success());
        let cached = store.load().expect("published").leaf.serial.clone();

        failing.store(true, std::sync::atomic::Ordering::SeqCst);
        let restarted = IdentityStore::new();
        let (rotator, handle) =
            Rotator::new(rotator.source, Validator::default(), restarted.clone());
        let task = tokio::spawn(rotator.with_cache(cache).run());
        let mut generations = restarted.subscribe();
        tokio::time::timeout(Duration::from_secs(5), generations.changed())
            .await
            .expect("served from the cache in time")
            .expect("store alive");
        assert_eq!(restarted.load().expect("cached").leaf.serial, cached);
        let status = handle.status();
        assert!(status.from_cache);
        assert_eq!(status.serial.as_deref(), Some(cached.as_str()));
        assert!(status.consecutive_failures >= 1);
        task.abort();
    }

    #[tokio::test]
    async fn a_new_trust_bundle_from_upkeep_is_republished_with_the_same_certificate() {
        let (mut source, _) = scripted(false);
        let other = DevCa::new("second CA", Duration::from_secs(3600)).expect("CA");
        source.next_trust = Some(vec![
            source.ca.certificate().clone(),
            other.certificate().clone(),
        ]);
        let store = IdentityStore::new();
        let (mut rotator, _) = Rotator::new(source, Validator::default(), store.clone());
        assert!(rotator.attempt().await.is_success());
        let serial = store.load().expect("published").leaf.serial.clone();

        rotator.upkeep().await;
        let identity = store.load().expect("published");
        assert_eq!(identity.trust.len(), 2);
        assert_eq!(identity.leaf.serial, serial);
        assert_eq!(store.generation(), 2);
    }

    #[tokio::test]
    async fn the_same_material_again_is_unchanged_and_a_new_key_alone_is_refused() {
        let ca = DevCa::new("rotator test CA", Duration::from_secs(3600)).expect("CA");
        let now = SystemTime::now();
        let issued = issued_from(
            &ca,
            now - Duration::from_secs(60),
            now + Duration::from_secs(600),
        );
        let store = IdentityStore::new();
        let (mut rotator, _) = Rotator::new(Fixed(issued), Validator::default(), store.clone());
        assert!(matches!(rotator.attempt().await, Outcome::Published { .. }));
        assert!(matches!(rotator.attempt().await, Outcome::Unchanged { .. }));
        assert_eq!(store.generation(), 1);

        // Same chain and bundle with another key: not the material being served, so it is
        // checked, and refused.
        let other = issued_from(
            &ca,
            now - Duration::from_secs(60),
            now + Duration::from_secs(600),
        );
        rotator.source.0.key = other.key;
        assert!(!store.load().expect("published").holds(&rotator.source.0));
        let outcome = rotator.attempt().await;
        assert!(
            matches!(&outcome, Outcome::Refused { reason, .. } if reason == "key_mismatch"),
            "{outcome:?}"
        );
        assert_eq!(store.generation(), 1);
    }

    #[tokio::test]
    async fn the_same_material_once_expired_is_checked_again_and_refused() {
        let ca = DevCa::new("rotator test CA", Duration::from_secs(3600)).expect("CA");
        let now = SystemTime::now();
        let issued = issued_from(
            &ca,
            now - Duration::from_secs(600),
            now - Duration::from_secs(60),
        );
        let store = IdentityStore::new();
        // Published while it was still valid, two minutes ago.
        let identity = Validator::default()
            .check(issued.clone_material(), now - Duration::from_secs(120))
            .expect("valid two minutes ago");
        store.publish(identity);

        let (mut rotator, _) = Rotator::new(Fixed(issued), Validator::default(), store.clone());
        let outcome = rotator.attempt().await;
        assert!(
            matches!(&outcome, Outcome::Refused { reason, .. } if reason == "expired"),
            "{outcome:?}"
        );
        assert_eq!(store.generation(), 1);
    }
}
