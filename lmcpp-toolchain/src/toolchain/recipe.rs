//! The recipe state machine: request → fingerprint → entry → lock → re-check → work in
//! scratch → publish `bin/` with one rename → persist `state.json` atomically.
//!
//! An entry directory `<root>/toolchains/<fingerprint>/` holds `state.json`, `build.log`
//! and, once published, `bin/`. Its lock is `<root>/toolchains/<fingerprint>.lock` and its
//! scratch dir `<root>/toolchains/.<fingerprint>.<pid>.scratch` (same filesystem, so the publish
//! is a rename). A run that fails records the failure; after `fail_limit` consecutive
//! failures the entry is purged so the next run starts clean. A run that could reach none
//! of its sources records nothing (see `RunFailure`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cache::{
    CacheLayout, FileIdentity, ProbeKind, atomic_write, dir_size, remove_all, sync_dir,
};
use crate::download::{DownloadOptions, Downloader};
use crate::error::{Error, IoContext, Result, SourceAttempt};
use crate::lock::lock_exclusive;
use crate::progress::{ProgressEvent, SharedProgress};
use crate::toolchain::backend::{self, Backend, Obtainable, Probes};
use crate::toolchain::cmake;
use crate::toolchain::plan::{Plan, plan};
use crate::toolchain::request::{Mode, Origin, Source, ToolchainRequest};
use crate::toolchain::source::{self, Ctx};
use crate::toolchain::target::{CrossBuild, Runner, Target, cross_spec};
use crate::toolchain::versions::BinaryVersion;
use lmcpp_types::Classify;

/// Name of the state file inside an entry.
pub(crate) const STATE_FILE: &str = "state.json";
/// Name of the build log inside an entry.
pub(crate) const BUILD_LOG: &str = "build.log";
/// Name of the captured `llama-server --help` text inside an entry.
pub(crate) const HELP_FILE: &str = "llama-server.help.txt";
/// A failure recorded by another process this recently is reported to its waiters instead
/// of being re-run by each of them in turn.
pub(crate) const SHARED_FAILURE_WINDOW: Duration = Duration::from_secs(120);
/// Longest a published binary may take to answer `--version`.
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Consecutive failures after which an entry is purged.
pub(crate) const DEFAULT_FAIL_LIMIT: u32 = 3;
/// Default wait for an entry held by another thread or process (a cold build takes minutes).
pub(crate) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);

/// Lifecycle of an entry as persisted in `state.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryStatus {
    /// Work is in progress (or a run was killed mid-way; see [`crate::Toolchain::status`]).
    Building,
    /// `bin/` is published and usable.
    Ready,
    /// The last run failed.
    Failed,
}

impl std::fmt::Display for EntryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Building => "building",
            Self::Ready => "ready",
            Self::Failed => "failed",
        })
    }
}

/// The persisted state of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryState {
    /// Format version of this file.
    pub schema: u32,
    /// Current status.
    pub status: EntryStatus,
    /// The entry's fingerprint (its directory name).
    pub fingerprint: String,
    /// llama.cpp version label as requested (tag, commit or `pypi:<version>`).
    pub version: String,
    /// What the published binary reports about itself (`llama-server --version`): the
    /// version that was actually obtained.
    #[serde(default)]
    pub obtained: Option<BinaryVersion>,
    /// How the binaries came to be.
    #[serde(default)]
    pub origin: Option<Origin>,
    /// Resolved backend.
    pub backend: Backend,
    /// Why that backend (detection reason or "requested").
    pub backend_reason: String,
    /// The mode requested.
    pub mode: Mode,
    /// CMake arguments actually used (empty for prebuilt installs).
    pub cmake_args: Vec<String>,
    /// Source that produced `bin/` (`github-release <url>`, `pypi-sdist …`), once ready.
    pub source: Option<String>,
    /// Source tree used for building, when built.
    pub source_dir: Option<PathBuf>,
    /// `llama-server` file name inside `bin/`.
    pub llama_server: Option<String>,
    /// `rpc-server` file name inside `bin/`, when present.
    pub rpc_server: Option<String>,
    /// Consecutive failures.
    pub failures: u32,
    /// Last error message.
    pub last_error: Option<String>,
    /// Size of `bin/` in bytes.
    pub bin_size: u64,
    /// Size of `bin/llama-server` when published; a different size means the entry broke.
    #[serde(default)]
    pub llama_server_size: u64,
    /// Seconds since the Unix epoch when the entry was created.
    pub created_unix: u64,
    /// Seconds since the Unix epoch of the last update.
    pub updated_unix: u64,
    /// The full request.
    pub request: ToolchainRequest,
}

/// A usable toolchain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The `llama-server` binary.
    pub llama_server: PathBuf,
    /// The `rpc-server` binary, when built or shipped.
    pub rpc_server: Option<PathBuf>,
    /// The entry directory.
    pub entry_dir: PathBuf,
    /// The entry fingerprint.
    pub fingerprint: String,
    /// The llama.cpp source tree it was built from (has `models/ggml-vocab-*.gguf`).
    pub source_dir: Option<PathBuf>,
    /// The resolved backend.
    pub backend: Backend,
    /// Which source produced it.
    pub source: String,
    /// What `llama-server --version` reported when it was published.
    pub version: Option<BinaryVersion>,
    /// The binary's `--help` text, captured once when it was published (the flags this
    /// llama.cpp accepts).
    pub help: Option<PathBuf>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads an entry's state file; `Ok(None)` when there is none.
pub fn read_state(entry: &Path) -> Result<Option<EntryState>> {
    let path = entry.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::State {
            path,
            message: e.to_string(),
        })
}

fn write_state(entry: &Path, state: &EntryState) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::State {
        path: entry.join(STATE_FILE),
        message: e.to_string(),
    })?;
    atomic_write(&entry.join(STATE_FILE), &json)
}

/// The installed toolchain described by a ready state, if its binary is present and has
/// the size it was published with (a missing, emptied or replaced binary is a broken entry,
/// rebuilt by the next `ensure`).
pub(crate) fn installed_from(entry: &Path, state: &EntryState) -> Option<Installed> {
    if state.status != EntryStatus::Ready {
        return None;
    }
    let bin = entry.join("bin");
    let server = bin.join(state.llama_server.as_deref()?);
    let meta = std::fs::metadata(&server).ok()?;
    let size_ok =
        meta.len() > 0 && (state.llama_server_size == 0 || state.llama_server_size == meta.len());
    if !meta.is_file() || !size_ok {
        return None;
    }
    let help = entry.join(HELP_FILE);
    Some(Installed {
        llama_server: server,
        rpc_server: state
            .rpc_server
            .as_deref()
            .map(|r| bin.join(r))
            .filter(|p| p.is_file()),
        entry_dir: entry.to_path_buf(),
        fingerprint: state.fingerprint.clone(),
        source_dir: state.source_dir.clone(),
        backend: state.backend,
        source: state.source.clone().unwrap_or_default(),
        version: state.obtained.clone(),
        help: help.is_file().then_some(help),
    })
}

