//! The Portcullis data path and operator surface.
//!
//! - [`sniff`]: tells TLS from plaintext by a connection's first bytes.
#![forbid(unsafe_code)]

pub mod sniff;
