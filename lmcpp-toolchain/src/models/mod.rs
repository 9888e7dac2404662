//! The model store: pull GGUF models from URLs or Hugging Face into a content-addressed
//! cache, verified by SHA-256, and list, remove, verify and inspect them.
//!
//! Models from Hugging Face live in the hub cache that llama.cpp (`-hf`) and
//! `huggingface_hub` share (see [`resolve_hub_cache`] and the `hub` module): a file already
//! there is used without asking the hub, and what lmcpp pulls there is found by them. A
//! model is every part of a split GGUF plus, unless [`PullOptions::no_mmproj`], the
//! repository's multimodal projector. URLs (and hub files without an LFS digest or a
//! commit) use lmcpp's own area. Every pull leaves a readable ref in lmcpp's area, so
//! `list`, `remove` and `verify` see both.
//!
//! Layout under `<cache root>/models`:
//!
//! ```text
//! blobs/<sha256>                 the files, named by content; published only once verified
//! refs/<source key>.json         what each pulled reference resolved to (readable JSON)
//! by-name/<source key>/<file>    a symlink to the blob, carrying the original file name
//! downloads/<source key>.gguf    in-flight downloads whose digest is not known up front
//! locks/<source key>.lock        one lock per reference (threads and processes)
//! locks/blob-<sha256>.lock       one lock per blob: publishing, removing and verifying it
//! ```
//!
//! A pull takes the reference's lock, re-checks the refs (another task or process probably
//! just pulled the same model), and otherwise downloads through the crate's one
//! [`Downloader`] (`.part` file, `Range` resume vouched for by the digest or the ETag,
//! SHA-256 while streaming, GGUF magic, retries honouring `Retry-After`, atomic rename).
//!
//! Lock order: a reference's lock before a blob's; several blobs' locks in digest order. A blob is moved into place and its ref
//! written under the blob's lock (for a known digest the lock is taken before the
//! download starts), and removal decides "no ref uses it any more" and deletes it under
//! the same lock, so a removal never deletes a blob that a concurrent pull is publishing.

mod demo;
pub(crate) mod error;
mod hf;
mod hub;
mod pick;
mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cache::{CacheLayout, atomic_write};
use crate::digest::Sha256;
use crate::download::{
    Content, DownloadOptions, DownloadSpec, Downloaded, Downloader, safe_file_name, sha256_file,
    url_file_name,
};
use crate::error::{IoContext, Result};

use crate::gguf::{GgufSummary, read_gguf_async};
use crate::lock::{LockGuard, lock_exclusive};
use crate::progress::{ProgressEvent, SharedProgress, no_progress};
pub use demo::{demo_model_path, ensure_demo_model};
pub use error::Error;

pub use hf::{DEFAULT_HF_ENDPOINT, HfToken, default_token_file, resolve_endpoint};
pub use hub::resolve_hub_cache;
pub use pick::{MMPROJ_PREFERENCE, QUANT_PREFERENCE};
pub use source::{DEFAULT_REVISION, HfSelector, HfSource, ModelSource};

use hub::HubRepo;
use pick::{Chosen, DefaultRule};

/// How a [`ModelStore`] is set up.
#[derive(Debug, Clone)]
pub struct ModelStoreOptions {
    /// Cache root (the store lives in `<root>/models`); `None` resolves it as the toolchain
    /// does (explicit override, then `LMCPP_HOME`, then the platform data directory).
    pub cache_root: Option<PathBuf>,
    /// The Hugging Face hub cache, where models from the hub live (shared with llama.cpp
    /// and `huggingface_hub`); `None` looks it up as llama.cpp does ([`resolve_hub_cache`]),
    /// and without any home directory uses `<cache root>/models/hub`.
    pub hub_cache: Option<PathBuf>,
    /// Hugging Face endpoint; `None` uses `HF_ENDPOINT`, else the public endpoint.
    pub hf_endpoint: Option<String>,
    /// Token sent to the Hugging Face endpoint (never to the CDN it redirects to).
    pub hf_token: Option<HfToken>,
    /// Never use the network: pulls of models not in the store fail.
    pub offline: bool,
    /// How long to wait for another task or process pulling the same model.
    pub lock_timeout: Duration,
    /// Downloader tunables (timeouts, retries, backoff).
    pub download: DownloadOptions,
}

