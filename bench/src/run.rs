//! One load run from start to report: set up TLS, read the server's usage, start the workers
//! and the event driver, wait for the end (the deadline is a hard bound), read usage again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::options::{LoadOptions, Mode, TlsVersion};
use crate::procfs::{self, Usage};
use crate::report::{self, Percentiles, Report, SerialReport};
use crate::rotation;
use crate::stats::Recorder;
use crate::tls::{ClientTls, TlsSetupError, client_tls};
use crate::workers::{Conn, Handshake, SerialCache, Shared, request, worker};

/// How many idle-mode connections may be mid-handshake at once (keeps listen backlogs calm).
const IDLE_RAMP: usize = 64;
/// Extra time allowed past the deadline for operations in flight to finish.
const GRACE: Duration = Duration::from_secs(10);

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot read /proc for pid {pid}: {source}")]
    Proc { pid: u32, source: std::io::Error },
    #[error("only loopback targets are allowed, not {0}")]
    NotLoopback(std::net::SocketAddr),
}

/// Runs the load described by `options` and reports.
pub async fn run(options: LoadOptions) -> Result<Report, RunError> {
    if !options.target.ip().is_loopback() {
        return Err(RunError::NotLoopback(options.target));
    }
    let tls = client_tls(&options.tls, options.mode)?;
    let opened = warm_up(&options, &tls).await;

    let server_before = process_usage(&options.server_pid)?;
    let upstream_before = process_usage(&options.upstream_pid)?;
    let client_before = procfs::self_cpu_seconds().unwrap_or_default();
    let machine_before = procfs::MachineTicks::now().ok();
    let start = Instant::now();
    let recorder = Arc::new(Recorder::new(start, options.bucket));
    let shared = Arc::new(Shared::new(options.clone(), tls, recorder.clone(), start));
    let deadline = shared.deadline;
    let mut warmed = opened.into_iter().map(|opened| {
        let (conn, handshake) = opened?;
        if let Some(handshake) = handshake {
            handshake.record(&recorder);
        }
        Some(conn)
    });

    let events = rotation::has_events(&options.rotation).then(|| {
        tokio::spawn(rotation::drive(
            options.rotation.clone(),
            recorder.clone(),
            deadline,
        ))
    });

    let mut held = None;
    if options.mode == Mode::Idle {
        held = Some(idle(&shared).await);
    } else {
        let tasks: Vec<_> = (0..options.concurrency.max(1))
            .map(|_| tokio::spawn(worker(shared.clone(), warmed.next().flatten())))
            .collect();
        let hard_stop = tokio::time::Instant::from_std(deadline + GRACE);
        for task in tasks {
            // A worker past the grace period is abandoned; its operation counts as not done.
            let _ = tokio::time::timeout_at(hard_stop, task).await;
        }
    }
    let elapsed = recorder.start().elapsed();
    if let Some(events) = events {
        events.abort();
    }

    let server_after = match held {
        Some(Some(loaded)) => Some(loaded),
        _ => process_usage(&options.server_pid)?,
    };
    let measured = Measured {
        server: (server_before, server_after),
        upstream: (upstream_before, process_usage(&options.upstream_pid)?),
        client_cpu: procfs::self_cpu_seconds().unwrap_or_default() - client_before,
        machine: machine_before.zip(procfs::MachineTicks::now().ok()),
    };
    Ok(build_report(&options, &recorder, elapsed, measured))
}

/// A worker's connection opened before the clock started, and its handshake.
type Opened = Option<(Conn, Option<Handshake>)>;