/// The file name of executable `name` built for `request`'s target.
fn exe_name(request: &ToolchainRequest, name: &str) -> String {
    crate::toolchain::plan::exe(&request.target_or_host().os, name)
}

/// What a successful run leaves in scratch.
struct Outcome {
    bin: PathBuf,
    source: String,
    source_dir: Option<PathBuf>,
    cmake_args: Vec<String>,
    /// What `llama-server --version` printed, when it already ran in scratch.
    version_output: Option<String>,
}

/// Why a run produced nothing, and whether that says something about the entry.
///
/// A bad digest, a broken archive, a binary whose `--version` fails or a failed build are
/// recorded in the entry (and count towards its purge). A run whose every source failed
/// before anything could be had from it (connection refused, timeout, a name that does not
/// resolve, a 5xx: the usual offline case) is not: the entry is left as it was, so an
/// offline machine does not collect failed entries for `toolchain prune` to remove.
struct RunFailure {
    error: Error,
    record: bool,
}

impl RunFailure {
    fn recorded(error: Error) -> Self {
        Self {
            error,
            record: true,
        }
    }
}

/// Whether `e` is the network not being reachable or failing transiently (a later retry
/// may succeed): it says nothing about what was asked for.
fn is_unreached(e: &Error) -> bool {
    e.is_transient()
        || matches!(
            e,
            Error::Download(crate::download::error::Error::Unreachable { .. })
        )
}

/// How a source tree is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildDriver {
    /// The cmake command line, with output streamed to `build.log` and progress events.
    #[default]
    CmakeCli,
    /// The `cmake` crate, for use inside a downstream crate's `build.rs` (see
    /// [`crate::toolchain::build_script`]); output goes to cargo's build-script log.
    CmakeCrate,
}

/// The entry point: installs, builds and manages cached `llama-server` toolchains.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub(crate) layout: CacheLayout,
    pub(crate) downloader: Downloader,
    pub(crate) lock_timeout: Duration,
    pub(crate) fail_limit: u32,
    /// Machine probes, taken once per `Toolchain` on first need (or fixed by tests).
    probes: std::sync::OnceLock<Probes>,
    driver: BuildDriver,
}

impl Toolchain {
    /// A toolchain manager on the cache root resolved from `cache_root` (see
    /// [`crate::resolve_cache_root`]) with default download options.
    pub fn new(cache_root: Option<&Path>) -> Result<Self> {
        Ok(Self {
            layout: CacheLayout::resolve(cache_root)?,
            downloader: Downloader::new(DownloadOptions::default())?,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            fail_limit: DEFAULT_FAIL_LIMIT,
            probes: std::sync::OnceLock::new(),
            driver: BuildDriver::CmakeCli,
        })
    }

    /// Chooses how source trees are built.
    pub fn with_build_driver(mut self, driver: BuildDriver) -> Self {
        self.driver = driver;
        self
    }

    /// Uses this downloader (e.g. with other timeouts or retries).
    pub fn with_downloader(mut self, downloader: Downloader) -> Self {
        self.downloader = downloader;
        self
    }

    /// How long to wait for an entry held by someone else.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Consecutive failures after which an entry is purged (at least 1).
    pub fn with_fail_limit(mut self, limit: u32) -> Self {
        self.fail_limit = limit.max(1);
        self
    }

    /// Uses fixed machine probes instead of probing (for tests and planning).
    pub fn with_probes(mut self, probes: Probes) -> Self {
        self.probes = std::sync::OnceLock::from(probes);
        self
    }

    /// The cache layout.
    pub fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    /// The downloader (shared with the model store).
    pub fn downloader(&self) -> &Downloader {
        &self.downloader
    }

    fn probes(&self) -> &Probes {
        self.probes.get_or_init(Probes::probe)
    }

    /// Resolves `auto` and checks an explicit backend is usable, before any work: a GPU
    /// backend needs its device, and its build tools unless a prebuilt asset can be had.
    ///
    /// For a target other than this machine, this machine's devices say nothing: `auto`
    /// is the CPU, which is all a cross build makes, and another backend is only had
    /// from the target's prebuilt release.
    pub fn resolve_backend(&self, request: &ToolchainRequest) -> Result<(Backend, String)> {
        let origins = request.origins();
        let can = Obtainable {
            prebuilt: origins.contains(&Origin::Prebuilt),
            build: origins.contains(&Origin::Built),
        };
        let target = request.target_or_host();
        if !target.is_host() {
            return match request.backend {
                Backend::Auto => Ok((
                    Backend::Cpu,
                    format!("the only backend of builds for {target} here"),
                )),
                Backend::Cpu => Ok((Backend::Cpu, "requested".into())),
                other
                    if can.prebuilt
                        && crate::toolchain::plan::asset_platform(
                            &target.os,
                            &target.arch,
                            other,
                        )
                        .is_ok() =>
                {
                    Ok((other, "requested".into()))
                }
                other => Err(Error::BackendUnavailable {
                    backend: other.to_string(),
                    reason: format!(
                        "lmcpp builds for {target} on {} with the cpu backend only; choose cpu, or install the target's prebuilt release with --mode install-only",
                        Target::host()
                    ),
                }),
            };
        }
        match request.backend {
            Backend::Auto => {
                let d = backend::choose(self.probes(), can);
                return Ok((d.backend, d.reason));
            }
            // The CPU is always there; no need to look at the machine.
            Backend::Cpu => return Ok((Backend::Cpu, "requested".into())),
            _ => {}
        }
        let has_asset = can.prebuilt
            && crate::toolchain::plan::asset_platform(
                std::env::consts::OS,
                std::env::consts::ARCH,
                request.backend,
            )
            .is_ok();
        backend::check_available(request.backend, !has_asset, self.probes())?;
        Ok((request.backend, "requested".into()))
    }

