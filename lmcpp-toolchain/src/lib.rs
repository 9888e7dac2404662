//! Installs or builds `llama-server`, fetches and verifies models, and reads/writes GGUF files.

pub mod archive;
pub mod backend;
pub mod build_script;
pub mod cache;
pub mod cmake;
pub mod download;
pub mod demo;
pub mod error;
pub mod fingerprint;
pub mod gguf;
pub mod lock;
pub mod manage;
pub mod plan;
pub mod models;
pub mod progress;
pub mod recipe;
pub mod request;
mod source;

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
pub use request::{Features, LlamaVersion, Mode, Source, ToolchainRequest};