/// Before the clock starts: `--warm-up` runs the same load with nothing recorded, then each
/// keep-alive or bulk worker opens the connection it will measure on (its handshake is
/// recorded in the run). Returns one entry per worker.
async fn warm_up(options: &LoadOptions, tls: &ClientTls) -> Vec<Opened> {
    if options.mode == Mode::Idle {
        return Vec::new();
    }
    let mut warm = options.clone();
    warm.duration = options.warm_up;
    warm.count = None;
    let now = Instant::now();
    let scratch = Arc::new(Recorder::new(now, options.bucket));
    let shared = Arc::new(Shared::new(warm, tls.clone(), scratch, now));

    let tasks: Vec<_> = (0..options.concurrency.max(1))
        .map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move {
                drop(worker(shared.clone(), None).await);
                if shared.options.connection_per_operation() {
                    return None;
                }
                // A failure here is counted when the measured load retries.
                shared.open(&mut SerialCache::default()).await.ok()
            })
        })
        .collect();
    let mut opened = Vec::with_capacity(tasks.len());
    for task in tasks {
        opened.push(task.await.ok().flatten());
    }
    opened
}

/// CPU and memory summed over `pids`; `None` when none are given.
fn process_usage(pids: &[u32]) -> Result<Option<Usage>, RunError> {
    if pids.is_empty() {
        return Ok(None);
    }
    for &pid in pids {
        procfs::usage(&[pid]).map_err(|source| RunError::Proc { pid, source })?;
    }
    procfs::usage(pids)
        .map(Some)
        .map_err(|source| RunError::Proc {
            pid: pids[0],
            source,
        })
}

/// Opens every connection (a request on each, so each client is verified), measures the
/// server with all of them held, then holds them for `--hold`. Returns the loaded usage.
async fn idle(shared: &Arc<Shared>) -> Option<Usage> {
    let options = &shared.options;
    let ramp = Arc::new(Semaphore::new(IDLE_RAMP));
    let settled = Arc::new(AtomicU64::new(0));
    let (release, released) = watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..options.concurrency {
        let (shared, ramp, settled) = (shared.clone(), ramp.clone(), settled.clone());
        let mut released = released.clone();
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let permit = ramp.acquire_owned().await;
            let mut serials = SerialCache::default();
            let opened = async {
                let (mut stream, mut reader) = shared.connect(&mut serials).await?;
                request(&mut stream, &mut reader, &shared.options.path, false).await?;
                Ok::<_, String>((stream, reader))
            };
            let outcome = tokio::time::timeout(shared.options.timeout, opened).await;
            drop(permit);
            let now = Instant::now();
            let conn = match outcome.unwrap_or_else(|_| Err("operation_timeout".into())) {
                Ok(conn) => {
                    shared.recorder.ok(now, now - began, 0);
                    Some(conn)
                }
                Err(reason) => {
                    shared.recorder.failure(now, &reason);
                    None
                }
            };
            settled.fetch_add(1, Ordering::AcqRel);
            let until = tokio::time::Instant::from_std(shared.deadline);
            let _ = tokio::time::timeout_at(until, released.wait_for(|go| *go)).await;
            drop(conn);
        }));
    }

    let total = options.concurrency as u64;
    while settled.load(Ordering::Acquire) < total && Instant::now() < shared.deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the server finish its post-handshake work before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = procfs::usage(&options.server_pid).ok();
    let hold_until = (Instant::now() + options.hold).min(shared.deadline);
    tokio::time::sleep_until(hold_until.into()).await;
    let _ = release.send(true);
    for task in tasks {
        let _ = task.await;
    }
    loaded.filter(|_| !options.server_pid.is_empty())
}

/// Readings taken around the measured part of a run: `(before, after)` pairs.
struct Measured {
    server: (Option<Usage>, Option<Usage>),
    upstream: (Option<Usage>, Option<Usage>),
    client_cpu: f64,
    machine: Option<(procfs::MachineTicks, procfs::MachineTicks)>,
}

