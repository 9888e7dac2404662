//! References: what each pulled reference resolved to ([`StoredRef`], `refs/<key>.json`),
//! written atomically with its by-name link, read back, and forgotten.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::hub::HubRepo;
use super::store::ModelStore;
use crate::cache::atomic_write;
use crate::digest::Sha256;
use crate::download::safe_file_name;
use crate::error::{IoContext, Result};

/// What a pulled reference resolved to, as stored in `refs/<key>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredRef {
    /// The reference as given (normalised).
    pub source: String,
    /// Its cache key (the ref file's stem).
    pub key: String,
    /// The URL downloaded (after resolving Hugging Face names, before redirects).
    pub url: String,
    /// The original file name.
    pub file_name: String,
    /// SHA-256 of the content (the blob's name).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag of the final response, when there was one.
    pub etag: Option<String>,
    /// The Hugging Face commit the revision pointed at (`X-Repo-Commit`), when known.
    pub commit: Option<String>,
    /// When it was pulled (seconds since the Unix epoch).
    pub pulled_at: u64,
    /// The repository's folder in the Hugging Face hub cache, when the files live there
    /// (`None`: in lmcpp's own `blobs/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_dir: Option<PathBuf>,
    /// The file's path inside its Hugging Face repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_file: Option<String>,
    /// The other parts of a split model, in order (the first is described above).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<RefFile>,
    /// The multimodal projector pulled with the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmproj: Option<RefFile>,
}

/// A further file of a stored model (a split part or a projector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefFile {
    /// Its path inside the repository.
    pub path: String,
    /// Its SHA-256 (the blob's name).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl StoredRef {
    /// Every file's (repository path, SHA-256, size): the model's parts, then the projector.
    pub(super) fn files(&self) -> Vec<(&str, &str, u64)> {
        let first = (
            self.repo_file.as_deref().unwrap_or(&self.file_name),
            self.sha256.as_str(),
            self.size,
        );
        std::iter::once(first)
            .chain(
                self.parts
                    .iter()
                    .chain(self.mmproj.iter())
                    .map(|f| (f.path.as_str(), f.sha256.as_str(), f.size)),
            )
            .collect()
    }

    /// Whether one of its files is blob `sha256`.
    pub(super) fn uses(&self, sha256: &str) -> bool {
        self.files().iter().any(|(_, s, _)| *s == sha256)
    }
}

/// Seconds since the Unix epoch (0 when the clock is before it).
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ModelStore {
    /// Where a ref's blob `sha256` lives (the hub cache or lmcpp's `blobs/`).
    pub(super) fn ref_blob(&self, r: &StoredRef, sha256: &str) -> PathBuf {
        match &r.hub_dir {
            Some(dir) => HubRepo::at(dir.clone()).blob(sha256),
            None => self.blob_path(sha256),
        }
    }

    /// The by-name link of a ref in lmcpp's area (`by-name/<key>/<file name>`).
    pub(super) fn link_path(&self, r: &StoredRef) -> PathBuf {
        self.inner.root.join("by-name").join(&r.key).join(
            Some(safe_file_name(&r.file_name))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "model.gguf".to_owned()),
        )
    }

    /// Writes the ref atomically and, for a file in lmcpp's area, (re)creates its by-name
    /// link.
    pub(super) fn publish_ref(&self, r: &StoredRef) -> Result<()> {
        let json = serde_json::to_vec_pretty(r).map_err(|e| crate::Error::State {
            path: self.ref_path(&r.key),
            message: e.to_string(),
        })?;
        atomic_write(&self.ref_path(&r.key), &json)?;
        if r.hub_dir.is_some() {
            return Ok(());
        }
        #[cfg(unix)]
        {
            let link = self.link_path(r);
            if let Some(dir) = link.parent() {
                std::fs::create_dir_all(dir).ctx("create directory", dir)?;
            }
            let _ = std::fs::remove_file(&link);
            // Relative, so the whole store can be moved.
            let target = Path::new("../../blobs").join(&r.sha256);
            // Without the link, the blob itself is the path to use.
            let _ = std::os::unix::fs::symlink(&target, &link);
        }
        Ok(())
    }

    /// The ref at `path`; `None` when it is absent or damaged.
    pub(super) fn read_ref(&self, path: &Path) -> Result<Option<StoredRef>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::Error::io("read", path, e)),
        };
        match serde_json::from_slice::<StoredRef>(&bytes) {
            Ok(mut r) => match Sha256::parse(&r.sha256) {
                Ok(d) => {
                    r.sha256 = d.into();
                    Ok(Some(r))
                }
                Err(_) => Ok(None),
            },
            // A damaged ref is treated as absent: the next pull rewrites it.
            _ => Ok(None),
        }
    }

    /// Every readable ref, sorted by source.
    pub(super) fn all_refs(&self) -> Result<Vec<StoredRef>> {
        let dir = self.inner.root.join("refs");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).ctx("read directory", &dir)? {
            let path = entry.ctx("read directory", &dir)?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(r) = self.read_ref(&path)?
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(out)
    }
}
