//! The trust bundle from Vault: every issuer in the PKI mount, not just the default one.
//!
//! After a CA rotation `pki/ca_chain` names only the new default issuer, yet peers still hold
//! certificates from the old one until they renew. So the bundle is the union of every issuer
//! listed by `LIST pki/issuers`, with the chain each issuer carries, read from the
//! unauthenticated `pki/issuer/:id/json` endpoint (which `vaultrs` lacks).

// TODO: CRLs (`pki/crl/pem`, unauthenticated) are not fetched: the proxy's client
// verifier takes no revocation input yet. Fetch them here, through `Vault::raw`, once it does.

use std::collections::HashMap;

use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use super::client::{Vault, VaultError, measured};
use crate::identity::certs_from_pem;

#[derive(Deserialize)]
struct IssuerList {
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct IssuerCertificate {
    certificate: String,
    #[serde(default)]
    ca_chain: Vec<String>,
}

/// Upper bound on issuers read, so a mount full of old issuers cannot stall renewal.
const MAX_ISSUERS: usize = 64;

/// Reads every issuer of `mount` and the chain each carries; duplicates removed, order stable.
pub async fn fetch(vault: &Vault, mount: &str) -> Result<Vec<CertificateDer<'static>>, VaultError> {
    let list: IssuerList = measured("issuers_list", async {
        match vault
            .raw_data("issuers_list", "LIST", &format!("{mount}/issuers"))
            .await
        {
            // Older servers guard the list; fall back to the token-bearing call.
            Err(err) if err.is_permission_denied() && vault.has_token() => {
                vaultrs::pki::issuer::list(vault.api(), mount)
                    .await
                    .map(|list| IssuerList { keys: list.keys })
                    .map_err(|err| VaultError::from_client("issuers_list", err))
            }
            other => other,
        }
    })
    .await?;

    let mut bundle: Vec<CertificateDer<'static>> = Vec::new();
    let mut seen = HashMap::new();
    for id in list.keys.iter().take(MAX_ISSUERS) {
        if id.contains('/') {
            return Err(VaultError::Response {
                endpoint: "issuers_list",
                detail: format!("invalid issuer id {id:?}"),
            });
        }
        let issuer: IssuerCertificate = measured("issuer_pem", async {
            vault
                .raw_data("issuer_pem", "GET", &format!("{mount}/issuer/{id}/json"))
                .await
        })
        .await?;
        let pems = std::iter::once(&issuer.certificate).chain(&issuer.ca_chain);
        for pem in pems {
            let certs =
                certs_from_pem(pem.as_bytes(), "issuer").map_err(|err| VaultError::Response {
                    endpoint: "issuer_pem",
                    detail: format!("issuer {id}: {err}"),
                })?;
            for cert in certs {
                if seen.insert(cert.to_vec(), ()).is_none() {
                    bundle.push(cert);
                }
            }
        }
    }
    if bundle.is_empty() {
        return Err(VaultError::Response {
            endpoint: "issuers_list",
            detail: format!("the mount {mount:?} has no issuer"),
        });
    }
    Ok(bundle)
}
