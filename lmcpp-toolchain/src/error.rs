//! The one error type of this crate.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

    /// A URL could not be parsed or uses an unsupported scheme.
    #[error("invalid url {url}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },

    /// The server answered with a status that is not success.
    #[error("http status {status} from {url}{}", hint_for_status(*status))]
    HttpStatus {
        /// The URL that answered (after redirects).
        url: String,
        /// The HTTP status code.
        status: u16,
    },

    /// The request could not be sent or the response body could not be read.
    #[error("request to {url} failed: {message}; check the network and retry")]
    Http {
        /// The URL requested.
        url: String,
        /// What failed, without any request headers.
        message: String,
    },

    /// The host could not be reached at all (e.g. its name does not resolve); not retried.
    #[error("cannot reach {url}: {message}; check the network or use another source")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// What failed.
        message: String,
    },

    /// A server sent more redirects than allowed.
    #[error("too many redirects (more than {limit}) starting at {url}")]
    TooManyRedirects {
        /// The URL first requested.
        url: String,
        /// The redirect limit.
        limit: usize,
    },

    /// A downloaded file did not have the expected SHA-256 digest.
    #[error(
        "checksum mismatch for {url}: expected sha256 {expected}, found {found}; the partial file {} was deleted, retry or check the expected digest",
        path.display()
    )]
    ChecksumMismatch {
        /// The URL downloaded.
        url: String,
        /// The destination that was not written.
        path: PathBuf,
        /// The expected digest (lower-case hex).
        expected: String,
        /// The digest of the bytes received (lower-case hex).
        found: String,
    },

    /// The body ended before `Content-Length` bytes arrived.
    #[error(
        "download of {url} was cut short at {received} of {expected} bytes; run again to resume from {}",
        path.display()
    )]
    Truncated {
        /// The URL downloaded.
        url: String,
        /// The partial file kept for resuming.
        path: PathBuf,
        /// Bytes present in the partial file.
        received: u64,
        /// Bytes expected in total.
        expected: u64,
    },

    /// An archive contains an entry that would escape the destination or is otherwise unsafe.
    #[error("refusing to extract {}: entry {entry:?} {reason}", archive.display())]
    UnsafeArchive {
        /// The archive file.
        archive: PathBuf,
        /// The offending entry name.
        entry: String,
        /// Why it is unsafe.
        reason: String,
    },

    /// An archive could not be read.
    #[error("cannot read archive {}: {message}", path.display())]
    Archive {
        /// The archive file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// An archive expands beyond an extraction limit (a decompression bomb or the wrong file).
    #[error(
        "refusing to extract {}: its {what} reached {found}, above the limit of {limit}; the archive is corrupt or hostile (if it is genuine, raise ExtractOptions::{option})",
        archive.display()
    )]
    ArchiveTooLarge {
        /// The archive file.
        archive: PathBuf,
        /// What was measured ("unpacked size in bytes", "entry count", "compression ratio").
        what: &'static str,
        /// The value reached when extraction stopped.
        found: u64,
        /// The limit.
        limit: u64,
        /// The `ExtractOptions` field that sets the limit.
        option: &'static str,
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

    /// A background task panicked or was cancelled.
    #[error("background task failed: {message}")]
    Task {
        /// Description of the failure.
        message: String,
    },

    /// A file that should be GGUF does not start with the `GGUF` magic.
    #[error(
        "{} is not a GGUF file (it starts with \"{}\", not \"GGUF\"); check that the path points at a .gguf model",
        path.display(),
        found.escape_ascii()
    )]
    GgufBadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes found.
        found: [u8; 4],
    },

    /// A GGUF file has a version this reader does not understand.
    #[error(
        "{} has unsupported GGUF version {version} (supported: 2 and 3); convert it with a current llama.cpp",
        path.display()
    )]
    GgufUnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },

    /// A GGUF file ends before the data its header declares.
    #[error(
        "{} is truncated: {what} at byte {offset} needs {needed} bytes but only {available} remain; the download is incomplete, pull it again",
        path.display()
    )]
    GgufTruncated {
        /// The file.
        path: PathBuf,
        /// Where the read started.
        offset: u64,
        /// What was being read ("metadata key", a key name, "tensor offset", ...).
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },

    /// A GGUF count or length is beyond any sane limit (a corrupt or hostile file).
    #[error(
        "{} is corrupt: {what} at byte {offset} is {value}, above the limit of {limit}",
        path.display()
    )]
    GgufImplausible {
        /// The file.
        path: PathBuf,
        /// Where the count or length was read.
        offset: u64,
        /// What the number counts.
        what: String,
        /// The number found.
        value: u64,
        /// The largest value accepted.
        limit: u64,
    },

    /// A GGUF file is structurally invalid (unknown type, bad alignment, duplicate key, ...).
    #[error("{} is not a valid GGUF file: {reason} (at byte {offset})", path.display())]
    GgufInvalid {
        /// The file.
        path: PathBuf,
        /// Where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A tensor's data would extend past the end of a GGUF file.
    #[error(
        "{} is truncated: tensor '{tensor}' ends at byte {end} but the file has {file_size} bytes; pull it again",
        path.display()
    )]
    GgufTensorOutOfBounds {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Where its data would end.
        end: u64,
        /// The file size.
        file_size: u64,
    },

    /// A GGUF file could not be built because its contents are inconsistent.
    #[error("cannot write GGUF: {reason}")]
    GgufWrite {
        /// What is wrong.
        reason: String,
    },

    /// A model reference could not be parsed.
    #[error(
        "invalid model {input:?}: {reason}; use a path to a .gguf file, an http(s) URL, or owner/repo[:file.gguf|:QUANT][@revision]"
    )]
    InvalidModelSource {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A local model file does not exist.
    #[error("model file {} does not exist; check the path", path.display())]
    ModelFileMissing {
        /// The path given.
        path: PathBuf,
    },

    /// Cache-only mode was asked for a model that is not in the store.
    #[error(
        "model {source_ref} is not in the model cache at {}; pull it once with network access (without cache-only/offline mode)",
        root.display()
    )]
    ModelNotCached {
        /// The model reference.
        source_ref: String,
        /// The store's directory.
        root: PathBuf,
    },

    /// No file (or more than one) in a Hugging Face repository matches the request.
    #[error(
        "no single GGUF file in {repo}@{revision} matches {wanted}; available: {}",
        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
    )]
    NoMatchingModelFile {
        /// `owner/repo`.
        repo: String,
        /// The revision listed.
        revision: String,
        /// What was asked for.
        wanted: String,
        /// The GGUF files the repository has.
        available: Vec<String>,
    },

    /// A split GGUF model (`…-00001-of-0000N.gguf`) is missing some of its parts.
    #[error(
        "split model {model} in {repo} is incomplete: {} missing; name another file or quantisation",
        missing.join(", ")
    )]
    SplitModelIncomplete {
        /// `owner/repo`.
        repo: String,
        /// The model's first part (or the name shared by its parts).
        model: String,
        /// The parts that are not there.
        missing: Vec<String>,
    },

    /// The hub named neither a SHA-256 digest nor a commit for a file of a model with
    /// several files, so it cannot be verified and placed in the Hugging Face cache.
    #[error(
        "the hub gave no sha256 digest or commit for {url}; only single-file models can be pulled without them (leave out the projector with --no-mmproj, name one file, or pass its sha256)"
    )]
    HubFileUnverifiable {
        /// The resolve URL asked.
        url: String,
    },

    /// A redirect would have downgraded an `https` transfer to plain `http`.
    #[error(
        "refusing the redirect from {from} to {to}: it leaves https for plain http; use an https mirror or download the file yourself"
    )]
    InsecureRedirect {
        /// The `https` URL that redirected.
        from: String,
        /// The `http` URL it pointed at.
        to: String,
    },

    /// A model download is not a GGUF file (often an HTML error page or a login form).
    #[error(
        "{url} is not a GGUF model (it starts with \"{}\", not \"GGUF\"); nothing was stored, check the model reference or whether the file needs a token",
        found.escape_ascii()
    )]
    DownloadNotGguf {
        /// The URL downloaded.
        url: String,
        /// The first (up to four) bytes received.
        found: Vec<u8>,
    },

    /// A download could not be shown to be complete: no digest, no `Content-Length`, and
    /// the content does not verify on its own.
    #[error(
        "cannot verify the download of {url}: {reason}; nothing was stored, pass the expected sha256 or retry"
    )]
    Unverifiable {
        /// The URL downloaded.
        url: String,
        /// Why the received bytes could not be trusted.
        reason: String,
    },

    /// No cached model matches what the user named.
    #[error(
        "no cached model matches {query:?} in {}; see `lmcpp model list` for the sources and sha256 digests",
        root.display()
    )]
    UnknownModel {
        /// What was asked for (a source or a sha256 prefix).
        query: String,
        /// The store's directory.
        root: PathBuf,
    },

    /// A sha256 prefix names more than one cached model.
    #[error(
        "sha256 prefix {prefix} matches {} cached models ({}); give more digits",
        matches.len(),
        matches.join(", ")
    )]
    AmbiguousModel {
        /// The prefix given.
        prefix: String,
        /// The full digests it matches.
        matches: Vec<String>,
    },
    /// The end-to-end test prerequisites are missing or incomplete.
    #[error("test prerequisites {}: {reason}; run `cargo xtask prepare` (or `cargo xtask test`)", path.display())]
    TestPrerequisites {
        /// The `paths.json` that was read.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
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

fn hint_for_status(status: u16) -> &'static str {
    match status {
        401 | 403 => "; check the access token",
        404 => "; check the version, tag or file name",
        429 => "; rate limited, retry later",
        500..=599 => "; the server failed, retry later",
        _ => "",
    }
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n{}", tail.trim_end())
    }
}

