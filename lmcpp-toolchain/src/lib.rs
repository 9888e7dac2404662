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
pub mod backend;
pub mod build_script;
pub mod cache;
pub mod cmake;
pub mod demo;
pub mod digest;
pub mod download;
pub mod error;
pub mod fingerprint;
pub mod gc;
pub mod gguf;
pub mod lock;
pub mod manage;
pub mod models;
pub mod plan;
pub mod prepared;
pub mod progress;
pub mod recipe;
pub mod release;
pub mod request;
mod source;
pub mod versions;

pub use backend::{Backend, Detection};
pub use cache::{CacheLayout, resolve_cache_root};
pub use download::{DownloadOptions, DownloadSpec, Downloaded, Downloader, Probe};
pub use error::{Error, Result};
pub use fingerprint::Fingerprint;
pub use lock::{LockGuard, lock_exclusive};
pub use manage::{EntryInfo, RequestStatus};
pub use plan::{Plan, plan};
pub use progress::{NoProgress, Progress, ProgressEvent, SharedProgress, no_progress};
pub use recipe::{BuildDriver, EntryState, EntryStatus, Installed, Toolchain};
pub use request::{Features, LlamaVersion, Mode, Origin, Source, ToolchainRequest};
pub use versions::BinaryVersion;
