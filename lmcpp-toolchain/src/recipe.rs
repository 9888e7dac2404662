//! The recipe state machine: request → fingerprint → entry → lock → re-check → work in
//! scratch → publish `bin/` with one rename → persist `state.json` atomically.
//!
//! An entry directory `<root>/toolchains/<fingerprint>/` holds `state.json`, `build.log`
//! and, once published, `bin/`. Its lock is `<root>/toolchains/<fingerprint>.lock` and its
//! scratch dir `<root>/toolchains/.<fingerprint>.<pid>.scratch` (same filesystem, so the publish
//! is a rename). A run that fails records the failure; after `fail_limit` consecutive
//! failures the entry is purged so the next run starts clean.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::backend::{self, Backend, Probes};
use crate::cache::{CacheLayout, atomic_write, dir_size, remove_all, sync_dir};
use crate::cmake;
use crate::download::{DownloadOptions, Downloader};
use crate::error::{Error, IoContext, Result, SourceAttempt};
use crate::lock::lock_exclusive;
use crate::plan::{Plan, plan};
use crate::progress::{ProgressEvent, SharedProgress};
use crate::request::{Mode, Source, ToolchainRequest};
use crate::source::{self, Ctx};

/// Name of the state file inside an entry.
pub const STATE_FILE: &str = "state.json";
/// Name of the build log inside an entry.
pub const BUILD_LOG: &str = "build.log";
/// Consecutive failures after which an entry is purged.
pub const DEFAULT_FAIL_LIMIT: u32 = 3;
/// Default wait for an entry held by another thread or process (a cold build takes minutes).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);

/// Lifecycle of an entry as persisted in `state.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryStatus {
    /// Work is in progress (or a run was killed mid-way; see [`crate::manage`]).
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
    /// llama.cpp version label (tag or commit).
    pub version: String,
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

/// The installed toolchain described by a ready state, if its binary is present.
pub(crate) fn installed_from(entry: &Path, state: &EntryState) -> Option<Installed> {
    if state.status != EntryStatus::Ready {
        return None;
    }
    let bin = entry.join("bin");
    let server = bin.join(state.llama_server.as_deref()?);
    if !server.is_file() {
        return None;
    }
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
    })
}

fn exe_name(name: &str) -> String {
    crate::plan::exe(std::env::consts::OS, name)
}

/// What a successful run leaves in scratch.
struct Outcome {
    bin: PathBuf,
    source: String,
    source_dir: Option<PathBuf>,
    cmake_args: Vec<String>,
}

