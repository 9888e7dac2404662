//! The record of what `cargo xtask prepare` made for the end-to-end tests: a `llama-server`
//! (and `rpc-server`) from the toolchain's cache and the demo model, as `paths.json`.
//!
//! One definition for the writer (xtask) and every reader (each crate's `tests/e2e` and
//! benchmarks), so the contract cannot drift.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Supports;

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
    /// The binary's `--help` text captured by the toolchain, for the flag check (when
    /// absent, readers run the binary's `--help` themselves).
    #[serde(default)]
    pub help: Option<PathBuf>,
}

/// `label` made file-name safe: ASCII letters, digits and dots kept, the rest `-`.
fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
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
        Self::default_location(workspace_root)
            .with_file_name(format!("paths-{}.json", file_safe(label)))
    }

    /// The report of what the version `label` lacks, beside its record `paths_file`
    /// (`lacks-<label>.txt`), which end-to-end tests append to.
    pub fn report_location(paths_file: &Path, label: &str) -> PathBuf {
        paths_file.with_file_name(format!("lacks-{}.txt", file_safe(label)))
    }

    /// What this record's binaries say they support, reporting what they lack beside the
    /// record the tests read ([`PreparedPaths::location`]).
    pub fn supports(&self, workspace_root: &Path) -> Supports {
        let report = Self::report_location(&Self::location(workspace_root), &self.llama_version);
        Supports::of(self, report)
    }

    /// A prepared record of another llama.cpp version than `self`, for tests that run two
    /// versions side by side: the first `paths*.json` (by name) beside the default record
    /// or beside the one the tests read whose version differs and whose files exist.
    pub fn another_version(&self, workspace_root: &Path) -> Result<Self> {
        let mut dirs: Vec<PathBuf> = [
            Self::default_location(workspace_root),
            Self::location(workspace_root),
        ]
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
        dirs.dedup();
        self.another_version_in(&dirs)
            .ok_or_else(|| Error::Prerequisites {
                path: Self::location(workspace_root),
                reason: format!(
                    "no prepared llama.cpp version other than {} in {}; prepare one as \
                     docs/testing.md says",
                    self.llama_version,
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    fn another_version_in(&self, dirs: &[PathBuf]) -> Option<Self> {
        let mut candidates: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("paths") && n.ends_with(".json"))
            })
            .collect();
        candidates.sort();
        candidates
            .iter()
            .filter_map(|p| Self::load_from(p).ok())
            .find(|other| other.llama_version != self.llama_version)
    }

    /// `$LMCPP_TEST_PATHS` when set, else [`PreparedPaths::default_location`]. A relative
    /// path is taken from the workspace root, where the command was most likely typed (test
    /// binaries run in their crate's directory).
    pub fn location(workspace_root: &Path) -> PathBuf {
        std::env::var_os(PATHS_ENV).map_or_else(
            || Self::default_location(workspace_root),
            |p| workspace_root.join(p),
        )
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
        let mut other = paths.clone();
        other.llama_version = "b2".into();
        other
            .write(&PreparedPaths::location_for(&root, "b2"))
            .unwrap();
        let dirs = [at.parent().unwrap().to_path_buf()];
        assert_eq!(paths.another_version_in(&dirs), Some(other.clone()));
        assert_eq!(other.another_version_in(&dirs), Some(paths.clone()));
        assert!(
            PreparedPaths::report_location(&at, "pypi:0.3.28").ends_with("lacks-pypi-0.3.28.txt")
        );
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
