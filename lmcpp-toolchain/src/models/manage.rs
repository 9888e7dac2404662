//! What the store holds: listing it, resolving what a user typed to a digest, inspecting a
//! model, and removing references and the blobs no other reference uses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::Error;
use super::hub::HubRepo;
use super::options::PullOptions;
use super::pull::local_model;
use super::refs::StoredRef;
use super::source::ModelSource;
use super::store::{ModelStore, delete_file};
use crate::digest::Sha256;
use crate::error::{IoContext, Result};
use crate::gguf::{GgufSummary, read_gguf_async};
use crate::lock::{LockGuard, lock_exclusive};

/// One entry of [`ModelStore::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CachedModel {
    /// The stored reference.
    #[serde(flatten)]
    pub reference: StoredRef,
    /// The blob.
    pub blob: PathBuf,
    /// Whether the blob is present with the recorded size.
    pub present: bool,
}

/// What [`ModelStore::remove_digest`] removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RemovedModel {
    /// The blob's digest.
    pub sha256: String,
    /// The references that pointed at it (now forgotten).
    pub sources: Vec<String>,
    /// Bytes freed (0 when the blob was already gone).
    pub freed: u64,
}

impl ModelStore {
    /// Every reference in the store, sorted by source.
    pub fn list(&self) -> Result<Vec<CachedModel>> {
        Ok(self
            .all_refs()?
            .into_iter()
            .map(|reference| {
                let blob = self.ref_blob(&reference, &reference.sha256);
                let present = reference.files().iter().all(|(_, sha, size)| {
                    std::fs::metadata(self.ref_blob(&reference, sha))
                        .is_ok_and(|m| m.len() == *size)
                });
                CachedModel {
                    reference,
                    blob,
                    present,
                }
            })
            .collect())
    }

    /// Forgets `source`; deletes its files (blobs, and snapshot links in the hub cache) that
    /// no other reference uses. Returns whether anything was removed.
    pub async fn remove(&self, source: &ModelSource) -> Result<bool> {
        let key = source.cache_key();
        let _guard = lock_exclusive(
            &self.ref_lock_path(&key),
            self.inner.lock_timeout,
            &self.inner.progress,
        )
        .await?;
        let ref_path = self.ref_path(&key);
        let Some(r) = self.read_ref(&ref_path)? else {
            return Ok(false);
        };
        let _blobs = self.lock_blobs(std::slice::from_ref(&r)).await?;
        self.forget(&r)?;
        self.delete_unused(std::slice::from_ref(&r))?;
        Ok(true)
    }

    /// Takes the locks of every blob of `refs`, in digest order (so two callers never
    /// wait on each other crosswise).
    async fn lock_blobs(&self, refs: &[StoredRef]) -> Result<Vec<LockGuard>> {
        let shas: BTreeSet<String> = refs
            .iter()
            .flat_map(|r| r.files().into_iter().map(|(_, s, _)| s.to_owned()))
            .collect();
        let mut guards = Vec::new();
        for sha in shas {
            guards.push(self.lock_blob(&sha).await?);
        }
        Ok(guards)
    }

    /// Deletes the blobs of `gone` that no remaining ref uses (callers hold their locks
    /// and have forgotten `gone`); returns the bytes freed.
    fn delete_unused(&self, gone: &[StoredRef]) -> Result<u64> {
        let remaining = self.all_refs()?;
        let mut freed = 0;
        let mut seen = BTreeSet::new();
        for r in gone {
            for (_, sha, _) in r.files() {
                let blob = self.ref_blob(r, sha);
                if remaining.iter().any(|o| o.uses(sha)) || !seen.insert(blob.clone()) {
                    continue;
                }
                freed += std::fs::metadata(&blob).map_or(0, |m| m.len());
                delete_file(&blob)?;
            }
        }
        Ok(freed)
    }

