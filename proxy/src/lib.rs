//! The Portcullis data path and operator surface.
//!
//! The data path, in the order a connection meets it:
//! - [`listener`]: accepts, caps concurrent connections, drains on shutdown;
//! - [`sniff`]: tells TLS from plaintext by the first bytes;
//! - [`tls`]: the rustls configuration in force, rebuilt on each certificate publication;
//! - [`connection`]: handshake, classification ([`classify`]), the strict/permissive decision
//!   ([`mode`], [`authz`]);
//! - [`forward`]: TCP byte copying or HTTP forwarding to the [`upstream`], with an optional
//!   [`proxy_protocol`] header.
//!
//! The operator surface: [`cli`], [`config`], [`admin`] (HTTP API), [`metrics`], [`logging`], and
//! [`app`], which wires it all together. The certificates themselves come from the
//! `portcullis-rotator` crate; this crate only reads what it publishes.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod authz;
pub mod classify;
pub mod cli;
pub mod config;
pub mod connection;
pub mod forward;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod mode;
pub mod proxy_protocol;
pub mod sniff;
pub mod tls;
pub mod upstream;
