//! The result of a run, as JSON (serde) and as text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::{Event, Stats};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    /// Reads the percentiles of a histogram.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            count: histogram.len(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

/// One bucket of the time series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Start of the bucket, milliseconds since the start of the run.
    pub t_ms: u64,
    pub ok: u64,
    pub failed: u64,
    pub bytes: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Events injected during this bucket, by kind.
    pub events: Vec<String>,
}

/// A server certificate serial seen by the clients.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SerialReport {
    pub serial: String,
    pub handshakes: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

/// CPU and memory of the processes under test, and of the load client.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub server_pids: Vec<u32>,
    pub server_cpu_s: Option<f64>,
    /// Server CPU per completed handshake, in microseconds.
    pub server_cpu_per_handshake_us: Option<f64>,
    /// Server CPU per successful operation, in microseconds.
    pub server_cpu_per_op_us: Option<f64>,
    /// The kernel's part of `server_cpu_per_op_us` (system time), in microseconds.
    pub server_system_cpu_per_op_us: Option<f64>,
    pub server_rss_before_kib: Option<u64>,
    /// For `idle`: with every connection established; otherwise at the end.
    pub server_rss_after_kib: Option<u64>,
    /// For `idle`: the RSS growth divided by the connections held.
    pub server_rss_per_connection_kib: Option<f64>,
    pub client_cpu_s: f64,
    pub client_cpu_per_op_us: Option<f64>,
    /// `--upstream-pid`: the processes behind the server (a proxy's upstream).
    pub upstream_pids: Vec<u32>,
    /// Their CPU per successful operation, in microseconds.
    pub upstream_cpu_per_op_us: Option<f64>,
    /// How busy each CPU of the machine was during the run, in percent (`/proc/stat`): shows
    /// which side of a pinned benchmark ran out of CPU.
    pub core_busy_percent: Vec<f64>,
    /// CPU time the hypervisor took from this machine during the run, in percent of all CPU
    /// time: a noisy neighbour that no figure above accounts for.
    pub machine_steal_percent: Option<f64>,
    pub clock_ticks_per_s: u64,
}

/// Latency before the first injected event against latency from it on; and, from the first
/// event on, latency right after each event against latency away from every event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RotationImpact {
    pub steady: Percentiles,
    pub during_events: Percentiles,
    /// `during_events.p99 / steady.p99`.
    pub p99_ratio: f64,
    /// Operations that finished in the time bucket of an event or the next one.
    pub near_events: Option<Percentiles>,
    /// Operations of the same period that finished in any other bucket.
    pub away_from_events: Option<Percentiles>,
    /// `near_events.p99 / away_from_events.p99`: the same stretch of time on both sides, so
    /// a machine that slows down or speeds up during the run does not show as an effect.
    pub near_p99_ratio: Option<f64>,
}

/// Buckets counted as "near" an event: the one it happened in and the next.
const NEAR_BUCKETS: usize = 2;

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub mode: String,
    pub target: String,
    pub tls: String,
    pub group: String,
    pub suite: Option<String>,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub elapsed_s: f64,
    pub successes: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub ops_per_s: f64,
    pub latency_us: Percentiles,
    pub handshake_us: Percentiles,
    pub handshakes_full: u64,
    pub handshakes_hello_retry: u64,
    pub handshakes_resumed: u64,
    pub bytes: u64,
    pub mib_per_s: f64,
    pub distinct_serials: usize,
    pub serials: Vec<SerialReport>,
    pub usage: Usage,
    pub rotation_impact: Option<RotationImpact>,
    pub bucket_ms: u64,
    pub series: Vec<SeriesPoint>,
    pub events: Vec<Event>,
}

/// Builds the time series, marking each bucket with the events it holds.
pub fn series(stats: &Stats, bucket_ms: u64) -> Vec<SeriesPoint> {
    let bucket_ms = bucket_ms.max(1);
    stats
        .buckets
        .iter()
        .enumerate()
        .map(|(index, bucket)| {
            let t_ms = index as u64 * bucket_ms;
            let events = stats
                .events
                .iter()
                .filter(|event| event.t_ms >= t_ms && event.t_ms < t_ms + bucket_ms)
                .map(|event| event.kind.clone())
                .collect();
            SeriesPoint {
                t_ms,
                ok: bucket.ok,
                failed: bucket.failed,
                bytes: bucket.bytes,
                p50_us: bucket.latency.value_at_quantile(0.5),
                p99_us: bucket.latency.value_at_quantile(0.99),
                max_us: bucket.latency.max(),
                events,
            }
        })
        .collect()
}