    /// The identity of the llama.cpp tree `origin` would use: the content of a custom
    /// source (a local directory by its files' names, sizes and times; an archive by its
    /// SHA-256; a URL by its pinned digest, else the URL), or the version's identity.
    pub async fn tree_identity(
        &self,
        request: &ToolchainRequest,
        origin: Origin,
    ) -> Result<String> {
        let custom = request
            .sources_of(origin)
            .into_iter()
            .find(Source::is_custom);
        match custom {
            // A directory that is not there is reported when the source is tried, along
            // with every other source.
            Some(Source::LocalDir(p)) if !p.is_dir() => Ok(format!("dir-missing:{}", p.display())),
            Some(Source::LocalDir(p)) => {
                tokio::task::spawn_blocking(move || source::dir_identity(&p))
                    .await
                    .map_err(crate::error::join_error)?
            }
            Some(Source::LocalArchive { path, sha256 }) => match sha256 {
                Some(s) => Ok(format!("sha256:{}", s.to_ascii_lowercase())),
                None => Ok(format!("sha256:{}", self.archive_sha256(&path).await?)),
            },
            Some(Source::Url { url, sha256 } | Source::PrebuiltUrl { url, sha256 }) => {
                Ok(match sha256 {
                    Some(s) => format!("sha256:{}", s.to_ascii_lowercase()),
                    None => format!("url:{url}"),
                })
            }
            _ => Ok(request.version.identity()),
        }
    }

