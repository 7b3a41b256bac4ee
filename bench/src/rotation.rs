//! Events injected during a run: forced rotations (`POST /rotate` on the admin API, or
//! prepared certificate files copied into place) and mode switches (`PUT /mode`). Each event is
//! marked in the recorder's time series with its outcome.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::http::MessageReader;
use crate::options::RotationOptions;
use crate::stats::Recorder;

/// How long one admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the options ask for any event at all.
pub fn has_events(options: &RotationOptions) -> bool {
    options.rotate_every.is_some()
        || !options.mode_switches.is_empty()
        || !options.replacements.is_empty()
}

/// A one-off event at a fixed time after the start.
#[derive(Debug, Clone)]
enum OneOff {
    Mode(String),
    Replace(PathBuf, PathBuf),
}

/// Runs the events until `deadline`, recording each one.
pub async fn drive(options: RotationOptions, recorder: Arc<Recorder>, deadline: Instant) {
    let token = options
        .admin_token_file
        .as_deref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|token| token.trim().to_string());
    let start = recorder.start();
    let mut one_offs: Vec<(Duration, OneOff)> = options
        .mode_switches
        .iter()
        .map(|(after, mode)| (*after, OneOff::Mode(mode.clone())))
        .chain(
            options
                .replacements
                .iter()
                .map(|(after, src, dest)| (*after, OneOff::Replace(src.clone(), dest.clone()))),
        )
        .collect();
    one_offs.sort_by_key(|(after, _)| *after);
    let mut one_offs = one_offs.into_iter().peekable();
    let mut next_rotation = options
        .rotate_every
        .map(|every| start + options.rotate_after.unwrap_or(every));
    let mut turn = 0usize;

    loop {
        let next_one_off = one_offs.peek().map(|(after, _)| start + *after);
        let Some(next) = [next_rotation, next_one_off].into_iter().flatten().min() else {
            return;
        };
        if next >= deadline {
            return;
        }
        tokio::time::sleep_until(next.into()).await;

        if next_one_off == Some(next) {
            match one_offs.next().map(|(_, event)| event) {
                Some(OneOff::Mode(mode)) => {
                    let outcome = admin(&options, token.as_deref(), "PUT", "/mode", &mode).await;
                    record(&recorder, &format!("mode_{mode}"), outcome);
                }
                Some(OneOff::Replace(src, dest)) => {
                    let outcome = replace_and_rotate(&options, token.as_deref(), &src, &dest).await;
                    record(&recorder, "replace_file", outcome);
                }
                None => {}
            }
            continue;
        }
        let outcome = rotate(&options, token.as_deref(), turn).await;
        record(&recorder, "rotate", outcome);
        turn += 1;
        next_rotation = options.rotate_every.map(|every| next + every);
    }
}

async fn replace_and_rotate(
    options: &RotationOptions,
    token: Option<&str>,
    src: &Path,
    dest: &Path,
) -> Result<String, String> {
    copy_atomically(src, dest).map_err(|err| format!("{}: {err}", dest.display()))?;
    let replaced = format!("{} -> {}", src.display(), dest.display());
    if options.admin.is_none() {
        return Ok(replaced);
    }
    let rotated = admin(options, token, "POST", "/rotate", "").await?;
    Ok(format!("{replaced}; {rotated}"))
}

fn record(recorder: &Recorder, kind: &str, outcome: Result<String, String>) {
    let now = Instant::now();
    match outcome {
        Ok(detail) => recorder.event(now, kind, true, detail),
        Err(detail) => {
            tracing::warn!(event = kind, error = %detail, "injected event failed");
            recorder.event(now, kind, false, detail);
        }
    }
}

async fn rotate(
    options: &RotationOptions,
    token: Option<&str>,
    turn: usize,
) -> Result<String, String> {
    if let (Some(cert_to), Some(key_to)) = (&options.rotate_cert_to, &options.rotate_key_to) {
        if options.rotate_from.is_empty() {
            return Err("file rotation needs --rotate-from directories".into());
        }
        let from = &options.rotate_from[turn % options.rotate_from.len()];
        replace_files(from, cert_to, key_to).map_err(|err| err.to_string())?;
        let replaced = format!("files from {}", from.display());
        if options.admin.is_none() {
            return Ok(replaced);
        }
        // The rotator picks the files up at once instead of at its next poll.
        let rotated = admin(options, token, "POST", "/rotate", "").await?;
        return Ok(format!("{replaced}; {rotated}"));
    }
    admin(options, token, "POST", "/rotate", "").await
}

/// Copies `from/cert.pem` and `from/key.pem` over the served files, each with a rename so a
/// reader never sees a half-written file. The key goes first: a watcher that reads between
/// the two renames sees a mismatched pair, which validation refuses, then the matching pair.
pub fn replace_files(from: &Path, cert_to: &Path, key_to: &Path) -> io::Result<()> {
    copy_atomically(&from.join("key.pem"), key_to)?;
    copy_atomically(&from.join("cert.pem"), cert_to)
}

fn copy_atomically(from: &Path, to: &Path) -> io::Result<()> {
    let mut temporary = PathBuf::from(to);
    temporary.set_extension("bench-tmp");
    std::fs::copy(from, &temporary)?;
    std::fs::rename(&temporary, to)
}

/// Sends one admin request; `Ok` carries the status line when it is 2xx.
pub async fn admin(
    options: &RotationOptions,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<String, String> {
    let admin = options
        .admin
        .ok_or_else(|| "no --admin address for the admin API".to_string())?;
    tokio::time::timeout(
        ADMIN_TIMEOUT,
        admin_request(admin, token, method, path, body),
    )
    .await
    .map_err(|_| format!("{method} {path}: timed out"))?
}

async fn admin_request(
    admin: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<String, String> {
    let fail = |err: io::Error| format!("{method} {path}: {err}");
    let mut stream = TcpStream::connect(admin).await.map_err(fail)?;
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}Content-Type: text/plain\r\n\
Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.map_err(fail)?;
    let mut reader = MessageReader::new();
    let head = reader
        .read_head(&mut stream)
        .await
        .map_err(fail)?
        .ok_or_else(|| format!("{method} {path}: no response"))?;
    let status = head.status().unwrap_or(0);
    if (200..300).contains(&status) {
        Ok(format!("{method} {path}: {status}"))
    } else {
        Err(format!("{method} {path}: status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_replaced() {
        let dir = std::env::temp_dir().join(format!("bench-rotation-{}", std::process::id()));
        let from = dir.join("next");
        std::fs::create_dir_all(&from).unwrap();
        std::fs::write(from.join("cert.pem"), "new cert").unwrap();
        std::fs::write(from.join("key.pem"), "new key").unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, "old").unwrap();
        replace_files(&from, &cert, &key).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), "new cert");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "new key");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
