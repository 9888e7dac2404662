//! The crate's error type: its own variants (cache, locks, processes, the toolchain's
//! build) and the areas' errors (download, archive, GGUF, models) wrapped.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lmcpp_types::{Class, Classify};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while installing, building, downloading or caching.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No cache root could be determined.
    #[error("cannot determine a cache directory: set LMCPP_HOME or pass an explicit cache root")]
    NoCacheRoot,

    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("create directory", "rename", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Waiting for a lock took longer than allowed.
    #[error(
        "timed out after {waited:?} waiting for lock {path} (held by {}); retry later or stop that process",
        holder.as_deref().unwrap_or("an unknown holder")
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// Who held it, as recorded in the lock file, when known.
        holder: Option<String>,
        /// How long we waited.
        waited: Duration,
    },

    /// Every configured source for llama.cpp failed.
    #[error("could not obtain llama.cpp; tried:{}", format_attempts(attempts))]
    AllSourcesFailed {
        /// One entry per source tried, in order.
        attempts: Vec<SourceAttempt>,
    },

    /// No prebuilt release asset fits this machine, or none of those tried worked.
    #[error("no usable prebuilt: {reason}")]
    NoPrebuilt {
        /// What was looked for and what happened.
        reason: String,
    },

    /// The entry's work failed in another process while we waited for it; re-running it
    /// right away would fail alike.
    #[error(
        "toolchain entry {entry} failed in another process while we waited: {message}; fix the cause (see its build.log) and run again"
    )]
    FailedWhileWaiting {
        /// The entry's fingerprint.
        entry: String,
        /// The failure it recorded.
        message: String,
    },

    /// An explicitly requested backend is not available on this machine.
    #[error("backend {backend} is unavailable: {reason}")]
    BackendUnavailable {
        /// The backend asked for.
        backend: String,
        /// What is missing.
        reason: String,
    },

    /// No usable cmake was found and bootstrapping one failed.
    #[error(
        "no usable cmake (>= 3.14): {reason}; install cmake or make python3 with pip available"
    )]
    CmakeNotFound {
        /// What was tried.
        reason: String,
    },

    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A program ran but failed.
    #[error("`{command}` failed ({status}){}{}", log.as_ref().map(|l| format!("; full log: {}", l.display())).unwrap_or_default(), tail_suffix(tail))]
    CommandFailed {
        /// The command line (program and arguments; never secrets).
        command: String,
        /// Exit status description.
        status: String,
        /// The log file with the full output, when there is one.
        log: Option<PathBuf>,
        /// The last lines of output.
        tail: String,
    },

    /// `ensure_cached` found no published entry.
    #[error(
        "llama-server for this request is not installed at {}; run `lmcpp toolchain install` first",
        entry.display()
    )]
    NotCached {
        /// The entry directory that was checked.
        entry: PathBuf,
    },

    /// A state or metadata file could not be parsed.
    #[error("invalid state file {}: {message}; remove the entry and retry", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A build or install finished without producing an expected file.
    #[error("expected artefact {} is missing after {stage}", path.display())]
    ArtefactMissing {
        /// The missing file.
        path: PathBuf,
        /// The stage that should have produced it.
        stage: String,
    },

    /// A toolchain request is inconsistent.
    #[error("invalid toolchain request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },

    /// A build for another OS or architecture than this machine's that lmcpp cannot do here.
    #[error("cannot build llama.cpp for {target} on {host}: {reason}")]
    UnsupportedTarget {
        /// The target asked for (`macos-aarch64`).
        target: String,
        /// This machine (`linux-x86_64`).
        host: String,
        /// Why, and what to do instead.
        reason: String,
    },

    /// A cross build's compiler or tool is not installed.
    #[error(
        "building llama.cpp for {target} needs {tool}, which is not installed; install {install}"
    )]
    CrossToolsMissing {
        /// The target being built for.
        target: String,
        /// The missing tool.
        tool: String,
        /// What provides it.
        install: String,
    },

    /// A background task panicked or was cancelled.
    #[error("background task failed: {message}")]
    Task {
        /// Description of the failure.
        message: String,
    },

    /// A download failed, was refused or did not verify.
    #[error(transparent)]
    Download(#[from] crate::download::error::Error),

    /// An archive could not be extracted.
    #[error(transparent)]
    Archive(#[from] crate::archive::error::Error),

    /// A GGUF file could not be read or written.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::error::Error),

    /// A model could not be resolved, found or picked.
    #[error(transparent)]
    Model(#[from] crate::models::error::Error),
}

/// One source that was tried while obtaining llama.cpp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAttempt {
    /// Which source ("github prebuilt", "pypi sdist", ...).
    pub source: String,
    /// Location tried (URL or path).
    pub location: String,
    /// Why it failed.
    pub error: String,
}

impl fmt::Display for SourceAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.source, self.location, self.error)
    }
}

fn format_attempts(attempts: &[SourceAttempt]) -> String {
    if attempts.is_empty() {
        return " nothing (no source configured)".to_owned();
    }
    attempts
        .iter()
        .enumerate()
        .map(|(i, a)| format!("\n  {}. {a}", i + 1))
        .collect()
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n{}", tail.trim_end())
    }
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl Classify for Error {
    /// Every variant's class, in one match without a catch-all, so a new variant does not
    /// compile until someone decides what it means. The caller's input here is an invalid
    /// toolchain request; the areas' errors answer for theirs (a missing, unknown or
    /// non-GGUF model, an invalid model reference or URL).
    fn class(&self) -> Class {
        match self {
            Self::InvalidRequest { .. } | Self::UnsupportedTarget { .. } => Class::UserError,
            Self::NoCacheRoot
            | Self::Io { .. }
            | Self::LockTimeout { .. }
            | Self::AllSourcesFailed { .. }
            | Self::NoPrebuilt { .. }
            | Self::FailedWhileWaiting { .. }
            | Self::BackendUnavailable { .. }
            | Self::CmakeNotFound { .. }
            | Self::CrossToolsMissing { .. }
            | Self::Spawn { .. }
            | Self::CommandFailed { .. }
            | Self::NotCached { .. }
            | Self::State { .. }
            | Self::ArtefactMissing { .. }
            | Self::Task { .. } => Class::Failure,
            // Each area's error answers for its own variants.
            Self::Download(e) => e.class(),
            Self::Archive(e) => e.class(),
            Self::Gguf(e) => e.class(),
            Self::Model(e) => e.class(),
        }
    }
}

