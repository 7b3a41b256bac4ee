//! The configuration file: one TOML document, every key documented with its default.
//!
//! Unknown keys are an error, so a typo never silently falls back to a default. A loaded
//! [`Config`] has passed [`Config::validate`]; a file that fails to load is refused whole and
//! the running configuration stays.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_rotator::ExpectedIdentity;
use portcullis_rotator::schedule::humantime;
use portcullis_rotator::source::SourceConfig;
use serde::Deserialize;

use crate::authz::AllowList;
use crate::mode::Mode;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The admin API. Default: `127.0.0.1:9901`, no token.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logging. Default: human-readable, `info`.
    #[serde(default)]
    pub log: LogConfig,
    /// Client authentication: the mode and who is allowed.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Where the certificate comes from (`kind = "files" | "dev" | "vault"`). Required.
    pub source: SourceConfig,
    /// The identity every published certificate must carry. Default: not checked.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// The last-known-good cache (`dir`): written after each renewal, served at start while
    /// the source is down. Default: none.
    #[serde(default)]
    pub cache: Option<portcullis_rotator::CacheConfig>,
    /// TLS protocol settings shared by all listeners.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Shutdown behaviour.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// One or more listeners. Required.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
}

/// The `[admin]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP API. Default `127.0.0.1:9901`.
    pub listen: SocketAddr,
    /// File holding a bearer token required by `PUT /mode`, `POST /reload` and
    /// `POST /rotate`. Default: none (the API should then stay on loopback).
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9901)),
            token_file: None,
        }
    }
}

/// The `[log]` table.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `portcullis=debug`. Default `info`; `RUST_LOG`
    /// overrides it.
    pub level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `[auth]` table.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `permissive` (default) or `strict`.
    pub mode: Mode,
    /// Who strict mode lets through. Default: nobody but holders of a certificate that
    /// verifies and matches an entry; an empty list allows every verified certificate.
    pub allow: AllowList,
}

/// The `[identity]` table: what our own certificate must say.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Exact SPIFFE ID our certificate must carry. Default: not checked.
    pub spiffe_id: Option<String>,
    /// DNS name our certificate must carry. Default: not checked.
    pub dns_name: Option<String>,
    /// Allowance for a `notBefore` in the future. Default `60s`.
    #[serde(with = "humantime")]
    pub skew: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            spiffe_id: None,
            dns_name: None,
            skew: portcullis_rotator::validate::DEFAULT_SKEW,
        }
    }
}

impl IdentityConfig {
    /// The validator settings this table describes.
    pub fn validator(&self) -> portcullis_rotator::Validator {
        portcullis_rotator::Validator {
            skew: self.skew,
            expected: ExpectedIdentity {
                spiffe_id: self.spiffe_id.clone(),
                dns_name: self.dns_name.clone(),
            },
        }
    }
}

/// The `[tls]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Lowest protocol version accepted: `"1.2"` (default) or `"1.3"`.
    pub min_version: String,
    /// Cipher suites by IANA name, most preferred first. Default: every TLS 1.3 suite and the
    /// ECDHE + AEAD TLS 1.2 suites.
    pub cipher_suites: Vec<String>,
    /// Key exchange groups, most preferred first. Default:
    /// `["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"]`.
    pub kx_groups: Vec<String>,
    /// Issue TLS 1.3 tickets and TLS 1.2 stateless tickets (keys rotate automatically every
    /// six hours). Default `true`.
    pub session_tickets: bool,
    /// Entries in the stateful session cache used for TLS 1.2 session IDs. Default `4096`;
    /// `0` disables it.
    pub session_cache_size: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            min_version: "1.2".into(),
            cipher_suites: Vec::new(),
            kx_groups: Vec::new(),
            session_tickets: true,
            session_cache_size: 4096,
        }
    }
}

/// The `[shutdown]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long in-flight connections may take to finish after SIGTERM. Default `30s`.
    #[serde(with = "humantime")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// What a listener speaks to its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Bytes are copied both ways after the handshake.
    #[default]
    Tcp,
    /// HTTP/1.1 or HTTP/2 (by ALPN) is terminated and requests are forwarded with the
    /// client's identity in `X-Forwarded-Client-Cert`.
    Http,
}

