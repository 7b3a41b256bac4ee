//! Prometheus metrics: the recorder, metric names, and per-listener handles.
//!
//! Hot-path counters are looked up once per listener and kept as handles, so counting a
//! connection is an atomic add, not a registry lookup.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use metrics::{Counter, Gauge, Unit, counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::classify::{ConnectionClass, Refusal};

/// Most distinct client identities labelled in `portcullis_would_reject_total`; beyond this
/// they are counted as `other`, so a flood of certificates cannot blow up the label set.
const MAX_CLIENT_ID_LABELS: usize = 1000;

/// Installs the global recorder once and returns the handle that renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("portcullis_source_request_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .map_err(|err| format!("invalid histogram buckets: {err}"))?
        .install_recorder()
        .map_err(|err| format!("cannot install the metrics recorder: {err}"))?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    describe_counter!(
        "portcullis_connections_accepted_total",
        "Connections by classification"
    );
    describe_gauge!("portcullis_connections_active", "Connections open now");
    describe_counter!(
        "portcullis_connections_refused_total",
        "Connections refused by reason"
    );
    describe_counter!(
        "portcullis_would_reject_total",
        "Permissive-mode connections that strict mode would refuse, by reason and client"
    );
    describe_counter!(
        "portcullis_handshake_failures_total",
        "Failed TLS handshakes by reason"
    );
    describe_counter!(
        "portcullis_bytes_total",
        Unit::Bytes,
        "Bytes forwarded by direction"
    );
    describe_counter!(
        "portcullis_upstream_connect_failures_total",
        "Failed connections to the upstream"
    );
    describe_gauge!(
        "portcullis_mode",
        "1 for the client authentication mode in force"
    );
    describe_counter!(
        "portcullis_config_reloads_total",
        "Configuration reloads by result"
    );
    describe_gauge!(
        "portcullis_ready",
        "1 while a valid certificate is being served"
    );
    describe_gauge!(
        "portcullis_certificate_not_after_seconds",
        Unit::Seconds,
        "Expiry of the certificate in force, as a Unix timestamp"
    );
    describe_counter!(
        "portcullis_certificate_reloads_total",
        "Attempts to obtain and publish a certificate, by result"
    );
}

/// Metric handles for one listener.
#[derive(Debug)]
pub struct ListenerMetrics {
    listener: String,
    accepted: [Counter; ConnectionClass::ALL.len()],
    refused: [Counter; Refusal::ALL.len()],
    pub active: Gauge,
    pub bytes_to_upstream: Counter,
    pub bytes_to_client: Counter,
    pub upstream_connect_failures: Counter,
    client_ids: Mutex<HashSet<String>>,
}

impl ListenerMetrics {
    pub fn new(listener: &str) -> Self {
        let name = listener.to_owned();
        Self {
            accepted: ConnectionClass::ALL.map(|class| {
                counter!("portcullis_connections_accepted_total",
                    "listener" => name.clone(), "class" => class.as_str())
            }),
            refused: Refusal::ALL.map(|reason| {
                counter!("portcullis_connections_refused_total",
                    "listener" => name.clone(), "reason" => reason.as_str())
            }),
            active: gauge!("portcullis_connections_active", "listener" => name.clone()),
            bytes_to_upstream: counter!("portcullis_bytes_total",
                "listener" => name.clone(), "direction" => "client_to_upstream"),
            bytes_to_client: counter!("portcullis_bytes_total",
                "listener" => name.clone(), "direction" => "upstream_to_client"),
            upstream_connect_failures: counter!("portcullis_upstream_connect_failures_total",
                "listener" => name.clone()),
            client_ids: Mutex::new(HashSet::new()),
            listener: name,
        }
    }

    /// Counts an accepted (forwarded) connection.
    pub fn accepted(&self, class: ConnectionClass) {
        self.accepted[class as usize].increment(1);
    }

    /// Counts a refused connection.
    pub fn refused(&self, reason: Refusal) {
        self.refused[reason as usize].increment(1);
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, reason: &'static str) {
        counter!("portcullis_handshake_failures_total",
            "listener" => self.listener.clone(), "reason" => reason)
        .increment(1);
    }

    /// Counts a permissive-mode connection that strict mode would refuse.
    pub fn would_reject(&self, reason: Refusal, client_id: Option<&str>) {
        let client_id = match client_id {
            None => "none".to_owned(),
            Some(id) => self.bounded_client_id(id),
        };
        counter!("portcullis_would_reject_total", "listener" => self.listener.clone(),
            "reason" => reason.as_str(), "client_id" => client_id)
        .increment(1);
    }

    fn bounded_client_id(&self, id: &str) -> String {
        let Ok(mut seen) = self.client_ids.lock() else {
            return "other".into();
        };
        if seen.contains(id) {
            return id.to_owned();
        }
        if seen.len() >= MAX_CLIENT_ID_LABELS {
            return "other".into();
        }
        seen.insert(id.to_owned());
        id.to_owned()
    }
}
