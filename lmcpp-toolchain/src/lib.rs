//! Installs or builds `llama-server`, fetches and verifies models, and reads/writes GGUF files.

pub mod cache;
pub mod download;
pub mod demo;
pub mod error;
pub mod fingerprint;
pub mod gguf;
pub mod lock;
pub mod models;
pub mod progress;

pub use cache::{CacheLayout, resolve_cache_root};
pub use download::{DownloadOptions, DownloadSpec, Downloaded, Downloader, Probe};
pub use error::{Error, Result};
pub use fingerprint::Fingerprint;
pub use lock::{LockGuard, lock_exclusive};
pub use progress::{NoProgress, Progress, ProgressEvent, SharedProgress, no_progress};