/// One `[[listener]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A name for logs and metric labels. Default: the listen address.
    #[serde(default)]
    pub name: Option<String>,
    /// Address to accept connections on. Required.
    pub listen: SocketAddr,
    /// Where to forward: `host:port` or `unix:/path/to/socket`. Required.
    pub upstream: String,
    /// `tcp` (default) or `http`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Send a PROXY protocol v2 header to the upstream (tcp only). Default `false`.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Most concurrent connections; more are refused and counted. Default `10000`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time allowed from accept to a completed TLS handshake. Default `10s`.
    #[serde(default = "default_handshake_timeout", with = "humantime")]
    pub handshake_timeout: Duration,
    /// Time allowed to connect to the upstream. Default `5s`.
    #[serde(default = "default_connect_timeout", with = "humantime")]
    pub connect_timeout: Duration,
    /// A connection with no bytes either way for this long is closed. Default `300s`.
    #[serde(default = "default_idle_timeout", with = "humantime")]
    pub idle_timeout: Duration,
}

fn default_max_connections() -> usize {
    10_000
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

impl ListenerConfig {
    /// The listener's name, or its address when unnamed.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.listen.to_string())
    }
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: origin.into(),
            message: err.to_string(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: origin.into(),
            message,
        })?;
        Ok(config)
    }

    /// Checks what the types cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.listeners.is_empty() {
            return Err("at least one [[listener]] is required".into());
        }
        let mut names = std::collections::HashSet::new();
        let mut addresses = std::collections::HashSet::new();
        for listener in &self.listeners {
            let name = listener.display_name();
            if !names.insert(name.clone()) {
                return Err(format!("listener name {name:?} is used twice"));
            }
            // Port 0 asks the kernel for a free port: several such listeners do not clash.
            if listener.listen.port() != 0 && !addresses.insert(listener.listen) {
                return Err(format!("listen address {} is used twice", listener.listen));
            }
            crate::upstream::Upstream::parse(&listener.upstream)
                .map_err(|err| format!("listener {name:?}: {err}"))?;
            if listener.proxy_protocol && listener.protocol == Protocol::Http {
                return Err(format!(
                    "listener {name:?}: proxy_protocol needs protocol = \"tcp\""
                ));
            }
            if listener.max_connections == 0 {
                return Err(format!(
                    "listener {name:?}: max_connections must be at least 1"
                ));
            }
        }
        if addresses.contains(&self.admin.listen) {
            return Err(format!(
                "admin address {} is also a listener",
                self.admin.listen
            ));
        }
        crate::tls::settings_from_config(&self.tls)?;
        self.auth.allow.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [source]
        kind = "dev"

        [[listener]]
        listen = "127.0.0.1:8443"
        upstream = "127.0.0.1:8080"
    "#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let config = Config::parse(MINIMAL, "test").expect("valid");
        assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9901");
        assert_eq!(config.auth.mode, Mode::Permissive);
        let listener = &config.listeners[0];
        assert_eq!(listener.protocol, Protocol::Tcp);
        assert_eq!(listener.handshake_timeout, Duration::from_secs(10));
        assert_eq!(listener.max_connections, 10_000);
        assert_eq!(config.shutdown.drain_timeout, Duration::from_secs(30));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("{MINIMAL}\nhandshake_timout = \"5s\"\n");
        let err = Config::parse(&text, "test").unwrap_err().to_string();
        assert!(err.contains("handshake_timout"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let text = MINIMAL.replace("127.0.0.1:8080", "nowhere");
        let err = Config::parse(&text, "test").unwrap_err().to_string();
        assert!(err.contains("upstream"), "{err}");

        let text = format!("{MINIMAL}\n[tls]\nkx_groups = [\"X448\"]\n");
        let err = Config::parse(&text, "test").unwrap_err().to_string();
        assert!(err.contains("X448"), "{err}");
    }
}
