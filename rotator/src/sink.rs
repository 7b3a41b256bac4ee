//! Files written for daemons that read their certificates from disk, and the reload actions
//! that tell them to read again.
//!
//! Each file is written atomically: a temporary file in the same directory (created with the
//! final mode, so a key is never readable by others, not even briefly), written, fsynced,
//! given its owner and group, renamed over the old one, then the directory is fsynced. A file
//! whose content is already right is left alone, so a daemon is reloaded only for a change.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tracing::{debug, info, warn};

use crate::identity::Identity;

/// What goes into a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The leaf certificate alone.
    Cert,
    /// The private key alone (PKCS#8 PEM).
    Key,
    /// The leaf, then the intermediates.
    Chain,
    /// The trust bundle: every CA certificate peers may chain to.
    Ca,
    /// The chain, then the key, in one file (HAProxy and friends).
    Combined,
}

impl Layout {
    /// True when the file holds the private key.
    pub fn has_key(self) -> bool {
        matches!(self, Self::Key | Self::Combined)
    }

    /// The file's content for `identity`.
    pub fn render(self, identity: &Identity) -> String {
        let leaf = || crate::identity::pem_encode("CERTIFICATE", &identity.chain()[0]);
        match self {
            Self::Cert => leaf(),
            Self::Key => identity.key_pem(),
            Self::Chain => identity.chain_pem(),
            Self::Ca => identity.trust_pem(),
            Self::Combined => identity.chain_pem() + &identity.key_pem(),
        }
    }
}

/// One `[[sink]]` table: a file to keep up to date.
///
/// # Defaults
/// `owner` and `group` unchanged (the rotator's own), `mode` `0600` for `key` and `combined`,
/// `0644` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Where to write. Its directory must exist. Required.
    pub path: PathBuf,
    /// `cert`, `key`, `chain`, `ca` or `combined`. Required.
    pub layout: Layout,
    /// User name or numeric uid to own the file.
    #[serde(default)]
    pub owner: Option<String>,
    /// Group name or numeric gid of the file.
    #[serde(default)]
    pub group: Option<String>,
    /// Permission bits as an octal string such as `"0640"`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
}

impl SinkConfig {
    /// The permission bits to use.
    pub fn mode_bits(&self) -> Result<u32, SinkError> {
        match &self.mode {
            None if self.layout.has_key() => Ok(0o600),
            None => Ok(0o644),
            Some(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
                .ok()
                .filter(|bits| *bits <= 0o777)
                .ok_or_else(|| self.config_error(format!("mode {text:?} is not octal like 0640"))),
        }
    }

    fn config_error(&self, reason: String) -> SinkError {
        SinkError::Config {
            path: self.path.display().to_string(),
            reason,
        }
    }

    /// Checks the mode and looks the owner and group up, so that mistakes show at start.
    pub fn check(&self) -> Result<(), SinkError> {
        self.mode_bits()?;
        self.ids()?;
        Ok(())
    }

    fn ids(&self) -> Result<(Option<u32>, Option<u32>), SinkError> {
        let uid = match &self.owner {
            None => None,
            Some(name) => Some(
                lookup_id("/etc/passwd", name)
                    .ok_or_else(|| self.config_error(format!("unknown user {name:?}")))?,
            ),
        };
        let gid = match &self.group {
            None => None,
            Some(name) => Some(
                lookup_id("/etc/group", name)
                    .ok_or_else(|| self.config_error(format!("unknown group {name:?}")))?,
            ),
        };
        Ok((uid, gid))
    }

    /// Writes `identity` in this sink's layout unless the file already holds it. Returns true
    /// when the file changed.
    pub fn write(&self, identity: &Identity) -> Result<bool, SinkError> {
        let content = self.layout.render(identity);
        let mode = self.mode_bits()?;
        let (uid, gid) = self.ids()?;
        if let Ok(existing) = fs::read(&self.path) {
            let meta = fs::metadata(&self.path).map_err(self.io())?;
            if existing == content.as_bytes() && meta.permissions().mode() & 0o777 == mode {
                debug!(path = %self.path.display(), "sink file already up to date");
                return Ok(false);
            }
        }
        write_atomically(&self.path, content.as_bytes(), mode, uid, gid)?;
        info!(path = %self.path.display(), layout = ?self.layout, serial = %identity.leaf.serial,
            "sink file written");
        Ok(true)
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
        |source| SinkError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), SinkError> {
    let io = |source| SinkError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_else(|| "sink".into());
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));

    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        // The process umask may have cleared bits that were asked for.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::chown(&temp, uid, gid)?;
        }
        fs::rename(&temp, path)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io)
}

