//! The store's handle ([`ModelStore`]): opening it, its directory layout under
//! `<cache root>/models`, and the locks of references and blobs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::hf::{HfToken, resolve_endpoint};
use super::hub::resolve_hub_cache;
use super::options::ModelStoreOptions;
use crate::cache::CacheLayout;
use crate::download::Downloader;
use crate::error::{IoContext, Result};
use crate::lock::{LockGuard, lock_exclusive};
use crate::progress::{SharedProgress, no_progress};

/// A content-addressed, verified cache of GGUF models. Cheap to clone.
#[derive(Clone)]
pub struct ModelStore {
    pub(super) inner: Arc<Inner>,
}

/// What every clone of a [`ModelStore`] shares.
pub(super) struct Inner {
    pub(super) root: PathBuf,
    pub(super) hub: PathBuf,
    pub(super) endpoint: String,
    pub(super) token: Option<HfToken>,
    pub(super) offline: bool,
    pub(super) lock_timeout: Duration,
    pub(super) downloader: Downloader,
    pub(super) progress: SharedProgress,
}

impl std::fmt::Debug for ModelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelStore")
            .field("root", &self.inner.root)
            .field("hub", &self.inner.hub)
            .field("endpoint", &self.inner.endpoint)
            .field("token", &self.inner.token)
            .field("offline", &self.inner.offline)
            .finish()
    }
}

impl ModelStore {
    /// Opens (and creates) the store; progress goes nowhere.
    pub fn new(opts: ModelStoreOptions) -> Result<Self> {
        Self::with_progress(opts, no_progress())
    }

    /// Opens (and creates) the store, reporting progress to `progress`.
    pub fn with_progress(opts: ModelStoreOptions, progress: SharedProgress) -> Result<Self> {
        let layout = CacheLayout::resolve(opts.cache_root.as_deref())?;
        let root = layout.models();
        for dir in ["blobs", "refs", "by-name", "downloads", "locks"] {
            let d = root.join(dir);
            std::fs::create_dir_all(&d).ctx("create directory", &d)?;
        }
        let mut download = opts.download;
        download.lock_timeout = opts.lock_timeout;
        let hub = resolve_hub_cache(opts.hub_cache.as_deref()).unwrap_or_else(|| root.join("hub"));
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                hub,
                endpoint: resolve_endpoint(opts.hf_endpoint.as_deref()),
                token: opts.hf_token,
                offline: opts.offline,
                lock_timeout: opts.lock_timeout,
                downloader: Downloader::new(download)?,
                progress,
            }),
        })
    }

    /// The store's directory (`<cache root>/models`).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The Hugging Face hub cache in use (models from the hub live there).
    pub fn hub_cache(&self) -> &Path {
        &self.inner.hub
    }

    /// The Hugging Face endpoint in use.
    pub fn hf_endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Path of the blob for a digest (whether or not it exists).
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.inner
            .root
            .join("blobs")
            .join(sha256.to_ascii_lowercase())
    }

    pub(super) fn ref_path(&self, key: &str) -> PathBuf {
        self.inner.root.join("refs").join(format!("{key}.json"))
    }

    /// The lock a pull of `key` holds from its cache check until its ref is written.
    pub(super) fn ref_lock_path(&self, key: &str) -> PathBuf {
        self.inner.root.join("locks").join(format!("{key}.lock"))
    }

    /// The lock under which blob `sha256` is published, removed or re-hashed.
    fn blob_lock_path(&self, sha256: &str) -> PathBuf {
        self.inner
            .root
            .join("locks")
            .join(format!("blob-{}.lock", sha256.to_ascii_lowercase()))
    }

    /// Takes blob `sha256`'s lock.
    pub(super) async fn lock_blob(&self, sha256: &str) -> Result<LockGuard> {
        lock_exclusive(
            &self.blob_lock_path(sha256),
            self.inner.lock_timeout,
            &self.inner.progress,
        )
        .await
    }
}

/// Deletes a file; a missing one is fine.
pub(super) fn delete_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::Error::io("remove", path, e)),
    }
}
