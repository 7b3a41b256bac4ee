//! What a load run does: the mode, the target, the TLS parameters, the load shape and the
//! rotation events, as command-line options (`clap`), so the binary and the tests share them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// What each unit of work is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A new connection per operation, full handshake (resumption disabled).
    Full,
    /// A new connection per operation, resuming (TLS 1.3 tickets, TLS 1.2 IDs or tickets).
    Resumed,
    /// HTTP/1.1 GET requests over persistent connections, one connection per worker.
    Keepalive,
    /// Bulk transfers (`--size-mb` each) over persistent connections; reports MB/s.
    Bulk,
    /// Opens `--concurrency` connections, makes one request on each, then holds them idle.
    Idle,
}

/// What `full` and `resumed` do once the handshake is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// One HTTP/1.1 GET and its response: a TLS 1.3 refusal surfaces on that read.
    Request,
    /// Send close_notify and read to the end: a refusal surfaces as an alert, no request made.
    Close,
}

/// The direction of a bulk transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// `GET /bytes/N`: the server sends.
    Download,
    /// `POST /upload` with an N-byte body: the client sends.
    Upload,
}

/// TLS versions to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
pub enum TlsVersion {
    #[value(name = "1.3")]
    Tls13,
    #[value(name = "1.2")]
    Tls12,
    /// Both, TLS 1.3 preferred.
    #[value(name = "any")]
    Any,
}

/// How a TLS 1.2 client asks to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tls12Resume {
    /// Session IDs only (server-side cache).
    SessionId,
    /// Session tickets when the server issues them, session IDs otherwise.
    Tickets,
}

/// The TLS side of the client.
#[derive(Debug, Clone, Args)]
pub struct TlsOptions {
    /// Client certificate chain (PEM). Without it no client certificate is presented.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// CA bundle (PEM) that the server's certificate must chain to.
    #[arg(long)]
    pub ca: PathBuf,
    /// The name the server certificate is checked against (and sent as SNI).
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Key exchange group(s) to offer, comma-separated in order of preference: X25519,
    /// secp256r1, secp384r1, X25519MLKEM768. Pinned because rustls offers the hybrid first,
    /// forcing a HelloRetryRequest from peers that lack it. In TLS 1.2, OpenSSL servers also
    /// require the curve of their ECDSA certificate among the offered groups
    /// (`X25519,secp256r1` for a P-256 certificate).
    #[arg(long, default_value = "X25519")]
    pub group: String,
    /// Cipher suite to offer, alone (IANA name, e.g. TLS13_AES_128_GCM_SHA256); all if unset.
    #[arg(long)]
    pub suite: Option<String>,
    /// TLS version(s) to offer.
    #[arg(long = "tls", value_enum, default_value = "1.3")]
    pub version: TlsVersion,
    /// How TLS 1.2 resumes in `resumed` mode.
    #[arg(long, value_enum, default_value = "tickets")]
    pub tls12_resume: Tls12Resume,
    /// ALPN protocol to offer (e.g. http/1.1); none if unset.
    #[arg(long)]
    pub alpn: Option<String>,
}

/// Events injected during the run: forced rotations and mode switches.
#[derive(Debug, Clone, Default, Args)]
pub struct RotationOptions {
    /// Force a rotation at this interval (e.g. 1s).
    #[arg(long, value_parser = parse_duration)]
    pub rotate_every: Option<Duration>,
    /// The first rotation comes this long after the start (default: one interval). The time
    /// before it is the steady state that latency during rotations is compared with.
    #[arg(long, value_parser = parse_duration)]
    pub rotate_after: Option<Duration>,
    /// Admin API address: rotations are `POST http://ADMIN/rotate`, mode switches `PUT /mode`.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// A file holding the admin bearer token, sent with mutating requests.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// Rotate by replacing files instead: the served chain path (needs `--rotate-key-to`).
    #[arg(long, requires = "rotate_key_to")]
    pub rotate_cert_to: Option<PathBuf>,
    /// The served key path that prepared keys are copied to.
    #[arg(long, requires = "rotate_cert_to")]
    pub rotate_key_to: Option<PathBuf>,
    /// Prepared `cert.pem` + `key.pem` directories, used in turn by file rotation.
    #[arg(long, value_delimiter = ',')]
    pub rotate_from: Vec<PathBuf>,
    /// File replacements as `AFTER:SRC:DEST`, e.g. `20s:bundle.pem:/etc/ca.pem` to add a CA
    /// to the trust bundle (repeatable). With `--admin`, followed by `POST /rotate`.
    #[arg(long = "replace-file", value_parser = parse_replacement)]
    pub replacements: Vec<(Duration, PathBuf, PathBuf)>,
    /// Where the steady state ends for the latency comparison, in a run that injects no
    /// events itself (another client does). Default: at the first injected event.
    #[arg(long, value_parser = parse_duration)]
    pub steady_until: Option<Duration>,
    /// With `--steady-until`: the other client's events recur this often from then on, for
    /// comparing latency near them with latency away from them.
    #[arg(long, value_parser = parse_duration, requires = "steady_until")]
    pub events_every: Option<Duration>,
    /// Mode switches as `AFTER:MODE`, e.g. `10s:strict` (repeatable).
    #[arg(long = "mode-switch", value_parser = parse_mode_switch)]
    pub mode_switches: Vec<(Duration, String)>,
}

