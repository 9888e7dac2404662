//! The pure part of the recipe: which sources, asset names, CMake arguments and artefacts a
//! request means on a given OS and architecture. Used by the recipe and by `cargo xtask matrix`.

use serde::Serialize;

pub use crate::toolchain::backend::asset_platform;
use crate::toolchain::backend::{Backend, asset_arch};
use crate::toolchain::request::{Mode, Source, ToolchainRequest};
#[cfg(test)]
use crate::toolchain::versions::LlamaVersion;

/// One source the recipe will try, resolved to locations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedSource {
    /// The source as requested.
    pub source: Source,
    /// URLs or paths to fetch, in order (a CUDA prebuilt has two archives).
    pub locations: Vec<String>,
    /// Why this source will be skipped, when it will be.
    pub skip: Option<String>,
}

/// Everything the recipe will do for a request, decided without touching the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Target OS (`linux`, `macos`, `windows`).
    pub os: String,
    /// Target architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// The backend planned for (`auto` is planned as `cpu`).
    pub backend: Backend,
    /// The mode.
    pub mode: Mode,
    /// Sources in the order they are tried.
    pub sources: Vec<PlannedSource>,
    /// Prebuilt asset file names for this target (empty when none exists).
    pub prebuilt_assets: Vec<String>,
    /// CMake configure arguments (besides `-S`/`-B`).
    pub cmake_args: Vec<String>,
    /// CMake build targets.
    pub build_targets: Vec<String>,
    /// Files published in `bin/`.
    pub artefacts: Vec<String>,
}

/// The file name of executable `name` on `os`.
pub(crate) fn exe(os: &str, name: &str) -> String {
    if os == "windows" {
        format!("{name}.exe")
    } else {
        name.to_owned()
    }
}

/// The CUDA labels planned for offline (the newest first), when no release listing says
/// which exist: Linux releases ship 13.x and 12.8, Windows releases 13.x and 12.4.
pub fn default_cuda_labels(os: &str) -> &'static [&'static str] {
    if os == "windows" {
        &["13.4", "12.4"]
    } else {
        &["13.4", "12.8"]
    }
}

/// The archive extension of release assets on `os`.
pub fn asset_ext(os: &str) -> &'static str {
    if os == "windows" { "zip" } else { "tar.gz" }
}

/// The main asset's name for a tag, target and CUDA label.
pub fn main_asset_name(tag: &str, platform: &str, cuda_label: &str, os: &str) -> String {
    format!(
        "llama-{tag}-bin-{}.{}",
        platform.replace("{cuda}", cuda_label),
        asset_ext(os)
    )
}

/// The CUDA runtime asset's name: Linux names carry the tag, Windows names do not.
pub fn cudart_asset_name(tag: &str, os: &str, arch: &str, cuda_label: &str) -> String {
    let a = asset_arch(arch).unwrap_or("x64");
    if os == "windows" {
        format!("cudart-llama-bin-win-cuda-{cuda_label}-{a}.zip")
    } else {
        format!("cudart-llama-{tag}-bin-ubuntu-cuda-{cuda_label}-{a}.tar.gz")
    }
}

/// Release asset names planned for a target without a release listing (the offline plan
/// shown by `cargo xtask matrix`), or why there is none. Installs resolve names from the
/// listing instead (see [`crate::Toolchain::ensure`]).
///
/// Linux and macOS assets are `.tar.gz`, Windows assets `.zip`; CUDA needs a second
/// `cudart-` archive. A backend without an asset is an error, never a silent CPU fallback.
pub fn prebuilt_assets(
    tag: &str,
    os: &str,
    arch: &str,
    backend: Backend,
    cuda_label: &str,
) -> Result<Vec<String>, String> {
    let platform = asset_platform(os, arch, backend)?;
    let mut names = vec![main_asset_name(tag, &platform, cuda_label, os)];
    if platform.contains("{cuda}") {
        names.push(cudart_asset_name(tag, os, arch, cuda_label));
    }
    Ok(names)
}

