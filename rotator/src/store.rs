//! The published identity: one `arc-swap` pointer plus a change notification.
//!
//! Readers (every new handshake) call [`IdentityStore::load`], which never blocks and never
//! fails. Writers (the rotator) call [`IdentityStore::publish`] only with a validated
//! [`Identity`]. Subscribers (the proxy's TLS configuration builder) wait on
//! [`IdentityStore::subscribe`] for the generation number to change.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use crate::identity::Identity;

/// Holds the identity in force.
#[derive(Debug)]
pub struct IdentityStore {
    /// Swapped whole on each publication; readers get a consistent chain + key + trust.
    current: ArcSwapOption<Identity>,
    /// The generation number, bumped on each publication, for subscribers to wait on.
    generation: watch::Sender<u64>,
}

impl Default for IdentityStore {
    fn default() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            generation: watch::Sender::new(0),
        }
    }
}

impl IdentityStore {
    /// An empty store, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The identity in force, if one was published.
    pub fn load(&self) -> Option<Arc<Identity>> {
        self.current.load_full()
    }

    /// Publishes a validated identity; returns its generation number.
    pub fn publish(&self, identity: Identity) -> u64 {
        self.current.store(Some(Arc::new(identity)));
        let mut generation = 0;
        self.generation.send_modify(|current| {
            *current += 1;
            generation = *current;
        });
        generation
    }

    /// The number of publications so far.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// A receiver that wakes on every publication.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
