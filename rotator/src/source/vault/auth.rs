//! Logging in to Vault and keeping the token alive.
//!
//! The token is renewed with `renew-self` once 2/3 of its lease has passed. When it can no
//! longer be renewed (not renewable, refused, or capped by its maximum TTL) AppRole and JWT log
//! in again; token auth reads its file again, since the operator may have put a new one there.
//! Tokens and secret IDs are read from files or the environment and never logged.

use std::path::Path;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use vaultrs::api::AuthInfo;

use super::client::{Vault, VaultError, measured};
use super::config::AuthConfig;

/// Below this remaining lease a renewal that no longer extends the token triggers a new login.
const RELOGIN_BELOW: f64 = 1.0 / 3.0;

/// What is known about the token in use.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// When the current lease started (login or last renewal).
    since: Instant,
    /// The lease granted then; `None` for tokens that never expire (such as a root token).
    duration: Option<Duration>,
    renewable: bool,
    /// The lease first granted at login, to notice renewals capped by the maximum TTL.
    initial: Option<Duration>,
}

impl Lease {
    fn from_auth(info: &AuthInfo) -> Self {
        let duration = (info.lease_duration > 0).then(|| Duration::from_secs(info.lease_duration));
        Self {
            since: Instant::now(),
            duration,
            renewable: info.renewable,
            initial: duration,
        }
    }

    fn expires_at(&self) -> Option<Instant> {
        self.duration.map(|lease| self.since + lease)
    }

    fn renew_at(&self) -> Option<Instant> {
        self.duration
            .map(|lease| self.since + lease.mul_f64(2.0 / 3.0))
    }

    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.expires_at()
            .map(|at| at.saturating_duration_since(now))
    }
}

/// Logs in and keeps the token fresh.
#[derive(Debug)]
pub struct Auth {
    config: AuthConfig,
    lease: Option<Lease>,
    /// After a failed renewal that may be transient, when to try again.
    retry_at: Option<Instant>,
}

