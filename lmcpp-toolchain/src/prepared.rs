//! The record of what `cargo xtask prepare` made for the end-to-end tests: a `llama-server`
//! (and `rpc-server`) from this crate's cache and the demo model, as `paths.json`.
//!
//! One definition for the writer (xtask) and every reader (each crate's `tests/e2e` and
//! benchmarks), so the contract cannot drift.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::atomic_write;
use crate::error::{Error, Result};

/// Environment variable naming the `paths.json` to read instead of the workspace default.
pub const PATHS_ENV: &str = "LMCPP_TEST_PATHS";

/// Paths of the end-to-end test prerequisites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedPaths {
    /// The `llama-server` binary.
    pub llama_server: PathBuf,
    /// The `rpc-server` binary, when the toolchain built one.
    pub rpc_server: Option<PathBuf>,
    /// The generated demo model.
    pub demo_model: PathBuf,
    /// The vocab GGUF the demo model took its tokenizer from.
    pub vocab_gguf: PathBuf,
    /// The llama.cpp source tree the toolchain was built from.
    pub source_dir: Option<PathBuf>,
    /// The llama.cpp version requested (`b11312`, `pypi:0.3.16`).
    #[serde(default)]
    pub llama_version: String,
    /// Whether this is the version the workspace is pinned to (the newest, with every
    /// endpoint); end-to-end tests expect "unsupported" outcomes from older ones.
    #[serde(default = "yes")]
    pub pinned: bool,
    /// The binary's `--help` text captured by the toolchain, for the flag check.
    #[serde(default)]
    pub help: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

impl PreparedPaths {
    /// `<workspace root>/target/lmcpp-test/paths.json`.
    pub fn default_location(workspace_root: &Path) -> PathBuf {
        workspace_root
            .join("target")
            .join("lmcpp-test")
            .join("paths.json")
    }

    /// `<workspace root>/target/lmcpp-test/paths-<label>.json`, for a version other than
    /// the pinned one (`label` made file-name safe).
    pub fn location_for(workspace_root: &Path, label: &str) -> PathBuf {
        let safe: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        Self::default_location(workspace_root).with_file_name(format!("paths-{safe}.json"))
    }

    /// `$LMCPP_TEST_PATHS` when set, else [`PreparedPaths::default_location`].
    pub fn location(workspace_root: &Path) -> PathBuf {
        std::env::var_os(PATHS_ENV)
            .map_or_else(|| Self::default_location(workspace_root), PathBuf::from)
    }

    /// Reads the record and checks that the server binary and the demo model exist.
    pub fn load(workspace_root: &Path) -> Result<Self> {
        let path = Self::location(workspace_root);
        let fail = |reason: String| Error::TestPrerequisites {
            path: path.clone(),
            reason,
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let paths: Self =
            serde_json::from_str(&text).map_err(|e| fail(format!("malformed: {e}")))?;
        for p in [&paths.llama_server, &paths.demo_model] {
            if !p.is_file() {
                return Err(fail(format!("{} does not exist", p.display())));
            }
        }
        Ok(paths)
    }

    /// The `rpc-server` binary, or an error saying it was not built.
    pub fn rpc_server(&self, workspace_root: &Path) -> Result<&Path> {
        match &self.rpc_server {
            Some(p) if p.is_file() => Ok(p),
            other => Err(Error::TestPrerequisites {
                path: Self::location(workspace_root),
                reason: format!(
                    "no rpc-server binary ({}); the toolchain must be built with the rpc feature",
                    other
                        .as_deref()
                        .map_or_else(|| "none recorded".into(), |p| p.display().to_string())
                ),
            }),
        }
    }

    /// Writes the record atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::TestPrerequisites {
            path: path.to_path_buf(),
            reason: format!("cannot encode: {e}"),
        })?;
        atomic_write(path, &json)
    }
}