/// What an error means for whoever handles it: exactly one answer per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The caller's input is wrong; retrying the same thing fails the same way.
    UserError,
    /// Retrying the same operation later could succeed.
    Transient,
    /// The work failed; see the message for what to do.
    Failure,
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

    /// Every variant's class, in one match without a catch-all, so a new variant does not
    /// compile until someone decides what it means.
    fn class(&self) -> Class {
        match self {
            Self::InvalidUrl { .. }
            | Self::InvalidRequest { .. }
            | Self::GgufBadMagic { .. }
            | Self::InvalidModelSource { .. }
            | Self::ModelFileMissing { .. }
            | Self::DownloadNotGguf { .. }
            | Self::UnknownModel { .. }
            | Self::AmbiguousModel { .. } => Class::UserError,
            // Network hiccups and cut-short bodies; a rate limit or a failing server.
            Self::Http { .. } | Self::Truncated { .. } => Class::Transient,
            Self::HttpStatus { status, .. } if *status == 429 || *status >= 500 => Class::Transient,
            Self::HttpStatus { .. }
            | Self::NoCacheRoot
            | Self::Io { .. }
            | Self::LockTimeout { .. }
            | Self::Unreachable { .. }
            | Self::TooManyRedirects { .. }
            | Self::ChecksumMismatch { .. }
            | Self::UnsafeArchive { .. }
            | Self::Archive { .. }
            | Self::ArchiveTooLarge { .. }
            | Self::AllSourcesFailed { .. }
            | Self::NoPrebuilt { .. }
            | Self::FailedWhileWaiting { .. }
            | Self::BackendUnavailable { .. }
            | Self::CmakeNotFound { .. }
            | Self::Spawn { .. }
            | Self::CommandFailed { .. }
            | Self::NotCached { .. }
            | Self::State { .. }
            | Self::ArtefactMissing { .. }
            | Self::Task { .. }
            | Self::GgufUnsupportedVersion { .. }
            | Self::GgufTruncated { .. }
            | Self::GgufImplausible { .. }
            | Self::GgufInvalid { .. }
            | Self::GgufTensorOutOfBounds { .. }
            | Self::GgufWrite { .. }
            | Self::ModelNotCached { .. }
            | Self::NoMatchingModelFile { .. }
            | Self::SplitModelIncomplete { .. }
            | Self::HubFileUnverifiable { .. }
            | Self::InsecureRedirect { .. }
            | Self::Unverifiable { .. }
            | Self::TestPrerequisites { .. } => Class::Failure,
        }
    }

    /// Whether the error is the caller's input (a missing, unknown, ambiguous or non-GGUF
    /// model, an invalid model reference, URL or toolchain request) rather than a failure
    /// of the work; the CLI exits with status 2 for these.
    pub fn is_user_error(&self) -> bool {
        self.class() == Class::UserError
    }

    /// Whether retrying the same operation later could succeed (network hiccups, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        self.class() == Class::Transient
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
            (
                Error::InvalidUrl {
                    url: url(),
                    reason: "x".into(),
                },
                UserError,
            ),
            (
                Error::HttpStatus {
                    url: url(),
                    status: 404,
                },
                Failure,
            ),
            (
                Error::HttpStatus {
                    url: url(),
                    status: 429,
                },
                Transient,
            ),
            (
                Error::HttpStatus {
                    url: url(),
                    status: 500,
                },
                Transient,
            ),
            (
                Error::HttpStatus {
                    url: url(),
                    status: 503,
                },
                Transient,
            ),
            (
                Error::Http {
                    url: url(),
                    message: "reset".into(),
                },
                Transient,
            ),
            (
                Error::Unreachable {
                    url: url(),
                    message: "no such host".into(),
                },
                Failure,
            ),
            (
                Error::TooManyRedirects {
                    url: url(),
                    limit: 10,
                },
                Failure,
            ),
            (
                Error::ChecksumMismatch {
                    url: url(),
                    path: path.clone(),
                    expected: "a".into(),
                    found: "b".into(),
                },
                Failure,
            ),
            (
                Error::Truncated {
                    url: url(),
                    path: path.clone(),
                    received: 1,
                    expected: 2,
                },
                Transient,
            ),
            (
                Error::UnsafeArchive {
                    archive: path.clone(),
                    entry: "../x".into(),
                    reason: "escapes".into(),
                },
                Failure,
            ),
            (
                Error::Archive {
                    path: path.clone(),
                    message: "x".into(),
                },
                Failure,
            ),
            (
                Error::ArchiveTooLarge {
                    archive: path.clone(),
                    what: "entry count",
                    found: 2,
                    limit: 1,
                    option: "max_entries",
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
                Error::Task {
                    message: "x".into(),
                },
                Failure,
            ),
            (
                Error::GgufBadMagic {
                    path: path.clone(),
                    found: *b"PK\x03\x04",
                },
                UserError,
            ),
            (
                Error::GgufUnsupportedVersion {
                    path: path.clone(),
                    version: 1,
                },
                Failure,
            ),
            (
                Error::GgufTruncated {
                    path: path.clone(),
                    offset: 0,
                    what: "x".into(),
                    needed: 2,
                    available: 1,
                },
                Failure,
            ),
            (
                Error::GgufImplausible {
                    path: path.clone(),
                    offset: 0,
                    what: "x".into(),
                    value: 2,
                    limit: 1,
                },
                Failure,
            ),
            (
                Error::GgufInvalid {
                    path: path.clone(),
                    offset: 0,
                    reason: "x".into(),
                },
                Failure,
            ),
            (
                Error::GgufTensorOutOfBounds {
                    path: path.clone(),
                    tensor: "t".into(),
                    end: 2,
                    file_size: 1,
                },
                Failure,
            ),
            (Error::GgufWrite { reason: "x".into() }, Failure),
            (
                Error::InvalidModelSource {
                    input: "x".into(),
                    reason: "x".into(),
                },
                UserError,
            ),
            (Error::ModelFileMissing { path: path.clone() }, UserError),
            (
                Error::ModelNotCached {
                    source_ref: "x".into(),
                    root: path.clone(),
                },
                Failure,
            ),
            (
                Error::NoMatchingModelFile {
                    repo: "o/r".into(),
                    revision: "main".into(),
                    wanted: "Q4_K_M".into(),
                    available: vec![],
                },
                Failure,
            ),
            (
                Error::SplitModelIncomplete {
                    repo: "o/r".into(),
                    model: "m".into(),
                    missing: vec![],
                },
                Failure,
            ),
            (Error::HubFileUnverifiable { url: url() }, Failure),
            (
                Error::InsecureRedirect {
                    from: url(),
                    to: "http://127.0.0.1/x".into(),
                },
                Failure,
            ),
            (
                Error::DownloadNotGguf {
                    url: url(),
                    found: b"<htm".to_vec(),
                },
                UserError,
            ),
            (
                Error::Unverifiable {
                    url: url(),
                    reason: "x".into(),
                },
                Failure,
            ),
            (
                Error::UnknownModel {
                    query: "x".into(),
                    root: path.clone(),
                },
                UserError,
            ),
            (
                Error::AmbiguousModel {
                    prefix: "ab".into(),
                    matches: vec![],
                },
                UserError,
            ),
            (
                Error::TestPrerequisites {
                    path: path.clone(),
                    reason: "x".into(),
                },
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
            Error::InvalidUrl { .. } => 3,
            Error::HttpStatus { .. } => 4,
            Error::Http { .. } => 5,
            Error::Unreachable { .. } => 6,
            Error::TooManyRedirects { .. } => 7,
            Error::ChecksumMismatch { .. } => 8,
            Error::Truncated { .. } => 9,
            Error::UnsafeArchive { .. } => 10,
            Error::Archive { .. } => 11,
            Error::ArchiveTooLarge { .. } => 12,
            Error::AllSourcesFailed { .. } => 13,
            Error::NoPrebuilt { .. } => 14,
            Error::FailedWhileWaiting { .. } => 15,
            Error::BackendUnavailable { .. } => 16,
            Error::CmakeNotFound { .. } => 17,
            Error::Spawn { .. } => 18,
            Error::CommandFailed { .. } => 19,
            Error::NotCached { .. } => 20,
            Error::State { .. } => 21,
            Error::ArtefactMissing { .. } => 22,
            Error::InvalidRequest { .. } => 23,
            Error::Task { .. } => 24,
            Error::GgufBadMagic { .. } => 25,
            Error::GgufUnsupportedVersion { .. } => 26,
            Error::GgufTruncated { .. } => 27,
            Error::GgufImplausible { .. } => 28,
            Error::GgufInvalid { .. } => 29,
            Error::GgufTensorOutOfBounds { .. } => 30,
            Error::GgufWrite { .. } => 31,
            Error::InvalidModelSource { .. } => 32,
            Error::ModelFileMissing { .. } => 33,
            Error::ModelNotCached { .. } => 34,
            Error::NoMatchingModelFile { .. } => 35,
            Error::SplitModelIncomplete { .. } => 36,
            Error::HubFileUnverifiable { .. } => 37,
            Error::InsecureRedirect { .. } => 38,
            Error::DownloadNotGguf { .. } => 39,
            Error::Unverifiable { .. } => 40,
            Error::UnknownModel { .. } => 41,
            Error::AmbiguousModel { .. } => 42,
            Error::TestPrerequisites { .. } => 43,
        }
    }

    /// How many arms `ordinal` has.
    const VARIANTS: usize = 44;

    #[test]
    fn every_variant_is_classified_as_the_table_says() {
        let table = table();
        let mut seen: Vec<usize> = table.iter().map(|(e, _)| ordinal(e)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen,
            (0..VARIANTS).collect::<Vec<_>>(),
            "every variant needs an example in the table"
        );
        for (e, class) in &table {
            assert_eq!(e.class(), *class, "{e:?}");
            assert_eq!(e.is_user_error(), *class == Class::UserError, "{e:?}");
            assert_eq!(e.is_transient(), *class == Class::Transient, "{e:?}");
        }
    }
}