/// CMake configure arguments for a request on a target.
pub fn cmake_args(request: &ToolchainRequest, backend: Backend, os: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DBUILD_SHARED_LIBS=OFF",
    ]
    .map(String::from)
    .to_vec();
    args.extend(backend.cmake_flags());
    if os == "macos" && backend != Backend::Metal {
        // Metal is on by default on macOS; a CPU request must not get it silently.
        args.push("-DGGML_METAL=OFF".into());
    }
    if request.features.rpc {
        args.push("-DGGML_RPC=ON".into());
    }
    // A custom tree reports its own version (its git metadata, if any).
    if !request.sources.iter().any(Source::is_custom) {
        args.extend(request.version.build_info_args());
    }
    args.extend(request.cmake_args.iter().cloned());
    args
}

/// Plans `request` for `target_os` / `target_arch` (Rust's `std::env::consts` spelling).
pub fn plan(request: &ToolchainRequest, target_os: &str, target_arch: &str) -> Plan {
    let backend = if request.backend == Backend::Auto {
        Backend::Cpu
    } else {
        request.backend
    };
    let tag = request.version.tag.as_deref();
    let cuda_label = request
        .cuda_label
        .as_deref()
        .unwrap_or(default_cuda_labels(target_os)[0]);
    let assets = tag.map(|t| prebuilt_assets(t, target_os, target_arch, backend, cuda_label));
    let sources = request
        .sources
        .iter()
        .map(|s| {
            let (locations, skip) = locate(request, s, assets.as_ref());
            PlannedSource {
                source: s.clone(),
                locations,
                skip: mode_skip(request, s).or(skip),
            }
        })
        .collect();
    // The rpc-server target's name depends on the tree (`ggml-rpc-server` in the pinned
    // llama.cpp, `rpc-server` before); the recipe finds it in the tree and adds it.
    let build_targets = vec!["llama-server".to_owned()];
    let mut artefacts = vec![exe(target_os, "llama-server")];
    if request.features.rpc {
        artefacts.push(exe(target_os, "rpc-server"));
    }
    Plan {
        os: target_os.to_owned(),
        arch: target_arch.to_owned(),
        backend,
        mode: request.mode,
        sources,
        prebuilt_assets: match assets {
            Some(Ok(a)) => a,
            _ => vec![],
        },
        cmake_args: cmake_args(request, backend, target_os),
        build_targets,
        artefacts,
    }
}

/// Why `request`'s mode passes over source `s`, if it does.
fn mode_skip(request: &ToolchainRequest, s: &Source) -> Option<String> {
    if s.is_prebuilt() && !request.mode.allows_prebuilt() {
        Some(format!(
            "{} mode does not install prebuilt binaries",
            request.mode
        ))
    } else if !s.is_prebuilt() && !request.mode.allows_build() {
        Some(format!("{} mode does not build from source", request.mode))
    } else {
        None
    }
}

