//! What a caller asks for: [`ToolchainRequest`] and its parts, and its fingerprint.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::Error;
use crate::fingerprint::Fingerprint;

/// llama.cpp commit this crate is tested against.
pub const PINNED_COMMIT: &str = "0c1e570";
/// `llama-cpp-python` sdist version that vendors [`PINNED_COMMIT`].
pub const PINNED_PYPI_VERSION: &str = "0.3.36";
/// SHA-256 of `llama_cpp_python-0.3.36.tar.gz`.
pub const PINNED_PYPI_SHA256: &str =
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
/// The upstream repository; release assets and source archives live under it.
pub const DEFAULT_GITHUB_REPO: &str = "https://github.com/ggml-org/llama.cpp";
/// Environment variable naming the release tag of the pinned commit, when known.
pub const TAG_ENV: &str = "LMCPP_LLAMA_TAG";

/// Which llama.cpp to get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlamaVersion {
    /// Git commit (short or full).
    pub commit: String,
    /// Release tag (e.g. `b7100`) of that commit, needed for prebuilt assets.
    pub tag: Option<String>,
    /// The `llama-cpp-python` sdist that vendors this commit, if any.
    pub pypi: Option<PypiPin>,
    /// Known SHA-256 digests of release assets, by asset file name.
    pub asset_sha256: BTreeMap<String, String>,
    /// Known SHA-256 of the source archive of `tag` (or `commit`).
    pub source_sha256: Option<String>,
}

/// A `llama-cpp-python` sdist version and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PypiPin {
    /// Package version, e.g. `0.3.36`.
    pub version: String,
    /// Expected SHA-256 of the sdist.
    pub sha256: Option<String>,
}

impl LlamaVersion {
    /// The pinned version; the tag comes from `$LMCPP_LLAMA_TAG` when set.
    pub fn pinned() -> Self {
        Self {
            commit: PINNED_COMMIT.to_owned(),
            tag: std::env::var(TAG_ENV).ok().filter(|t| !t.is_empty()),
            pypi: Some(PypiPin {
                version: PINNED_PYPI_VERSION.to_owned(),
                sha256: Some(PINNED_PYPI_SHA256.to_owned()),
            }),
            asset_sha256: BTreeMap::new(),
            source_sha256: None,
        }
    }

    /// A release tag with no other pins.
    pub fn tag(tag: impl Into<String>) -> Self {
        let tag = tag.into();
        Self {
            commit: tag.clone(),
            tag: Some(tag),
            pypi: None,
            asset_sha256: BTreeMap::new(),
            source_sha256: None,
        }
    }

    /// Short human-readable label (`b7100` or the commit).
    pub fn label(&self) -> &str {
        self.tag.as_deref().unwrap_or(&self.commit)
    }
}

impl Default for LlamaVersion {
    fn default() -> Self {
        Self::pinned()
    }
}

/// Install a prebuilt binary, build from source, or try both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Only prebuilt release assets.
    InstallOnly,
    /// Only builds from source.
    BuildOnly,
    /// Prebuilt first, then build from source.
    #[default]
    BuildOrInstall,
}

impl Mode {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InstallOnly => "install-only",
            Self::BuildOnly => "build-only",
            Self::BuildOrInstall => "build-or-install",
        }
    }

    /// Whether this mode may use prebuilt sources.
    pub fn allows_prebuilt(self) -> bool {
        !matches!(self, Self::BuildOnly)
    }

    /// Whether this mode may build.
    pub fn allows_build(self) -> bool {
        !matches!(self, Self::InstallOnly)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "install-only" | "install" => Ok(Self::InstallOnly),
            "build-only" | "build" => Ok(Self::BuildOnly),
            "build-or-install" | "auto" => Ok(Self::BuildOrInstall),
            other => Err(Error::InvalidRequest {
                reason: format!(
                    "unknown mode {other:?}; use install-only, build-only or build-or-install"
                ),
            }),
        }
    }
}

/// Where llama.cpp may come from. [`ToolchainRequest::sources`] lists them in the order tried.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Prebuilt release asset for this OS, arch and backend (needs a tag).
    GithubRelease,
    /// Source archive of the tag (or commit).
    GithubSource,
    /// The `llama-cpp-python` sdist from the package index, via `pip download`.
    PypiSdist,
    /// A llama.cpp checkout on disk.
    LocalDir(PathBuf),
    /// A llama.cpp source archive on disk.
    LocalArchive {
        /// The archive.
        path: PathBuf,
        /// Expected SHA-256.
        sha256: Option<String>,
    },
    /// A llama.cpp source archive at any URL.
    Url {
        /// The URL.
        url: String,
        /// Expected SHA-256.
        sha256: Option<String>,
    },
    /// A prebuilt archive (containing `llama-server`) at any URL or path.
    PrebuiltUrl {
        /// The URL or path.
        url: String,
        /// Expected SHA-256.
        sha256: Option<String>,
    },
}

impl Source {
    /// Whether this source provides prebuilt binaries (as opposed to source code).
    pub fn is_prebuilt(&self) -> bool {
        matches!(self, Self::GithubRelease | Self::PrebuiltUrl { .. })
    }