/// Extension to attach a path and operation to `std::io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

/// Turns a `spawn_blocking` join failure into an [`Error::Task`].
pub(crate) fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Task {
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// One example of every variant, with the class it must have. `ordinal` has no
    /// catch-all, so a new variant does not compile until it gets one, and then this test
    /// fails until the table has an example of it.
    fn table() -> Vec<(Error, Class)> {
        use Class::{Failure, Transient, UserError};
        let path = PathBuf::from("/x");
        let url = || "https://127.0.0.1/x.gguf".to_owned();
        let io = || std::io::Error::other("x");
        let d = Duration::from_secs(1);
        vec![
            (Error::NoCacheRoot, Failure),
            (Error::io("create directory", &path, io()), Failure),
            (
                Error::LockTimeout {
                    path: path.clone(),
                    holder: None,
                    waited: d,
                },
                Failure,
            ),
            (Error::AllSourcesFailed { attempts: vec![] }, Failure),
            (Error::NoPrebuilt { reason: "x".into() }, Failure),
            (
                Error::FailedWhileWaiting {
                    entry: "e".into(),
                    message: "x".into(),
                },
                Failure,
            ),
            (
                Error::BackendUnavailable {
                    backend: "cuda".into(),
                    reason: "x".into(),
                },
                Failure,
            ),
            (Error::CmakeNotFound { reason: "x".into() }, Failure),
            (
                Error::Spawn {
                    program: "cmake".into(),
                    source: io(),
                },
                Failure,
            ),
            (
                Error::CommandFailed {
                    command: "cmake".into(),
                    status: "exit 1".into(),
                    log: None,
                    tail: String::new(),
                },
                Failure,
            ),
            (
                Error::NotCached {
                    entry: path.clone(),
                },
                Failure,
            ),
            (
                Error::State {
                    path: path.clone(),
                    message: "x".into(),
                },
                Failure,
            ),
            (
                Error::ArtefactMissing {
                    path: path.clone(),
                    stage: "build".into(),
                },
                Failure,
            ),
            (Error::InvalidRequest { reason: "x".into() }, UserError),
            (
                Error::UnsupportedTarget {
                    target: "macos-aarch64".into(),
                    host: "linux-x86_64".into(),
                    reason: "x".into(),
                },
                UserError,
            ),
            (
                Error::CrossToolsMissing {
                    target: "windows-x86_64".into(),
                    tool: "x".into(),
                    install: "x".into(),
                },
                Failure,
            ),
            (
                Error::Task {
                    message: "x".into(),
                },
                Failure,
            ),
            // The areas' errors keep their class through the crate error.
            (
                crate::download::error::Error::HttpStatus {
                    url: url(),
                    status: 503,
                }
                .into(),
                Transient,
            ),
            (
                crate::download::error::Error::InvalidUrl {
                    url: url(),
                    reason: "x".into(),
                }
                .into(),
                UserError,
            ),
            (
                crate::archive::error::Error::Read {
                    path: path.clone(),
                    message: "x".into(),
                }
                .into(),
                Failure,
            ),
            (
                crate::gguf::error::Error::BadMagic {
                    path: path.clone(),
                    found: *b"PK\x03\x04",
                }
                .into(),
                UserError,
            ),
            (
                crate::models::error::Error::Unknown {
                    query: "x".into(),
                    root: path.clone(),
                }
                .into(),
                UserError,
            ),
            (
                crate::models::error::Error::NotCached {
                    source_ref: "x".into(),
                    root: path.clone(),
                }
                .into(),
                Failure,
            ),
        ]
    }

    /// Numbers the variants (not their classes); see [`table`].
    fn ordinal(e: &Error) -> usize {
        match e {
            Error::NoCacheRoot => 0,
            Error::Io { .. } => 1,
            Error::LockTimeout { .. } => 2,
            Error::AllSourcesFailed { .. } => 3,
            Error::NoPrebuilt { .. } => 4,
            Error::FailedWhileWaiting { .. } => 5,
            Error::BackendUnavailable { .. } => 6,
            Error::CmakeNotFound { .. } => 7,
            Error::Spawn { .. } => 8,
            Error::CommandFailed { .. } => 9,
            Error::NotCached { .. } => 10,
            Error::State { .. } => 11,
            Error::ArtefactMissing { .. } => 12,
            Error::InvalidRequest { .. } => 13,
            Error::Task { .. } => 14,
            Error::Download(_) => 15,
            Error::Archive(_) => 16,
            Error::Gguf(_) => 17,
            Error::Model(_) => 18,
            Error::UnsupportedTarget { .. } => 19,
            Error::CrossToolsMissing { .. } => 20,
        }
    }

    /// How many arms `ordinal` has.
    const VARIANTS: usize = 21;

    #[test]
    fn every_variant_is_classified_as_the_table_says() {
        lmcpp_test_support::check_class_table(&table(), ordinal, VARIANTS);
    }
}
