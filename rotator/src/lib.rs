//! Where Portcullis certificates come from, when they are renewed, and how they are checked.
//!
//! The rotator *publishes* identities; the proxy only *reads* them. The pieces:
//!
//! - [`identity`]: an [`Identity`] is a certificate chain, its private key and the trust bundle
//!   that is in force with it, published together so they never disagree.
//! - [`inspect`]: what an operator wants to know about a certificate (subject, SANs, SPIFFE ID,
//!   serial, validity), read with `x509-parser`.
//! - [`validate`]: the checks every candidate passes before it is published.
//! - [`store`]: the [`IdentityStore`], an `arc-swap` pointer plus a change notification; a
//!   rotation is one pointer swap.
//! - [`source`]: the [`CertificateSource`] trait and its implementations (files, the embedded
//!   development CA, Vault PKI).
//! - [`schedule`]: when to renew (fraction of lifetime, jitter, clamps, backoff).
//! - [`cache`]: the last-known-good cache on disk, served at a cold start while the source is
//!   down.
//! - [`standalone`] and [`sink`]: `portcullis rotate`, the rotator alone, writing files for
//!   daemons that cannot take certificates in memory, then telling them to reload;
//!   [`exposition`] answers its `GET /metrics`.
//! - [`rotator`]: the loop that obtains, validates, publishes and reschedules, and the
//!   [`RotatorHandle`] that the admin API uses to force a renewal.
#![forbid(unsafe_code)]

pub mod cache;
pub mod crypto;
pub mod exposition;
pub mod identity;
pub mod inspect;
pub mod rotator;
pub mod schedule;
pub mod sink;
pub mod source;
pub mod standalone;
pub mod store;
pub mod validate;

pub use cache::CacheConfig;
pub use identity::{Identity, IdentityError, Issued};
pub use rotator::{Rotator, RotatorHandle};
pub use source::{CertificateSource, Refresh, SourceError};
pub use store::IdentityStore;
pub use validate::{ExpectedIdentity, ValidationError, Validator};
