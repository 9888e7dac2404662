//! Pulling a model: a local file checked as it is, or a URL downloaded into lmcpp's own
//! `blobs/` under the reference's lock, and what a stored reference gives to load.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::Error;
use super::hub::HubRepo;
use super::options::PullOptions;
use super::refs::{StoredRef, now};
use super::source::ModelSource;
use super::store::ModelStore;
use crate::digest::Sha256;
use crate::download::{Content, DownloadSpec, Downloaded, url_file_name};
use crate::error::{IoContext, Result};
use crate::gguf::read_gguf_async;
use crate::lock::{LockGuard, lock_exclusive};
use crate::progress::ProgressEvent;

/// A model ready to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PulledModel {
    /// The reference as given (normalised).
    pub source: String,
    /// Path to pass to `llama-server -m`: the readable by-name link when it could be
    /// created, else the blob; for local sources, the file itself.
    pub path: PathBuf,
    /// The content-addressed file in the store (`None` for local sources).
    pub blob: Option<PathBuf>,
    /// SHA-256 of the file (`None` for local sources, which are not hashed).
    pub sha256: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// The file's original name.
    pub file_name: String,
    /// Bytes received over the network by this pull (0 when served from the store).
    pub bytes_transferred: u64,
    /// Whether the store already had the file, so nothing was downloaded (resolving a new
    /// reference may still have asked the server which file it names).
    pub from_cache: bool,
    /// Every file of the model in load order: `path` alone, or each part of a split GGUF
    /// (`path` is the first; the server finds the others next to it).
    pub parts: Vec<PathBuf>,
    /// The multimodal projector pulled with the model, for `llama-server --mmproj`.
    pub mmproj: Option<PathBuf>,
    /// The file chosen in a Hugging Face repository (the first part of a split model).
    pub repo_file: Option<String>,
    /// The name to serve the model under (`llama-server --alias`): the reference as given
    /// (`owner/repo:Q4_K_M`, a path's or URL's file stem), or [`PullOptions::alias`].
    pub alias: String,
}

/// Resolved download of one file into lmcpp's own area.
pub(super) struct FetchPlan {
    pub(super) url: String,
    pub(super) file_name: String,
    pub(super) sha256: Option<String>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) commit: Option<String>,
    pub(super) repo_file: Option<String>,
}

