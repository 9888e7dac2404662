//! What a caller asks for: [`ToolchainRequest`] and its parts, and its fingerprint.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::toolchain::backend::Backend;
use crate::toolchain::target::Target;
use crate::toolchain::versions::LlamaVersion;

/// llama.cpp commit this crate is tested against (release `b11312`).
pub const PINNED_COMMIT: &str = "0c1e570";
/// `llama-cpp-python` sdist version that vendors [`PINNED_COMMIT`].
pub const PINNED_PYPI_VERSION: &str = "0.3.36";
/// SHA-256 of `llama_cpp_python-0.3.36.tar.gz`.
pub const PINNED_PYPI_SHA256: &str =
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
/// The upstream repository; release assets and source archives live under it.
pub const DEFAULT_GITHUB_REPO: &str = "https://github.com/ggml-org/llama.cpp";
/// The upstream repository's release API (the release listing with asset digests).
pub const DEFAULT_GITHUB_API: &str = "https://api.github.com/repos/ggml-org/llama.cpp";
/// Environment variable with the llama.cpp version the CLI and build scripts use by default
/// (any form [`crate::toolchain::versions::parse`] reads).
pub const VERSION_ENV: &str = "LMCPP_LLAMA_VERSION";

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

    /// Whether the source names a tree of its own (a directory, an archive, a URL), whose
    /// content rather than [`ToolchainRequest::version`] decides what gets built.
    pub fn is_custom(&self) -> bool {
        matches!(
            self,
            Self::LocalDir(_)
                | Self::LocalArchive { .. }
                | Self::Url { .. }
                | Self::PrebuiltUrl { .. }
        )
    }
}

/// How an entry's binaries came to be; part of the cache key, since a prebuilt release and
/// a local build of the same version differ (shared libraries, CPU variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Installed from a prebuilt archive.
    Prebuilt,
    /// Built from source with CMake.
    Built,
}

impl Origin {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prebuilt => "prebuilt",
            Self::Built => "built",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// Base URL of the upstream release API: `<api>/releases/tags/<tag>` and
    /// `<api>/releases/latest` list assets with their sizes and digests.
    #[serde(default = "default_github_api")]
    pub github_api: String,
    /// CUDA version label of the prebuilt asset (`12.8` in `…-cuda-12.8-x64…`); `None`
    /// picks the newest label the installed driver supports, from the release listing.
    #[serde(default)]
    pub cuda_label: Option<String>,
    /// Python interpreter used for `pip`.
    pub python: String,
    /// The OS and architecture the binaries are for; `None` is this machine.
    ///
    /// Another target is a cross build: `windows-x86_64` (`"x86_64-pc-windows-gnu".parse()`)
    /// builds `llama-server.exe` with mingw-w64 on Linux (the CPU backend, statically
    /// linked, so it runs under Wine or on Windows without further DLLs), into an entry of
    /// its own. Other cross builds are refused with [`crate::Error::UnsupportedTarget`];
    /// prebuilt release assets of any target can be installed (`--mode install-only`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
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
            github_api: default_github_api(),
            cuda_label: None,
            python: "python3".to_owned(),
            target: None,
        }
    }
}

fn default_github_api() -> String {
    DEFAULT_GITHUB_API.to_owned()
}

impl ToolchainRequest {
    /// The target the binaries are for: [`ToolchainRequest::target`], else this machine.
    pub fn target_or_host(&self) -> Target {
        self.target.clone().unwrap_or_else(Target::host)
    }

    /// The origins this request accepts, in the order they are tried. A prebuilt cannot
    /// honour extra CMake arguments, and a custom source decides the origin by its kind.
    pub fn origins(&self) -> Vec<Origin> {
        let mut out = Vec::new();
        let allowed = |s: &Source| {
            if s.is_prebuilt() {
                self.mode.allows_prebuilt() && self.cmake_args.is_empty()
            } else {
                self.mode.allows_build()
            }
        };
        for s in self.sources.iter().filter(|s| allowed(s)) {
            let o = if s.is_prebuilt() {
                Origin::Prebuilt
            } else {
                Origin::Built
            };
            if !out.contains(&o) {
                out.push(o);
            }
        }
        out
    }

    /// The sources of `origin`, in order.
    pub fn sources_of(&self, origin: Origin) -> Vec<Source> {
        self.sources
            .iter()
            .filter(|s| s.is_prebuilt() == (origin == Origin::Prebuilt))
            .cloned()
            .collect()
    }

