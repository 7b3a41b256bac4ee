//! A client session store that keeps many TLS 1.3 tickets per server.
//!
//! rustls' in-memory store keeps at most eight TLS 1.3 tickets per server name and hands each
//! out once. With more concurrent connections than that, some of a resumed run's connections
//! find the pool empty and make a full handshake instead, so the "resumed" figure mixes in
//! full handshakes, more for servers whose connections last longer. This store keeps up to a
//! configured number of tickets per server (newest used first, oldest dropped when full), so
//! every connection of a resumed run can resume whatever the concurrency.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls_pki_types::ServerName;

/// Tickets kept per server name when nothing else is asked for.
pub const DEFAULT_TICKETS_PER_SERVER: usize = 1024;

/// What is remembered about one server.
#[derive(Default)]
struct ServerSessions {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

/// A bounded, thread-safe ticket pool keyed by server name.
pub struct DeepTicketStore {
    tickets_per_server: usize,
    servers: Mutex<HashMap<ServerName<'static>, ServerSessions>>,
}

impl DeepTicketStore {
    /// A store keeping at most `tickets_per_server` TLS 1.3 tickets for each server (at least
    /// one).
    pub fn new(tickets_per_server: usize) -> Self {
        Self {
            tickets_per_server: tickets_per_server.max(1),
            servers: Mutex::new(HashMap::new()),
        }
    }

    /// How many TLS 1.3 tickets are waiting for `server_name`.
    pub fn tls13_tickets(&self, server_name: &ServerName<'static>) -> usize {
        self.with_servers(|servers| servers.get(server_name).map_or(0, |s| s.tls13.len()))
    }

    /// Runs `f` on the map; a poisoned lock (a panicking load worker) still gives the data,
    /// which is only ever replaced whole.
    fn with_servers<T>(
        &self,
        f: impl FnOnce(&mut HashMap<ServerName<'static>, ServerSessions>) -> T,
    ) -> T {
        let mut servers = self
            .servers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        f(&mut servers)
    }
}

impl fmt::Debug for DeepTicketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tickets are resumption secrets: show only how the store is sized.
        f.debug_struct("DeepTicketStore")
            .field("tickets_per_server", &self.tickets_per_server)
            .finish_non_exhaustive()
    }
}

impl ClientSessionStore for DeepTicketStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.with_servers(|servers| servers.entry(server_name).or_default().kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.with_servers(|servers| servers.get(server_name).and_then(|s| s.kx_hint))
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with_servers(|servers| servers.entry(server_name).or_default().tls12 = Some(value));
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with_servers(|servers| servers.get(server_name).and_then(|s| s.tls12.clone()))
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.with_servers(|servers| {
            if let Some(sessions) = servers.get_mut(server_name) {
                sessions.tls12 = None;
            }
        });
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let limit = self.tickets_per_server;
        self.with_servers(|servers| {
            let tickets = &mut servers.entry(server_name).or_default().tls13;
            while tickets.len() >= limit {
                tickets.pop_front();
            }
            tickets.push_back(value);
        });
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.with_servers(|servers| servers.get_mut(server_name)?.tls13.pop_back())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls12_session_and_hint_are_per_server() {
        let store = DeepTicketStore::new(4);
        let a = ServerName::try_from("a.test").unwrap();
        let b = ServerName::try_from("b.test").unwrap();

        store.set_kx_hint(a.clone(), NamedGroup::X25519);

        assert_eq!(store.kx_hint(&a), Some(NamedGroup::X25519));
        assert_eq!(store.kx_hint(&b), None);
        assert!(store.tls12_session(&a).is_none());
        assert_eq!(store.tls13_tickets(&a), 0);
        assert!(store.take_tls13_ticket(&a).is_none());
    }

    #[test]
    fn debug_shows_no_secrets() {
        let text = format!("{:?}", DeepTicketStore::new(0));

        assert!(text.contains("tickets_per_server: 1"), "{text}");
    }
}