/// Where source `s` of `request` is fetched from, or why it cannot be (its locations are
/// then empty); `assets` are the prebuilt asset names planned for the release tag, if any.
fn locate(
    request: &ToolchainRequest,
    s: &Source,
    assets: Option<&Result<Vec<String>, String>>,
) -> (Vec<String>, Option<String>) {
    let repo = request.github_repo.trim_end_matches('/');
    let api = request.github_api.trim_end_matches('/');
    let tag = request.version.tag.as_deref();
    match s {
        Source::GithubRelease => match (assets, tag) {
            // The listing names the assets and their digests; the names planned
            // here are what it is expected to contain.
            (Some(Ok(_)), Some(t)) => (vec![format!("{api}/releases/tags/{t}")], None),
            (Some(Err(why)), _) => (vec![], Some(why.clone())),
            _ => (
                vec![],
                Some(format!(
                    "no release tag is known for llama.cpp {}; request a release tag (b<N>) to install a prebuilt",
                    request.version.label()
                )),
            ),
        },
        Source::GithubSource if tag.is_none() && request.version.commit.is_empty() => (
            vec![],
            Some(format!(
                "no tag or commit is known for llama.cpp {}",
                request.version.label()
            )),
        ),
        Source::GithubSource => {
            let r = tag.map_or_else(
                || format!("{repo}/archive/{}.tar.gz", request.version.commit),
                |t| format!("{repo}/archive/refs/tags/{t}.tar.gz"),
            );
            (vec![r], None)
        }
        Source::PypiSdist => match &request.version.pypi {
            Some(p) => (
                vec![format!("pip download llama-cpp-python=={}", p.version)],
                None,
            ),
            None => (
                vec![],
                Some("no llama-cpp-python version vendors this llama.cpp".into()),
            ),
        },
        Source::LocalDir(p) => (vec![p.display().to_string()], None),
        Source::LocalArchive { path, .. } => (vec![path.display().to_string()], None),
        Source::Url { url, .. } | Source::PrebuiltUrl { url, .. } => (vec![url.clone()], None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn asset_names_per_target() {
        let cases: &[(&str, &str, Backend, &[&str])] = &[
            (
                "linux",
                "x86_64",
                Backend::Cpu,
                &["llama-b1-bin-ubuntu-x64.tar.gz"],
            ),
            (
                "linux",
                "aarch64",
                Backend::Cpu,
                &["llama-b1-bin-ubuntu-arm64.tar.gz"],
            ),
            (
                "linux",
                "x86_64",
                Backend::Vulkan,
                &["llama-b1-bin-ubuntu-vulkan-x64.tar.gz"],
            ),
            (
                "linux",
                "x86_64",
                Backend::Cuda,
                &[
                    "llama-b1-bin-ubuntu-cuda-12.4-x64.tar.gz",
                    "cudart-llama-b1-bin-ubuntu-cuda-12.4-x64.tar.gz",
                ],
            ),
            (
                "macos",
                "aarch64",
                Backend::Metal,
                &["llama-b1-bin-macos-arm64.tar.gz"],
            ),
            (
                "windows",
                "x86_64",
                Backend::Cpu,
                &["llama-b1-bin-win-cpu-x64.zip"],
            ),
            (
                "windows",
                "x86_64",
                Backend::Cuda,
                &[
                    "llama-b1-bin-win-cuda-12.4-x64.zip",
                    "cudart-llama-bin-win-cuda-12.4-x64.zip",
                ],
            ),
        ];
        for (os, arch, b, want) in cases {
            assert_eq!(
                prebuilt_assets("b1", os, arch, *b, "12.4").unwrap(),
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{os} {arch} {b}"
            );
        }
        assert!(prebuilt_assets("b1", "linux", "x86_64", Backend::Metal, "12.4").is_err());
        assert!(prebuilt_assets("b1", "macos", "aarch64", Backend::Cuda, "12.4").is_err());
    }

    #[test]
    fn default_plan_installs_the_pinned_release_first() {
        let p = plan(&ToolchainRequest::default(), "linux", "x86_64");
        assert_eq!(p.sources[0].skip, None);
        assert!(p.sources[0].locations[0].ends_with("/releases/tags/b11312"));
        assert_eq!(p.prebuilt_assets, ["llama-b11312-bin-ubuntu-x64.tar.gz"]);
    }

    #[test]
    fn default_plan_builds_both_targets_statically() {
        let p = plan(&ToolchainRequest::default(), "linux", "x86_64");
        assert_eq!(p.build_targets, ["llama-server"]);
        assert!(
            p.cmake_args
                .contains(&"-DLLAMA_BUILD_NUMBER=11312".to_owned())
        );
        assert!(p.cmake_args.contains(&"-DGGML_RPC=ON".to_owned()));
        assert!(p.cmake_args.contains(&"-DBUILD_SHARED_LIBS=OFF".to_owned()));
        let kinds: Vec<_> = p.sources.iter().map(|s| s.source.kind()).collect();
        assert_eq!(kinds, ["github-release", "github-source", "pypi-sdist"]);
        let w = plan(&ToolchainRequest::default(), "windows", "x86_64");
        assert_eq!(w.artefacts, ["llama-server.exe", "rpc-server.exe"]);
        let mut cuda = ToolchainRequest {
            backend: Backend::Cuda,
            mode: Mode::BuildOnly,
            ..ToolchainRequest::default()
        };
        cuda.version = LlamaVersion::tag("b1");
        let c = plan(&cuda, "linux", "x86_64");
        assert!(c.cmake_args.contains(&"-DGGML_CUDA=ON".to_owned()));
        assert!(c.sources[0].skip.as_deref().unwrap().contains("build-only"));
        assert_eq!(c.prebuilt_assets.len(), 2);
    }
}
