//! The load loops, one task per worker: new connection per operation (`full`, `resumed`),
//! requests or transfers over a persistent connection (`keepalive`, `bulk`), and connections
//! held idle (`idle`). Every loop asks [`Shared::take`] before each operation, which enforces
//! the count, the deadline and, in open loop, the schedule.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_rotator::inspect::CertSummary;
use rustls::HandshakeKind;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::http::{IO_CHUNK, MessageReader};
use crate::options::{After, Direction, LoadOptions, Mode};
use crate::pacer::Pacer;
use crate::stats::Recorder;
use crate::stream::Stream;
use crate::tls::{ClientTls, failure_reason};

/// A connection and its response reader.
pub(crate) type Conn = (Stream, MessageReader);

/// What every worker of a run shares.
pub(crate) struct Shared {
    pub options: LoadOptions,
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
    pub recorder: Arc<Recorder>,
    /// When the measured load starts (the schedule's origin).
    pub start: Instant,
    pub deadline: Instant,
    /// Operations left when `--count` is set.
    remaining: Option<AtomicU64>,
    /// Open loop: the next schedule slot (slot k starts at `start + k / rate`).
    slots: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("target", &self.options.target)
            .field("mode", &self.options.mode)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Shared state for a load that starts at `start` and runs for `options.duration`.
    pub fn new(
        options: LoadOptions,
        tls: ClientTls,
        recorder: Arc<Recorder>,
        start: Instant,
    ) -> Self {
        let deadline = start + options.duration;
        Self {
            remaining: options.count.map(AtomicU64::new),
            connector: TlsConnector::from(tls.config),
            server_name: tls.server_name,
            options,
            recorder,
            start,
            deadline,
            slots: AtomicU64::new(0),
        }
    }

    /// Claims the next operation: `Some(when it is due)`, or `None` when the run is over.
    fn take(&self) -> Option<Instant> {
        if let Some(remaining) = &self.remaining {
            let claimed = remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            });
            claimed.ok()?;
        }
        let due = match self.options.rate {
            Some(rate) if rate > 0.0 => {
                let slot = self.slots.fetch_add(1, Ordering::Relaxed);
                self.start + Duration::from_secs_f64(slot as f64 / rate)
            }
            _ => Instant::now(),
        };
        (due < self.deadline).then_some(due)
    }

    fn op_timeout(&self) -> Duration {
        match self.options.mode {
            // Long transfers get time in proportion to their size.
            Mode::Bulk => self.options.timeout * (1 + (self.options.size_mb / 64) as u32),
            _ => self.options.timeout,
        }
    }

    /// Opens a TCP connection and completes the TLS handshake, recording its kind and serial.
    pub async fn connect(&self, serials: &mut SerialCache) -> Result<Conn, String> {
        let (conn, handshake) = self.open(serials).await?;
        if let Some(handshake) = handshake {
            handshake.record(&self.recorder);
        }
        Ok(conn)
    }

    /// Opens a connection and returns what its handshake was, for the caller to record.
    pub async fn open(
        &self,
        serials: &mut SerialCache,
    ) -> Result<(Conn, Option<Handshake>), String> {
        let began = Instant::now();
        let timeout = self.options.timeout;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(self.options.target))
            .await
            .map_err(|_| "connect_timeout".to_string())?
            .map_err(|err| failure_reason(&err))?;
        tcp.set_nodelay(true).map_err(|err| failure_reason(&err))?;
        if self.options.plaintext {
            return Ok(((Stream::Plain(tcp), MessageReader::new()), None));
        }
        let tls = tokio::time::timeout(
            timeout,
            self.connector.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| "handshake_timeout".to_string())?
        .map_err(|err| failure_reason(&err))?;

        let (_, connection) = tls.get_ref();
        let handshake = Handshake {
            at: Instant::now(),
            kind: connection.handshake_kind(),
            took: began.elapsed(),
            serial: connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| serials.serial_of(leaf).to_string()),
        };
        let conn = (Stream::Tls(Box::new(tls)), MessageReader::new());
        Ok((conn, Some(handshake)))
    }
}

/// A completed handshake, not yet recorded.
#[derive(Debug)]
pub(crate) struct Handshake {
    at: Instant,
    kind: Option<HandshakeKind>,
    took: Duration,
    serial: Option<String>,
}

impl Handshake {
    pub fn record(&self, recorder: &Recorder) {
        recorder.handshake(self.at, self.kind, self.took, self.serial.as_deref());
    }
}

/// Remembers the last server certificate so its serial is parsed only when it changes.
#[derive(Debug, Default)]
pub struct SerialCache {
    der: Vec<u8>,
    serial: String,
}

impl SerialCache {
    /// The serial (lowercase hex) of `leaf`.
    pub fn serial_of(&mut self, leaf: &[u8]) -> &str {
        if self.der != leaf {
            self.der = leaf.to_vec();
            self.serial = CertSummary::from_der(leaf)
                .map(|summary| summary.serial)
                .unwrap_or_else(|_| "unparsable".into());
        }
        &self.serial
    }
}