/// A numeric id, or the id of `name` in an `/etc/passwd`-style file.
fn lookup_id(database: &str, name: &str) -> Option<u32> {
    if let Ok(id) = name.parse() {
        return Some(id);
    }
    let text = fs::read_to_string(database).ok()?;
    text.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| fields.get(2)?.parse().ok())
}

/// One `[[reload]]` table: how to tell the daemon to read its files again.
///
/// Exactly one of `signal` (with `pid_file`) or `command` is given.
///
/// # Defaults
/// `name` the pid file or the command's program, `timeout` `10s`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// A name for logs and the `sink` metric label.
    #[serde(default)]
    pub name: Option<String>,
    /// A signal name such as `HUP`, sent to the PID read from `pid_file`.
    #[serde(default)]
    pub signal: Option<String>,
    /// The file holding the daemon's PID. A missing file means the daemon is not running:
    /// nothing to reload.
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// A program and its arguments, run without a shell, such as
    /// `["systemctl", "reload", "consul"]`. Success is exit status 0.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How long the action may take.
    #[serde(
        default = "default_reload_timeout",
        with = "crate::schedule::humantime"
    )]
    pub timeout: Duration,
}

fn default_reload_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Why a reload action failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reload {name}: {reason}")]
    Config { name: String, reason: String },
    #[error("reload {name}: {reason}")]
    Failed { name: String, reason: String },
    #[error("reload {name}: no answer within {timeout:?}")]
    Timeout { name: String, timeout: Duration },
}

impl ReloadConfig {
    /// The name used in logs and metrics.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match (&self.pid_file, &self.command) {
            (Some(pid_file), _) => pid_file.display().to_string(),
            (None, Some(command)) => command.first().cloned().unwrap_or_default(),
            (None, None) => "reload".into(),
        }
    }

    /// Checks that the table names exactly one action.
    pub fn check(&self) -> Result<(), ReloadError> {
        let config = |reason: &str| ReloadError::Config {
            name: self.display_name(),
            reason: reason.into(),
        };
        match (&self.signal, &self.pid_file, &self.command) {
            (Some(signal), Some(_), None) => {
                if signal_name(signal).is_none() {
                    return Err(config("signal must be a name such as HUP, USR1 or TERM"));
                }
                Ok(())
            }
            (None, None, Some(command)) if !command.is_empty() => Ok(()),
            (None, None, Some(_)) => Err(config("command is empty")),
            _ => Err(config("give either signal and pid_file, or command")),
        }
    }

    /// Runs the action once, within its timeout, and counts the result.
    pub async fn run(&self) -> Result<(), ReloadError> {
        let name = self.display_name();
        let result = match tokio::time::timeout(self.timeout, self.run_inner(&name)).await {
            Ok(result) => result,
            Err(_) => Err(ReloadError::Timeout {
                name: name.clone(),
                timeout: self.timeout,
            }),
        };
        let label = if result.is_ok() { "ok" } else { "failed" };
        metrics::counter!("portcullis_sink_reload_actions_total", "sink" => name.clone(),
            "result" => label)
        .increment(1);
        match &result {
            Ok(()) => info!(reload = %name, "reload action done"),
            Err(err) => warn!(reload = %name, error = %err, "reload action failed"),
        }
        result
    }

    async fn run_inner(&self, name: &str) -> Result<(), ReloadError> {
        self.check()?;
        let failed = |reason: String| ReloadError::Failed {
            name: name.to_owned(),
            reason,
        };
        let argv: Vec<String> = match (&self.signal, &self.pid_file, &self.command) {
            (Some(signal), Some(pid_file), _) => {
                let text = match tokio::fs::read_to_string(pid_file).await {
                    Ok(text) => text,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        info!(reload = %name, pid_file = %pid_file.display(),
                            "no pid file: the daemon is not running, nothing to reload");
                        return Ok(());
                    }
                    Err(err) => return Err(failed(format!("{}: {err}", pid_file.display()))),
                };
                let pid: u32 = text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|pid| *pid > 1)
                    .ok_or_else(|| failed(format!("{} holds no PID", pid_file.display())))?;
                let signal = signal_name(signal).unwrap_or("HUP");
                // `kill` instead of libc keeps this crate free of unsafe code.
                vec!["kill".into(), "-s".into(), signal.into(), pid.to_string()]
            }
            (_, _, Some(command)) => command.clone(),
            _ => return Err(failed("no action".into())),
        };

        let output = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|err| failed(format!("cannot run {}: {err}", argv[0])))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or_default().chars().take(200);
        Err(failed(format!(
            "{} exited with {}: {}",
            argv[0],
            output.status,
            first.collect::<String>()
        )))
    }
}

