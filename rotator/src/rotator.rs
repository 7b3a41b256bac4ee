//! The renewal loop: obtain, validate, publish, reschedule.
//!
//! One [`Rotator`] runs per managed identity. It asks its source for material when the
//! schedule says so (or when told to through a [`RotatorHandle`]), validates it, and publishes
//! it to the [`IdentityStore`]. A failure never unpublishes anything: the identity in force
//! keeps serving until it really expires, and the loop retries with backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::identity::Identity;
use crate::inspect::unix_seconds;
use crate::schedule::Backoff;
use crate::source::{CertificateSource, Refresh};
use crate::store::IdentityStore;
use crate::validate::Validator;

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
}

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
        };
        (rotator, handle)
    }

    /// Replaces the backoff used after failures.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Runs until every handle is dropped. The first attempt happens at once.
    pub async fn run(mut self) {
        let mut delay = Duration::ZERO;
        loop {
            self.set_next_attempt(delay);
            let reply = tokio::select! {
                () = tokio::time::sleep(delay) => None,
                command = self.commands.recv() => match command {
                    Some(Command::RotateNow(reply)) => Some(reply),
                    None => return,
                },
            };

            let outcome = self.attempt().await;
            delay = self.next_delay(&outcome);
            if let Some(reply) = reply {
                // The caller may have gone away; the outcome is in the status either way.
                let _ = reply.send(outcome);
            }
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
                warn!(source = kind, reason = err.reason(), error = %err, "certificate source failed");
                Outcome::SourceFailed {
                    reason: err.reason().into(),
                    detail: err.to_string(),
                }
            }
            Ok(issued) => match self.validator.check(issued, SystemTime::now()) {
                Err(err) => {
                    warn!(source = kind, reason = err.reason(), error = %err,
                        "certificate refused; the current one keeps serving");
                    Outcome::Refused {
                        reason: err.reason().into(),
                        detail: err.to_string(),
                    }
                }
                Ok(identity) => self.publish(identity),
            },
        };

        metrics::counter!("portcullis_certificate_reloads_total",
            "source" => kind, "result" => outcome.label())
        .increment(1);
        self.record(&outcome);
        outcome
    }

    fn publish(&mut self, identity: Identity) -> Outcome {
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
        metrics::gauge!("portcullis_certificate_not_after_seconds", "source" => kind)
            .set(not_after as f64);
        metrics::gauge!("portcullis_certificate_not_before_seconds", "source" => kind)
            .set(identity.leaf.not_before as f64);
        self.store.publish(identity);
        Outcome::Published { serial, not_after }
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

    fn set_next_attempt(&self, delay: Duration) {
        let mut status = RotationStatus::clone(&self.status.load());
        status.next_attempt = Some(unix_seconds(SystemTime::now() + delay));
        self.status.store(Arc::new(status));
    }
}
