//! TLS server configuration, rebuilt from each published identity and swapped atomically.
//!
//! [`TlsState::follow`] waits for the rotator to publish an identity, builds one rustls
//! `ServerConfig` per (mode, protocol) pair from it, and stores them behind one `arc-swap`
//! pointer. A new handshake loads the current set; established connections keep what they
//! negotiated. The ticket keys and the session cache are shared by every generation, so
//! resumption keeps working across certificate rotations; so are the verified client chains,
//! for as long as the trust bundle stays the same.

mod chain_cache;
mod verifier;

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::SingleCertAndKey;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::CertificateDer;
use tracing::{info, warn};

use portcullis_rotator::{Identity, IdentityStore};

use crate::authz::AllowList;
use crate::config::{Protocol, TlsConfig};
use crate::mode::Mode;

use chain_cache::ChainCache;
pub use verifier::{ChainCheck, ClientVerifier};

/// TLS settings checked once from the `[tls]` table.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static SupportedProtocolVersion>,
    session_tickets: bool,
    session_cache_size: usize,
}

/// Checks the `[tls]` table and turns names into rustls values.
pub fn settings_from_config(config: &TlsConfig) -> Result<TlsSettings, String> {
    use portcullis_rotator::crypto;

    let mut provider = CryptoProvider::clone(&crypto::provider());
    if !config.cipher_suites.is_empty() {
        provider.cipher_suites = config
            .cipher_suites
            .iter()
            .map(|name| {
                crypto::suite_by_name(name).ok_or_else(|| format!("unknown cipher suite {name:?}"))
            })
            .collect::<Result<_, _>>()?;
    }
    if !config.kx_groups.is_empty() {
        provider.kx_groups = config
            .kx_groups
            .iter()
            .map(|name| {
                crypto::group_by_name(name)
                    .ok_or_else(|| format!("unknown key exchange group {name:?}"))
            })
            .collect::<Result<_, _>>()?;
    }

    let versions = match config.min_version.as_str() {
        "1.2" => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        "1.3" => vec![&rustls::version::TLS13],
        other => {
            return Err(format!(
                "tls.min_version {other:?}: expected \"1.2\" or \"1.3\""
            ));
        }
    };
    let usable = provider
        .cipher_suites
        .iter()
        .any(|suite| versions.iter().any(|version| suite.version() == *version));
    if !usable {
        return Err("tls.cipher_suites: no suite usable with the allowed versions".into());
    }

    Ok(TlsSettings {
        provider: Arc::new(provider),
        versions,
        session_tickets: config.session_tickets,
        session_cache_size: config.session_cache_size,
    })
}

/// The server configurations for one published identity.
#[derive(Debug)]
pub struct TlsConfigs {
    pub identity: Arc<Identity>,
    strict_tcp: Arc<ServerConfig>,
    strict_http: Arc<ServerConfig>,
    permissive_tcp: Arc<ServerConfig>,
    permissive_http: Arc<ServerConfig>,
    /// The strict verifier, for checking resumed and permissive connections after the
    /// handshake.
    pub verifier: Arc<ClientVerifier>,
}

impl TlsConfigs {
    /// The configuration a new connection gets.
    pub fn server_config(&self, mode: Mode, protocol: Protocol) -> Arc<ServerConfig> {
        match (mode, protocol) {
            (Mode::Strict, Protocol::Tcp) => self.strict_tcp.clone(),
            (Mode::Strict, Protocol::Http) => self.strict_http.clone(),
            (Mode::Permissive, Protocol::Tcp) => self.permissive_tcp.clone(),
            (Mode::Permissive, Protocol::Http) => self.permissive_http.clone(),
        }
    }
}

/// The TLS configuration in force, swapped on each publication.
#[derive(Debug)]
pub struct TlsState {
    current: ArcSwapOption<TlsConfigs>,
    settings: TlsSettings,
    allow: Arc<ArcSwap<AllowList>>,
    /// Shared by every generation so tickets stay valid across rotations.
    ticketer: Arc<dyn ProducesTickets>,
    /// Shared by every generation so TLS 1.2 session IDs stay valid across rotations.
    sessions: Arc<dyn StoresServerSessions>,
    /// Shared by the generations of one trust bundle, so a rotation that keeps the bundle
    /// neither rebuilds the root store nor sends every returning client through chain
    /// verification again.
    chains: Mutex<Option<Arc<TrustedChains>>>,
}