impl Auth {
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config,
            lease: None,
            retry_at: None,
        }
    }

    /// Makes sure a usable token is set: logs in when there is none or it is about to lapse,
    /// renews it once 2/3 of its lease has passed.
    pub async fn ensure(&mut self, vault: &mut Vault) -> Result<(), VaultError> {
        let now = Instant::now();
        let Some(lease) = self.lease else {
            return self.login(vault).await;
        };
        if lease.renew_at().is_none_or(|at| now < at) {
            return Ok(());
        }
        if self.retry_at.is_some_and(|at| now < at) && lease.remaining(now) > Some(SECOND) {
            return Ok(());
        }
        self.renew(vault, lease).await
    }

    /// Forgets the token after Vault refused it, so the next [`Auth::ensure`] logs in again.
    pub fn invalidate(&mut self) {
        self.lease = None;
    }

    /// How long until the token needs attention, if it ever does.
    pub fn upkeep_in(&self) -> Option<Duration> {
        let lease = self.lease?;
        // After a failed renewal the renewal point is past: the retry time rules.
        let at = match self.retry_at {
            Some(at) => at,
            None => lease.renew_at()?,
        };
        Some(at.saturating_duration_since(Instant::now()))
    }

    /// Updates the token TTL gauge.
    pub fn record_ttl(&self) {
        let ttl = match self.lease {
            None => 0.0,
            Some(lease) => match lease.remaining(Instant::now()) {
                None => f64::INFINITY,
                Some(left) => left.as_secs_f64(),
            },
        };
        metrics::gauge!("portcullis_vault_token_ttl_seconds").set(ttl);
    }

    async fn renew(&mut self, vault: &mut Vault, lease: Lease) -> Result<(), VaultError> {
        if !lease.renewable {
            debug!(
                auth = self.config.name(),
                "token not renewable; logging in again"
            );
            return self.login(vault).await;
        }
        let renewed = measured("renew_self", async {
            vaultrs::token::renew_self(vault.api(), None)
                .await
                .map_err(|err| VaultError::from_client("renew_self", err))
        });
        match renewed.await {
            Ok(info) => {
                let mut next = Lease::from_auth(&info);
                next.initial = lease.initial;
                self.retry_at = None;
                let capped = match (next.duration, lease.initial) {
                    (Some(now), Some(initial)) => {
                        now.as_secs_f64() < initial.as_secs_f64() * RELOGIN_BELOW
                    }
                    _ => false,
                };
                info!(
                    auth = self.config.name(),
                    lease_seconds = info.lease_duration,
                    "Vault token renewed"
                );
                self.lease = Some(next);
                self.record_ttl();
                if capped && self.can_log_in_again() {
                    info!(
                        auth = self.config.name(),
                        "Vault token near its maximum TTL; logging in again"
                    );
                    return self.login(vault).await;
                }
                Ok(())
            }
            Err(err) => {
                if err.is_transient() {
                    warn!(auth = self.config.name(), error = %err,
                        "Vault token renewal failed; keeping the token and retrying");
                    self.retry_at = Some(Instant::now() + Duration::from_secs(5));
                    return Err(err);
                }
                warn!(auth = self.config.name(), error = %err,
                    "Vault token cannot be renewed; logging in again");
                self.login(vault).await
            }
        }
    }

    fn can_log_in_again(&self) -> bool {
        !matches!(self.config, AuthConfig::Token { .. })
    }

    async fn login(&mut self, vault: &mut Vault) -> Result<(), VaultError> {
        self.retry_at = None;
        let info = match &self.config {
            AuthConfig::Token { token_file } => {
                let token = match token_file {
                    Some(path) => read_secret(path).await?,
                    None => std::env::var("VAULT_TOKEN").map_err(|_| {
                        VaultError::Config(
                            "token auth: no auth.token_file and VAULT_TOKEN is not set".into(),
                        )
                    })?,
                };
                vault.set_token(token.trim());
                let looked_up = measured("lookup_self", async {
                    vaultrs::token::lookup_self(vault.api())
                        .await
                        .map_err(|err| VaultError::from_client("lookup_self", err))
                });
                let found = looked_up.await?;
                AuthInfo {
                    client_token: String::new(),
                    accessor: String::new(),
                    policies: found.policies,
                    token_policies: Vec::new(),
                    metadata: None,
                    lease_duration: found.ttl,
                    renewable: found.renewable.unwrap_or(false),
                    entity_id: found.entity_id,
                    token_type: String::new(),
                    orphan: found.orphan,
                }
            }
            AuthConfig::Approle {
                role_id_file,
                secret_id_file,
                mount,
            } => {
                let role_id = read_secret(role_id_file).await?;
                let secret_id = read_secret(secret_id_file).await?;
                let login = measured("login_approle", async {
                    vaultrs::auth::approle::login(
                        vault.api(),
                        mount,
                        role_id.trim(),
                        secret_id.trim(),
                    )
                    .await
                    .map_err(|err| VaultError::from_client("login_approle", err))
                });
                let info = login.await?;
                vault.set_token(&info.client_token);
                info
            }
            AuthConfig::Jwt {
                jwt_file,
                role,
                mount,
            } => {
                let jwt = read_secret(jwt_file).await?;
                let login = measured("login_jwt", async {
                    vaultrs::auth::oidc::login(vault.api(), mount, jwt.trim(), Some(role.clone()))
                        .await
                        .map_err(|err| VaultError::from_client("login_jwt", err))
                });
                let info = login.await?;
                vault.set_token(&info.client_token);
                info
            }
        };
        info!(auth = self.config.name(), lease_seconds = info.lease_duration,
            renewable = info.renewable, policies = ?info.policies, "logged in to Vault");
        self.lease = Some(Lease::from_auth(&info));
        self.record_ttl();
        Ok(())
    }
}

const SECOND: Duration = Duration::from_secs(1);

/// Reads a secret (token, role ID, secret ID, JWT) from a file; the error names the file only.
async fn read_secret(path: &Path) -> Result<String, VaultError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|err| VaultError::Config(format!("cannot read {}: {err}", path.display())))?;
    if text.trim().is_empty() {
        return Err(VaultError::Config(format!("{} is empty", path.display())));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(age: Duration, duration: Option<Duration>) -> Lease {
        Lease {
            since: Instant::now() - age,
            duration,
            renewable: true,
            initial: duration,
        }
    }

    #[test]
    fn upkeep_comes_at_two_thirds_of_the_lease_and_never_for_a_token_without_one() {
        let mut auth = Auth::new(AuthConfig::default());
        assert_eq!(
            auth.upkeep_in(),
            None,
            "not logged in: nothing to keep alive"
        );

        auth.lease = Some(lease(Duration::ZERO, Some(Duration::from_secs(90))));
        let wait = auth.upkeep_in().expect("a renewal point");
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );

        auth.lease = Some(lease(Duration::ZERO, None));
        assert_eq!(auth.upkeep_in(), None, "a root token never expires");
    }

    #[test]
    fn after_a_failed_renewal_the_retry_time_rules_so_upkeep_cannot_spin() {
        let mut auth = Auth::new(AuthConfig::default());
        auth.lease = Some(lease(
            Duration::from_secs(70),
            Some(Duration::from_secs(90)),
        ));
        assert_eq!(auth.upkeep_in(), Some(Duration::ZERO), "renewal overdue");

        auth.retry_at = Some(Instant::now() + Duration::from_secs(5));
        let wait = auth.upkeep_in().expect("a retry point");
        assert!(wait > Duration::from_secs(4), "{wait:?}");
    }
}
