//! One HTTP stack for everything said to Vault: the `vaultrs` client and the raw calls for the
//! endpoints it lacks share the same `reqwest` client, so TLS settings apply to both.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use serde::de::DeserializeOwned;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::config::VaultConfig;
use crate::source::SourceError;

/// What went wrong talking to Vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Vault answered with an error status; `errors` is Vault's own `errors[]` list.
    #[error("{endpoint}: Vault answered {status}: {}", errors.join("; "))]
    Api {
        endpoint: &'static str,
        status: u16,
        errors: Vec<String>,
    },
    /// Vault could not be reached or the exchange broke off.
    #[error("{endpoint}: Vault is unreachable: {detail}")]
    Transport {
        endpoint: &'static str,
        detail: String,
    },
    /// Vault answered something that is not what the API promises.
    #[error("{endpoint}: unexpected answer from Vault: {detail}")]
    Response {
        endpoint: &'static str,
        detail: String,
    },
    /// The configuration cannot work (bad address, unreadable file, bad PEM).
    #[error("Vault source configuration: {0}")]
    Config(String),
}

impl VaultError {
    /// True when trying again later may help (Vault down, sealed, overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status >= 500 || *status == 429,
            Self::Transport { .. } => true,
            Self::Response { .. } | Self::Config(_) => false,
        }
    }

    /// True when Vault refused the token (expired, revoked, not allowed).
    pub fn is_permission_denied(&self) -> bool {
        matches!(
            self,
            Self::Api {
                status: 401 | 403,
                ..
            }
        )
    }

    /// Maps a `vaultrs` error, keeping Vault's `errors[]` (its `Display` hides them).
    pub fn from_client(endpoint: &'static str, err: ClientError) -> Self {
        use rustify::errors::ClientError as Rest;
        match err {
            ClientError::APIError { code, errors } => Self::Api {
                endpoint,
                status: code,
                errors,
            },
            ClientError::RestClientError { source } => match source {
                Rest::ServerResponseError { code, content } => Self::Api {
                    endpoint,
                    status: code,
                    errors: content.into_iter().collect(),
                },
                Rest::RequestError { .. } | Rest::ResponseError { .. } => Self::Transport {
                    endpoint,
                    detail: error_chain(&source),
                },
                other => Self::Response {
                    endpoint,
                    detail: error_chain(&other),
                },
            },
            other => Self::Response {
                endpoint,
                detail: error_chain(&other),
            },
        }
    }
}

impl From<VaultError> for SourceError {
    fn from(err: VaultError) -> Self {
        match &err {
            VaultError::Config(_) | VaultError::Response { .. } => Self::Issue(err.to_string()),
            _ if err.is_transient() => Self::Unavailable(err.to_string()),
            _ => Self::Refused(err.to_string()),
        }
    }
}

/// The error and its causes, on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// The Vault client. `Debug` never shows the token.
pub struct Vault {
    client: VaultClient,
    base: String,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("address", &self.base)
            .field("token", &"...")
            .finish()
    }
}

