//! The last-known-good cache: the identity in force, kept on disk for a cold start while the
//! source is down.
//!
//! After each publication the chain, key and trust bundle are written to `DIR/.next/` (files
//! 0600, each written and fsynced), with a `manifest.json` holding their SHA-256 digests,
//! written last. Then `current` becomes `previous` and `.next` becomes `current` (directory
//! renames, atomic on POSIX), and the directory is fsynced. On start, `current` and then
//! `previous` are tried; a generation is served only if its digests match and it passes the
//! [`Validator`] (key matches, not expired, chain verifies, expected identity). A torn,
//! corrupted or mismatched generation is logged and ignored, never served.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::identity::{Identity, Issued};
use crate::inspect::sha256_hex;
use crate::validate::Validator;

/// The `[cache]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The cache directory; created with mode 0700 when missing. Required.
    pub dir: PathBuf,
}

/// Why the cache could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cache generation {path} is unusable: {reason}")]
    Invalid { path: String, reason: String },
}

const FORMAT: u32 = 1;
const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";
const NEXT: &str = ".next";
const FILES: [&str; 3] = ["chain.pem", "key.pem", "trust.pem"];

/// Written last in each generation: what the other files must hash to.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    serial: String,
    not_after: i64,
    /// SHA-256 of `chain.pem`, `key.pem`, `trust.pem`, in that order.
    sha256: Vec<String>,
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(config: &CacheConfig) -> Self {
        Self {
            dir: config.dir.clone(),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `identity` as the new current generation; the former one becomes `previous`.
    pub async fn store(&self, identity: &Identity) -> Result<(), CacheError> {
        let contents = [
            identity.chain_pem(),
            identity.key_pem(),
            identity.trust_pem(),
        ];
        let manifest = Manifest {
            format: FORMAT,
            serial: identity.leaf.serial.clone(),
            not_after: identity.leaf.not_after,
            sha256: contents
                .iter()
                .map(|text| sha256_hex(text.as_bytes()))
                .collect(),
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || store_blocking(&dir, &contents, &manifest))
            .await
            .map_err(|err| CacheError::Io {
                path: self.dir.display().to_string(),
                source: std::io::Error::other(err),
            })?
    }

    /// The newest generation that is intact and passes `validator` now, if any.
    pub async fn load(&self, validator: &Validator) -> Option<Identity> {
        for slot in [CURRENT, PREVIOUS] {
            let path = self.dir.join(slot);
            let read = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_generation(&path)).await
            };
            let issued = match read {
                Ok(Ok(issued)) => issued,
                Ok(Err(CacheError::Io { source, .. }))
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    debug!(path = %path.display(), "no cache generation here");
                    continue;
                }
                Ok(Err(err)) => {
                    warn!(error = %err, "ignoring cache generation");
                    continue;
                }
                Err(_) => continue,
            };
            match validator.check(issued, SystemTime::now()) {
                Ok(identity) => return Some(identity),
                Err(err) => warn!(path = %path.display(), reason = err.reason(), error = %err,
                    "ignoring cache generation that fails validation"),
            }
        }
        None
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn store_blocking(
    dir: &Path,
    contents: &[String; 3],
    manifest: &Manifest,
) -> Result<(), CacheError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;

    let next = dir.join(NEXT);
    if next.exists() {
        fs::remove_dir_all(&next).map_err(io_error(&next))?;
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&next)
        .map_err(io_error(&next))?;
    for (name, text) in FILES.iter().zip(contents) {
        write_synced(&next.join(name), text.as_bytes())?;
    }
    let manifest = serde_json::to_vec_pretty(manifest).map_err(|err| CacheError::Io {
        path: next.display().to_string(),
        source: std::io::Error::other(err),
    })?;
    write_synced(&next.join("manifest.json"), &manifest)?;
    sync_dir(&next)?;

    let current = dir.join(CURRENT);
    let previous = dir.join(PREVIOUS);
    if current.exists() {
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(io_error(&previous))?;
        }
        fs::rename(&current, &previous).map_err(io_error(&current))?;
    }
    fs::rename(&next, &current).map_err(io_error(&next))?;
    sync_dir(dir)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