    /// Short name used in messages, state files and fingerprints.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GithubRelease => "github-release",
            Self::GithubSource => "github-source",
            Self::PypiSdist => "pypi-sdist",
            Self::LocalDir(_) => "local-dir",
            Self::LocalArchive { .. } => "local-archive",
            Self::Url { .. } => "url",
            Self::PrebuiltUrl { .. } => "prebuilt-url",
        }
    }

    fn identity(&self) -> String {
        match self {
            Self::GithubRelease | Self::GithubSource | Self::PypiSdist => String::new(),
            Self::LocalDir(p) => p.display().to_string(),
            Self::LocalArchive { path, sha256 } => {
                format!("{}#{}", path.display(), sha256.as_deref().unwrap_or(""))
            }
            Self::Url { url, sha256 } | Self::PrebuiltUrl { url, sha256 } => {
                format!("{url}#{}", sha256.as_deref().unwrap_or(""))
            }
        }
    }
}

/// Optional parts of the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Features {
    /// Build `rpc-server` and the RPC backend (`-DGGML_RPC=ON`).
    pub rpc: bool,
}

impl Default for Features {
    fn default() -> Self {
        Self { rpc: true }
    }
}

/// Everything that determines which `llama-server` a caller gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolchainRequest {
    /// Which llama.cpp.
    pub version: LlamaVersion,
    /// Sources in the order tried; those the mode does not allow are skipped.
    pub sources: Vec<Source>,
    /// Backend to install or build for.
    pub backend: Backend,
    /// Install, build or both.
    pub mode: Mode,
    /// Extra CMake arguments appended to the configure command.
    pub cmake_args: Vec<String>,
    /// Optional parts.
    pub features: Features,
    /// Base URL of the upstream repository (a mirror or a loopback server in tests).
    pub github_repo: String,
    /// CUDA version label in asset names (`12.4` in `…-cuda-12.4-x64…`).
    pub cuda_label: String,
    /// Python interpreter used for `pip`.
    pub python: String,
}

impl Default for ToolchainRequest {
    fn default() -> Self {
        Self {
            version: LlamaVersion::pinned(),
            sources: vec![
                Source::GithubRelease,
                Source::GithubSource,
                Source::PypiSdist,
            ],
            backend: Backend::Auto,
            mode: Mode::BuildOrInstall,
            cmake_args: Vec::new(),
            features: Features::default(),
            github_repo: DEFAULT_GITHUB_REPO.to_owned(),
            cuda_label: "12.4".to_owned(),
            python: "python3".to_owned(),
        }
    }
}

impl ToolchainRequest {
    /// The cache key of this request once `auto` has been resolved to `backend`.
    ///
    /// Covers mode, version, backend, CMake args, features, the source list and the
    /// target; a request differing in any of them gets its own cache entry.
    pub fn fingerprint(&self, backend: Backend) -> String {
        let v = &self.version;
        Fingerprint::new("lmcpp/toolchain/v1")
            .field("os", std::env::consts::OS)
            .field("arch", std::env::consts::ARCH)
            .field("mode", self.mode.as_str())
            .field("commit", &v.commit)
            .opt_field("tag", v.tag.as_deref())
            .opt_field("pypi", v.pypi.as_ref().map(|p| p.version.as_str()))
            .field("backend", backend.as_str())
            .list("cmake_args", &self.cmake_args)
            .field("rpc", if self.features.rpc { "on" } else { "off" })
            .list(
                "sources",
                self.sources
                    .iter()
                    .map(|s| format!("{}:{}", s.kind(), s.identity())),
            )
            .field("cuda_label", &self.cuda_label)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_fingerprint() {
        let base = ToolchainRequest::default();
        let fp = base.fingerprint(Backend::Cpu);
        type Change = Box<dyn Fn(&mut ToolchainRequest)>;
        let variants: Vec<Change> = vec![
            Box::new(|r| r.mode = Mode::BuildOnly),
            Box::new(|r| r.version.commit = "abc".into()),
            Box::new(|r| r.version.tag = Some("b1".into())),
            Box::new(|r| r.cmake_args.push("-DX=1".into())),
            Box::new(|r| r.features.rpc = false),
            Box::new(|r| r.sources.pop().map(drop).unwrap_or_default()),
            Box::new(|r| r.sources.push(Source::LocalDir("/x".into()))),
        ];
        for (i, v) in variants.iter().enumerate() {
            let mut r = base.clone();
            r.version.tag = None;
            let mut changed = r.clone();
            v(&mut changed);
            assert_ne!(
                r.fingerprint(Backend::Cpu),
                changed.fingerprint(Backend::Cpu),
                "variant {i}"
            );
        }
        assert_ne!(fp, base.fingerprint(Backend::Vulkan));
        assert_eq!(fp, base.clone().fingerprint(Backend::Cpu));
    }

    #[test]
    fn default_pins_the_sdist_and_turns_rpc_on() {
        let r = ToolchainRequest::default();
        assert!(r.features.rpc);
        assert_eq!(r.mode, Mode::BuildOrInstall);
        assert_eq!(r.backend, Backend::Auto);
        let pin = r.version.pypi.as_ref().map(|p| p.version.as_str());
        assert_eq!(pin, Some(PINNED_PYPI_VERSION));
    }
}