    /// The cache key of what this request produces with `origin` once `auto` has been
    /// resolved to `backend`. `tree` is the identity of the llama.cpp tree: the version's
    /// [`LlamaVersion::identity`], or the content identity of a custom source (see
    /// [`crate::Toolchain::tree_identity`]).
    ///
    /// The key is what was produced: the target's os and arch, origin, tree, backend, CMake
    /// arguments and features. The mode and the list of places tried are not part of it, so
    /// a build-only result satisfies a build-or-install request for the same version; nor
    /// is whether the target was named, so `Some(host)` and `None` share an entry.
    pub fn fingerprint(&self, backend: Backend, origin: Origin, tree: &str) -> String {
        let cmake_args: &[String] = match origin {
            Origin::Built => &self.cmake_args,
            Origin::Prebuilt => &[],
        };
        let target = self.target_or_host();
        Fingerprint::new("lmcpp/toolchain/v2")
            .field("os", &target.os)
            .field("arch", &target.arch)
            .field("origin", origin.as_str())
            .field("tree", tree)
            .field("backend", backend.as_str())
            .list("cmake_args", cmake_args)
            .field("rpc", if self.features.rpc { "on" } else { "off" })
            .opt_field(
                "cuda_label",
                self.cuda_label
                    .as_deref()
                    .filter(|_| backend == Backend::Cuda),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_field_of_the_product_changes_the_fingerprint() {
        let base = ToolchainRequest::default();
        let fp = |r: &ToolchainRequest, o: Origin, t: &str| r.fingerprint(Backend::Cpu, o, t);
        let reference = fp(&base, Origin::Built, "commit:abc1234");
        type Change = Box<dyn Fn(&mut ToolchainRequest)>;
        let variants: Vec<Change> = vec![
            Box::new(|r| r.cmake_args.push("-DX=1".into())),
            Box::new(|r| r.features.rpc = false),
            Box::new(|r| r.target = Some(cross_target())),
        ];
        for (i, v) in variants.iter().enumerate() {
            let mut changed = base.clone();
            v(&mut changed);
            assert_ne!(
                reference,
                fp(&changed, Origin::Built, "commit:abc1234"),
                "{i}"
            );
        }
        assert_ne!(reference, fp(&base, Origin::Prebuilt, "commit:abc1234"));
        assert_ne!(reference, fp(&base, Origin::Built, "commit:abc1235"));
        assert_ne!(
            reference,
            base.fingerprint(Backend::Vulkan, Origin::Built, "commit:abc1234")
        );
        // What is not part of the product is not part of the key.
        let mut other = base.clone();
        other.mode = Mode::BuildOnly;
        other.sources = vec![Source::PypiSdist];
        assert_eq!(reference, fp(&other, Origin::Built, "commit:abc1234"));
        // Naming this machine as the target is the same product as naming none.
        other.target = Some(Target::host());
        assert_eq!(reference, fp(&other, Origin::Built, "commit:abc1234"));
    }

    /// A target other than this machine.
    fn cross_target() -> Target {
        let os = if cfg!(windows) { "linux" } else { "windows" };
        Target {
            os: os.into(),
            arch: "x86_64".into(),
        }
    }

    #[test]
    fn a_cross_target_has_entries_of_its_own_for_every_origin() {
        let host = ToolchainRequest::default();
        let cross = ToolchainRequest {
            target: Some(cross_target()),
            ..ToolchainRequest::default()
        };
        for origin in [Origin::Built, Origin::Prebuilt] {
            assert_ne!(
                host.fingerprint(Backend::Cpu, origin, "commit:abc1234"),
                cross.fingerprint(Backend::Cpu, origin, "commit:abc1234"),
                "{origin}"
            );
        }
        // The target survives the state file's round trip; a host request writes none.
        let json = serde_json::to_value(&cross).unwrap();
        let back: ToolchainRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.target, Some(cross_target()));
        let host_json = serde_json::to_value(&host).unwrap();
        assert!(host_json.get("target").is_none(), "{host_json}");
    }

    #[test]
    fn origins_follow_mode_sources_and_cmake_args() {
        let mut r = ToolchainRequest::default();
        assert_eq!(r.origins(), [Origin::Prebuilt, Origin::Built]);
        r.mode = Mode::BuildOnly;
        assert_eq!(r.origins(), [Origin::Built]);
        r.mode = Mode::InstallOnly;
        assert_eq!(r.origins(), [Origin::Prebuilt]);
        r.mode = Mode::BuildOrInstall;
        r.cmake_args.push("-DGGML_NATIVE=OFF".into());
        assert_eq!(r.origins(), [Origin::Built]);
    }

    #[test]
    fn one_version_has_one_identity_however_it_is_named() {
        let a = crate::toolchain::versions::parse("b11312").unwrap();
        let b = crate::toolchain::versions::parse("pypi:0.3.36").unwrap();
        assert_eq!(a.identity(), b.identity());
        assert_ne!(
            a.identity(),
            crate::toolchain::versions::parse("pypi:0.3.16")
                .unwrap()
                .identity()
        );
        assert_eq!(
            a.build_info_args(),
            [
                "-DLLAMA_BUILD_NUMBER=11312",
                "-DLLAMA_BUILD_COMMIT=0c1e5709"
            ]
        );
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