/// The canonical name of a signal given as `HUP`, `SIGHUP` or `hup`, if it is one we send.
fn signal_name(signal: &str) -> Option<&'static str> {
    let upper = signal.to_ascii_uppercase();
    let bare = upper.trim_start_matches("SIG");
    ["HUP", "USR1", "USR2", "TERM", "INT"]
        .into_iter()
        .find(|known| *known == bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_default_by_layout_and_parse_octal() {
        let sink = |layout, mode: Option<&str>| SinkConfig {
            path: "/tmp/x".into(),
            layout,
            owner: None,
            group: None,
            mode: mode.map(str::to_owned),
        };
        assert_eq!(sink(Layout::Key, None).mode_bits().ok(), Some(0o600));
        assert_eq!(sink(Layout::Combined, None).mode_bits().ok(), Some(0o600));
        assert_eq!(sink(Layout::Ca, None).mode_bits().ok(), Some(0o644));
        assert_eq!(
            sink(Layout::Cert, Some("0640")).mode_bits().ok(),
            Some(0o640)
        );
        assert!(sink(Layout::Cert, Some("rw-r")).mode_bits().is_err());
        assert!(sink(Layout::Cert, Some("7777")).mode_bits().is_err());
    }

    #[test]
    fn reload_tables_name_exactly_one_action() {
        let parse = |text: &str| toml::from_str::<ReloadConfig>(text).expect("toml");
        assert!(
            parse("signal = \"HUP\"\npid_file = \"/run/x.pid\"")
                .check()
                .is_ok()
        );
        assert!(parse("command = [\"true\"]").check().is_ok());
        assert!(parse("signal = \"HUP\"").check().is_err());
        assert!(
            parse("signal = \"BOGUS\"\npid_file = \"/p\"")
                .check()
                .is_err()
        );
        assert!(parse("command = []").check().is_err());
        assert!(
            parse("signal = \"HUP\"\npid_file = \"/p\"\ncommand = [\"x\"]")
                .check()
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_failing_or_slow_command_is_an_error() {
        let parse = |text: &str| toml::from_str::<ReloadConfig>(text).expect("toml");
        assert!(parse("command = [\"true\"]").run().await.is_ok());
        assert!(parse("command = [\"false\"]").run().await.is_err());
        let slow = parse("command = [\"sleep\", \"5\"]\ntimeout = \"200ms\"");
        assert!(matches!(slow.run().await, Err(ReloadError::Timeout { .. })));
        let absent = parse("signal = \"HUP\"\npid_file = \"/nonexistent/portcullis.pid\"");
        assert!(
            absent.run().await.is_ok(),
            "no daemon running: nothing to reload"
        );
    }
}
