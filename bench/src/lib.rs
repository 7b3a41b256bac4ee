//! Portcullis benchmarks: an mTLS load client, a bare rustls terminator (the limit), a small
//! upstream, and the pieces the criterion benchmarks and the end-to-end tests share.
//!
//! - [`options`]: what a load run does (`clap` options, shared by the binary and the tests).
//! - [`tls`]: the client's TLS configuration (pinned group and suite, versions, resumption).
//! - [`tickets`]: a session store deep enough for every connection of a resumed run.
//! - [`workers`] (private) and [`run`]: the load loops and a whole run, ending in a [`Report`].
//! - [`stats`] and [`report`]: HDR histograms, failures by reason, serials seen, time series.
//! - [`rotation`]: rotations and mode switches injected during a run.
//! - [`procfs`]: server CPU time and RSS from `/proc`.
//! - [`http`] and [`serve`]: minimal HTTP/1.1 for both sides of a benchmark.
//! - [`server`]: the bare terminator's rustls server configuration.
//! - [`certs`]: the ECDSA P-256 certificates every peer is run with.
#![forbid(unsafe_code)]

pub mod bodies;
pub mod certs;
pub mod http;
pub mod options;
pub mod pacer;
pub mod procfs;
pub mod report;
pub mod rotation;
pub mod run;
pub mod serve;
pub mod server;
pub mod stats;
pub mod stream;
pub mod tickets;
pub mod tls;
mod workers;

pub use options::{LoadOptions, Mode};
pub use report::Report;
pub use run::{RunError, run};