impl Default for ModelStoreOptions {
    fn default() -> Self {
        Self {
            cache_root: None,
            hub_cache: None,
            hf_endpoint: None,
            hf_token: None,
            offline: false,
            lock_timeout: Duration::from_secs(4 * 3600),
            download: DownloadOptions::default(),
        }
    }
}

impl ModelStoreOptions {
    /// Defaults plus the Hugging Face token from `HF_TOKEN` or the token file, and
    /// `HF_HUB_OFFLINE=1` as offline mode.
    pub fn from_env() -> Self {
        Self {
            hf_token: HfToken::from_env(),
            offline: std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true"),
            ..Self::default()
        }
    }

    /// Defaults with an explicit cache root.
    pub fn with_cache_root(root: impl Into<PathBuf>) -> Self {
        Self {
            cache_root: Some(root.into()),
            ..Self::default()
        }
    }
}

/// Per-pull choices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// Expected SHA-256 of the file (hex). Takes precedence over what the server says.
    pub sha256: Option<String>,
    /// Use only what is in the store; fail with [`Error::NotCached`] otherwise.
    pub cache_only: bool,
    /// Do not pull the repository's multimodal projector (`mmproj*.gguf`) with the model.
    pub no_mmproj: bool,
    /// The name to serve the model under; `None` derives it from the reference
    /// ([`ModelSource::alias`]).
    pub alias: Option<String>,
}

impl PullOptions {
    /// Options that expect a given SHA-256.
    pub fn sha256(hex: impl Into<String>) -> Self {
        Self {
            sha256: Some(hex.into()),
            ..Self::default()
        }
    }

    /// Options for a cache-only lookup.
    pub fn cache_only() -> Self {
        Self {
            cache_only: true,
            ..Self::default()
        }
    }
}

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

/// What a pulled reference resolved to, as stored in `refs/<key>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelRef {
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

impl ModelRef {
    /// Every file's (repository path, SHA-256, size): the model's parts, then the projector.
    fn files(&self) -> Vec<(&str, &str, u64)> {
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

    fn uses(&self, sha256: &str) -> bool {
        self.files().iter().any(|(_, s, _)| *s == sha256)
    }
}

/// One entry of [`ModelStore::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CachedModel {
    /// The stored reference.
    #[serde(flatten)]
    pub reference: ModelRef,
    /// The blob.
    pub blob: PathBuf,
    /// Whether the blob is present with the recorded size.
    pub present: bool,
}

/// Outcome of re-hashing one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum VerifyStatus {
    /// The content matches its name.
    Ok,
    /// The content does not match; the blob was deleted so the next pull fetches it again.
    Corrupt {
        /// The digest found.
        found: String,
    },
    /// A ref points at a blob that is not there.
    Missing,
}

/// One entry of [`ModelStore::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The blob's expected digest.
    pub sha256: String,
    /// The blob.
    pub blob: PathBuf,
    /// The references pointing at it.
    pub sources: Vec<String>,
    /// What re-hashing found.
    pub status: VerifyStatus,
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

/// A content-addressed, verified cache of GGUF models. Cheap to clone.
#[derive(Clone)]
pub struct ModelStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    hub: PathBuf,
    endpoint: String,
    token: Option<HfToken>,
    offline: bool,
    lock_timeout: Duration,
    downloader: Downloader,
    progress: SharedProgress,
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

