//! Who strict mode lets through: allow-lists matched against a verified client certificate.

use serde::{Deserialize, Serialize};

use portcullis_rotator::inspect::CertSummary;

/// The `[auth.allow]` table. A client is authorized when any entry matches; when every list
/// is empty, any client whose certificate verifies is authorized.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowList {
    /// Exact SPIFFE IDs, such as `spiffe://example.org/ns/prod/sa/web`.
    pub spiffe_ids: Vec<String>,
    /// SPIFFE trust domains, such as `example.org`: any ID in the domain.
    pub spiffe_trust_domains: Vec<String>,
    /// SPIFFE ID prefixes ending in `/`, such as `spiffe://example.org/ns/prod/`.
    pub spiffe_prefixes: Vec<String>,
    /// Exact URI SANs (any scheme).
    pub uris: Vec<String>,
    /// Exact DNS SANs (case-insensitive); `*.example.org` matches one label.
    pub dns_names: Vec<String>,
    /// Exact subject common names.
    pub common_names: Vec<String>,
}

impl AllowList {
    /// True when no list has an entry.
    pub fn is_empty(&self) -> bool {
        self.spiffe_ids.is_empty()
            && self.spiffe_trust_domains.is_empty()
            && self.spiffe_prefixes.is_empty()
            && self.uris.is_empty()
            && self.dns_names.is_empty()
            && self.common_names.is_empty()
    }

    /// Checks entries that could never match.
    pub fn validate(&self) -> Result<(), String> {
        for id in self.spiffe_ids.iter().chain(&self.spiffe_prefixes) {
            if !id.starts_with("spiffe://") {
                return Err(format!("auth.allow: {id:?} is not a spiffe:// ID"));
            }
        }
        for prefix in &self.spiffe_prefixes {
            if !prefix.ends_with('/') {
                return Err(format!(
                    "auth.allow.spiffe_prefixes: {prefix:?} must end with '/'"
                ));
            }
        }
        for domain in &self.spiffe_trust_domains {
            if domain.is_empty() || domain.contains('/') || domain.contains(':') {
                return Err(format!(
                    "auth.allow.spiffe_trust_domains: {domain:?} is not a domain"
                ));
            }
        }
        Ok(())
    }

    /// Whether the holder of a verified certificate summarised by `client` is authorized.
    pub fn authorizes(&self, client: &CertSummary) -> bool {
        if self.is_empty() {
            return true;
        }
        let spiffe = client
            .uris
            .iter()
            .filter(|uri| uri.starts_with("spiffe://"));
        for id in spiffe {
            if self.spiffe_ids.iter().any(|allowed| allowed == id)
                || self
                    .spiffe_prefixes
                    .iter()
                    .any(|prefix| id.starts_with(prefix.as_str()))
                || self
                    .spiffe_trust_domains
                    .iter()
                    .any(|domain| in_trust_domain(id, domain))
            {
                return true;
            }
        }
        if client.uris.iter().any(|uri| self.uris.contains(uri)) {
            return true;
        }
        if client
            .dns_names
            .iter()
            .any(|name| self.dns_names.iter().any(|p| dns_matches(p, name)))
        {
            return true;
        }
        match &client.common_name {
            Some(cn) => self.common_names.iter().any(|allowed| allowed == cn),
            None => false,
        }
    }
}

fn in_trust_domain(id: &str, domain: &str) -> bool {
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    authority.eq_ignore_ascii_case(domain)
}

fn dns_matches(pattern: &str, name: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return match name.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
            None => false,
        };
    }
    pattern.eq_ignore_ascii_case(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str], dns: &[&str], cn: Option<&str>) -> CertSummary {
        CertSummary {
            subject: String::new(),
            common_name: cn.map(str::to_owned),
            issuer: String::new(),
            serial: "1".into(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            uris: uris.iter().map(|s| s.to_string()).collect(),
            ip_addresses: Vec::new(),
            spiffe_id: None,
            not_before: 0,
            not_after: 0,
            is_ca: false,
            key_type: String::new(),
            sha256: String::new(),
        }
    }

    #[test]
    fn empty_allows_every_verified_client() {
        assert!(AllowList::default().authorizes(&client(&[], &[], None)));
    }

    #[test]
    fn matches_spiffe_ids_domains_and_prefixes() {
        let allow = AllowList {
            spiffe_ids: vec!["spiffe://a.org/web".into()],
            spiffe_trust_domains: vec!["b.org".into()],
            spiffe_prefixes: vec!["spiffe://c.org/ns/prod/".into()],
            ..Default::default()
        };
        assert!(allow.authorizes(&client(&["spiffe://a.org/web"], &[], None)));
        assert!(!allow.authorizes(&client(&["spiffe://a.org/web2"], &[], None)));
        assert!(allow.authorizes(&client(&["spiffe://b.org/anything"], &[], None)));
        assert!(!allow.authorizes(&client(&["spiffe://b.org.evil/x"], &[], None)));
        assert!(allow.authorizes(&client(&["spiffe://c.org/ns/prod/db"], &[], None)));
        assert!(!allow.authorizes(&client(&["spiffe://c.org/ns/production"], &[], None)));
    }

    #[test]
    fn matches_dns_uri_and_cn() {
        let allow = AllowList {
            dns_names: vec!["*.svc.local".into()],
            uris: vec!["urn:example:web".into()],
            common_names: vec!["batch".into()],
            ..Default::default()
        };
        assert!(allow.authorizes(&client(&[], &["api.svc.local"], None)));
        assert!(!allow.authorizes(&client(&[], &["a.b.svc.local"], None)));
        assert!(allow.authorizes(&client(&["urn:example:web"], &[], None)));
        assert!(allow.authorizes(&client(&[], &[], Some("batch"))));
        assert!(!allow.authorizes(&client(&[], &[], Some("other"))));
    }

    #[test]
    fn refuses_entries_that_cannot_match() {
        let allow = AllowList {
            spiffe_prefixes: vec!["spiffe://a.org/ns".into()],
            ..Default::default()
        };
        assert!(allow.validate().is_err());
    }
}