/// What one trust bundle gives the verifiers: its WebPKI verifier and the chains it passed.
#[derive(Debug)]
struct TrustedChains {
    trust: Vec<CertificateDer<'static>>,
    webpki: Arc<dyn ClientCertVerifier>,
    verified: Arc<ChainCache>,
}

impl TlsState {
    pub fn new(settings: TlsSettings, allow: Arc<ArcSwap<AllowList>>) -> Result<Self, String> {
        let ticketer: Arc<dyn ProducesTickets> = if settings.session_tickets {
            rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|err| format!("cannot create the session ticketer: {err}"))?
        } else {
            Arc::new(NoTickets)
        };
        let sessions: Arc<dyn StoresServerSessions> = if settings.session_cache_size > 0 {
            ServerSessionMemoryCache::new(settings.session_cache_size)
        } else {
            Arc::new(NoServerSessionStorage {})
        };
        Ok(Self {
            current: ArcSwapOption::empty(),
            settings,
            allow,
            ticketer,
            sessions,
            chains: Mutex::new(None),
        })
    }

    /// The configurations in force, if an identity was published.
    pub fn load(&self) -> Option<Arc<TlsConfigs>> {
        self.current.load_full()
    }

    /// Builds and installs the configurations for `identity`.
    pub fn install(&self, identity: Arc<Identity>) -> Result<(), rustls::Error> {
        let configs = self.build(identity)?;
        self.current.store(Some(Arc::new(configs)));
        Ok(())
    }

    /// Follows `store`: installs every identity it publishes, until the store is dropped.
    pub async fn follow(self: Arc<Self>, store: Arc<IdentityStore>) {
        let mut changes = store.subscribe();
        loop {
            if let Some(identity) = store.load() {
                let serial = identity.leaf.serial.clone();
                match self.install(identity) {
                    Ok(()) => info!(serial = %serial, "serving new certificate"),
                    Err(err) => warn!(serial = %serial, error = %err,
                        "cannot build a TLS configuration; the previous one keeps serving"),
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    fn build(&self, identity: Arc<Identity>) -> Result<TlsConfigs, rustls::Error> {
        let chains = self.trusted_chains(&identity.trust)?;
        let verifier = |strict| {
            Arc::new(ClientVerifier::new(
                chains.webpki.clone(),
                self.allow.clone(),
                self.settings.provider.clone(),
                strict,
                chains.verified.clone(),
            ))
        };
        let strict = verifier(true);
        let permissive = verifier(false);

        let config = |verifier: Arc<ClientVerifier>, protocol| {
            self.server_config(&identity, verifier, protocol)
        };
        let configs = TlsConfigs {
            strict_tcp: config(strict.clone(), Protocol::Tcp)?,
            strict_http: config(strict.clone(), Protocol::Http)?,
            permissive_tcp: config(permissive.clone(), Protocol::Tcp)?,
            permissive_http: config(permissive, Protocol::Http)?,
            verifier: strict,
            identity,
        };

        *self.chains.lock().unwrap_or_else(PoisonError::into_inner) = Some(chains);
        Ok(configs)
    }

    /// The chain verifier and verdicts of the generation before when it trusted the same CAs,
    /// else new ones over `trust`. A verdict depends only on the chain, the trust bundle and
    /// the time (each entry expires with its chain); the allow-list is applied on every
    /// connection, outside the cache. [`Self::build`] keeps the result only once the whole
    /// generation has built, so a bundle that fails leaves the verdicts in force alone.
    fn trusted_chains(
        &self,
        trust: &[CertificateDer<'static>],
    ) -> Result<Arc<TrustedChains>, rustls::Error> {
        let kept = self
            .chains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(kept) = kept.filter(|kept| kept.trust == trust) {
            return Ok(kept);
        }

        let mut roots = RootCertStore::empty();
        for cert in trust {
            roots.add(cert.clone())?;
        }
        let webpki = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            self.settings.provider.clone(),
        )
        .build()
        .map_err(|err| rustls::Error::General(err.to_string()))?;
        Ok(Arc::new(TrustedChains {
            trust: trust.to_vec(),
            webpki,
            verified: Arc::new(ChainCache::default()),
        }))
    }

    fn server_config(
        &self,
        identity: &Identity,
        verifier: Arc<ClientVerifier>,
        protocol: Protocol,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let resolver = SingleCertAndKey::from(identity.certified_key.clone());
        let mut config = ServerConfig::builder_with_provider(self.settings.provider.clone())
            .with_protocol_versions(&self.settings.versions)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(resolver));

        // Our order (AES-128-GCM first) rather than the client's: rustls clients put
        // AES-256-GCM-SHA384 first, which costs a fifth more per handshake here.
        config.ignore_client_order = true;
        config.ticketer = self.ticketer.clone();
        config.session_storage = self.sessions.clone();
        if !self.settings.session_tickets {
            config.send_tls13_tickets = 0;
        }
        if protocol == Protocol::Http {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Ok(Arc::new(config))
    }
}

/// A ticketer that issues nothing, for `session_tickets = false`.
#[derive(Debug)]
struct NoTickets;

impl ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use portcullis_rotator::source::dev::{DevCa, LeafSpec};
    use portcullis_rotator::{Issued, Validator};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn leaf(ca: &DevCa, name: &str) -> portcullis_rotator::source::dev::DevLeaf {
        let spec = LeafSpec {
            common_name: name.into(),
            ..Default::default()
        };
        ca.issue(&spec, HOUR).expect("leaf")
    }

    /// A server identity issued by `ca`, trusting `trust`.
    fn identity(ca: &DevCa, trust: &[&DevCa]) -> Arc<Identity> {
        let leaf = leaf(ca, "server");
        let issued = Issued {
            chain: leaf.chain,
            key: leaf.key,
            trust: trust.iter().map(|ca| ca.certificate().clone()).collect(),
        };
        let identity = Validator::default().check(issued, SystemTime::now());
        Arc::new(identity.expect("valid identity"))
    }

    fn cache_of(state: &TlsState) -> Arc<ChainCache> {
        state
            .load()
            .expect("installed")
            .verifier
            .chain_cache()
            .clone()
    }

    fn webpki_of(state: &TlsState) -> Arc<dyn ClientCertVerifier> {
        state.load().expect("installed").verifier.webpki().clone()
    }

    fn check(state: &TlsState, chain: &[CertificateDer<'static>]) -> ChainCheck {
        let configs = state.load().expect("installed");
        configs.verifier.check_chain(chain)
    }

    #[test]
    fn verified_chains_are_kept_while_the_trust_bundle_stays() {
        let ca = DevCa::new("first CA", HOUR).expect("CA");
        let other = DevCa::new("second CA", HOUR).expect("CA");
        let settings = settings_from_config(&TlsConfig::default()).expect("settings");
        let allow = Arc::new(ArcSwap::from_pointee(AllowList::default()));
        let state = TlsState::new(settings, allow).expect("state");
        let client = leaf(&ca, "client").chain;
        let (client_leaf, intermediates) = client.split_first().expect("leaf");
        let far_future = i64::MAX - 1;

        state.install(identity(&ca, &[&ca])).expect("install");
        let verdict = check(&state, &client);
        assert!(matches!(verdict, ChainCheck::Authorized(_)), "{verdict:?}");
        let first_cache = cache_of(&state);
        let first_webpki = webpki_of(&state);

        // Our certificate rotates, the bundle stays: the verdict is still there, and the root
        // store is not built again.
        state.install(identity(&ca, &[&ca])).expect("install");
        let kept = cache_of(&state);
        assert!(Arc::ptr_eq(&first_cache, &kept));
        assert!(Arc::ptr_eq(&first_webpki, &webpki_of(&state)));
        let remembered = kept.get(client_leaf, intermediates, 0);
        assert!(
            remembered.is_some(),
            "the chain verified before the rotation"
        );
        assert!(
            kept.get(client_leaf, intermediates, far_future).is_none(),
            "expired entries stay out"
        );

        // The bundle gains a CA: verdicts start over, and the client still verifies.
        state
            .install(identity(&ca, &[&ca, &other]))
            .expect("install");
        let widened = cache_of(&state);
        assert!(!Arc::ptr_eq(&kept, &widened));
        assert!(!Arc::ptr_eq(&first_webpki, &webpki_of(&state)));
        assert!(widened.get(client_leaf, intermediates, 0).is_none());
        let verdict = check(&state, &client);
        assert!(matches!(verdict, ChainCheck::Authorized(_)), "{verdict:?}");

        // A bundle without the client's CA refuses it, whatever an earlier bundle said.
        state.install(identity(&other, &[&other])).expect("install");
        assert!(!Arc::ptr_eq(&widened, &cache_of(&state)));
        let verdict = check(&state, &client);
        assert!(matches!(verdict, ChainCheck::Invalid(_)), "{verdict:?}");
    }
}
