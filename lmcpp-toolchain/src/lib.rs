//! Installs or builds `llama-server`, fetches and verifies models, and reads/writes GGUF files.
//!
//! It is cut by product: the llama-server toolchain (its types here at the root, with the
//! [`backend`], [`plan`](mod@plan), [`versions`] and [`build_script`] namespaces), the model store
//! ([`models`]) and GGUF files ([`gguf`]), over shared modules ([`download`], [`archive`],
//! locks, the cache layout, [`gc`], [`progress`]). Each area has its own error type,
//! wrapped by the crate's [`Error`].
//!
//! The toolchain half is [`Toolchain`]: a [`ToolchainRequest`] (llama.cpp version, sources,
//! backend, mode, CMake arguments, features) maps to a fingerprinted cache entry under
//! `<root>/toolchains/`, which [`Toolchain::ensure`] fills from a prebuilt release or a
//! source build, under a lock that waits, with an atomic publish.
//!
//! ```no_run
//! # async fn run() -> lmcpp_toolchain::Result<()> {
//! use lmcpp_toolchain::{Toolchain, ToolchainRequest, no_progress};
//! let toolchain = Toolchain::new(None)?; // $LMCPP_HOME, else the platform data dir
//! let installed = toolchain.ensure(&ToolchainRequest::default(), &no_progress()).await?;
//! println!("{}", installed.llama_server.display());
//! # Ok(()) }
//! ```

// The products: the llama-server toolchain (private, re-exported below), the model store,
// GGUF files and the demo model.
pub mod demo;
pub mod gguf;
pub mod models;
mod toolchain;

// Shared by the products.
pub mod archive;
mod cache;
mod digest;
pub mod download;
mod error;
mod fingerprint;
pub mod gc;
mod lock;
pub mod progress;

// The toolchain's namespaces of free functions and constants keep their paths
// (`lmcpp_toolchain::versions::parse`, `backend::Probes`, `plan::prebuilt_assets`,
// `build_script::ensure_for_build_script`); everything else of it is re-exported here.
pub use toolchain::{backend, build_script, plan, versions};

pub use backend::{Backend, Detection};
pub use cache::{CacheLayout, FileIdentity, HOME_ENV, ProbeKind, resolve_cache_root};
pub use digest::Sha256;
pub use download::{DownloadOptions, DownloadSpec, Downloaded, Downloader, Probe};
pub use error::{Error, Result, SourceAttempt};
pub use fingerprint::Fingerprint;
pub use lmcpp_types::{Class, Classify};
pub use lock::{FileLockGuard, LockGuard, lock_exclusive, lock_exclusive_blocking, same_file};
pub use plan::{Plan, plan};
pub use progress::{NoProgress, Progress, ProgressEvent, SharedProgress, no_progress};
pub use toolchain::{
    BuildDriver, DEFAULT_GITHUB_API, DEFAULT_GITHUB_REPO, EntryInfo, EntryState, EntryStatus,
    Features, Installed, LlamaVersion, Mode, Origin, PINNED_COMMIT, PINNED_PYPI_SHA256,
    PINNED_PYPI_VERSION, PypiPin, RequestStatus, Source, Target, Toolchain, ToolchainRequest,
    VERSION_ENV, read_state, run_binary,
};
pub use versions::BinaryVersion;
