//! The record of what `cargo xtask prepare` made for the end-to-end tests: a `llama-server`
//! (and `rpc-server`) from the toolchain's cache and the demo model, as `paths.json`.
//!
//! One definition for the writer (xtask) and every reader (each crate's `tests/e2e` and
//! benchmarks), so the contract cannot drift.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What is wrong with the prerequisites record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The record is missing, unreadable, malformed, or names files that do not exist.
    #[error("test prerequisites {}: {reason}; run `cargo xtask prepare` (or `cargo xtask test`)", path.display())]
    Prerequisites {
        /// The `paths.json` that was read or written.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, Error>;

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
        Self::load_from(&Self::location(workspace_root))
    }

    /// Reads the record at `path` and checks that the server binary and the demo model exist.
    pub fn load_from(path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let fail = |reason: String| Error::Prerequisites {
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
            other => Err(Error::Prerequisites {
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
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Prerequisites {
            path: path.to_path_buf(),
            reason: format!("cannot encode: {e}"),
        })?;
        let fail = |what: &str, e: std::io::Error| Error::Prerequisites {
            path: path.to_path_buf(),
            reason: format!("cannot {what}: {e}"),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| fail("create its directory", e))?;
        // Written beside and renamed over, so a reader never sees half a record.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, &json).map_err(|e| fail("write", e))?;
        std::fs::rename(&tmp, path).map_err(|e| fail("rename into place", e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(dir: &Path) -> PreparedPaths {
        let server = dir.join("llama-server");
        let model = dir.join("demo.gguf");
        std::fs::write(&server, b"").unwrap();
        std::fs::write(&model, b"").unwrap();
        PreparedPaths {
            llama_server: server,
            rpc_server: None,
            demo_model: model,
            vocab_gguf: dir.join("vocab.gguf"),
            source_dir: None,
            llama_version: "b1".into(),
            pinned: true,
            help: None,
        }
    }

    #[test]
    fn a_written_record_reads_back_and_a_missing_file_is_named() {
        let dir = std::env::temp_dir().join(format!("lmcpp-test-support-{}", std::process::id()));
        let root = dir.join("ws");
        std::fs::create_dir_all(&dir).unwrap();
        let paths = record(&dir);
        let at = PreparedPaths::location_for(&root, "pypi:0.3.16");
        assert!(
            at.ends_with("target/lmcpp-test/paths-pypi-0.3.16.json"),
            "{at:?}"
        );
        let at = PreparedPaths::default_location(&root);
        paths.write(&at).unwrap();
        assert_eq!(PreparedPaths::load_from(&at).unwrap(), paths);
        std::fs::remove_file(&paths.demo_model).unwrap();
        let err = PreparedPaths::load_from(&at).unwrap_err().to_string();
        assert!(
            err.contains("demo.gguf does not exist") && err.contains("cargo xtask prepare"),
            "{err}"
        );
        assert!(
            paths
                .rpc_server(&root)
                .unwrap_err()
                .to_string()
                .contains("rpc feature")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