/// Resolved download of one file into lmcpp's own area.
struct Plan {
    url: String,
    file_name: String,
    sha256: Option<String>,
    headers: Vec<(String, String)>,
    commit: Option<String>,
    repo_file: Option<String>,
}

/// The files of a Hugging Face model, with what the hub said about them.
struct HfPlan {
    parts: Vec<Chosen>,
    mmproj: Option<Chosen>,
    commit: Option<String>,
    headers: Vec<(String, String)>,
}

/// A Hugging Face model whose every file has a digest, and the commit they come from.
struct HubPlan {
    parts: Vec<(Chosen, String)>,
    mmproj: Option<(Chosen, String)>,
    commit: String,
    headers: Vec<(String, String)>,
}

impl HfPlan {
    /// The hub-cache plan when every digest and the commit are known; else, for a single
    /// file, the plan of a download into lmcpp's area (hashed while streaming).
    fn into_hub_or_single(
        self,
        src: &HfSource,
        endpoint: &str,
    ) -> Result<std::result::Result<HubPlan, Plan>> {
        let with_sha = |c: &Chosen| c.sha256.clone().map(|s| (c.clone(), s));
        let parts: Option<Vec<_>> = self.parts.iter().map(with_sha).collect();
        let mmproj = self.mmproj.as_ref().map(with_sha);
        if let (Some(parts), Some(commit), false) =
            (parts, self.commit.clone(), matches!(mmproj, Some(None)))
        {
            return Ok(Ok(HubPlan {
                parts,
                mmproj: mmproj.flatten(),
                commit,
                headers: self.headers,
            }));
        }
        match (self.parts.as_slice(), &self.mmproj) {
            ([one], None) => Ok(Err(Plan {
                url: hf::resolve_url(endpoint, src, &one.path),
                file_name: base_name(&one.path).to_owned(),
                sha256: one.sha256.clone(),
                headers: self.headers,
                commit: self.commit,
                repo_file: Some(one.path.clone()),
            })),
            _ => Err(Error::HubFileUnverifiable {
                url: hf::resolve_url(
                    endpoint,
                    src,
                    self.parts.first().map_or("", |c| c.path.as_str()),
                ),
            }
            .into()),
        }
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

    fn ref_path(&self, key: &str) -> PathBuf {
        self.inner.root.join("refs").join(format!("{key}.json"))
    }

    /// The lock a pull of `key` holds from its cache check until its ref is written.
    fn ref_lock_path(&self, key: &str) -> PathBuf {
        self.inner.root.join("locks").join(format!("{key}.lock"))
    }

    /// The lock under which blob `sha256` is published, removed or re-hashed.
    fn blob_lock_path(&self, sha256: &str) -> PathBuf {
        self.inner
            .root
            .join("locks")
            .join(format!("blob-{}.lock", sha256.to_ascii_lowercase()))
    }

    async fn lock_blob(&self, sha256: &str) -> Result<LockGuard> {
        lock_exclusive(
            &self.blob_lock_path(sha256),
            self.inner.lock_timeout,
            &self.inner.progress,
        )
        .await
    }

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

        let reference = ModelRef {
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

    /// Downloads every file of `plan` into the hub cache's blobs, then publishes their
    /// snapshot links and the revision's ref, then lmcpp's ref.
    ///
    /// Every blob's lock is held from before its download until the refs are written, so
    /// a removal never deletes a blob between its download and its links. Links are
    /// published only once every blob is there: a reader never sees part of a split model.
    async fn pull_into_hub(
        &self,
        source: &ModelSource,
        src: &HfSource,
        key: &str,
        plan: HubPlan,
        opts: &PullOptions,
    ) -> Result<PulledModel> {
        let progress = &self.inner.progress;
        let repo = HubRepo::new(&self.inner.hub, &src.repo);
        let files: Vec<(&Chosen, &str)> = plan
            .parts
            .iter()
            .chain(plan.mmproj.iter())
            .map(|(c, sha)| (c, sha.as_str()))
            .collect();
        // Every blob's locks up front, in digest order (the order every multi-blob holder
        // uses, so two of them never wait on each other crosswise).
        let mut shas: Vec<&str> = files.iter().map(|(_, sha)| *sha).collect();
        shas.sort_unstable();
        shas.dedup();
        let mut guards = Vec::new();
        for sha in shas {
            guards.push(self.lock_blob(sha).await?);
            // The other hub clients' lock for the same blob, so nobody fetches it twice.
            guards.push(
                lock_exclusive(&repo.download_lock(sha), self.inner.lock_timeout, progress).await?,
            );
        }
        let mut transferred = 0;
        let mut etag = None;
        let mut sizes = Vec::new();
        for (i, (file, sha)) in files.iter().enumerate() {
            let dest = repo.blob(sha);
            // A blob is named by its verified digest (by lmcpp or the other hub clients);
            // one whose size disagrees with the listing is handed to the downloader, which
            // re-hashes it and replaces it when it does not match.
            let present = std::fs::metadata(&dest)
                .ok()
                .filter(|m| m.is_file() && file.size.is_none_or(|s| s == m.len()));
            let size = match present {
                Some(m) => m.len(),
                None => {
                    let spec = DownloadSpec {
                        url: hf::resolve_url(&self.inner.endpoint, src, &file.path),
                        dest,
                        expected_sha256: Some((*sha).to_owned()),
                        headers: plan.headers.clone(),
                        content: Content::Gguf,
                    };
                    let done = self.inner.downloader.fetch(&spec, progress).await?;
                    transferred += done.bytes_transferred;
                    if i == 0 {
                        etag = done.etag;
                    }
                    done.size
                }
            };
            sizes.push(size);
        }
        for (file, sha) in &files {
            repo.link(&plan.commit, &file.path, sha)?;
        }
        repo.write_ref(&src.revision, &plan.commit)?;

        let ref_file = |i: usize| RefFile {
            path: files[i].0.path.clone(),
            sha256: files[i].1.to_owned(),
            size: sizes[i],
        };
        let n = plan.parts.len();
        let (first, first_sha) = files[0];
        let reference = ModelRef {
            source: source.to_string(),
            key: key.to_owned(),
            url: hf::resolve_url(&self.inner.endpoint, src, &first.path),
            file_name: base_name(&first.path).to_owned(),
            sha256: first_sha.to_owned(),
            size: sizes[0],
            etag,
            commit: Some(plan.commit.clone()),
            pulled_at: now(),
            hub_dir: Some(repo.dir().to_path_buf()),
            repo_file: Some(first.path.clone()),
            parts: (1..n).map(ref_file).collect(),
            mmproj: plan.mmproj.as_ref().map(|_| ref_file(n)),
        };
        self.publish_ref(&reference)?;
        drop(guards);
        progress.event(ProgressEvent::Done);
        self.model_from_ref(source, &reference, opts, transferred)
            .ok_or_else(|| {
                Error::FileMissing {
                    path: repo.snapshot_file(&plan.commit, &first.path),
                }
                .into()
            })
    }

    /// The model `src` names, when the hub cache already holds all of its files (placed by
    /// lmcpp, llama.cpp or `huggingface_hub`); records an lmcpp ref for it. No network.
    ///
    /// Unless offline, `owner/repo` alone is taken from the cache only as its `Q4_K_M`
    /// file: the cache may hold other files of the repository but not the one the hub
    /// would pick. The digests are the blobs' names; `verify` re-hashes them. A snapshot
    /// file that is a copy, not a link (a cache written without symlinks, as on Windows
    /// without developer mode), is hashed here, once: the ref recorded for it keeps the
    /// digest.
    async fn found_in_hub_cache(
        &self,
        source: &ModelSource,
        src: &HfSource,
        key: &str,
        expected: Option<&str>,
        opts: &PullOptions,
    ) -> Result<Option<PulledModel>> {
        let repo = HubRepo::new(&self.inner.hub, &src.repo);
        let Some(commit) = repo.commit_of(&src.revision) else {
            return Ok(None);
        };
        let entries = repo.scan(&commit);
        let rule = if self.inner.offline || opts.cache_only {
            DefaultRule::Preference
        } else {
            DefaultRule::FirstOnly
        };
        let Ok(mut sel) = pick::select(src, &entries, !opts.no_mmproj, rule) else {
            return Ok(None);
        };
        for c in sel.parts.iter_mut().chain(sel.mmproj.iter_mut()) {
            if c.sha256.is_none() {
                let file = repo.snapshot_file(&commit, &c.path);
                c.sha256 = sha256_file(&file).await.ok().map(|(sha, _)| sha);
            }
        }
        let known = |c: &Chosen| -> Option<RefFile> {
            Some(RefFile {
                path: c.path.clone(),
                sha256: c.sha256.clone()?,
                size: c.size?,
            })
        };
        let Some(parts) = sel.parts.iter().map(known).collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };
        let mmproj = match &sel.mmproj {
            Some(c) => match known(c) {
                Some(f) => Some(f),
                None => return Ok(None),
            },
            None => None,
        };
        let Some((first, rest)) = parts.split_first() else {
            return Ok(None);
        };
        if expected.is_some_and(|e| e != first.sha256) {
            return Ok(None);
        }
        // A pick made only because the network is off is not remembered: online, the same
        // reference means what the hub picks.
        let remember = rule == DefaultRule::FirstOnly || src.selector != HfSelector::Default;
        let reference = ModelRef {
            source: source.to_string(),
            key: key.to_owned(),
            url: hf::resolve_url(&self.inner.endpoint, src, &first.path),
            file_name: base_name(&first.path).to_owned(),
            sha256: first.sha256.clone(),
            size: first.size,
            etag: None,
            commit: Some(commit),
            pulled_at: now(),
            hub_dir: Some(repo.dir().to_path_buf()),
            repo_file: Some(first.path.clone()),
            parts: rest.to_vec(),
            mmproj,
        };
        if remember {
            self.publish_ref(&reference)?;
        }
        Ok(self.model_from_ref(source, &reference, opts, 0))
    }

    /// Downloads `plan` into `blobs/` (or finds its blob there) and returns what was
    /// stored, with the blob's lock held.
    ///
    /// Known digest: download straight to the blob (the downloader verifies while
    /// streaming and publishes only a match). Unknown: download under the reference's
    /// key, then move the file to the blob named by the digest computed while streaming.
    async fn fetch_blob(&self, plan: &Plan, key: &str) -> Result<(Downloaded, LockGuard)> {
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
    fn model_from_ref(
        &self,
        source: &ModelSource,
        r: &ModelRef,
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

    /// Where a ref's blob `sha256` lives (the hub cache or lmcpp's `blobs/`).
    fn ref_blob(&self, r: &ModelRef, sha256: &str) -> PathBuf {
        match &r.hub_dir {
            Some(dir) => HubRepo::at(dir.clone()).blob(sha256),
            None => self.blob_path(sha256),
        }
    }

    /// Resolves a URL to what to download.
    fn plan(&self, source: &ModelSource) -> Result<Plan> {
        match source {
            ModelSource::Url(url) => Ok(Plan {
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

    /// Chooses the files of `src` (listing the repository unless one plain file is named
    /// and no projector is wanted) and learns their digests and the revision's commit,
    /// asking the resolve URL's first hop (`X-Linked-Etag`, `X-Repo-Commit`) until both
    /// are known.
    async fn plan_hf(
        &self,
        src: &HfSource,
        expected: Option<&str>,
        opts: &PullOptions,
    ) -> Result<HfPlan> {
        let endpoint = &self.inner.endpoint;
        let headers: Vec<(String, String)> = self
            .inner
            .token
            .iter()
            .map(|t| ("Authorization".to_owned(), t.bearer()))
            .collect();
        let entries = match &src.selector {
            HfSelector::File(f) if opts.no_mmproj && pick::split_part(f).is_none() => {
                vec![hf::TreeEntry::file(f.clone(), None, None)]
            }
            _ => self.list_repo(src, &headers).await?,
        };
        let mut sel = pick::select(src, &entries, !opts.no_mmproj, DefaultRule::Preference)?;
        if let (Some(e), Some(first)) = (expected, sel.parts.first_mut()) {
            first.sha256 = Some(e.to_owned());
        }
        let mut commit = hub::is_commit(&src.revision).then(|| src.revision.to_ascii_lowercase());
        for file in sel.parts.iter_mut().chain(sel.mmproj.iter_mut()) {
            if file.sha256.is_some() && commit.is_some() {
                continue;
            }
            let url = hf::resolve_url(endpoint, src, &file.path);
            let probe = self.inner.downloader.probe(&url, &headers).await?;
            if file.sha256.is_none() {
                file.sha256 = probe
                    .first_header("x-linked-etag")
                    .and_then(|v| Sha256::parse(v.trim().trim_start_matches("W/")).ok())
                    .map(String::from);
            }
            if commit.is_none() {
                commit = probe
                    .first_header("x-repo-commit")
                    .map(str::trim)
                    .filter(|c| hub::is_commit(c))
                    .map(str::to_ascii_lowercase);
            }
        }
        Ok(HfPlan {
            parts: sel.parts,
            mmproj: sel.mmproj,
            commit,
            headers,
        })
    }

    /// Downloads and parses the repository's file listing.
    async fn list_repo(
        &self,
        src: &HfSource,
        headers: &[(String, String)],
    ) -> Result<Vec<hf::TreeEntry>> {
        let url = hf::tree_url(&self.inner.endpoint, src);
        let dir = tempfile::Builder::new()
            .prefix(".listing-")
            .tempdir_in(self.inner.root.join("downloads"))
            .ctx(
                "create temporary directory in",
                self.inner.root.join("downloads"),
            )?;
        let dest = dir.path().join("tree.json");
        let spec = DownloadSpec {
            url: url.clone(),
            dest: dest.clone(),
            expected_sha256: None,
            headers: headers.to_vec(),
            content: Content::Any,
        };
        // A listing is tiny; its byte counts would only confuse a progress bar.
        self.inner.downloader.fetch(&spec, &no_progress()).await?;
        let text = std::fs::read(&dest).ctx("read", &dest)?;
        serde_json::from_slice(&text).map_err(|e| {
            crate::download::error::Error::Http {
                url,
                message: format!("the repository listing is not the expected JSON: {e}"),
            }
            .into()
        })
    }

    fn link_path(&self, r: &ModelRef) -> PathBuf {
        self.inner.root.join("by-name").join(&r.key).join(
            Some(safe_file_name(&r.file_name))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "model.gguf".to_owned()),
        )
    }

    /// Writes the ref atomically and, for a file in lmcpp's area, (re)creates its by-name
    /// link.
    fn publish_ref(&self, r: &ModelRef) -> Result<()> {
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

    fn read_ref(&self, path: &Path) -> Result<Option<ModelRef>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::Error::io("read", path, e)),
        };
        match serde_json::from_slice::<ModelRef>(&bytes) {
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

    fn all_refs(&self) -> Result<Vec<ModelRef>> {
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
    async fn lock_blobs(&self, refs: &[ModelRef]) -> Result<Vec<LockGuard>> {
        let shas: std::collections::BTreeSet<String> = refs
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
    fn delete_unused(&self, gone: &[ModelRef]) -> Result<u64> {
        let remaining = self.all_refs()?;
        let mut freed = 0;
        let mut seen = std::collections::BTreeSet::new();
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
            let mut found: std::collections::BTreeSet<String> = refs
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
        let mut shas: std::collections::BTreeSet<String> = self
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
        let refs: Vec<ModelRef> = self
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
    fn forget(&self, r: &ModelRef) -> Result<()> {
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

    /// Re-hashes every referenced blob. Corrupt blobs are deleted (their refs stay, so the
    /// next pull downloads them again).
    pub async fn verify(&self) -> Result<Vec<VerifyReport>> {
        let mut out = Vec::new();
        for sha256 in self.referenced_digests()?.into_keys() {
            out.push(self.verify_digest(&sha256).await?);
        }
        Ok(out)
    }

    /// Re-hashes one blob (see [`ModelStore::resolve`] to get its digest from what a user
    /// typed); a corrupt one is deleted, with the hub-cache snapshot entries that name it.
    /// No other blob is read or touched. In a hub cache written without symlinks, where
    /// the Python client keeps the file in the snapshot only, that file is the one checked.
    pub async fn verify_digest(&self, sha256: &str) -> Result<VerifyReport> {
        let sha256 = String::from(Sha256::parse(sha256)?);
        let _blob = self.lock_blob(&sha256).await?;
        let sources = self
            .referenced_digests()?
            .remove(&sha256)
            .unwrap_or_default();
        let refs = self.all_refs()?;
        let blob = refs
            .iter()
            .find(|r| r.uses(&sha256))
            .map_or_else(|| self.blob_path(&sha256), |r| self.ref_blob(r, &sha256));
        let snapshots: Vec<PathBuf> = refs
            .iter()
            .filter_map(|r| Some((HubRepo::at(r.hub_dir.clone()?), r.commit.as_deref()?, r)))
            .flat_map(|(repo, commit, r)| {
                r.files()
                    .into_iter()
                    .filter(|(_, sha, _)| *sha == sha256)
                    .map(|(file, _, _)| repo.snapshot_file(commit, file))
                    .collect::<Vec<_>>()
            })
            .collect();
        let blob = if blob.is_file() {
            blob
        } else {
            snapshots
                .iter()
                .find(|p| p.is_file())
                .cloned()
                .unwrap_or(blob)
        };
        if sources.is_empty() && !blob.is_file() {
            return Err(Error::Unknown {
                query: sha256,
                root: self.inner.root.clone(),
            }
            .into());
        }
        self.inner.progress.event(ProgressEvent::Stage {
            name: format!("verifying {}", blob.display()),
        });
        let status = if !blob.is_file() {
            VerifyStatus::Missing
        } else {
            let (found, _) = sha256_file(&blob).await?;
            if found == sha256 {
                VerifyStatus::Ok
            } else {
                delete_file(&blob)?;
                // A snapshot entry is a link to the blob, now broken, or (without
                // symlinks) a hard link or copy that may hold the same bad bytes.
                for entry in &snapshots {
                    delete_file(entry)?;
                }
                VerifyStatus::Corrupt { found }
            }
        };
        Ok(VerifyReport {
            sha256,
            blob,
            sources,
            status,
        })
    }

    /// Referenced digests and the sources naming each.
    fn referenced_digests(&self) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
        let mut by_sha: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for r in self.all_refs()? {
            for (_, sha, _) in r.files() {
                let sources = by_sha.entry(sha.to_owned()).or_default();
                if !sources.contains(&r.source) {
                    sources.push(r.source.clone());
                }
            }
        }
        Ok(by_sha)
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

/// Deletes a file; a missing one is fine.
fn delete_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::Error::io("remove", path, e)),
    }
}

/// The GGUF summary of any file (reads only the header, metadata and tensor infos).
pub async fn inspect(path: &Path) -> Result<GgufSummary> {
    Ok(read_gguf_async(path).await?.summary())
}

fn local_model(source: &ModelSource, path: &Path, opts: &PullOptions) -> Result<PulledModel> {
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