/// Compares the buckets before `steady_until_ms` (default: the first event) with the buckets
/// from then on.
pub fn rotation_impact(
    stats: &Stats,
    bucket_ms: u64,
    steady_until_ms: Option<u64>,
    expected_every_ms: Option<u64>,
) -> Option<RotationImpact> {
    let bucket_ms = bucket_ms.max(1);
    let first = steady_until_ms.or_else(|| stats.events.iter().map(|event| event.t_ms).min())?;
    let first_bucket = (first / bucket_ms) as usize;
    let mut steady = stats.buckets.first()?.latency.clone();
    steady.reset();
    let (mut during, mut near, mut away) = (steady.clone(), steady.clone(), steady.clone());

    let near_buckets = near_event_buckets(stats, bucket_ms, first, expected_every_ms);
    for (index, bucket) in stats.buckets.iter().enumerate() {
        // Every histogram comes from the same constructor, so the bounds always match.
        if index < first_bucket {
            steady.add(&bucket.latency).ok()?;
            continue;
        }
        during.add(&bucket.latency).ok()?;
        if near_buckets.get(index).copied().unwrap_or(false) {
            near.add(&bucket.latency).ok()?;
        } else {
            away.add(&bucket.latency).ok()?;
        }
    }
    if steady.is_empty() || during.is_empty() {
        return None;
    }
    let (steady, during_events) = (Percentiles::of(&steady), Percentiles::of(&during));
    let (near, away) = match near.is_empty() || away.is_empty() {
        true => (None, None),
        false => (Some(Percentiles::of(&near)), Some(Percentiles::of(&away))),
    };
    Some(RotationImpact {
        steady,
        during_events,
        p99_ratio: during_events.p99 as f64 / steady.p99.max(1) as f64,
        near_events: near,
        away_from_events: away,
        near_p99_ratio: near
            .zip(away)
            .map(|(near, away)| near.p99 as f64 / away.p99.max(1) as f64),
    })
}

/// Which time buckets are near an event: this run's own events, or, for a client that
/// injects none, events expected every `expected_every_ms` from `first_ms` on.
fn near_event_buckets(
    stats: &Stats,
    bucket_ms: u64,
    first_ms: u64,
    expected_every_ms: Option<u64>,
) -> Vec<bool> {
    let mut near = vec![false; stats.buckets.len()];
    let end_ms = stats.buckets.len() as u64 * bucket_ms;
    let times: Vec<u64> = match expected_every_ms.filter(|every| *every > 0) {
        Some(every) if stats.events.is_empty() => {
            (first_ms..end_ms).step_by(every as usize).collect()
        }
        _ => stats.events.iter().map(|event| event.t_ms).collect(),
    };
    for t_ms in times {
        let start = (t_ms / bucket_ms) as usize;
        for index in start..(start + NEAR_BUCKETS).min(near.len()) {
            near[index] = true;
        }
    }
    near
}

