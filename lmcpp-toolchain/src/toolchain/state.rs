//! An entry on disk: its persisted `state.json` ([`EntryState`]), what a ready entry gives
//! ([`Installed`]), a failure another process just recorded, and its scratch directories.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cache::{atomic_write, remove_all};
use crate::error::{Error, Result, SourceAttempt};
use crate::toolchain::backend::Backend;
use crate::toolchain::request::{Mode, Origin, ToolchainRequest};
use crate::toolchain::versions::BinaryVersion;

/// Name of the state file inside an entry.
pub(crate) const STATE_FILE: &str = "state.json";

/// Name of the build log inside an entry.
pub(crate) const BUILD_LOG: &str = "build.log";

/// Name of the captured `llama-server --help` text inside an entry.
pub(crate) const HELP_FILE: &str = "llama-server.help.txt";

/// A failure recorded by another process this recently is reported to its waiters instead
/// of being re-run by each of them in turn.
pub(crate) const SHARED_FAILURE_WINDOW: Duration = Duration::from_secs(120);

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

/// Seconds since the Unix epoch (0 when the clock is before it).
pub(super) fn now_unix() -> u64 {
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

/// Writes an entry's state file atomically.
pub(super) fn write_state(entry: &Path, state: &EntryState) -> Result<()> {
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

/// The first of `entries` that is published and usable.
pub(super) fn first_usable(entries: &[(Origin, String, PathBuf)]) -> Option<Installed> {
    entries.iter().find_map(|(_, _, dir)| {
        let state = read_state(dir).ok().flatten()?;
        installed_from(dir, &state)
    })
}

/// The failure another process recorded while we waited for the entry (the state changed
/// between our look before locking and after), if it is recent: its waiters get it instead
/// of re-running a build that just failed.
pub(super) fn shared_failure(
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

/// The fingerprint a scratch directory name (`.<fp>.<pid>.scratch`) belongs to.
pub(crate) fn scratch_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?.strip_suffix(".scratch")?;
    Some(rest.split('.').next().unwrap_or(rest))
}

/// Removes, best effort, the scratch directories earlier runs of entry `fp` left.
pub(super) fn clear_stale_scratch(toolchains: &Path, fp: &str) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scratch_names_map_to_their_entry() {
        assert_eq!(scratch_owner(".abc123.42.scratch"), Some("abc123"));
        assert_eq!(scratch_owner(".abc123.scratch"), Some("abc123"));
        assert_eq!(scratch_owner("abc123.lock"), None);
        assert_eq!(scratch_owner(".tmp-x"), None);
    }
}