/// Runs one worker in the run's mode until the run is over, starting with `conn` if it has
/// one; returns the connection it holds at the end (persistent modes).
pub(crate) async fn worker(shared: Arc<Shared>, mut conn: Option<Conn>) -> Option<Conn> {
    let mut serials = SerialCache::default();
    let pacer = shared.options.rate.and_then(|_| {
        Pacer::new()
            .inspect_err(
                |err| tracing::warn!(error = %err, "no timerfd; pacing with tokio's timer"),
            )
            .ok()
    });
    while let Some(due) = shared.take() {
        let start = if Instant::now() < due {
            // Ahead of schedule: wait, and time from the actual start, since waking is never
            // exact (tokio's timer alone is up to a millisecond late) and that is not the
            // server's doing.
            let paced = match &pacer {
                Some(pacer) => pacer.wait_until(due).await.is_ok(),
                None => false,
            };
            if !paced {
                tokio::time::sleep_until(due.into()).await;
            }
            Instant::now()
        } else {
            // Behind schedule (or closed loop): time from when the operation was due, so a
            // stalled server shows in the latency instead of being hidden by the schedule.
            due
        };
        let outcome = tokio::time::timeout(
            shared.op_timeout(),
            operation(&shared, &mut conn, &mut serials),
        )
        .await
        .unwrap_or_else(|_| Err("operation_timeout".into()));
        let now = Instant::now();
        match outcome {
            Ok(bytes) => shared
                .recorder
                .ok(now, now.saturating_duration_since(start), bytes),
            Err(reason) => {
                conn = None;
                shared.recorder.failure(now, &reason);
                // A target that refuses at once must not turn the loop into a spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    conn
}

/// One operation; `Ok(bytes moved)`. A persistent connection lives in `conn` between calls.
async fn operation(
    shared: &Shared,
    conn: &mut Option<Conn>,
    serials: &mut SerialCache,
) -> Result<u64, String> {
    let options = &shared.options;
    if options.connection_per_operation() {
        let (mut stream, mut reader) = shared.connect(serials).await?;
        return match options.after {
            After::Request => {
                let (bytes, _) = request(&mut stream, &mut reader, &options.path, true).await?;
                // Best effort: the response is in, the operation has succeeded.
                let _ = stream.shutdown().await;
                Ok(bytes)
            }
            After::Close => close_and_drain(&mut stream).await.map(|()| 0),
        };
    }

    if conn.is_none() {
        *conn = Some(shared.connect(serials).await?);
    }
    let Some((stream, reader)) = conn.as_mut() else {
        return Err("no_connection".into());
    };
    let size = options.size_mb * 1024 * 1024;
    let (bytes, close) = match (options.mode, options.direction) {
        (Mode::Bulk, Direction::Download) => {
            let path = format!("/bytes/{size}");
            request(stream, reader, &path, false).await?
        }
        (Mode::Bulk, Direction::Upload) => upload(stream, reader, size).await?,
        _ => request(stream, reader, &options.path, false).await?,
    };
    if close {
        *conn = None;
    }
    Ok(bytes)
}

/// Sends a GET and reads the whole response; `(body bytes, server asked to close)`.
pub(crate) async fn request(
    stream: &mut Stream,
    reader: &mut MessageReader,
    path: &str,
    close: bool,
) -> Result<(u64, bool), String> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let head = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{connection}\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io_reason)?;
    stream.flush().await.map_err(io_reason)?;
    read_response(stream, reader).await
}

async fn upload(
    stream: &mut Stream,
    reader: &mut MessageReader,
    size: u64,
) -> Result<(u64, bool), String> {
    static ZEROES: [u8; IO_CHUNK] = [0; IO_CHUNK];
    let head = format!("POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Length: {size}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io_reason)?;
    let mut remaining = size;
    while remaining > 0 {
        let take = remaining.min(IO_CHUNK as u64) as usize;
        stream.write_all(&ZEROES[..take]).await.map_err(io_reason)?;
        remaining -= take as u64;
    }
    stream.flush().await.map_err(io_reason)?;
    let (_, close) = read_response(stream, reader).await?;
    Ok((size, close))
}

async fn read_response(
    stream: &mut Stream,
    reader: &mut MessageReader,
) -> Result<(u64, bool), String> {
    let head = reader
        .read_head(stream)
        .await
        .map_err(io_reason)?
        .ok_or_else(|| "closed_before_response".to_string())?;
    let bytes = reader.skip_body(stream, &head).await.map_err(io_reason)?;
    match head.status() {
        Some(200) => Ok((bytes, head.close)),
        Some(status) => Err(format!("http_status_{status}")),
        None => Err("http_malformed_status".into()),
    }
}

/// Sends close_notify, then reads to the end: a refused client gets an alert here.
async fn close_and_drain(stream: &mut Stream) -> Result<(), String> {
    stream.shutdown().await.map_err(io_reason)?;
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink).await {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            // We closed first; a server that then drops the TCP connection is not refusing.
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(failure_reason(&err)),
        }
    }
}

fn io_reason(err: std::io::Error) -> String {
    failure_reason(&err)
}