/// One load run.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "portcullis-load",
    about = "mTLS load client for Portcullis and its peers",
    // A later `--tls 1.2` overrides an earlier `--tls 1.3` (scripts add to common options).
    args_override_self = true
)]
pub struct LoadOptions {
    /// What each operation is.
    #[arg(long, value_enum, default_value = "keepalive")]
    pub mode: Mode,
    /// Target address (loopback only).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub target: SocketAddr,
    #[command(flatten)]
    pub tls: TlsOptions,
    /// Plain TCP instead of TLS: the direct-to-upstream baseline for added latency.
    #[arg(long)]
    pub plaintext: bool,
    /// Concurrent workers (each holds at most one connection at a time).
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,
    /// Run for this long (the hard bound of every run).
    #[arg(long, short = 'd', value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Run the same load this long before measuring, and record none of it (fills ticket
    /// pools and warms both ends). Keep-alive and bulk connections are always opened before
    /// the clock starts, so their first handshake is never counted as request latency.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warm_up: Duration,
    /// Stop after this many operations in total (still bounded by `--duration`).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Open loop: start this many operations per second in total; as fast as possible if unset.
    #[arg(long)]
    pub rate: Option<f64>,
    /// What `full` and `resumed` do after the handshake.
    #[arg(long, value_enum, default_value = "request")]
    pub after: After,
    /// Request path for HTTP requests.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Bulk: megabytes (MiB) per transfer.
    #[arg(long, default_value_t = 64)]
    pub size_mb: u64,
    /// Bulk: direction of each transfer.
    #[arg(long, value_enum, default_value = "download")]
    pub direction: Direction,
    /// Idle mode: how long to hold the connections open after all are established.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub hold: Duration,
    /// Timeout for each phase (connect, handshake, request, transfer chunk).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// Width of a time-series bucket.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub bucket: Duration,
    /// Server process ids (comma-separated) whose CPU time and RSS are read from /proc.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Process ids (comma-separated) of the upstream behind the server, whose CPU time is
    /// reported on its own: on a pinned machine it shares the load client's CPU.
    #[arg(long, value_delimiter = ',')]
    pub upstream_pid: Vec<u32>,
    /// Runtime worker threads; the CPUs this process may use if unset.
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub rotation: RotationOptions,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

impl LoadOptions {
    /// Whether each operation opens a new connection.
    pub fn connection_per_operation(&self) -> bool {
        matches!(self.mode, Mode::Full | Mode::Resumed)
    }
}

/// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 10s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `AFTER:MODE`, e.g. `10s:strict`.
pub fn parse_mode_switch(text: &str) -> Result<(Duration, String), String> {
    let (after, mode) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not AFTER:MODE, e.g. 10s:strict"))?;
    match mode {
        "strict" | "permissive" => Ok((parse_duration(after)?, mode.to_string())),
        _ => Err(format!("{mode:?} is neither strict nor permissive")),
    }
}

/// Parses `AFTER:SRC:DEST`.
pub fn parse_replacement(text: &str) -> Result<(Duration, PathBuf, PathBuf), String> {
    let mut parts = text.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(after), Some(src), Some(dest)) if !src.is_empty() && !dest.is_empty() => {
            Ok((parse_duration(after)?, src.into(), dest.into()))
        }
        _ => Err(format!("{text:?} is not AFTER:SRC:DEST")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn mode_switches_parse() {
        assert_eq!(
            parse_mode_switch("10s:strict"),
            Ok((Duration::from_secs(10), "strict".into()))
        );
        assert!(parse_mode_switch("10s:lenient").is_err());
        assert!(parse_mode_switch("strict").is_err());
        let (after, src, dest) = parse_replacement("2s:a.pem:/tmp/b.pem").unwrap();
        assert_eq!(
            (after, src.to_str(), dest.to_str()),
            (Duration::from_secs(2), Some("a.pem"), Some("/tmp/b.pem"))
        );
        assert!(parse_replacement("2s:a.pem").is_err());
    }

    #[test]
    fn options_parse_from_arguments() {
        let options = LoadOptions::try_parse_from([
            "portcullis-load",
            "--mode",
            "full",
            "--ca",
            "ca.pem",
            "--server-pid",
            "1,2",
            "--upstream-pid",
            "3",
            "--tls",
            "1.3",
            "--tls",
            "1.2",
        ])
        .unwrap();
        assert_eq!(options.mode, Mode::Full);
        assert_eq!(options.server_pid, vec![1, 2]);
        assert_eq!(options.upstream_pid, vec![3]);
        assert_eq!(options.tls.version, TlsVersion::Tls12);
        assert!(options.connection_per_operation());
    }
}