/// The last segment of a repository path.
pub(super) fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl ModelStore {
    /// Parses `reference` and pulls it; see [`ModelStore::pull`].
    pub async fn pull_str(&self, reference: &str, opts: &PullOptions) -> Result<PulledModel> {
        self.pull(&ModelSource::parse(reference)?, opts).await
    }

    /// Makes `source` available locally and returns where it is.
    ///
    /// Idempotent: a reference already in the store is returned without any network use.
    /// Local paths are checked (a regular file that reads as GGUF) and returned as they
    /// are. Concurrent pulls of the same
    /// reference, in this process or others, wait for one another and transfer it once.
    pub async fn pull(&self, source: &ModelSource, opts: &PullOptions) -> Result<PulledModel> {
        match source {
            ModelSource::Local(path) => {
                let model = local_model(source, path, opts)?;
                read_gguf_async(&model.path).await?;
                Ok(model)
            }
            _ => self.pull_remote(source, opts).await,
        }
    }

    async fn pull_remote(&self, source: &ModelSource, opts: &PullOptions) -> Result<PulledModel> {
        let progress = &self.inner.progress;
        let key = source.cache_key();
        let expected = opts
            .sha256
            .as_deref()
            .map(Sha256::parse)
            .transpose()?
            .map(String::from);
        let lock = self.ref_lock_path(&key);
        let _guard = lock_exclusive(&lock, self.inner.lock_timeout, progress).await?;

        if let Some(found) = self.cached(source, &key, expected.as_deref(), opts)? {
            progress.event(ProgressEvent::Note {
                message: format!("{source} is already in the model cache"),
            });
            return Ok(found);
        }
        if let ModelSource::HuggingFace(src) = source
            && let Some(found) = self
                .found_in_hub_cache(source, src, &key, expected.as_deref(), opts)
                .await?
        {
            progress.event(ProgressEvent::Note {
                message: format!(
                    "{source} is already in the Hugging Face cache at {}",
                    self.inner.hub.display()
                ),
            });
            return Ok(found);
        }
        if self.inner.offline || opts.cache_only {
            // Models from the hub are looked for in the hub cache; name that one.
            let root = match source {
                ModelSource::HuggingFace(_) => self.inner.hub.clone(),
                _ => self.inner.root.clone(),
            };
            return Err(Error::NotCached {
                source_ref: source.to_string(),
                root,
            }
            .into());
        }

        progress.event(ProgressEvent::Stage {
            name: format!("pulling {source}"),
        });
        let mut plan = match source {
            ModelSource::HuggingFace(src) => {
                let hf = self.plan_hf(src, expected.as_deref(), opts).await?;
                match hf.into_hub_or_single(src, &self.inner.endpoint)? {
                    Ok(hub) => return self.pull_into_hub(source, src, &key, hub, opts).await,
                    Err(single) => single,
                }
            }
            _ => self.plan(source)?,
        };
        if expected.is_some() {
            plan.sha256 = expected;
        }

        // The blob's lock stays held until the ref below is written.
        let (done, _blob_guard) = self.fetch_blob(&plan, &key).await?;

        let reference = StoredRef {
            source: source.to_string(),
            key: key.clone(),
            url: plan.url,
            file_name: plan.file_name,
            sha256: done.sha256.clone(),
            size: done.size,
            etag: done.etag,
            commit: plan.commit,
            pulled_at: now(),
            hub_dir: None,
            repo_file: plan.repo_file,
            parts: Vec::new(),
            mmproj: None,
        };
        self.publish_ref(&reference)?;
        progress.event(ProgressEvent::Done);
        self.model_from_ref(source, &reference, opts, done.bytes_transferred)
            .ok_or_else(|| {
                Error::FileMissing {
                    path: self.blob_path(&reference.sha256),
                }
                .into()
            })
    }

    /// Downloads `plan` into `blobs/` (or finds its blob there) and returns what was
    /// stored, with the blob's lock held.
    ///
    /// Known digest: download straight to the blob (the downloader verifies while
    /// streaming and publishes only a match). Unknown: download under the reference's
    /// key, then move the file to the blob named by the digest computed while streaming.
    async fn fetch_blob(&self, plan: &FetchPlan, key: &str) -> Result<(Downloaded, LockGuard)> {
        let progress = &self.inner.progress;
        let (dest, known) = match &plan.sha256 {
            Some(sha) => (self.blob_path(sha), true),
            None => (
                self.inner
                    .root
                    .join("downloads")
                    .join(format!("{key}.gguf")),
                false,
            ),
        };
        let spec = DownloadSpec {
            url: plan.url.clone(),
            dest: dest.clone(),
            expected_sha256: plan.sha256.clone(),
            headers: plan.headers.clone(),
            content: Content::Gguf,
        };
        // With the digest known, the blob's lock is held from here until the ref is written:
        // a removal of another reference to the same content waits instead of deleting the
        // blob between its download and its ref.
        let blob_guard = match &plan.sha256 {
            Some(sha) => Some(self.lock_blob(sha).await?),
            None => None,
        };
        // A blob is published only after its digest was verified, so an existing one is
        // trusted without re-hashing (`verify` is the explicit re-check).
        let existing = match &plan.sha256 {
            Some(sha) => std::fs::metadata(self.blob_path(sha))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| (sha.clone(), m.len())),
            None => None,
        };
        let done = match existing {
            Some((sha256, size)) => Downloaded {
                path: dest.clone(),
                sha256,
                size,
                bytes_transferred: 0,
                etag: None,
                final_url: plan.url.clone(),
            },
            None => self.inner.downloader.fetch(&spec, progress).await?,
        };
        let blob_guard = match blob_guard {
            Some(g) => g,
            None => self.lock_blob(&done.sha256).await?,
        };
        let blob = self.blob_path(&done.sha256);
        if !known {
            if blob.is_file() {
                std::fs::remove_file(&dest).ctx("remove", &dest)?;
            } else {
                std::fs::rename(&dest, &blob).ctx("rename into", &blob)?;
            }
        }
        Ok((done, blob_guard))
    }

    /// The stored result for `key`, if all its files are present (and it matches
    /// `expected`).
    fn cached(
        &self,
        source: &ModelSource,
        key: &str,
        expected: Option<&str>,
        opts: &PullOptions,
    ) -> Result<Option<PulledModel>> {
        let Some(r) = self.read_ref(&self.ref_path(key))? else {
            return Ok(None);
        };
        if expected.is_some_and(|e| e != r.sha256) {
            return Ok(None);
        }
        Ok(self.model_from_ref(source, &r, opts, 0))
    }

    /// What a ref describes, if every file it names is present with its recorded size.
    pub(super) fn model_from_ref(
        &self,
        source: &ModelSource,
        r: &StoredRef,
        opts: &PullOptions,
        transferred: u64,
    ) -> Option<PulledModel> {
        let has = |p: &Path, size: u64| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == size)
        };
        let (parts, mmproj) = match &r.hub_dir {
            Some(dir) => {
                let repo = HubRepo::at(dir.clone());
                let commit = r.commit.as_deref()?;
                let at = |path: &str, size: u64| {
                    let p = repo.snapshot_file(commit, path);
                    has(&p, size).then_some(p)
                };
                let first = at(r.repo_file.as_deref()?, r.size)?;
                let mut parts = vec![first];
                for f in &r.parts {
                    parts.push(at(&f.path, f.size)?);
                }
                let mmproj = match (&r.mmproj, opts.no_mmproj) {
                    (Some(f), false) => Some(at(&f.path, f.size)?),
                    _ => None,
                };
                (parts, mmproj)
            }
            None => {
                let blob = self.blob_path(&r.sha256);
                if !has(&blob, r.size) {
                    return None;
                }
                let link = self.link_path(r);
                (vec![if link.is_file() { link } else { blob }], None)
            }
        };
        Some(PulledModel {
            source: source.to_string(),
            path: parts[0].clone(),
            blob: Some(self.ref_blob(r, &r.sha256)),
            sha256: Some(r.sha256.clone()),
            size: r.size,
            file_name: r.file_name.clone(),
            bytes_transferred: transferred,
            from_cache: transferred == 0,
            parts,
            mmproj,
            repo_file: r.repo_file.clone(),
            alias: opts.alias.clone().unwrap_or_else(|| source.alias()),
        })
    }

    /// Resolves a URL to what to download.
    fn plan(&self, source: &ModelSource) -> Result<FetchPlan> {
        match source {
            ModelSource::Url(url) => Ok(FetchPlan {
                url: url.clone(),
                file_name: url_file_name(url).unwrap_or_else(|| "model.gguf".to_owned()),
                sha256: None,
                headers: Vec::new(),
                commit: None,
                repo_file: None,
            }),
            _ => Err(crate::Error::InvalidRequest {
                reason: "only URLs are planned here".into(),
            }),
        }
    }
}

/// A local file as a model: checked to be a regular file, not hashed.
pub(super) fn local_model(
    source: &ModelSource,
    path: &Path,
    opts: &PullOptions,
) -> Result<PulledModel> {
    let path = expand_home(path);
    let meta = std::fs::metadata(&path).map_err(|_| Error::FileMissing { path: path.clone() })?;
    if !meta.is_file() {
        crate::gguf::check_regular(&path)?;
    }
    Ok(PulledModel {
        source: source.to_string(),
        file_name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        parts: vec![path.clone()],
        path,
        blob: None,
        sha256: None,
        size: meta.len(),
        bytes_transferred: 0,
        from_cache: true,
        mmproj: None,
        repo_file: None,
        alias: opts.alias.clone().unwrap_or_else(|| source.alias()),
    })
}

/// `~/x` → `$HOME/x` (the shell does this for command lines, not for config files).
fn expand_home(path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    path.to_path_buf()
}
