//! Recording what happens during a run: latencies (HDR histograms, microseconds), failures by
//! reason, handshake kinds, the server serials seen, injected events, and a time series.
//!
//! One mutex guards everything: an operation takes it once, for well under a microsecond, and
//! a single histogram per time bucket keeps memory flat however many workers run.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustls::HandshakeKind;

/// Latencies are recorded in microseconds, up to one hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// One bucket of the time series.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub ok: u64,
    pub failed: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
}

/// A server certificate serial and when it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialSeen {
    pub handshakes: u64,
    pub first: Duration,
    pub last: Duration,
}

/// An event injected during the run (rotation, mode switch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// Milliseconds since the start of the run.
    pub t_ms: u64,
    pub kind: String,
    pub ok: bool,
    pub detail: String,
}

/// Everything recorded so far.
#[derive(Debug, Clone)]
pub struct Stats {
    pub latency: Histogram<u64>,
    pub handshake: Histogram<u64>,
    pub successes: u64,
    pub bytes: u64,
    pub failures: BTreeMap<String, u64>,
    pub handshakes_full: u64,
    pub handshakes_hrr: u64,
    pub handshakes_resumed: u64,
    pub serials: BTreeMap<String, SerialSeen>,
    pub buckets: Vec<Bucket>,
    pub events: Vec<Event>,
}

impl Stats {
    /// Failed operations, all reasons.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Completed handshakes, all kinds.
    pub fn handshakes(&self) -> u64 {
        self.handshakes_full + self.handshakes_hrr + self.handshakes_resumed
    }
}

/// Thread-safe recorder shared by every worker of a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    bucket: Duration,
    inner: Mutex<Stats>,
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; failure would be a programming error.
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, MAX_MICROS)
}

impl Recorder {
    /// A recorder whose time series starts at `start` with buckets `bucket` wide.
    pub fn new(start: Instant, bucket: Duration) -> Self {
        Self {
            start,
            bucket: bucket.max(Duration::from_millis(10)),
            inner: Mutex::new(Stats {
                latency: histogram(3),
                handshake: histogram(3),
                successes: 0,
                bytes: 0,
                failures: BTreeMap::new(),
                handshakes_full: 0,
                handshakes_hrr: 0,
                handshakes_resumed: 0,
                serials: BTreeMap::new(),
                buckets: Vec::new(),
                events: Vec::new(),
            }),
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The width of a time-series bucket.
    pub fn bucket_width(&self) -> Duration {
        self.bucket
    }

    fn with<T>(&self, f: impl FnOnce(&mut Stats) -> T) -> T {
        // A poisoned lock only means another worker panicked mid-update; the counts are usable.
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        f(&mut guard)
    }

    fn bucket_of<'a>(&self, stats: &'a mut Stats, at: Instant) -> &'a mut Bucket {
        let index = (at.saturating_duration_since(self.start).as_nanos()
            / self.bucket.as_nanos().max(1)) as usize;
        while stats.buckets.len() <= index {
            stats.buckets.push(Bucket {
                ok: 0,
                failed: 0,
                bytes: 0,
                latency: histogram(2),
            });
        }
        &mut stats.buckets[index]
    }

    /// A successful operation that finished at `at` after `latency`, moving `bytes`.
    pub fn ok(&self, at: Instant, latency: Duration, bytes: u64) {
        let us = micros(latency);
        self.with(|stats| {
            stats.successes += 1;
            stats.bytes += bytes;
            stats.latency.saturating_record(us);
            let bucket = self.bucket_of(stats, at);
            bucket.ok += 1;
            bucket.bytes += bytes;
            bucket.latency.saturating_record(us);
        });
    }

    /// A failed operation.
    pub fn failure(&self, at: Instant, reason: &str) {
        self.with(|stats| {
            *stats.failures.entry(reason.to_string()).or_default() += 1;
            self.bucket_of(stats, at).failed += 1;
        });
    }

    /// A completed handshake: its kind, its duration and the server serial it showed.
    pub fn handshake(
        &self,
        at: Instant,
        kind: Option<HandshakeKind>,
        took: Duration,
        serial: Option<&str>,
    ) {
        let since = at.saturating_duration_since(self.start);
        self.with(|stats| {
            match kind {
                Some(HandshakeKind::Resumed) => stats.handshakes_resumed += 1,
                Some(HandshakeKind::FullWithHelloRetryRequest) => stats.handshakes_hrr += 1,
                _ => stats.handshakes_full += 1,
            }
            stats.handshake.saturating_record(micros(took));
            if let Some(serial) = serial {
                let seen = stats
                    .serials
                    .entry(serial.to_string())
                    .or_insert(SerialSeen {
                        handshakes: 0,
                        first: since,
                        last: since,
                    });
                seen.handshakes += 1;
                seen.last = seen.last.max(since);
                seen.first = seen.first.min(since);
            }
        });
    }

    /// An injected event.
    pub fn event(&self, at: Instant, kind: &str, ok: bool, detail: String) {
        let t_ms = at.saturating_duration_since(self.start).as_millis() as u64;
        self.with(|stats| {
            stats.events.push(Event {
                t_ms,
                kind: kind.to_string(),
                ok,
                detail,
            })
        });
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Stats {
        self.with(|stats| stats.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_into_buckets_and_totals() {
        let start = Instant::now();
        let recorder = Recorder::new(start, Duration::from_millis(100));
        recorder.ok(
            start + Duration::from_millis(50),
            Duration::from_micros(300),
            10,
        );
        recorder.ok(
            start + Duration::from_millis(250),
            Duration::from_micros(500),
            0,
        );
        recorder.failure(start + Duration::from_millis(260), "timeout");
        let at = start + Duration::from_millis(10);
        recorder.handshake(at, None, Duration::from_micros(900), Some("0a"));
        recorder.handshake(at, Some(HandshakeKind::Resumed), Duration::ZERO, Some("0b"));
        let stats = recorder.snapshot();
        assert_eq!(stats.successes, 2);
        assert_eq!(stats.failed(), 1);
        assert_eq!(stats.buckets.len(), 3);
        assert_eq!(stats.buckets[2].failed, 1);
        assert_eq!(stats.handshakes(), 2);
        assert_eq!(stats.handshakes_resumed, 1);
        assert_eq!(stats.serials.len(), 2);
        assert_eq!(stats.bytes, 10);
    }
}
