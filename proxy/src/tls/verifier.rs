//! The client certificate verifier used in both modes.
//!
//! In strict mode it requires a certificate, verifies its chain against the trust bundle in
//! force and checks the allow-list during the handshake, so a refused client gets a TLS alert
//! rather than a silent close. In permissive mode it asks for a certificate but accepts any
//! (still checking the handshake signatures, which prove possession of the key); the proxy then
//! classifies the connection after the handshake with [`ClientVerifier::check_chain`].
//!
//! Both modes share a [`ChainCache`], so a client whose chain verified once is not verified
//! again on its next connection.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use portcullis_rotator::inspect::CertSummary;

use super::chain_cache::ChainCache;
use crate::authz::AllowList;

/// Verifies client certificates against one trust bundle and the live allow-list.
#[derive(Debug)]
pub struct ClientVerifier {
    /// rustls's WebPKI verifier built over the trust bundle published with our identity.
    chain: Arc<dyn ClientCertVerifier>,
    /// The allow-list, swapped whole on a configuration reload.
    allow: Arc<ArcSwap<AllowList>>,
    provider: Arc<CryptoProvider>,
    /// Strict: certificate required, chain and allow-list enforced in the handshake.
    strict: bool,
    /// Chains that verified against this trust bundle.
    verified: Arc<ChainCache>,
}

impl ClientVerifier {
    pub fn new(
        chain: Arc<dyn ClientCertVerifier>,
        allow: Arc<ArcSwap<AllowList>>,
        provider: Arc<CryptoProvider>,
        strict: bool,
        verified: Arc<ChainCache>,
    ) -> Self {
        Self {
            chain,
            allow,
            provider,
            strict,
            verified,
        }
    }

    /// The cache this verifier reads and fills.
    #[cfg(test)]
    pub(super) fn chain_cache(&self) -> &Arc<ChainCache> {
        &self.verified
    }

    /// The WebPKI verifier it defers to for chains it has not seen.
    #[cfg(test)]
    pub(super) fn webpki(&self) -> &Arc<dyn ClientCertVerifier> {
        &self.chain
    }

    /// The summary of the leaf when the chain verifies now (from the cache when it can).
    fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Arc<CertSummary>, rustls::Error> {
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if let Some(summary) = self.verified.get(leaf, intermediates, seconds) {
            return Ok(summary);
        }
        self.chain.verify_client_cert(leaf, intermediates, now)?;
        let summary = CertSummary::from_der(leaf)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let summary = Arc::new(summary);
        self.verified.insert(leaf, intermediates, summary.clone());
        Ok(summary)
    }

    /// Verifies a presented chain (leaf first) as strict mode would, now.
    pub fn check_chain(&self, certs: &[CertificateDer<'_>]) -> ChainCheck {
        let Some((leaf, intermediates)) = certs.split_first() else {
            return ChainCheck::NoCertificate;
        };
        match self.verify(leaf, intermediates, UnixTime::now()) {
            Err(_) => ChainCheck::Invalid(CertSummary::from_der(leaf).ok()),
            Ok(summary) if self.allow.load().authorizes(&summary) => {
                ChainCheck::Authorized(CertSummary::clone(&summary))
            }
            Ok(summary) => ChainCheck::Unauthorized(CertSummary::clone(&summary)),
        }
    }
}

/// The result of [`ClientVerifier::check_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainCheck {
    NoCertificate,
    /// The chain does not verify (wrong CA, expired, malformed).
    Invalid(Option<CertSummary>),
    /// The chain verifies but no allow-list entry matches.
    Unauthorized(CertSummary),
    Authorized(CertSummary),
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.strict
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !self.strict {
            return Ok(ClientCertVerified::assertion());
        }
        let summary = self.verify(end_entity, intermediates, now)?;
        if !self.allow.load().authorizes(&summary) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