    /// The SHA-256 of a local archive, hashed once per version of the file: the digest is
    /// recorded under the file's identity (path, size, modification time, inode, device),
    /// so a warm `ensure` does not read a multi-megabyte archive again. It is recorded only
    /// when the identity is the same after hashing as before (a file being rewritten while
    /// it is read is hashed again next time); a cache that cannot be written costs a
    /// re-hash, never the `ensure`.
    async fn archive_sha256(&self, path: &Path) -> Result<String> {
        let layout = self.layout.clone();
        let owned = path.to_path_buf();
        let identity = tokio::task::spawn_blocking(move || {
            let id = FileIdentity::of(&owned).ok()?;
            let known = layout.read_probe(&id, ProbeKind::ArchiveSha256);
            Some((id, known))
        })
        .await
        .map_err(crate::error::join_error)?;
        if let Some((_, Some(known))) = &identity
            && known.len() == 64
            && known.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(known.clone());
        }
        let digest = crate::download::sha256_file(path).await?.0;
        if let Some((before, _)) = identity {
            let layout = self.layout.clone();
            let (owned, value) = (path.to_path_buf(), digest.clone());
            let _ = tokio::task::spawn_blocking(move || {
                if FileIdentity::of(&owned).is_ok_and(|after| after == before) {
                    let _ = layout.write_probe(&before, ProbeKind::ArchiveSha256, &value);
                }
            })
            .await;
        }
        Ok(digest)
    }

    /// Every entry `request` may be served from, in the order tried: (origin, fingerprint,
    /// directory).
    pub async fn entries_for(
        &self,
        request: &ToolchainRequest,
    ) -> Result<Vec<(Origin, String, PathBuf)>> {
        Ok(self.keyed(request).await?.entries)
    }

    /// The backend `request` resolves to (with why) and its entries, in the order tried.
    async fn keyed(&self, request: &ToolchainRequest) -> Result<Keyed> {
        let (backend, reason) = self.resolve_backend(request)?;
        let origins = request.origins();
        if origins.is_empty() {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "{} mode allows none of the sources given ({}); change the mode or the sources",
                    request.mode,
                    request
                        .sources
                        .iter()
                        .map(Source::kind)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        // A cross build this machine cannot do is refused before any work, when building
        // is all the request allows (otherwise the prebuilt may still be had).
        if origins == [Origin::Built] {
            cross_spec(&request.target_or_host(), &Target::host())?;
        }
        let mut out = Vec::new();
        for origin in origins {
            let tree = self.tree_identity(request, origin).await?;
            let fp = request.fingerprint(backend, origin, &tree);
            let dir = self.layout.toolchain_entry(&fp);
            out.push((origin, fp, dir));
        }
        Ok(Keyed {
            backend,
            reason,
            entries: out,
        })
    }

    /// The entry `request` maps to on this machine: the first usable one among
    /// [`Toolchain::entries_for`], else the first one that would be produced.
    pub async fn entry_for(&self, request: &ToolchainRequest) -> Result<(String, PathBuf)> {
        let entries = self.entries_for(request).await?;
        let (_, fp, dir) = match first_usable(&entries) {
            Some(i) => entries.iter().find(|e| e.2 == i.entry_dir),
            None => entries.first(),
        }
        .ok_or(Error::InvalidRequest {
            reason: "the request maps to no entry".into(),
        })?;
        Ok((fp.clone(), dir.clone()))
    }

    /// Resolves `latest` through the release listing of `request.github_api`: the newest
    /// release's tag, with every pin the table of known versions has for it. Offline this
    /// is an error that says to name a version instead.
    pub async fn latest_version(&self, request: &ToolchainRequest) -> Result<crate::LlamaVersion> {
        let progress = crate::progress::no_progress();
        let ctx = Ctx {
            layout: &self.layout,
            downloader: &self.downloader,
            lock_timeout: self.lock_timeout,
            progress: &progress,
        };
        self.layout.create()?;
        let url = format!(
            "{}/releases/latest",
            request.github_api.trim_end_matches('/')
        );
        let listing = source::release_listing(&ctx, &url)
            .await
            .map_err(|e| Error::InvalidRequest {
                reason: format!(
                    "cannot resolve llama.cpp `latest` from {url}: {e}; name a version instead (e.g. {})",
                    crate::toolchain::versions::pinned().tag.unwrap_or("b11312")
                ),
            })?;
        crate::toolchain::versions::parse(&listing.tag_name)
    }

    /// The plan for `request` on this machine (backend resolved): the target's plan, with
    /// a cross build's CMake arguments when the target is not this machine.
    pub fn plan(&self, request: &ToolchainRequest) -> Result<Plan> {
        let (backend, _) = self.resolve_backend(request)?;
        let resolved = ToolchainRequest {
            backend,
            ..request.clone()
        };
        let cross = match cross_spec(&resolved.target_or_host(), &Target::host())? {
            Some(spec) => Some(CrossBuild::find(spec)?),
            None => None,
        };
        Ok(plan_here(&resolved, cross.as_ref()))
    }

    /// Returns the cached toolchain for `request` without any network or build work.
    pub async fn ensure_cached(&self, request: &ToolchainRequest) -> Result<Installed> {
        let entries = self.entries_for(request).await?;
        if let Some(i) = first_usable(&entries) {
            return Ok(i);
        }
        // `auto`'s GPU choice may have been unobtainable when the toolchain was ensured;
        // then `ensure` installed the CPU one, which is what `auto` has here.
        if request.backend == Backend::Auto {
            let cpu = ToolchainRequest {
                backend: Backend::Cpu,
                ..request.clone()
            };
            if let Some(i) = first_usable(&self.entries_for(&cpu).await?) {
                return Ok(i);
            }
        }
        Err(Error::NotCached {
            entry: entries.into_iter().next().map(|e| e.2).unwrap_or_default(),
        })
    }

    /// Makes sure the toolchain for `request` is installed or built, and returns it.
    ///
    /// Any published entry the request accepts (a prebuilt, or a build of the same version,
    /// backend, arguments and features) is returned without locking. Otherwise each origin
    /// is tried in turn: its entry lock is taken (waiting, with holder reports, up to the
    /// lock timeout), the entry re-checked, and its sources tried in order. Failure is
    /// always an error, recorded in the entry.
    pub async fn ensure(
        &self,
        request: &ToolchainRequest,
        progress: &SharedProgress,
    ) -> Result<Installed> {
        let Keyed {
            backend,
            reason,
            entries,
        } = self.keyed(request).await?;
        if let Some(i) = first_usable(&entries) {
            return Ok(i);
        }
        if request.backend == Backend::Auto {
            progress.event(ProgressEvent::Note {
                message: format!("backend auto: {backend} ({reason})"),
            });
        }
        self.layout.create()?;
        let resolved = ToolchainRequest {
            backend,
            ..request.clone()
        };
        let mut attempts = Vec::new();
        for (origin, fp, entry) in &entries {
            let job = EntryJob {
                request: &resolved,
                origin: *origin,
                fingerprint: fp,
                entry,
                reason: &reason,
            };
            match self.ensure_entry(&job, progress).await {
                Ok(i) => return Ok(i),
                // A source that could not be had is not final while other origins remain.
                Err(Error::AllSourcesFailed { attempts: a }) => attempts.extend(a),
                Err(e) => return Err(e),
            }
        }
        // `auto` picked a GPU backend on the machine's evidence (a loader or driver), but
        // neither its prebuilt nor its build could be had (offline, no SDK): the CPU is
        // always there, and a working CPU server beats none.
        if request.backend == Backend::Auto && backend != Backend::Cpu {
            progress.event(ProgressEvent::Note {
                message: format!("backend auto: {backend} could not be obtained; using cpu"),
            });
            let cpu = ToolchainRequest {
                backend: Backend::Cpu,
                ..request.clone()
            };
            return Box::pin(self.ensure(&cpu, progress))
                .await
                .map_err(|e| match e {
                    Error::AllSourcesFailed { attempts: cpu } => {
                        attempts.extend(cpu);
                        Error::AllSourcesFailed { attempts }
                    }
                    e => e,
                });
        }
        Err(Error::AllSourcesFailed { attempts })
    }

    async fn ensure_entry(
        &self,
        job: &EntryJob<'_>,
        progress: &SharedProgress,
    ) -> Result<Installed> {
        let (fp, entry) = (job.fingerprint, job.entry);
        let lock_path = self.layout.toolchains().join(format!("{fp}.lock"));
        let before = read_state(entry).ok().flatten();
        let guard = lock_exclusive(&lock_path, self.lock_timeout, progress).await?;
        // A corrupt state file is treated like a missing one: the entry is rebuilt.
        let previous = read_state(entry).unwrap_or_default();
        if let Some(state) = &previous {
            if let Some(i) = installed_from(entry, state) {
                progress.event(ProgressEvent::Note {
                    message: format!("{} was published while we waited", entry.display()),
                });
                return Ok(i);
            }
            if let Some(e) = shared_failure(before.as_ref(), state, job.origin) {
                return Err(e);
            }
        }
        let now = now_unix();
        let mut state = EntryState {
            schema: 2,
            status: EntryStatus::Building,
            fingerprint: fp.to_owned(),
            version: job.request.version.label(),
            obtained: None,
            origin: Some(job.origin),
            backend: job.request.backend,
            backend_reason: job.reason.to_owned(),
            mode: job.request.mode,
            cmake_args: Vec::new(),
            source: None,
            source_dir: None,
            llama_server: None,
            rpc_server: None,
            failures: previous.as_ref().map_or(0, |p| p.failures),
            last_error: previous.as_ref().and_then(|p| p.last_error.clone()),
            bin_size: 0,
            llama_server_size: 0,
            created_unix: previous.as_ref().map_or(now, |p| p.created_unix),
            updated_unix: now,
            request: job.request.clone(),
        };
        std::fs::create_dir_all(entry).ctx("create directory", entry)?;
        write_state(entry, &state)?;
        // Scratch dirs of earlier runs of this entry are stale (we hold its lock). They are
        // removed best effort: a build orphaned by a killed run may still be writing into
        // one, which is why every run works in its own directory.
        clear_stale_scratch(&self.layout.toolchains(), fp);
        let scratch = self
            .layout
            .toolchains()
            .join(format!(".{fp}.{}.scratch", std::process::id()));
        remove_all(&scratch)?;
        std::fs::create_dir_all(&scratch).ctx("create directory", &scratch)?;

        let result = match self.run(job, &scratch, progress).await {
            Ok(outcome) => self
                .publish(entry, &scratch, outcome, &mut state)
                .await
                .map_err(RunFailure::recorded),
            Err(f) => Err(f),
        };
        let _ = remove_all(&scratch);
        match result {
            Ok(installed) => Ok(installed),
            Err(RunFailure {
                error,
                record: false,
            }) => {
                // Nothing could be reached: that says nothing about the entry, so it is left
                // as it was before this run (and not created at all when it was new).
                match &previous {
                    Some(p) => {
                        let _ = write_state(entry, p);
                    }
                    None => {
                        if remove_all(entry).is_ok() {
                            guard.unlink();
                        }
                    }
                }
                Err(error)
            }
            Err(RunFailure { error, .. }) => {
                self.record_failure(entry, &mut state, &error, &guard, progress);
                Err(error)
            }
        }
    }

    /// Records a failed run in the entry's state, and purges the entry once it failed
    /// `fail_limit` times in a row.
    fn record_failure(
        &self,
        entry: &Path,
        state: &mut EntryState,
        error: &Error,
        guard: &crate::lock::LockGuard,
        progress: &SharedProgress,
    ) {
        state.status = EntryStatus::Failed;
        state.failures += 1;
        state.last_error = Some(error.to_string());
        state.updated_unix = now_unix();
        if state.failures >= self.fail_limit {
            progress.event(ProgressEvent::Note {
                message: format!(
                    "{} failed {} times in a row; purged it so the next run starts clean",
                    entry.display(),
                    state.failures
                ),
            });
            if remove_all(entry).is_ok() {
                guard.unlink();
            }
        } else {
            let _ = write_state(entry, state);
        }
    }

    async fn publish(
        &self,
        entry: &Path,
        scratch: &Path,
        outcome: Outcome,
        state: &mut EntryState,
    ) -> Result<Installed> {
        let server = exe_name(&state.request, "llama-server");
        let rpc = exe_name(&state.request, "rpc-server");
        let runner = Runner::for_target(&state.request.target_or_host());
        let server_path = outcome.bin.join(&server);
        if !server_path.is_file() {
            return Err(Error::ArtefactMissing {
                path: server_path,
                stage: "publishing".into(),
            });
        }
        make_executable(&server_path)?;
        let prefixed_rpc = outcome.bin.join(format!("ggml-{rpc}"));
        if !outcome.bin.join(&rpc).exists() && prefixed_rpc.is_file() {
            std::fs::rename(&prefixed_rpc, outcome.bin.join(&rpc)).ctx("rename", &prefixed_rpc)?;
        }
        let has_rpc = outcome.bin.join(&rpc).is_file();
        if has_rpc {
            make_executable(&outcome.bin.join(&rpc))?;
        }
        // Nothing is published that does not start: `--version` must answer (shared
        // libraries found, CPU supported), and `--help` is kept as the flags it accepts.
        // A cross build's binary is checked the same way where this machine can run it
        // (a Windows binary under Wine), and published unchecked where it cannot.
        let version_out = match outcome.version_output {
            Some(out) => Some(out),
            None => run_binary_with(&runner, &server_path, "--version").await?,
        };
        let obtained = version_out.as_deref().and_then(BinaryVersion::parse);
        let help = match version_out {
            Some(_) => run_binary_with(&runner, &server_path, "--help")
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
            None => String::new(),
        };
        let help_tmp = scratch.join(HELP_FILE);
        std::fs::write(&help_tmp, help.as_bytes()).ctx("write", &help_tmp)?;
        let server_size = std::fs::metadata(&server_path)
            .ctx("inspect", &server_path)?
            .len();
        sync_tree(&outcome.bin)?;
        let bin = entry.join("bin");
        if bin.exists() {
            // A stale bin/ from an earlier state is moved aside first; the state file still
            // says "building", so no reader trusts either directory in between.
            std::fs::rename(&bin, scratch.join("old-bin")).ctx("move aside", &bin)?;
        }
        std::fs::rename(&outcome.bin, &bin).ctx("publish", &bin)?;
        let help_path = entry.join(HELP_FILE);
        std::fs::rename(&help_tmp, &help_path).ctx("publish", &help_path)?;
        sync_dir(entry);
        state.status = EntryStatus::Ready;
        state.failures = 0;
        state.last_error = None;
        state.source = Some(outcome.source);
        state.source_dir = outcome.source_dir;
        state.cmake_args = outcome.cmake_args;
        state.obtained = obtained;
        state.llama_server = Some(server);
        state.rpc_server = has_rpc.then_some(rpc);
        state.bin_size = dir_size(&bin);
        state.llama_server_size = server_size;
        state.updated_unix = now_unix();
        write_state(entry, state)?;
        installed_from(entry, state).ok_or_else(|| Error::ArtefactMissing {
            path: bin,
            stage: "publishing".into(),
        })
    }

    async fn run(
        &self,
        job: &EntryJob<'_>,
        scratch: &Path,
        progress: &SharedProgress,
    ) -> Result<Outcome, RunFailure> {
        let request = &ToolchainRequest {
            sources: job.request.sources_of(job.origin),
            ..job.request.clone()
        };
        let cross = if job.origin == Origin::Built {
            self.cross_for_build(request).await?
        } else {
            None
        };
        let plan = plan_here(request, cross.as_ref());
        let ctx = Ctx {
            layout: &self.layout,
            downloader: &self.downloader,
            lock_timeout: self.lock_timeout,
            progress,
        };
        let mut attempts = Vec::new();
        // Whether a source was tried, and whether every one tried failed before reaching
        // anything (then the failure is not recorded, see `RunFailure`).
        let (mut tried, mut unreached) = (false, true);
        let backend_check = self.check_build_backend(request, cross.is_some(), &plan.os);
        if job.origin == Origin::Built
            && let Err(e) = backend_check
        {
            attempts.push(SourceAttempt {
                source: "build".into(),
                location: "-".into(),
                error: format!("skipped: {e}"),
            });
            return Err(RunFailure::recorded(Error::AllSourcesFailed { attempts }));
        }
        for ps in &plan.sources {
            let kind = ps.source.kind().to_owned();
            let location = ps.locations.join(" + ");
            if let Some(why) = &ps.skip {
                attempts.push(SourceAttempt {
                    source: kind,
                    location: if location.is_empty() {
                        "-".into()
                    } else {
                        location
                    },
                    error: format!("skipped: {why}"),
                });
                continue;
            }
            progress.event(ProgressEvent::Note {
                message: format!("trying {kind} ({location})"),
            });
            if ps.source.is_prebuilt() {
                match self.prebuilt(&ctx, request, &ps.source, scratch).await {
                    Ok(outcome) => return Ok(outcome),
                    Err(e) => {
                        tracing::debug!(%kind, "source failed: {e}");
                        tried = true;
                        unreached &= is_unreached(&e);
                        attempts.push(SourceAttempt {
                            source: kind,
                            location,
                            error: e.to_string(),
                        });
                        continue;
                    }
                }
            }
            let tree = match self.source_tree(&ctx, request, &ps.source, &location).await {
                Ok(t) => t,
                Err(e) => {
                    tried = true;
                    unreached &= is_unreached(&e);
                    attempts.push(SourceAttempt {
                        source: kind,
                        location,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            // A build failure is final: another copy of the same source would fail alike.
            let bin = self
                .build(&tree, &plan, &request.python, job.entry, scratch, progress)
                .await
                .map_err(RunFailure::recorded)?;
            return Ok(Outcome {
                bin,
                source: format!("{kind} {location}"),
                source_dir: Some(tree),
                cmake_args: plan.cmake_args.clone(),
                version_output: None,
            });
        }
        Err(RunFailure {
            error: Error::AllSourcesFailed { attempts },
            record: !(tried && unreached),
        })
    }

    /// The cross build a build for `request` needs, if any. A cross build this machine
    /// cannot do leaves the entry as it was (the failure is not recorded): it says
    /// nothing about what was asked for.
    async fn cross_for_build(
        &self,
        request: &ToolchainRequest,
    ) -> Result<Option<CrossBuild>, RunFailure> {
        match self.cross_build(request).await {
            Ok(c) => Ok(c),
            Err(error @ Error::CrossToolsMissing { .. }) => Err(RunFailure {
                error,
                record: false,
            }),
            Err(e) => Err(RunFailure {
                error: Error::AllSourcesFailed {
                    attempts: vec![SourceAttempt {
                        source: "build".into(),
                        location: "-".into(),
                        error: format!("skipped: {e}"),
                    }],
                },
                record: false,
            }),
        }
    }

    /// Whether a build can make `request`'s backend: a cross build (for `os`) makes the
    /// cpu backend only (see `resolve_backend`); a native one needs the backend's tools.
    fn check_build_backend(&self, request: &ToolchainRequest, cross: bool, os: &str) -> Result<()> {
        if !cross {
            return backend::check_available(request.backend, true, self.probes());
        }
        match request.backend {
            Backend::Auto | Backend::Cpu => Ok(()),
            other => Err(Error::BackendUnavailable {
                backend: other.to_string(),
                reason: format!("lmcpp builds for {os} with the cpu backend only"),
            }),
        }
    }

    /// Installs a prebuilt source into `scratch/bin`: the release listing's assets for this
    /// machine (trying CUDA labels newest first), or a prebuilt archive at a URL.
    async fn prebuilt(
        &self,
        ctx: &Ctx<'_>,
        request: &ToolchainRequest,
        src: &Source,
        scratch: &Path,
    ) -> Result<Outcome> {
        let server = exe_name(request, "llama-server");
        let bin = scratch.join("bin");
        let runner = Runner::for_target(&request.target_or_host());
        let (dir, label, version_output) = match src {
            Source::PrebuiltUrl { url, sha256 } => {
                let archives = [(url.clone(), sha256.clone(), None)];
                let dir = source::install_prebuilt(ctx, &archives, scratch, &server).await?;
                let version = run_binary_with(&runner, &dir.join(&server), "--version").await?;
                (dir, url.clone(), version)
            }
            _ => {
                self.release_prebuilt(ctx, request, scratch, &server)
                    .await?
            }
        };
        std::fs::rename(&dir, &bin).ctx("move into", &bin)?;
        Ok(Outcome {
            bin,
            source: format!("{} {label}", src.kind()),
            source_dir: None,
            cmake_args: Vec::new(),
            version_output,
        })
    }

    /// The release listing's assets for this machine, tried in order (CUDA labels newest
    /// first) until one extracts and runs `--version`: its directory in scratch, the asset
    /// names and what `--version` printed.
    async fn release_prebuilt(
        &self,
        ctx: &Ctx<'_>,
        request: &ToolchainRequest,
        scratch: &Path,
        server: &str,
    ) -> Result<(PathBuf, String, Option<String>)> {
        let tag = request
            .version
            .tag
            .as_deref()
            .ok_or(Error::InvalidRequest {
                reason: "a prebuilt release needs a release tag".into(),
            })?;
        let api = request.github_api.trim_end_matches('/');
        let listing = source::release_listing(ctx, &format!("{api}/releases/tags/{tag}")).await?;
        let cuda = crate::toolchain::release::CudaPreference {
            label: request.cuda_label.clone(),
            driver_max: self.probes().cuda_driver,
        };
        let target = request.target_or_host();
        let runner = Runner::for_target(&target);
        let choices = crate::toolchain::release::choose_assets(
            &listing,
            &target.os,
            &target.arch,
            request.backend,
            &cuda,
        )
        .map_err(|reason| Error::NoPrebuilt { reason })?;
        let mut failures = Vec::new();
        // The first failure that reached nothing, kept while every failure is one: then
        // this source as a whole reached nothing (see `RunFailure`).
        let mut unreached: Option<Error> = None;
        let mut all_unreached = true;
        for choice in choices {
            let archives: Vec<_> = choice
                .assets
                .iter()
                .map(|a| {
                    let sha = a
                        .sha256()
                        .or_else(|| request.version.asset_sha256.get(&a.name).cloned());
                    (a.browser_download_url.clone(), sha, Some(a.size))
                })
                .collect();
            let names = choice
                .assets
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(" + ");
            let attempt = async {
                let dir = source::install_prebuilt(ctx, &archives, scratch, server).await?;
                let version = run_binary_with(&runner, &dir.join(server), "--version").await?;
                Ok::<_, Error>((dir, version))
            };
            match attempt.await {
                Ok((dir, version)) => return Ok((dir, names, version)),
                Err(e) => {
                    failures.push(format!("{names}: {e}"));
                    for i in 0..choice.assets.len() {
                        let _ = remove_all(&scratch.join(format!("prebuilt-{i}")));
                    }
                    all_unreached &= is_unreached(&e);
                    if unreached.is_none() && is_unreached(&e) {
                        unreached = Some(e);
                    }
                }
            }
        }
        match unreached {
            // The listing answered but no asset download reached its host: as offline
            // as an unreachable listing, so it must not be recorded as this entry's failure.
            Some(e) if all_unreached => Err(e),
            _ => Err(Error::NoPrebuilt {
                reason: failures.join("; "),
            }),
        }
    }

    /// The cross build `request` takes on this machine: `None` for its own target, else
    /// the cross compilers found (and a C++ compiler with POSIX threads checked), or why
    /// it cannot be done here.
    async fn cross_build(&self, request: &ToolchainRequest) -> Result<Option<CrossBuild>> {
        let Some(spec) = cross_spec(&request.target_or_host(), &Target::host())? else {
            return Ok(None);
        };
        let build = CrossBuild::find(spec)?;
        if let Some(cxx) = build.cxx() {
            let mut cmd = tokio::process::Command::new(cxx);
            cmd.arg("-v");
            // `gcc -v` prints its configuration to stderr; a compiler that cannot even say
            // that fails the build later with its own error.
            if let Ok(Ok(out)) = tokio::time::timeout(VERSION_TIMEOUT, cmd.output()).await {
                build.check_thread_model(&String::from_utf8_lossy(&out.stderr))?;
            }
        }
        Ok(Some(build))
    }

    async fn source_tree(
        &self,
        ctx: &Ctx<'_>,
        request: &ToolchainRequest,
        src: &Source,
        location: &str,
    ) -> Result<PathBuf> {
        match src {
            Source::LocalDir(p) => {
                let p = std::fs::canonicalize(p).ctx("resolve", p)?;
                source::check_tree(&p)?;
                Ok(p)
            }
            Source::PypiSdist => {
                let pin = request
                    .version
                    .pypi
                    .as_ref()
                    .ok_or_else(|| Error::InvalidRequest {
                        reason: "no llama-cpp-python version configured".into(),
                    })?;
                source::pypi_sdist(ctx, &request.python, &pin.version, pin.sha256.as_deref()).await
            }
            Source::GithubSource => {
                source::source_archive(ctx, location, request.version.source_sha256.as_deref())
                    .await
            }
            Source::LocalArchive { path, sha256 } => {
                source::source_archive(ctx, &path.to_string_lossy(), sha256.as_deref()).await
            }
            Source::Url { url, sha256 } => {
                source::source_archive(ctx, url, sha256.as_deref()).await
            }
            Source::GithubRelease | Source::PrebuiltUrl { .. } => Err(Error::InvalidRequest {
                reason: "a prebuilt source has no source tree".into(),
            }),
        }
    }

    async fn build(
        &self,
        tree: &Path,
        plan: &Plan,
        python: &str,
        entry: &Path,
        scratch: &Path,
        progress: &SharedProgress,
    ) -> Result<PathBuf> {
        let cmake =
            cmake::find_or_bootstrap(&self.layout, python, self.lock_timeout, progress).await?;
        let mut plan = plan.clone();
        let rpc = crate::toolchain::plan::exe(&plan.os, "rpc-server");
        if plan.artefacts.contains(&rpc) {
            match source::rpc_target(tree) {
                Some(target) => plan.build_targets.push(target),
                None => {
                    progress.event(ProgressEvent::Note {
                        message: "this llama.cpp has no rpc-server target; building without it"
                            .into(),
                    });
                    plan.artefacts.retain(|a| *a != rpc);
                    plan.cmake_args.retain(|a| a != "-DGGML_RPC=ON");
                }
            }
        }
        let plan = &plan;
        let log = entry.join(BUILD_LOG);
        std::fs::write(&log, b"").ctx("create", &log)?;
        let build_dir = scratch.join("build");
        match self.driver {
            BuildDriver::CmakeCli => {
                cmake::configure_and_build(
                    &cmake,
                    tree,
                    &build_dir,
                    &plan.cmake_args,
                    &plan.build_targets,
                    &log,
                    progress,
                )
                .await?;
            }
            BuildDriver::CmakeCrate => {
                let (tree, out, plan) = (tree.to_path_buf(), scratch.to_path_buf(), plan.clone());
                tokio::task::spawn_blocking(move || {
                    cmake::build_with_cmake_crate(&cmake, &tree, &out, &plan)
                })
                .await
                .map_err(crate::error::join_error)??;
            }
        }
        let bin = scratch.join("bin");
        std::fs::create_dir_all(&bin).ctx("create directory", &bin)?;
        for artefact in &plan.artefacts {
            // Upstream prefixes some tool binaries with `ggml-` (`ggml-rpc-server`).
            let prefixed = format!("ggml-{artefact}");
            let found = [
                build_dir.join("bin").join(artefact),
                build_dir.join("bin").join("Release").join(artefact),
                build_dir.join("bin").join(&prefixed),
                build_dir.join("bin").join("Release").join(&prefixed),
            ]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| Error::ArtefactMissing {
                path: build_dir.join("bin").join(artefact),
                stage: "the cmake build".into(),
            })?;
            let dest = bin.join(artefact);
            std::fs::rename(&found, &dest).ctx("move into", &dest)?;
        }
        Ok(bin)
    }
}

/// The fingerprint a scratch directory name (`.<fp>.<pid>.scratch`) belongs to.
pub(crate) fn scratch_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?.strip_suffix(".scratch")?;
    Some(rest.split('.').next().unwrap_or(rest))
}

fn clear_stale_scratch(toolchains: &Path, fp: &str) {
    let Ok(rd) = std::fs::read_dir(toolchains) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if scratch_owner(&name) == Some(fp) {
            let _ = remove_all(&e.path());
        }
    }
}

/// A request's resolved backend (and why) and its entries (origin, fingerprint, directory).
struct Keyed {
    backend: Backend,
    reason: String,
    entries: Vec<(Origin, String, PathBuf)>,
}

/// The first of `entries` that is published and usable.
fn first_usable(entries: &[(Origin, String, PathBuf)]) -> Option<Installed> {
    entries.iter().find_map(|(_, _, dir)| {
        let state = read_state(dir).ok().flatten()?;
        installed_from(dir, &state)
    })
}

/// One origin of one request, as `ensure` works on it.
struct EntryJob<'a> {
    request: &'a ToolchainRequest,
    origin: Origin,
    fingerprint: &'a str,
    entry: &'a Path,
    reason: &'a str,
}

