//! Remembers client chains that verified, so a returning client skips path validation.
//!
//! Services call each other with the same certificate for hours, over many connections.
//! Verifying its chain (parsing, path building, one signature per link) costs more than the
//! rest of a resumed handshake, so a chain that verified is remembered with its summary until
//! the first of its certificates expires. The proof of possession (the handshake signature)
//! is still checked on every connection; only the chain's verdict is reused.
//!
//! A cache belongs to one trust bundle: the generations of the TLS configuration that keep
//! the bundle (a rotation of our own certificate) share it, and a new bundle starts with an
//! empty one. Entries are found by the leaf's bytes and must match the whole
//! presented chain exactly. Only successes are kept: a peer cannot fill the cache with chains
//! that do not verify.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls_pki_types::CertificateDer;

use portcullis_rotator::inspect::CertSummary;

/// Most chains remembered; when full, the cache starts over.
const CAPACITY: usize = 1024;

/// A chain that verified, and until when that verdict holds.
#[derive(Debug)]
struct Verified {
    intermediates: Vec<Vec<u8>>,
    summary: Arc<CertSummary>,
    /// The earliest `notAfter` of the chain, in Unix seconds.
    valid_until: i64,
}

/// Verified chains of one trust bundle.
#[derive(Debug, Default)]
pub struct ChainCache {
    entries: Mutex<HashMap<Vec<u8>, Verified>>,
}

impl ChainCache {
    /// The summary of `leaf` if this exact chain verified before and is still valid at `now`.
    pub fn get(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: i64,
    ) -> Option<Arc<CertSummary>> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(leaf.as_ref())?;
        let same_chain = entry.intermediates.len() == intermediates.len()
            && entry
                .intermediates
                .iter()
                .zip(intermediates)
                .all(|(a, b)| a[..] == b[..]);
        (same_chain && now < entry.valid_until).then(|| entry.summary.clone())
    }

    /// Remembers a chain that just verified.
    pub fn insert(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        summary: Arc<CertSummary>,
    ) {
        let valid_until = intermediates
            .iter()
            .filter_map(|cert| CertSummary::from_der(cert).ok())
            .map(|cert| cert.not_after)
            .fold(summary.not_after, i64::min);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        let intermediates = intermediates.iter().map(|cert| cert.to_vec()).collect();
        entries.insert(
            leaf.to_vec(),
            Verified {
                intermediates,
                summary,
                valid_until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(not_after: i64) -> Arc<CertSummary> {
        Arc::new(CertSummary {
            subject: "CN=client".into(),
            common_name: Some("client".into()),
            issuer: String::new(),
            serial: "1".into(),
            dns_names: Vec::new(),
            uris: Vec::new(),
            ip_addresses: Vec::new(),
            spiffe_id: None,
            not_before: 0,
            not_after,
            is_ca: false,
            key_type: String::new(),
            sha256: String::new(),
        })
    }

    #[test]
    fn hits_only_the_exact_chain_and_only_before_expiry() {
        let cache = ChainCache::default();
        let leaf = CertificateDer::from(vec![1, 2, 3]);
        let other_leaf = CertificateDer::from(vec![1, 2, 4]);
        let intermediate = CertificateDer::from(vec![9, 9]);
        cache.insert(&leaf, std::slice::from_ref(&intermediate), summary(100));

        assert!(
            cache
                .get(&leaf, std::slice::from_ref(&intermediate), 50)
                .is_some()
        );
        assert!(
            cache.get(&leaf, &[], 50).is_none(),
            "different intermediates"
        );
        assert!(
            cache
                .get(&other_leaf, std::slice::from_ref(&intermediate), 50)
                .is_none()
        );
        assert!(
            cache
                .get(&leaf, std::slice::from_ref(&intermediate), 100)
                .is_none(),
            "expired"
        );
    }
}
