//! Installs or builds `llama-server`, fetches and verifies models, and reads/writes GGUF files.
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

pub mod archive;
pub mod cache;
pub mod demo;
pub mod digest;
pub mod download;
pub mod error;
pub mod fingerprint;
pub mod gc;
pub mod gguf;
pub mod lock;
pub mod models;
pub mod prepared;
pub mod progress;
mod toolchain;

// The toolchain's namespaces of free functions and constants keep their paths
// (`lmcpp_toolchain::versions::parse`, `backend::Probes`, `plan::prebuilt_assets`,
// `build_script::ensure_for_build_script`); everything else of it is re-exported here.
pub use toolchain::{backend, build_script, plan, versions};

pub use backend::{Backend, Detection};
pub use cache::{CacheLayout, resolve_cache_root};
pub use download::{DownloadOptions, DownloadSpec, Downloaded, Downloader, Probe};
pub use error::{Error, Result};
pub use fingerprint::Fingerprint;
pub use lock::{LockGuard, lock_exclusive};
pub use plan::{Plan, plan};
pub use progress::{NoProgress, Progress, ProgressEvent, SharedProgress, no_progress};
pub use toolchain::{
    BuildDriver, DEFAULT_GITHUB_API, DEFAULT_GITHUB_REPO, EntryInfo, EntryState, EntryStatus,
    Features, Installed, LlamaVersion, Mode, Origin, PINNED_COMMIT, PINNED_PYPI_SHA256,
    PINNED_PYPI_VERSION, PypiPin, RequestStatus, Source, Toolchain, ToolchainRequest, VERSION_ENV,
    read_state, run_binary,
};
pub use versions::BinaryVersion;