/// The failure another process recorded while we waited for the entry (the state changed
/// between our look before locking and after), if it is recent: its waiters get it instead
/// of re-running a build that just failed.
fn shared_failure(
    before: Option<&EntryState>,
    state: &EntryState,
    origin: Origin,
) -> Option<Error> {
    let recent = state.updated_unix + SHARED_FAILURE_WINDOW.as_secs() >= now_unix();
    let changed = before.is_none_or(|b| {
        b.failures != state.failures
            || b.updated_unix != state.updated_unix
            || b.status != state.status
    });
    if state.status != EntryStatus::Failed || !changed || !recent {
        return None;
    }
    let message = state.last_error.clone().unwrap_or_default();
    Some(match origin {
        // Prebuilt failures are "source could not be had": the next origin may still work.
        Origin::Prebuilt => Error::AllSourcesFailed {
            attempts: vec![SourceAttempt {
                source: "prebuilt".into(),
                location: "-".into(),
                error: format!("failed in another process just now: {message}"),
            }],
        },
        Origin::Built => Error::FailedWhileWaiting {
            entry: state.fingerprint.clone(),
            message,
        },
    })
}

/// The plan for `request` built on this machine: its target's plan, with a cross build's
/// CMake arguments placed before the request's own (which may override them).
fn plan_here(request: &ToolchainRequest, cross: Option<&CrossBuild>) -> Plan {
    let target = request.target_or_host();
    let mut p = plan(request, &target.os, &target.arch);
    if let Some(cross) = cross {
        let at = p.cmake_args.len().saturating_sub(request.cmake_args.len());
        p.cmake_args.splice(at..at, cross.cmake_args());
    }
    p
}