fn build_report(
    options: &LoadOptions,
    recorder: &Recorder,
    elapsed: Duration,
    measured: Measured,
) -> Report {
    let (before, after) = measured.server;
    let client_cpu = measured.client_cpu;
    let stats = recorder.snapshot();
    let elapsed_s = elapsed.as_secs_f64().max(1e-9);
    let bucket_ms = recorder.bucket_width().as_millis() as u64;
    let per = |total: f64, count: u64| (count > 0).then(|| total * 1e6 / count as f64);

    let server_cpu = before
        .zip(after)
        .map(|(b, a)| a.cpu_seconds - b.cpu_seconds);
    let per_handshake = match options.mode {
        // Each success is one verified handshake (the failures were refused or broken).
        Mode::Full | Mode::Resumed => server_cpu.and_then(|cpu| per(cpu, stats.successes)),
        // Elsewhere handshakes are a few per run: a per-handshake figure would mislead.
        _ => None,
    };
    let rss_per_connection = match (options.mode, before, after) {
        (Mode::Idle, Some(b), Some(a)) if stats.successes > 0 => {
            Some((a.rss_kib as f64 - b.rss_kib as f64) / stats.successes as f64)
        }
        _ => None,
    };

    let serials = stats
        .serials
        .iter()
        .map(|(serial, seen)| SerialReport {
            serial: serial.clone(),
            handshakes: seen.handshakes,
            first_ms: seen.first.as_millis() as u64,
            last_ms: seen.last.as_millis() as u64,
        })
        .collect::<Vec<_>>();

    Report {
        mode: format!("{:?}", options.mode).to_lowercase(),
        target: options.target.to_string(),
        tls: match options.tls.version {
            _ if options.plaintext => "none (plaintext)",
            TlsVersion::Tls13 => "1.3",
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Any => "any",
        }
        .into(),
        group: options.tls.group.clone(),
        suite: options.tls.suite.clone(),
        concurrency: options.concurrency,
        rate: options.rate,
        elapsed_s,
        successes: stats.successes,
        failed: stats.failed(),
        failures: stats.failures.clone(),
        ops_per_s: stats.successes as f64 / elapsed_s,
        latency_us: Percentiles::of(&stats.latency),
        handshake_us: Percentiles::of(&stats.handshake),
        handshakes_full: stats.handshakes_full,
        handshakes_hello_retry: stats.handshakes_hrr,
        handshakes_resumed: stats.handshakes_resumed,
        bytes: stats.bytes,
        mib_per_s: stats.bytes as f64 / (1024.0 * 1024.0) / elapsed_s,
        distinct_serials: serials.len(),
        serials,
        usage: report::Usage {
            server_pids: options.server_pid.clone(),
            server_cpu_s: server_cpu,
            server_cpu_per_handshake_us: per_handshake,
            server_cpu_per_op_us: server_cpu.and_then(|cpu| per(cpu, stats.successes)),
            server_system_cpu_per_op_us: before
                .zip(after)
                .and_then(|(b, a)| per(a.system_seconds - b.system_seconds, stats.successes)),
            server_rss_before_kib: before.map(|usage| usage.rss_kib),
            server_rss_after_kib: after.map(|usage| usage.rss_kib),
            server_rss_per_connection_kib: rss_per_connection,
            client_cpu_s: client_cpu,
            client_cpu_per_op_us: per(client_cpu, stats.successes),
            upstream_pids: options.upstream_pid.clone(),
            upstream_cpu_per_op_us: match measured.upstream {
                (Some(b), Some(a)) => per(a.cpu_seconds - b.cpu_seconds, stats.successes),
                _ => None,
            },
            core_busy_percent: measured
                .machine
                .as_ref()
                .map(|(b, a)| a.core_busy_percent_since(b))
                .unwrap_or_default(),
            machine_steal_percent: measured
                .machine
                .as_ref()
                .map(|(b, a)| a.steal_percent_since(b)),
            clock_ticks_per_s: procfs::clock_ticks_per_second(),
        },
        rotation_impact: report::rotation_impact(
            &stats,
            bucket_ms,
            options
                .rotation
                .steady_until
                .map(|until| until.as_millis() as u64),
            options
                .rotation
                .events_every
                .map(|every| every.as_millis() as u64),
        ),
        bucket_ms,
        series: report::series(&stats, bucket_ms),
        events: stats.events.clone(),
    }
}