impl Report {
    /// A human-readable summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let line = &mut out;
        let _ = writeln!(
            line,
            "{} against {} (TLS {}, group {}, suite {}), {} workers{}",
            self.mode,
            self.target,
            self.tls,
            self.group,
            self.suite.as_deref().unwrap_or("any"),
            self.concurrency,
            self.rate
                .map(|rate| format!(", open loop at {rate}/s"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            line,
            "  {} ok, {} failed in {:.2} s: {:.1} ops/s",
            self.successes, self.failed, self.elapsed_s, self.ops_per_s
        );
        for (reason, count) in &self.failures {
            let _ = writeln!(line, "    failed {reason}: {count}");
        }
        write_percentiles(line, "latency", &self.latency_us);
        write_percentiles(line, "handshake", &self.handshake_us);
        let _ = writeln!(
            line,
            "  handshakes: {} full, {} full after HelloRetryRequest, {} resumed",
            self.handshakes_full, self.handshakes_hello_retry, self.handshakes_resumed
        );
        if self.mode == "bulk" {
            let _ = writeln!(line, "  {} bytes, {:.1} MiB/s", self.bytes, self.mib_per_s);
        }
        let _ = writeln!(line, "  distinct server serials: {}", self.distinct_serials);
        let usage = &self.usage;
        if let Some(cpu) = usage.server_cpu_s {
            let _ = writeln!(
                line,
                "  server CPU {cpu:.3} s: {} us/handshake, {} us/op ({} us/op in the kernel)",
                fmt_opt(usage.server_cpu_per_handshake_us),
                fmt_opt(usage.server_cpu_per_op_us),
                fmt_opt(usage.server_system_cpu_per_op_us)
            );
        }
        if let (Some(before), Some(after)) =
            (usage.server_rss_before_kib, usage.server_rss_after_kib)
        {
            let _ = writeln!(
                line,
                "  server RSS {before} KiB -> {after} KiB ({} KiB/connection)",
                fmt_opt(usage.server_rss_per_connection_kib)
            );
        }
        let _ = writeln!(
            line,
            "  client CPU {:.3} s ({} us/op); machine steal {}%",
            usage.client_cpu_s,
            fmt_opt(usage.client_cpu_per_op_us),
            fmt_opt(usage.machine_steal_percent)
        );
        if !usage.upstream_pids.is_empty() {
            let _ = writeln!(
                line,
                "  upstream CPU {} us/op",
                fmt_opt(usage.upstream_cpu_per_op_us)
            );
        }
        if !usage.core_busy_percent.is_empty() {
            let busy = usage
                .core_busy_percent
                .iter()
                .enumerate()
                .map(|(cpu, busy)| format!("cpu{cpu} {busy:.0}%"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(line, "  busy: {busy}");
        }
        for event in &self.events {
            let status = if event.ok { "ok" } else { "FAILED" };
            let _ = writeln!(
                line,
                "  event at {} ms: {} {status} ({})",
                event.t_ms, event.kind, event.detail
            );
        }
        if let Some(impact) = &self.rotation_impact {
            let _ = writeln!(
                line,
                "  p99 steady {} us, during events {} us: ratio {:.3}",
                impact.steady.p99, impact.during_events.p99, impact.p99_ratio
            );
            if let (Some(near), Some(away), Some(ratio)) = (
                impact.near_events,
                impact.away_from_events,
                impact.near_p99_ratio,
            ) {
                let _ = writeln!(
                    line,
                    "  p99 near events {} us, away from them {} us: ratio {ratio:.3}",
                    near.p99, away.p99
                );
            }
        }
        out
    }
}

fn write_percentiles(out: &mut String, what: &str, p: &Percentiles) {
    if p.count == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "  {what} us: p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.0}, n {})",
        p.p50, p.p90, p.p99, p.p999, p.max, p.mean, p.count
    );
}

fn fmt_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |value| format!("{value:.1}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::stats::Recorder;

    /// Ten 100 ms buckets: the first three steady at 100 us, then events at 300 and 700 ms;
    /// the operations right after each event take 1 ms, every other one 200 us.
    fn recorded(with_events: bool) -> Stats {
        let start = Instant::now();
        let recorder = Recorder::new(start, Duration::from_millis(100));
        for bucket in 0..10u64 {
            let latency = match bucket {
                0..=2 => 100,
                3 | 4 | 7 | 8 => 1_000,
                _ => 200,
            };
            for op in 0..100u64 {
                let at = start + Duration::from_millis(bucket * 100 + op % 100);
                recorder.ok(at, Duration::from_micros(latency), 0);
            }
        }
        if with_events {
            for t_ms in [300, 700] {
                let at = start + Duration::from_millis(t_ms);
                recorder.event(at, "rotate", true, String::new());
            }
        }
        recorder.snapshot()
    }

    #[test]
    fn separates_latency_near_events_from_latency_away_from_them() {
        let impact = rotation_impact(&recorded(true), 100, None, None).unwrap();

        assert!(impact.steady.p99 < 110, "{impact:?}");
        assert!(impact.p99_ratio > 9.0, "{impact:?}");
        let near = impact.near_events.unwrap();
        let away = impact.away_from_events.unwrap();
        assert_eq!(near.count, 400);
        assert_eq!(away.count, 300);
        assert!(near.p50 >= 990 && away.p99 <= 201, "{near:?} {away:?}");
        assert!(impact.near_p99_ratio.unwrap() > 4.9);
    }

    #[test]
    fn a_client_without_events_uses_the_expected_schedule() {
        let stats = recorded(false);

        let impact = rotation_impact(&stats, 100, Some(300), Some(400)).unwrap();
        assert_eq!(impact.near_events.unwrap().count, 400);

        let without = rotation_impact(&stats, 100, Some(300), None).unwrap();
        assert!(without.near_events.is_none() && without.near_p99_ratio.is_none());
    }
}
