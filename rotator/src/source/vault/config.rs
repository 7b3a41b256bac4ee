//! The `[source]` table for `kind = "vault"`: where Vault is, how to log in, what to ask for.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::schedule::RenewPolicy;

/// Vault (or OpenBao) PKI as the certificate source.
///
/// # Defaults
/// `mount` `pki`, `method` `sign`, no DNS/URI/IP SANs, `ttl` unset (the role's default),
/// `timeout` `10s`, `trust_refresh` `5m`, `auth` token auth (`VAULT_TOKEN`), renewal at 2/3 of
/// the certificate's own lifetime.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Vault's address, such as `https://vault.service.consul:8200`. Required.
    pub address: String,
    /// Mount path of the PKI secrets engine. Default `pki`.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// The PKI role to sign or issue with. Required.
    pub role: String,
    /// `sign` (a CSR made here, ECDSA P-256; the key never leaves the process) or `issue`
    /// (Vault makes the key; the role must then name a `key_type` other than `any`, since the
    /// request carries none). Default `sign`.
    #[serde(default)]
    pub method: IssueMethod,
    /// The certificate's common name. Required.
    pub common_name: String,
    /// DNS subject alternative names. Default none.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// URI subject alternative names, such as the SPIFFE ID. Default none.
    #[serde(default)]
    pub uri_sans: Vec<String>,
    /// IP subject alternative names. Default none.
    #[serde(default)]
    pub ip_sans: Vec<IpAddr>,
    /// Requested lifetime. Vault caps it at the role's `max_ttl` without saying so; renewal is
    /// planned from the certificate's own `notAfter`. Default: the role's TTL.
    #[serde(default, with = "crate::schedule::humantime::option")]
    pub ttl: Option<Duration>,
    /// Vault Enterprise namespace. Default none.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Timeout of each request to Vault. Default `10s`.
    #[serde(default = "default_timeout", with = "crate::schedule::humantime")]
    pub timeout: Duration,
    /// How often the trust bundle (every issuer in the mount) is refreshed between renewals.
    /// Default `5m`.
    #[serde(default = "default_trust_refresh", with = "crate::schedule::humantime")]
    pub trust_refresh: Duration,
    /// How to log in. Default `{ method = "token" }`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// TLS settings for talking to Vault. Default: the system roots.
    #[serde(default)]
    pub tls: VaultTlsConfig,
    /// When to renew. Default: 2/3 of the lifetime with jitter.
    #[serde(default)]
    pub renew: RenewPolicy,
}

fn default_mount() -> String {
    "pki".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_trust_refresh() -> Duration {
    Duration::from_secs(300)
}

/// Which PKI endpoint makes the certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueMethod {
    /// `pki/sign/:role` with a CSR made in the process.
    #[default]
    Sign,
    /// `pki/issue/:role`: Vault generates the key and returns it.
    Issue,
}

/// How Portcullis logs in to Vault. Tokens are read from files, never from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// A token from `token_file`, or from the `VAULT_TOKEN` environment variable when no file is
    /// given. Renewed with `renew-self` before it lapses; the file is read again when the
    /// token can no longer be renewed.
    Token {
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
    /// AppRole: role ID and secret ID from files. Logs in again when the token can no longer
    /// be renewed.
    Approle {
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
        /// Mount path of the AppRole method. Default `approle`.
        #[serde(default = "default_approle_mount")]
        mount: String,
    },
    /// JWT (for example Nomad workload identity): the file is read again at each login.
    Jwt {
        jwt_file: PathBuf,
        role: String,
        /// Mount path of the JWT method. Default `jwt`.
        #[serde(default = "default_jwt_mount")]
        mount: String,
    },
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self::Token { token_file: None }
    }
}

impl AuthConfig {
    /// A stable `snake_case` name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Token { .. } => "token",
            Self::Approle { .. } => "approle",
            Self::Jwt { .. } => "jwt",
        }
    }
}

fn default_approle_mount() -> String {
    "approle".into()
}

fn default_jwt_mount() -> String {
    "jwt".into()
}

/// TLS settings for the connection to Vault.
///
/// # Defaults
/// All unset: the system's root certificates, the host name from `address`, no client
/// certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultTlsConfig {
    /// PEM bundle of CAs that sign Vault's server certificate (replaces the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name to verify Vault's certificate against, when it differs from the address's
    /// host (for example an address given as an IP).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// PEM client certificate for Vault's TLS listener, with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_table_with_defaults() {
        let config: VaultConfig = toml::from_str(
            r#"
            address = "http://127.0.0.1:8200"
            role = "web"
            common_name = "web.service"
            "#,
        )
        .expect("config");
        assert_eq!(config.mount, "pki");
        assert_eq!(config.method, IssueMethod::Sign);
        assert_eq!(config.auth, AuthConfig::Token { token_file: None });
        assert_eq!(config.ttl, None);
        assert_eq!(config.trust_refresh, Duration::from_secs(300));
    }

    #[test]
    fn parses_approle_and_refuses_unknown_keys() {
        let config: VaultConfig = toml::from_str(
            r#"
            address = "http://127.0.0.1:8200"
            role = "web"
            common_name = "web"
            ttl = "90s"
            method = "issue"
            auth = { method = "approle", role_id_file = "/r", secret_id_file = "/s" }
            "#,
        )
        .expect("config");
        assert_eq!(config.ttl, Some(Duration::from_secs(90)));
        assert_eq!(config.auth.name(), "approle");

        let err = toml::from_str::<VaultConfig>(
            "address = \"x\"\nrole = \"r\"\ncommon_name = \"c\"\ntoken = \"s.secret\"\n",
        );
        assert!(err.is_err());
    }
}