    /// Resolves what a user typed to the digest of one stored model: a full SHA-256 or a
    /// unique prefix of at least 12 hex digits (as `lmcpp model list` shows them), or a
    /// reference as it was pulled.
    ///
    /// Reads only the refs and the blob names: nothing is hashed, nothing changes.
    pub fn resolve(&self, query: &str) -> Result<String> {
        let q = query.trim();
        let refs = self.all_refs()?;
        let lower = q.to_ascii_lowercase();
        if (12..=64).contains(&lower.len()) && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: BTreeSet<String> = refs
                .iter()
                .map(|r| r.sha256.clone())
                .filter(|s| s.starts_with(&lower))
                .collect();
            found.extend(
                self.blob_digests()?
                    .into_iter()
                    .filter(|s| s.starts_with(&lower)),
            );
            let mut found: Vec<String> = found.into_iter().collect();
            match found.len() {
                0 => {}
                1 => return Ok(found.remove(0)),
                _ => {
                    return Err(Error::Ambiguous {
                        prefix: lower,
                        matches: found,
                    }
                    .into());
                }
            }
        }
        let key = ModelSource::parse(q).ok().map(|s| s.cache_key());
        refs.iter()
            .find(|r| r.source == q || key.as_deref() == Some(r.key.as_str()))
            .map(|r| r.sha256.clone())
            .ok_or_else(|| {
                Error::Unknown {
                    query: q.to_owned(),
                    root: self.inner.root.clone(),
                }
                .into()
            })
    }

    /// Removes the blob `sha256` and every reference to it. Waits for a pull that is
    /// publishing the same blob; fails with [`Error::Unknown`] when the store has
    /// neither the blob nor a reference to it.
    pub async fn remove_digest(&self, sha256: &str) -> Result<RemovedModel> {
        let sha256 = String::from(Sha256::parse(sha256)?);
        // The models using it lose their other files (split parts, projectors) too: lock
        // all of their blobs, in digest order.
        let mut shas: BTreeSet<String> = self
            .all_refs()?
            .iter()
            .filter(|r| r.uses(&sha256))
            .flat_map(|r| r.files().into_iter().map(|(_, s, _)| s.to_owned()))
            .collect();
        shas.insert(sha256.clone());
        let mut _guards = Vec::new();
        for sha in &shas {
            _guards.push(self.lock_blob(sha).await?);
        }
        let refs: Vec<StoredRef> = self
            .all_refs()?
            .into_iter()
            .filter(|r| r.uses(&sha256))
            .collect();
        let blob = self.blob_path(&sha256);
        let size = std::fs::metadata(&blob).ok().filter(|m| m.is_file());
        if refs.is_empty() && size.is_none() {
            return Err(Error::Unknown {
                query: sha256,
                root: self.inner.root.clone(),
            }
            .into());
        }
        for r in &refs {
            self.forget(r)?;
        }
        let mut freed = self.delete_unused(&refs)?;
        if self.blob_path(&sha256).is_file() {
            freed += size.map_or(0, |m| m.len());
            self.delete_blob(&sha256)?;
        }
        Ok(RemovedModel {
            sources: refs.into_iter().map(|r| r.source).collect(),
            freed,
            sha256,
        })
    }

    /// Deletes a ref, its by-name links and its snapshot links in the hub cache.
    fn forget(&self, r: &StoredRef) -> Result<()> {
        if let (Some(dir), Some(commit)) = (&r.hub_dir, &r.commit) {
            let repo = HubRepo::at(dir.clone());
            for (path, _, _) in r.files() {
                repo.unlink(commit, path)?;
            }
        }
        let ref_path = self.ref_path(&r.key);
        match std::fs::remove_file(&ref_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::Error::io("remove", &ref_path, e)),
        }
        let link_dir = self.inner.root.join("by-name").join(&r.key);
        if link_dir.exists() {
            std::fs::remove_dir_all(&link_dir).ctx("remove", &link_dir)?;
        }
        Ok(())
    }

    /// Deletes a blob of lmcpp's area (callers hold its lock); a missing one is fine.
    fn delete_blob(&self, sha256: &str) -> Result<()> {
        delete_file(&self.blob_path(sha256))
    }

    /// The digests of the blobs on disk (whether or not a ref names them).
    fn blob_digests(&self) -> Result<Vec<String>> {
        let dir = self.inner.root.join("blobs");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).ctx("read directory", &dir)? {
            let name = entry.ctx("read directory", &dir)?.file_name();
            // Only names a blob is published under (exactly the lower-case digest).
            if let Some(name) = name.to_str()
                && Sha256::parse(name).is_ok_and(|d| d == name)
            {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    /// The GGUF summary of a cached reference or a local file.
    pub async fn inspect_source(&self, source: &ModelSource) -> Result<GgufSummary> {
        let model = match source {
            ModelSource::Local(p) => local_model(source, p, &PullOptions::default())?,
            _ => self.pull(source, &PullOptions::cache_only()).await?,
        };
        inspect(&model.path).await
    }
}

/// The GGUF summary of any file (reads only the header, metadata and tensor infos).
pub async fn inspect(path: &Path) -> Result<GgufSummary> {
    Ok(read_gguf_async(path).await?.summary())
}
