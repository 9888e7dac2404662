//! Managing cached toolchains: list, status, validate, remove one entry, prune broken ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{dir_size, remove_all};
use crate::error::{Error, Result};
use crate::lock::{current_holder, lock_exclusive};
use crate::progress::SharedProgress;
use crate::toolchain::backend::Backend;
use crate::toolchain::handle::Toolchain;
use crate::toolchain::request::ToolchainRequest;
use crate::toolchain::state::{EntryState, EntryStatus, Installed, installed_from, read_state};

/// One cache entry as shown by `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The fingerprint (directory name).
    pub fingerprint: String,
    /// The entry directory.
    pub dir: PathBuf,
    /// Status from the state file; `None` when the state file is missing or unreadable.
    pub status: Option<EntryStatus>,
    /// Whether the entry is usable right now (ready and its binary present).
    pub usable: bool,
    /// llama.cpp version label as requested (tag, commit or `pypi:<version>`).
    pub version: String,
    /// What the binary reports (`b11312 (0c1e5709)`), the version actually obtained.
    pub obtained: Option<String>,
    /// Prebuilt or built.
    pub origin: Option<crate::toolchain::request::Origin>,
    /// Backend.
    pub backend: Option<Backend>,
    /// The OS and architecture the binaries are for (this machine unless cross-built).
    pub target: Option<crate::toolchain::target::Target>,
    /// Source that produced it.
    pub source: Option<String>,
    /// Bytes on disk.
    pub size: u64,
    /// Consecutive failures.
    pub failures: u32,
    /// Last error, for failed entries.
    pub last_error: Option<String>,
    /// Seconds since the Unix epoch of the last update.
    pub updated_unix: u64,
    /// Who is working on the entry right now (holds its lock), e.g. `pid 42: lmcpp ...`.
    /// A `building` entry without a holder was left by a killed run; `prune` removes it.
    pub busy: Option<String>,
}

fn info(dir: &Path, fingerprint: String, state: Option<&EntryState>) -> EntryInfo {
    EntryInfo {
        fingerprint,
        dir: dir.to_path_buf(),
        status: state.map(|s| s.status),
        usable: state.is_some_and(|s| installed_from(dir, s).is_some()),
        version: state.map(|s| s.version.clone()).unwrap_or_default(),
        obtained: state.and_then(|s| s.obtained.as_ref().map(|v| v.label())),
        origin: state.and_then(|s| s.origin),
        backend: state.map(|s| s.backend),
        target: state.map(|s| s.request.target_or_host()),
        source: state.and_then(|s| s.source.clone()),
        size: dir_size(dir),
        failures: state.map_or(0, |s| s.failures),
        last_error: state.and_then(|s| s.last_error.clone()),
        updated_unix: state.map_or(0, |s| s.updated_unix),
        busy: dir.file_name().and_then(|n| {
            let lock = dir.with_file_name(format!("{}.lock", n.to_string_lossy()));
            current_holder(&lock)
        }),
    }
}

/// What `status` knows about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestStatus {
    /// The fingerprint the request maps to.
    pub fingerprint: String,
    /// The entry directory it maps to.
    pub entry_dir: PathBuf,
    /// The entry, when one exists.
    pub entry: Option<EntryInfo>,
}

impl Toolchain {
    /// All entries under `toolchains/`, sorted by fingerprint.
    pub fn list(&self) -> Result<Vec<EntryInfo>> {
        let dir = self.layout.toolchains();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io("read directory", dir, e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            let state = read_state(&path).ok().flatten();
            out.push(info(&path, name, state.as_ref()));
        }
        out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        Ok(out)
    }

    /// Where `request` maps to and what is there.
    pub async fn status(&self, request: &ToolchainRequest) -> Result<RequestStatus> {
        let (fingerprint, entry_dir) = self.entry_for(request).await?;
        let entry = if entry_dir.is_dir() {
            let state = read_state(&entry_dir).ok().flatten();
            Some(info(&entry_dir, fingerprint.clone(), state.as_ref()))
        } else {
            None
        };
        Ok(RequestStatus {
            fingerprint,
            entry_dir,
            entry,
        })
    }

    /// Checks that the cached toolchain for `request` runs: `llama-server --version`
    /// must exit successfully within 30 s (under Wine for a Windows cross build; a cross
    /// build this machine cannot run is only checked to be there).
    pub async fn validate(&self, request: &ToolchainRequest) -> Result<Installed> {
        let installed = self.ensure_cached(request).await?;
        let runner = crate::toolchain::target::Runner::for_target(&request.target_or_host());
        crate::toolchain::binary::run_binary_with(&runner, &installed.llama_server, "--version")
            .await?;
        Ok(installed)
    }

    /// Removes the entry of `request` only (other versions, backends and argument sets
    /// stay). Waits for the entry lock. Returns whether something was removed.
    pub async fn remove(
        &self,
        request: &ToolchainRequest,
        progress: &SharedProgress,
    ) -> Result<bool> {
        let (fp, _) = self.entry_for(request).await?;
        self.remove_fingerprint(&fp, progress).await
    }

    /// Removes one entry by fingerprint (as shown by [`Toolchain::list`]).
    pub async fn remove_fingerprint(
        &self,
        fingerprint: &str,
        progress: &SharedProgress,
    ) -> Result<bool> {
        if fingerprint.is_empty() || !fingerprint.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::InvalidRequest {
                reason: format!("{fingerprint:?} is not a toolchain fingerprint"),
            });
        }
        let dir = self.layout.toolchain_entry(fingerprint);
        if !dir.exists() {
            return Ok(false);
        }
        let lock = self.layout.toolchains().join(format!("{fingerprint}.lock"));
        let guard = lock_exclusive(&lock, self.lock_timeout, progress).await?;
        let existed = dir.exists();
        remove_all(&dir)?;
        guard.unlink();
        Ok(existed)
    }

    /// Removes entries that are not usable (failed, or left mid-work by a killed process)
    /// and leftover scratch directories, skipping anything currently locked. Returns the
    /// paths removed.
    pub async fn prune(&self, progress: &SharedProgress) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for e in self.list()? {
            if e.usable {
                continue;
            }
            let lock = self
                .layout
                .toolchains()
                .join(format!("{}.lock", e.fingerprint));
            // Someone working on it right now holds the lock; do not wait for them.
            let Ok(guard) = lock_exclusive(&lock, Duration::ZERO, progress).await else {
                continue;
            };
            if read_state(&e.dir)
                .ok()
                .flatten()
                .is_some_and(|s| installed_from(&e.dir, &s).is_some())
            {
                continue;
            }
            remove_all(&e.dir)?;
            guard.unlink();
            removed.push(e.dir);
        }
        for dir in [self.layout.toolchains(), self.layout.sources()] {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // Scratch dirs belong to a locked entry while in use.
                let key = if let Some(fp) = crate::toolchain::state::scratch_owner(&name) {
                    fp.to_owned()
                } else if let Some(rest) = name.strip_prefix(".tmp-") {
                    rest.trim_end_matches(".extracting").to_owned()
                } else {
                    continue;
                };
                let lock = dir.join(format!("{key}.lock"));
                let Ok(_g) = lock_exclusive(&lock, Duration::ZERO, progress).await else {
                    continue;
                };
                // Best effort: a build orphaned by a killed run may still be writing here.
                let p = e.path();
                if remove_all(&p).is_ok() {
                    removed.push(p);
                }
            }
        }
        Ok(removed)
    }
}