impl Vault {
    /// Builds the HTTP client from `config` (no token yet).
    pub async fn connect(config: &VaultConfig) -> Result<Self, VaultError> {
        let mut url = url::Url::parse(&config.address)
            .map_err(|err| VaultError::Config(format!("address {:?}: {err}", config.address)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(VaultError::Config(format!(
                "address {:?}: the scheme must be http or https",
                config.address
            )));
        }

        let mut http = reqwest::ClientBuilder::new()
            .tls_backend_rustls()
            .timeout(config.timeout)
            .connect_timeout(config.timeout);
        let tls = &config.tls;
        if url.scheme() == "http" && tls.ca_file.is_none() {
            // No TLS to verify: skip loading the platform's roots, which can fail in minimal
            // containers (vaultrs does the same).
            http = http.tls_certs_only(Vec::new());
        }
        if let Some(ca_file) = &tls.ca_file {
            let pem = read_file(ca_file).await?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
                VaultError::Config(format!("ca_file {}: {err}", ca_file.display()))
            })?;
            http = http.tls_certs_only(certs);
        }
        match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file(cert).await?;
                pem.push(b'\n');
                pem.extend(read_file(key).await?);
                // The error text could quote key bytes: name the files only.
                let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                    VaultError::Config(format!(
                        "client_cert {} / client_key {}: not a usable PEM certificate and key",
                        cert.display(),
                        key.display()
                    ))
                })?;
                http = http.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(VaultError::Config(
                    "tls.client_cert and tls.client_key go together".into(),
                ));
            }
        }
        if let Some(name) = &tls.tls_server_name {
            // Connect to the configured host but verify (and send SNI for) `name`.
            let addr = resolve(&url).await?;
            http = http.resolve(name, addr);
            url.set_host(Some(name))
                .map_err(|err| VaultError::Config(format!("tls_server_name {name:?}: {err}")))?;
        }
        let http = http
            .build()
            .map_err(|err| VaultError::Config(format!("HTTP client: {}", error_chain(&err))))?;

        let base = url.as_str().trim_end_matches('/').to_owned();
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&base)
            .token(String::new())
            .ca_certs(Vec::new())
            .identity(None)
            .verify(true)
            .timeout(Some(config.timeout));
        if let Some(namespace) = &config.namespace {
            settings.set_namespace(namespace.clone());
        }
        let settings = settings
            .build()
            .map_err(|err| VaultError::Config(err.to_string()))?;
        let middle = EndpointMiddleware {
            token: String::new(),
            version: "v1".into(),
            wrap: None,
            namespace: config.namespace.clone(),
        };
        let client = VaultClient {
            http: rustify::clients::reqwest::Client::new(&base, http),
            middle,
            settings,
        };
        Ok(Self { client, base })
    }

    /// The `vaultrs` client, for its endpoint functions.
    pub fn api(&self) -> &VaultClient {
        &self.client
    }

    /// Replaces the token sent with every request.
    pub fn set_token(&mut self, token: &str) {
        use vaultrs::client::Client;
        self.client.set_token(token);
    }

    /// True when a token is set.
    pub fn has_token(&self) -> bool {
        !self.client.middle.token.is_empty()
    }

    /// `GET` or `LIST` on `path` (below `/v1/`) without a token, for Vault's unauthenticated
    /// endpoints (issuer certificates, CRLs). Returns the body.
    pub async fn raw(
        &self,
        endpoint: &'static str,
        method: &str,
        path: &str,
    ) -> Result<Vec<u8>, VaultError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|err| VaultError::Config(err.to_string()))?;
        let url = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        let mut request = self.client.http.http.request(method, url);
        if let Some(namespace) = &self.client.middle.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        let response = request.send().await.map_err(|err| VaultError::Transport {
            endpoint,
            detail: error_chain(&err),
        })?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|err| VaultError::Transport {
                endpoint,
                detail: error_chain(&err),
            })?;
        if status >= 400 {
            return Err(VaultError::Api {
                endpoint,
                status,
                errors: api_errors(&body),
            });
        }
        Ok(body.to_vec())
    }

    /// [`Vault::raw`] for a JSON answer; returns its `data` field.
    pub async fn raw_data<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: &str,
        path: &str,
    ) -> Result<T, VaultError> {
        #[derive(serde::Deserialize)]
        struct Envelope<T> {
            data: T,
        }
        let body = self.raw(endpoint, method, path).await?;
        serde_json::from_slice::<Envelope<T>>(&body)
            .map(|envelope| envelope.data)
            .map_err(|err| VaultError::Response {
                endpoint,
                detail: err.to_string(),
            })
    }
}

/// Times a Vault call and counts it by endpoint and result.
pub async fn measured<T>(
    endpoint: &'static str,
    call: impl Future<Output = Result<T, VaultError>>,
) -> Result<T, VaultError> {
    let started = Instant::now();
    let result = call.await;
    let label = match &result {
        Ok(_) => "ok",
        Err(err) if err.is_transient() => "unavailable",
        Err(_) => "error",
    };
    metrics::counter!("portcullis_vault_requests_total", "endpoint" => endpoint, "result" => label)
        .increment(1);
    tracing::debug!(
        endpoint,
        result = label,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "vault request"
    );
    result
}

/// Vault's `errors[]` from an error body, or the body's first line when it has none.
fn api_errors(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(parsed) => parsed.errors,
        Err(_) => String::from_utf8_lossy(body)
            .lines()
            .next()
            .map(|line| vec![line.chars().take(200).collect()])
            .unwrap_or_default(),
    }
}

async fn resolve(url: &url::Url) -> Result<SocketAddr, VaultError> {
    let host = url
        .host_str()
        .ok_or_else(|| VaultError::Config("the address has no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(8200);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|err| VaultError::Config(format!("cannot resolve {host}: {err}")))?
        .next()
        .ok_or_else(|| VaultError::Config(format!("{host} resolves to no address")))
}

async fn read_file(path: &std::path::Path) -> Result<Vec<u8>, VaultError> {
    tokio::fs::read(path)
        .await
        .map_err(|err| VaultError::Config(format!("cannot read {}: {err}", path.display())))
}