fn sync_dir(path: &Path) -> Result<(), CacheError> {
    fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(path))
}

fn read_generation(path: &Path) -> Result<Issued, CacheError> {
    let invalid = |reason: String| CacheError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let manifest_path = path.join("manifest.json");
    let manifest = fs::read(&manifest_path).map_err(io_error(&manifest_path))?;
    let manifest: Manifest = serde_json::from_slice(&manifest)
        .map_err(|err| invalid(format!("manifest.json: {err}")))?;
    if manifest.format != FORMAT || manifest.sha256.len() != FILES.len() {
        return Err(invalid("unknown manifest format".into()));
    }

    let mut contents = Vec::with_capacity(FILES.len());
    for (name, expected) in FILES.iter().zip(&manifest.sha256) {
        let file = path.join(name);
        let bytes = fs::read(&file).map_err(io_error(&file))?;
        if &sha256_hex(&bytes) != expected {
            return Err(invalid(format!(
                "{name} does not match the manifest (torn write?)"
            )));
        }
        contents.push(bytes);
    }
    Issued::from_pem(&contents[0], &contents[1], &contents[2], "cache")
        .map_err(|err| invalid(err.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::source::dev::{DevCa, LeafSpec};

    fn identity(ca: &DevCa) -> Identity {
        let spec = LeafSpec {
            common_name: "web".into(),
            ..Default::default()
        };
        let leaf = ca.issue(&spec, Duration::from_secs(600)).expect("leaf");
        let issued = Issued {
            chain: leaf.chain,
            key: leaf.key,
            trust: vec![ca.certificate().clone()],
        };
        Validator::default()
            .check(issued, SystemTime::now())
            .expect("valid")
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn stores_two_generations_with_private_modes_and_loads_the_newest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(&CacheConfig {
            dir: tmp.path().join("cache"),
        });
        let ca = Arc::new(DevCa::new("cache CA", Duration::from_secs(3600)).expect("CA"));
        let first = identity(&ca);
        let second = identity(&ca);
        cache.store(&first).await.expect("store");
        cache.store(&second).await.expect("store");

        assert_eq!(mode(cache.dir()), 0o700);
        assert_eq!(mode(&cache.dir().join("current/key.pem")), 0o600);
        assert_eq!(mode(&cache.dir().join("previous/chain.pem")), 0o600);
        let loaded = cache.load(&Validator::default()).await.expect("loaded");
        assert_eq!(loaded.leaf.serial, second.leaf.serial);
    }

    #[tokio::test]
    async fn a_torn_current_generation_falls_back_to_the_previous_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(&CacheConfig {
            dir: tmp.path().to_path_buf(),
        });
        let ca = DevCa::new("cache CA", Duration::from_secs(3600)).expect("CA");
        let first = identity(&ca);
        cache.store(&first).await.expect("store");
        cache.store(&identity(&ca)).await.expect("store");

        // Half of the chain file is lost, as after a crash without fsync.
        let chain = tmp.path().join("current/chain.pem");
        let text = fs::read(&chain).expect("read");
        fs::write(&chain, &text[..text.len() / 2]).expect("write");
        let loaded = cache.load(&Validator::default()).await.expect("loaded");
        assert_eq!(loaded.leaf.serial, first.leaf.serial);

        // A key from another certificate, with a manifest to match: refused by validation.
        let other = identity(&ca);
        let key = other.key_pem();
        fs::write(tmp.path().join("previous/key.pem"), &key).expect("write");
        let manifest_path = tmp.path().join("previous/manifest.json");
        let mut manifest: Manifest =
            serde_json::from_slice(&fs::read(&manifest_path).expect("read")).expect("json");
        manifest.sha256[1] = sha256_hex(key.as_bytes());
        fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("write");
        assert!(cache.load(&Validator::default()).await.is_none());
    }

    #[tokio::test]
    async fn an_empty_directory_yields_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(&CacheConfig {
            dir: tmp.path().join("none"),
        });
        assert!(cache.load(&Validator::default()).await.is_none());
    }
}
