//! Shared helpers for the end-to-end tests: the real binary, certificates made at test time,
//! clients, upstreams, and an OpenBao dev server.
pub mod bao;
pub mod client;
pub mod pki;
pub mod proxy;
pub mod upstream;