/// [`run_binary`] for a binary built for a target `runner` runs (directly, or under Wine);
/// `Ok(None)` when this machine cannot run it at all.
pub(crate) async fn run_binary_with(
    runner: &Runner,
    binary: &Path,
    arg: &str,
) -> Result<Option<String>> {
    match runner.command(binary) {
        Some(cmd) => run_command(cmd, binary, arg).await.map(Some),
        None => Ok(None),
    }
}

/// Runs a `llama-server` (published, about to be, or any given by path) with one argument
/// (`--version`, `--help`), bounded in time, and returns stdout and stderr together; a
/// failure carries the tail of that output.
pub async fn run_binary(binary: &Path, arg: &str) -> Result<String> {
    run_command(tokio::process::Command::new(binary), binary, arg).await
}

/// Runs `cmd` (which runs `binary`) with `arg`; see [`run_binary`].
async fn run_command(mut cmd: tokio::process::Command, binary: &Path, arg: &str) -> Result<String> {
    let command = format!("{} {arg}", binary.display());
    let run = cmd
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(VERSION_TIMEOUT, run)
        .await
        .map_err(|_| Error::CommandFailed {
            command: command.clone(),
            status: format!("timed out after {VERSION_TIMEOUT:?}"),
            log: None,
            tail: String::new(),
        })?
        .map_err(|source| Error::Spawn {
            program: binary.display().to_string(),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let tail = text.lines().rev().take(20).collect::<Vec<_>>();
        return Err(Error::CommandFailed {
            command,
            status: out.status.to_string(),
            log: None,
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(text)
}

/// Flushes every file under `dir` (and the directories) to disk, so the publishing rename
/// never exposes binaries whose data a crash could lose.
fn sync_tree(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).ctx("read directory", dir)?.flatten() {
        let p = e.path();
        let t = e.file_type().ctx("inspect", &p)?;
        if t.is_dir() {
            sync_tree(&p)?;
        } else if t.is_file() {
            // Windows flushes a file only through a handle that may write to it
            // (`FlushFileBuffers`); elsewhere a read-only handle does, and files that
            // are read-only by their mode can still be synced.
            let file = if cfg!(windows) {
                std::fs::OpenOptions::new().write(true).open(&p)
            } else {
                std::fs::File::open(&p)
            };
            file.and_then(|f| f.sync_all()).ctx("sync", &p)?;
        }
    }
    sync_dir(dir);
    Ok(())
}

fn make_executable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).ctx("inspect", path)?;
        let mode = meta.permissions().mode();
        if mode & 0o111 != 0o111 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o755))
                .ctx("make executable", path)?;
        }
    }
    // Gatekeeper refuses to run a binary marked as downloaded by a browser; an archive
    // the user fetched that way passes the mark to what is unpacked from it. lmcpp's own
    // downloads are never marked, so a missing attribute is the usual case.
    #[cfg(target_os = "macos")]
    {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
            // SAFETY: NUL-terminated path and attribute name; no options.
            unsafe { libc::removexattr(c.as_ptr(), c"com.apple.quarantine".as_ptr(), 0) };
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn windows() -> Target {
        "x86_64-pc-windows-gnu".parse().unwrap()
    }

    /// A cross build with every tool "found" under /usr/bin (no machine is looked at).
    fn mingw() -> CrossBuild {
        let spec = cross_spec(&windows(), &"linux-x86_64".parse().unwrap())
            .unwrap()
            .unwrap();
        CrossBuild::resolve(spec, |n| Some(PathBuf::from("/usr/bin").join(n))).unwrap()
    }

    #[test]
    fn a_cross_plan_configures_for_the_target_and_lets_the_request_override() {
        let request = ToolchainRequest {
            target: Some(windows()),
            cmake_args: vec!["-DGGML_AVX2=ON".into()],
            ..ToolchainRequest::default()
        };
        let p = plan_here(&request, Some(&mingw()));
        assert_eq!(p.artefacts, ["llama-server.exe", "rpc-server.exe"]);
        assert_eq!(p.prebuilt_assets, ["llama-b11312-bin-win-cpu-x64.zip"]);
        let at = |a: &str| p.cmake_args.iter().position(|x| x == a).unwrap();
        // The target's own plan, then the cross build's arguments, then the request's.
        assert!(at("-DGGML_RPC=ON") < at("-DCMAKE_SYSTEM_NAME=Windows"));
        assert!(at("-DCMAKE_SYSTEM_NAME=Windows") < at("-DGGML_AVX2=ON"));
        assert_eq!(
            p.cmake_args.last().map(String::as_str),
            Some("-DGGML_AVX2=ON")
        );
        // Without a cross build the plan is the target's plan as `cargo xtask matrix` shows it.
        let native = plan_here(&request, None);
        assert_eq!(native, plan(&request, "windows", "x86_64"));
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[tokio::test]
    async fn cross_targets_resolve_to_cpu_and_unsupported_builds_are_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        // Probes claiming every device: a cross target must not look at them.
        let probes = Probes {
            nvidia: Some("n".into()),
            nvcc: Some("c".into()),
            vulkan: Some("v".into()),
            glslc: Some("g".into()),
            ..Probes::default()
        };
        let tc = Toolchain::new(Some(dir.path()))
            .unwrap()
            .with_probes(probes);
        let cross = ToolchainRequest {
            target: Some(windows()),
            ..ToolchainRequest::default()
        };
        assert_eq!(tc.resolve_backend(&cross).unwrap().0, Backend::Cpu);
        let vulkan_build = ToolchainRequest {
            backend: Backend::Vulkan,
            mode: Mode::BuildOnly,
            ..cross.clone()
        };
        let err = tc.resolve_backend(&vulkan_build).unwrap_err().to_string();
        assert!(err.contains("cpu backend only"), "{err}");
        // The prebuilt windows vulkan release may still be installed.
        let vulkan_install = ToolchainRequest {
            mode: Mode::InstallOnly,
            ..vulkan_build
        };
        assert_eq!(
            tc.resolve_backend(&vulkan_install).unwrap().0,
            Backend::Vulkan
        );

        let mac = ToolchainRequest {
            target: Some("aarch64-apple-darwin".parse().unwrap()),
            mode: Mode::BuildOnly,
            ..ToolchainRequest::default()
        };
        let err = tc.entries_for(&mac).await.unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedTarget { .. }) && err.is_user_error(),
            "{err}"
        );
        // With prebuilt allowed, the request maps to its entries (the build is skipped later).
        let mac_any = ToolchainRequest {
            mode: Mode::BuildOrInstall,
            ..mac
        };
        assert_eq!(tc.entries_for(&mac_any).await.unwrap().len(), 2);
        assert!(
            !dir.path().join("toolchains").exists(),
            "nothing was written"
        );
    }

    #[test]
    fn scratch_names_map_to_their_entry() {
        assert_eq!(scratch_owner(".abc123.42.scratch"), Some("abc123"));
        assert_eq!(scratch_owner(".abc123.scratch"), Some("abc123"));
        assert_eq!(scratch_owner("abc123.lock"), None);
        assert_eq!(scratch_owner(".tmp-x"), None);
    }
}