/// How a source tree is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildDriver {
    /// The cmake command line, with output streamed to `build.log` and progress events.
    #[default]
    CmakeCli,
    /// The `cmake` crate, for use inside a downstream crate's `build.rs` (see
    /// [`crate::build_script`]); output goes to cargo's build-script log.
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

    /// Resolves `auto` and checks an explicit backend is usable, before any work.
    pub fn resolve_backend(&self, request: &ToolchainRequest) -> Result<(Backend, String)> {
        match request.backend {
            Backend::Auto => {
                let d = backend::choose(self.probes());
                return Ok((d.backend, d.reason));
            }
            // The CPU is always there; no need to look at the machine.
            Backend::Cpu => return Ok((Backend::Cpu, "requested".into())),
            _ => {}
        }
        let building = request.mode == Mode::BuildOnly;
        backend::check_available(request.backend, building, self.probes())?;
        Ok((request.backend, "requested".into()))
    }

    /// The fingerprint and entry directory `request` maps to on this machine.
    pub fn entry_for(&self, request: &ToolchainRequest) -> Result<(String, PathBuf)> {
        let (backend, _) = self.resolve_backend(request)?;
        let fp = request.fingerprint(backend);
        let dir = self.layout.toolchain_entry(&fp);
        Ok((fp, dir))
    }

    /// The plan for `request` on this machine (backend resolved).
    pub fn plan(&self, request: &ToolchainRequest) -> Result<Plan> {
        let (backend, _) = self.resolve_backend(request)?;
        let resolved = ToolchainRequest {
            backend,
            ..request.clone()
        };
        Ok(plan(
            &resolved,
            std::env::consts::OS,
            std::env::consts::ARCH,
        ))
    }

    /// Returns the cached toolchain for `request` without any network or build work.
    pub async fn ensure_cached(&self, request: &ToolchainRequest) -> Result<Installed> {
        let (_, entry) = self.entry_for(request)?;
        match read_state(&entry)? {
            Some(state) => installed_from(&entry, &state).ok_or(Error::NotCached { entry }),
            None => Err(Error::NotCached { entry }),
        }
    }

    /// Makes sure the toolchain for `request` is installed or built, and returns it.
    ///
    /// A published entry is returned without locking. Otherwise the entry lock is taken
    /// (waiting, with holder reports, up to the lock timeout), the entry re-checked, and
    /// the sources tried in order. Failure is always an error, recorded in the entry.
    pub async fn ensure(
        &self,
        request: &ToolchainRequest,
        progress: &SharedProgress,
    ) -> Result<Installed> {
        let (backend, reason) = self.resolve_backend(request)?;
        let fp = request.fingerprint(backend);
        let entry = self.layout.toolchain_entry(&fp);
        if let Ok(Some(state)) = read_state(&entry)
            && let Some(i) = installed_from(&entry, &state)
        {
            return Ok(i);
        }
        self.layout.create()?;
        let lock_path = self.layout.toolchains().join(format!("{fp}.lock"));
        let guard = lock_exclusive(&lock_path, self.lock_timeout, progress).await?;
        // A corrupt state file is treated like a missing one: the entry is rebuilt.
        let previous = read_state(&entry).unwrap_or_default();
        if let Some(state) = &previous
            && let Some(i) = installed_from(&entry, state)
        {
            progress.event(ProgressEvent::Note {
                message: format!("{} was published while we waited", entry.display()),
            });
            return Ok(i);
        }
        let resolved = ToolchainRequest {
            backend,
            ..request.clone()
        };
        let now = now_unix();
        let mut state = EntryState {
            schema: 1,
            status: EntryStatus::Building,
            fingerprint: fp.clone(),
            version: request.version.label().to_owned(),
            backend,
            backend_reason: reason,
            mode: request.mode,
            cmake_args: Vec::new(),
            source: None,
            source_dir: None,
            llama_server: None,
            rpc_server: None,
            failures: previous.as_ref().map_or(0, |p| p.failures),
            last_error: previous.as_ref().and_then(|p| p.last_error.clone()),
            bin_size: 0,
            created_unix: previous.as_ref().map_or(now, |p| p.created_unix),
            updated_unix: now,
            request: request.clone(),
        };
        std::fs::create_dir_all(&entry).ctx("create directory", &entry)?;
        write_state(&entry, &state)?;
        // Scratch dirs of earlier runs of this entry are stale (we hold its lock). They are
        // removed best effort: a build orphaned by a killed run may still be writing into
        // one, which is why every run works in its own directory.
        clear_stale_scratch(&self.layout.toolchains(), &fp);
        let scratch = self
            .layout
            .toolchains()
            .join(format!(".{fp}.{}.scratch", std::process::id()));
        remove_all(&scratch)?;
        std::fs::create_dir_all(&scratch).ctx("create directory", &scratch)?;

        let result = self.run(&resolved, &entry, &scratch, progress).await;
        let result = match result {
            Ok(outcome) => self.publish(&entry, &scratch, outcome, &mut state),
            Err(e) => Err(e),
        };
        let _ = remove_all(&scratch);
        match result {
            Ok(installed) => Ok(installed),
            Err(e) => {
                state.status = EntryStatus::Failed;
                state.failures += 1;
                state.last_error = Some(e.to_string());
                state.updated_unix = now_unix();
                if state.failures >= self.fail_limit {
                    progress.event(ProgressEvent::Note {
                        message: format!(
                            "{} failed {} times in a row; purged it so the next run starts clean",
                            entry.display(),
                            state.failures
                        ),
                    });
                    if remove_all(&entry).is_ok() {
                        guard.unlink();
                    }
                } else {
                    let _ = write_state(&entry, &state);
                }
                Err(e)
            }
        }
    }

    fn publish(
        &self,
        entry: &Path,
        scratch: &Path,
        outcome: Outcome,
        state: &mut EntryState,
    ) -> Result<Installed> {
        let server = exe_name("llama-server");
        let rpc = exe_name("rpc-server");
        if !outcome.bin.join(&server).is_file() {
            return Err(Error::ArtefactMissing {
                path: outcome.bin.join(&server),
                stage: "publishing".into(),
            });
        }
        make_executable(&outcome.bin.join(&server))?;
        let prefixed_rpc = outcome.bin.join(format!("ggml-{rpc}"));
        if !outcome.bin.join(&rpc).exists() && prefixed_rpc.is_file() {
            std::fs::rename(&prefixed_rpc, outcome.bin.join(&rpc)).ctx("rename", &prefixed_rpc)?;
        }
        let has_rpc = outcome.bin.join(&rpc).is_file();
        if has_rpc {
            make_executable(&outcome.bin.join(&rpc))?;
        }
        let bin = entry.join("bin");
        if bin.exists() {
            // A stale bin/ from an earlier state is moved aside first; the state file still
            // says "building", so no reader trusts either directory in between.
            std::fs::rename(&bin, scratch.join("old-bin")).ctx("move aside", &bin)?;
        }
        std::fs::rename(&outcome.bin, &bin).ctx("publish", &bin)?;
        sync_dir(entry);
        state.status = EntryStatus::Ready;
        state.failures = 0;
        state.last_error = None;
        state.source = Some(outcome.source);
        state.source_dir = outcome.source_dir;
        state.cmake_args = outcome.cmake_args;
        state.llama_server = Some(server);
        state.rpc_server = has_rpc.then_some(rpc);
        state.bin_size = dir_size(&bin);
        state.updated_unix = now_unix();
        write_state(entry, state)?;
        installed_from(entry, state).ok_or_else(|| Error::ArtefactMissing {
            path: bin,
            stage: "publishing".into(),
        })
    }

    async fn run(
        &self,
        request: &ToolchainRequest,
        entry: &Path,
        scratch: &Path,
        progress: &SharedProgress,
    ) -> Result<Outcome> {
        let plan = plan(request, std::env::consts::OS, std::env::consts::ARCH);
        let ctx = Ctx {
            layout: &self.layout,
            downloader: &self.downloader,
            lock_timeout: self.lock_timeout,
            progress,
        };
        let server = exe_name("llama-server");
        let mut attempts = Vec::new();
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
                let archives = prebuilt_archives(request, ps, &plan);
                match source::install_prebuilt(&ctx, &archives, scratch, &server).await {
                    Ok(dir) => {
                        let bin = scratch.join("bin");
                        std::fs::rename(&dir, &bin).ctx("move into", &bin)?;
                        return Ok(Outcome {
                            bin,
                            source: format!("{kind} {location}"),
                            source_dir: None,
                            cmake_args: Vec::new(),
                        });
                    }
                    Err(e) => {
                        tracing::debug!(%kind, "source failed: {e}");
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
                .build(&tree, &plan, &request.python, entry, scratch, progress)
                .await?;
            return Ok(Outcome {
                bin,
                source: format!("{kind} {location}"),
                source_dir: Some(tree),
                cmake_args: plan.cmake_args.clone(),
            });
        }
        Err(Error::AllSourcesFailed { attempts })
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
                    crate::build_script::build_with_cmake_crate(&cmake, &tree, &out, &plan)
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

/// The archives (URL and expected digest) of a prebuilt source.
fn prebuilt_archives(
    request: &ToolchainRequest,
    ps: &crate::plan::PlannedSource,
    plan: &Plan,
) -> Vec<(String, Option<String>)> {
    match &ps.source {
        Source::PrebuiltUrl { url, sha256 } => vec![(url.clone(), sha256.clone())],
        _ => ps
            .locations
            .iter()
            .zip(&plan.prebuilt_assets)
            .map(|(url, asset)| {
                (
                    url.clone(),
                    request.version.asset_sha256.get(asset).cloned(),
                )
            })
            .collect(),
    }
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
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_map_to_their_entry() {
        assert_eq!(scratch_owner(".abc123.42.scratch"), Some("abc123"));
        assert_eq!(scratch_owner(".abc123.scratch"), Some("abc123"));
        assert_eq!(scratch_owner("abc123.lock"), None);
        assert_eq!(scratch_owner(".tmp-x"), None);
    }
}
