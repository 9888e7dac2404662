//! How a model store is set up ([`ModelStoreOptions`]) and what one pull asks for
//! ([`PullOptions`]).

use std::path::PathBuf;
use std::time::Duration;

use super::hf::HfToken;
use crate::download::DownloadOptions;

/// How a [`ModelStore`](super::ModelStore) is set up.
#[derive(Debug, Clone)]
pub struct ModelStoreOptions {
    /// Cache root (the store lives in `<root>/models`); `None` resolves it as the toolchain
    /// does (explicit override, then `LMCPP_HOME`, then the platform data directory).
    pub cache_root: Option<PathBuf>,
    /// The Hugging Face hub cache, where models from the hub live (shared with llama.cpp
    /// and `huggingface_hub`); `None` looks it up as llama.cpp does ([`resolve_hub_cache`](super::resolve_hub_cache)),
    /// and without any home directory uses `<cache root>/models/hub`.
    pub hub_cache: Option<PathBuf>,
    /// Hugging Face endpoint; `None` uses `HF_ENDPOINT`, else the public endpoint.
    pub hf_endpoint: Option<String>,
    /// Token sent to the Hugging Face endpoint (never to the CDN it redirects to).
    pub hf_token: Option<HfToken>,
    /// Never use the network: pulls of models not in the store fail.
    pub offline: bool,
    /// How long to wait for another task or process pulling the same model.
    pub lock_timeout: Duration,
    /// Downloader tunables (timeouts, retries, backoff).
    pub download: DownloadOptions,
}

impl Default for ModelStoreOptions {
    fn default() -> Self {
        Self {
            cache_root: None,
            hub_cache: None,
            hf_endpoint: None,
            hf_token: None,
            offline: false,
            lock_timeout: Duration::from_secs(4 * 3600),
            download: DownloadOptions::default(),
        }
    }
}

impl ModelStoreOptions {
    /// Defaults plus the Hugging Face token from `HF_TOKEN` or the token file, and
    /// `HF_HUB_OFFLINE=1` as offline mode.
    pub fn from_env() -> Self {
        Self {
            hf_token: HfToken::from_env(),
            offline: std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true"),
            ..Self::default()
        }
    }

    /// Defaults with an explicit cache root.
    pub fn with_cache_root(root: impl Into<PathBuf>) -> Self {
        Self {
            cache_root: Some(root.into()),
            ..Self::default()
        }
    }
}

/// Per-pull choices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// Expected SHA-256 of the file (hex). Takes precedence over what the server says.
    pub sha256: Option<String>,
    /// Use only what is in the store; fail with [`Error::NotCached`](super::Error::NotCached) otherwise.
    pub cache_only: bool,
    /// Do not pull the repository's multimodal projector (`mmproj*.gguf`) with the model.
    pub no_mmproj: bool,
    /// The name to serve the model under; `None` derives it from the reference
    /// ([`ModelSource::alias`](super::ModelSource::alias)).
    pub alias: Option<String>,
}

impl PullOptions {
    /// Options that expect a given SHA-256.
    pub fn sha256(hex: impl Into<String>) -> Self {
        Self {
            sha256: Some(hex.into()),
            ..Self::default()
        }
    }

    /// Options for a cache-only lookup.
    pub fn cache_only() -> Self {
        Self {
            cache_only: true,
            ..Self::default()
        }
    }
}
