//! What a request maps to before any work: its backend (with why), the identity of the
//! llama.cpp tree each origin would use, and so its entries (origin, fingerprint,
//! directory); the plan on this machine, and `latest` resolved.

use std::path::{Path, PathBuf};

use crate::cache::{FileIdentity, ProbeKind};
use crate::error::{Error, Result};
use crate::toolchain::backend::{self, Backend, Obtainable};
use crate::toolchain::handle::Toolchain;
use crate::toolchain::plan::{Plan, plan};
use crate::toolchain::request::{Origin, Source, ToolchainRequest};
use crate::toolchain::source::{self, Ctx};
use crate::toolchain::state::first_usable;
use crate::toolchain::target::{CrossBuild, Target, cross_spec};
use crate::toolchain::versions::LlamaVersion;

impl Toolchain {
    /// Resolves `auto` and checks an explicit backend is usable, before any work: a GPU
    /// backend needs its device, and its build tools unless a prebuilt asset can be had.
    ///
    /// For a target other than this machine, this machine's devices say nothing: `auto`
    /// is the CPU, which is all a cross build makes, and another backend is only had
    /// from the target's prebuilt release.
    pub fn resolve_backend(&self, request: &ToolchainRequest) -> Result<(Backend, String)> {
        let origins = request.origins();
        let can = Obtainable {
            prebuilt: origins.contains(&Origin::Prebuilt),
            build: origins.contains(&Origin::Built),
        };
        let target = request.target_or_host();
        if !target.is_host() {
            return match request.backend {
                Backend::Auto => Ok((
                    Backend::Cpu,
                    format!("the only backend of builds for {target} here"),
                )),
                Backend::Cpu => Ok((Backend::Cpu, "requested".into())),
                other
                    if can.prebuilt
                        && crate::toolchain::plan::asset_platform(
                            &target.os,
                            &target.arch,
                            other,
                        )
                        .is_ok() =>
                {
                    Ok((other, "requested".into()))
                }
                other => Err(Error::BackendUnavailable {
                    backend: other.to_string(),
                    reason: format!(
                        "lmcpp builds for {target} on {} with the cpu backend only; choose cpu, or install the target's prebuilt release with --mode install-only",
                        Target::host()
                    ),
                }),
            };
        }
        match request.backend {
            Backend::Auto => {
                let d = backend::choose(self.probes(), can);
                return Ok((d.backend, d.reason));
            }
            // The CPU is always there; no need to look at the machine.
            Backend::Cpu => return Ok((Backend::Cpu, "requested".into())),
            _ => {}
        }
        let has_asset = can.prebuilt
            && crate::toolchain::plan::asset_platform(
                std::env::consts::OS,
                std::env::consts::ARCH,
                request.backend,
            )
            .is_ok();
        backend::check_available(request.backend, !has_asset, self.probes())?;
        Ok((request.backend, "requested".into()))
    }

    /// The identity of the llama.cpp tree `origin` would use: the content of a custom
    /// source (a local directory by its files' names, sizes and times; an archive by its
    /// SHA-256; a URL by its pinned digest, else the URL), or the version's identity.
    pub async fn tree_identity(
        &self,
        request: &ToolchainRequest,
        origin: Origin,
    ) -> Result<String> {
        let custom = request
            .sources_of(origin)
            .into_iter()
            .find(Source::is_custom);
        match custom {
            // A directory that is not there is reported when the source is tried, along
            // with every other source.
            Some(Source::LocalDir(p)) if !p.is_dir() => Ok(format!("dir-missing:{}", p.display())),
            Some(Source::LocalDir(p)) => {
                tokio::task::spawn_blocking(move || source::dir_identity(&p))
                    .await
                    .map_err(crate::error::join_error)?
            }
            Some(Source::LocalArchive { path, sha256 }) => match sha256 {
                Some(s) => Ok(format!("sha256:{}", s.to_ascii_lowercase())),
                None => Ok(format!("sha256:{}", self.archive_sha256(&path).await?)),
            },
            Some(Source::Url { url, sha256 } | Source::PrebuiltUrl { url, sha256 }) => {
                Ok(match sha256 {
                    Some(s) => format!("sha256:{}", s.to_ascii_lowercase()),
                    None => format!("url:{url}"),
                })
            }
            _ => Ok(request.version.identity()),
        }
    }

    /// The SHA-256 of a local archive, hashed once per version of the file: the digest is
    /// recorded under the file's identity (path, size, modification time, inode, device),
    /// so a warm `ensure` does not read a multi-megabyte archive again. It is recorded only
    /// when the identity is the same after hashing as before (a file being rewritten while
    /// it is read is hashed again next time); a cache that cannot be written costs a
    /// re-hash, never the `ensure`.
    async fn archive_sha256(&self, path: &Path) -> Result<String> {
        let layout = self.layout.clone();
        let owned = path.to_path_buf();
        let identity = tokio::task::spawn_blocking(move || {
            let id = FileIdentity::of(&owned).ok()?;
            let known = layout.read_probe(&id, ProbeKind::ArchiveSha256);
            Some((id, known))
        })
        .await
        .map_err(crate::error::join_error)?;
        if let Some((_, Some(known))) = &identity
            && known.len() == 64
            && known.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(known.clone());
        }
        let digest = crate::download::sha256_file(path).await?.0;
        if let Some((before, _)) = identity {
            let layout = self.layout.clone();
            let (owned, value) = (path.to_path_buf(), digest.clone());
            let _ = tokio::task::spawn_blocking(move || {
                if FileIdentity::of(&owned).is_ok_and(|after| after == before) {
                    let _ = layout.write_probe(&before, ProbeKind::ArchiveSha256, &value);
                }
            })
            .await;
        }
        Ok(digest)
    }

    /// Every entry `request` may be served from, in the order tried: (origin, fingerprint,
    /// directory).
    pub async fn entries_for(
        &self,
        request: &ToolchainRequest,
    ) -> Result<Vec<(Origin, String, PathBuf)>> {
        Ok(self.keyed(request).await?.entries)
    }

    /// The backend `request` resolves to (with why) and its entries, in the order tried.
    pub(super) async fn keyed(&self, request: &ToolchainRequest) -> Result<Keyed> {
        let (backend, reason) = self.resolve_backend(request)?;
        let origins = request.origins();
        if origins.is_empty() {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "{} mode allows none of the sources given ({}); change the mode or the sources",
                    request.mode,
                    request
                        .sources
                        .iter()
                        .map(Source::kind)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        // A cross build this machine cannot do is refused before any work, when building
        // is all the request allows (otherwise the prebuilt may still be had).
        if origins == [Origin::Built] {
            cross_spec(&request.target_or_host(), &Target::host())?;
        }
        let mut out = Vec::new();
        for origin in origins {
            let tree = self.tree_identity(request, origin).await?;
            let fp = request.fingerprint(backend, origin, &tree);
            let dir = self.layout.toolchain_entry(&fp);
            out.push((origin, fp, dir));
        }
        Ok(Keyed {
            backend,
            reason,
            entries: out,
        })
    }

    /// The entry `request` maps to on this machine: the first usable one among
    /// [`Toolchain::entries_for`], else the first one that would be produced.
    pub async fn entry_for(&self, request: &ToolchainRequest) -> Result<(String, PathBuf)> {
        let entries = self.entries_for(request).await?;
        let (_, fp, dir) = match first_usable(&entries) {
            Some(i) => entries.iter().find(|e| e.2 == i.entry_dir),
            None => entries.first(),
        }
        .ok_or(Error::InvalidRequest {
            reason: "the request maps to no entry".into(),
        })?;
        Ok((fp.clone(), dir.clone()))
    }

    /// Resolves `latest` through the release listing of `request.github_api`: the newest
    /// release's tag, with every pin the table of known versions has for it. Offline this
    /// is an error that says to name a version instead.
    pub async fn latest_version(&self, request: &ToolchainRequest) -> Result<LlamaVersion> {
        let progress = crate::progress::no_progress();
        let ctx = Ctx {
            layout: &self.layout,
            downloader: &self.downloader,
            lock_timeout: self.lock_timeout,
            progress: &progress,
        };
        self.layout.create()?;
        let url = format!(
            "{}/releases/latest",
            request.github_api.trim_end_matches('/')
        );
        let listing = source::release_listing(&ctx, &url)
            .await
            .map_err(|e| Error::InvalidRequest {
                reason: format!(
                    "cannot resolve llama.cpp `latest` from {url}: {e}; name a version instead (e.g. {})",
                    crate::toolchain::versions::pinned().tag.unwrap_or("b11312")
                ),
            })?;
        crate::toolchain::versions::parse(&listing.tag_name)
    }

    /// The plan for `request` on this machine (backend resolved): the target's plan, with
    /// a cross build's CMake arguments when the target is not this machine.
    pub fn plan(&self, request: &ToolchainRequest) -> Result<Plan> {
        let (backend, _) = self.resolve_backend(request)?;
        let resolved = ToolchainRequest {
            backend,
            ..request.clone()
        };
        let cross = match cross_spec(&resolved.target_or_host(), &Target::host())? {
            Some(spec) => Some(CrossBuild::find(spec)?),
            None => None,
        };
        Ok(plan_here(&resolved, cross.as_ref()))
    }
}

/// A request's resolved backend (and why) and its entries (origin, fingerprint, directory).
pub(super) struct Keyed {
    pub(super) backend: Backend,
    pub(super) reason: String,
    pub(super) entries: Vec<(Origin, String, PathBuf)>,
}

/// The plan for `request` built on this machine: its target's plan, with a cross build's
/// CMake arguments placed before the request's own (which may override them).
pub(super) fn plan_here(request: &ToolchainRequest, cross: Option<&CrossBuild>) -> Plan {
    let target = request.target_or_host();
    let mut p = plan(request, &target.os, &target.arch);
    if let Some(cross) = cross {
        let at = p.cmake_args.len().saturating_sub(request.cmake_args.len());
        p.cmake_args.splice(at..at, cross.cmake_args());
    }
    p
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn windows() -> Target {
        "x86_64-pc-windows-gnu".parse().unwrap()
    }

    /// A cross build with every tool "found" under /usr/bin (no machine is looked at).
    fn mingw() -> CrossBuild {
        let spec = cross_spec(&windows(), &"linux-x86_64".parse().unwrap())
            .unwrap()
            .unwrap();
        CrossBuild::resolve(spec, |n| Some(PathBuf::from(format!("/usr/bin/{n}")))).unwrap()
    }

    #[test]
    fn a_cross_plan_configures_for_the_target_and_lets_the_request_override() {
        let request = ToolchainRequest {
            target: Some(windows()),
            cmake_args: vec!["-DGGML_AVX2=ON".into()],
            ..ToolchainRequest::default()
        };
        let p = plan_here(&request, Some(&mingw()));
        assert_eq!(p.artefacts, ["llama-server.exe", "rpc-server.exe"]);
        assert_eq!(p.prebuilt_assets, ["llama-b11312-bin-win-cpu-x64.zip"]);
        let at = |a: &str| p.cmake_args.iter().position(|x| x == a).unwrap();
        // The target's own plan, then the cross build's arguments, then the request's.
        assert!(at("-DGGML_RPC=ON") < at("-DCMAKE_SYSTEM_NAME=Windows"));
        assert!(at("-DCMAKE_SYSTEM_NAME=Windows") < at("-DGGML_AVX2=ON"));
        assert_eq!(
            p.cmake_args.last().map(String::as_str),
            Some("-DGGML_AVX2=ON")
        );
        // Without a cross build the plan is the target's plan as `cargo xtask matrix` shows it.
        let native = plan_here(&request, None);
        assert_eq!(native, plan(&request, "windows", "x86_64"));
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[tokio::test]
    async fn cross_targets_resolve_to_cpu_and_unsupported_builds_are_refused_up_front() {
        use crate::toolchain::backend::Probes;
        use crate::toolchain::request::Mode;
        use lmcpp_types::Classify;
        let dir = tempfile::tempdir().unwrap();
        // Probes claiming every device: a cross target must not look at them.
        let probes = Probes {
            nvidia: Some("n".into()),
            nvcc: Some("c".into()),
            vulkan: Some("v".into()),
            glslc: Some("g".into()),
            ..Probes::default()
        };
        let tc = Toolchain::new(Some(dir.path()))
            .unwrap()
            .with_probes(probes);
        let cross = ToolchainRequest {
            target: Some(windows()),
            ..ToolchainRequest::default()
        };
        assert_eq!(tc.resolve_backend(&cross).unwrap().0, Backend::Cpu);
        let vulkan_build = ToolchainRequest {
            backend: Backend::Vulkan,
            mode: Mode::BuildOnly,
            ..cross.clone()
        };
        let err = tc.resolve_backend(&vulkan_build).unwrap_err().to_string();
        assert!(err.contains("cpu backend only"), "{err}");
        // The prebuilt windows vulkan release may still be installed.
        let vulkan_install = ToolchainRequest {
            mode: Mode::InstallOnly,
            ..vulkan_build
        };
        assert_eq!(
            tc.resolve_backend(&vulkan_install).unwrap().0,
            Backend::Vulkan
        );

        let mac = ToolchainRequest {
            target: Some("aarch64-apple-darwin".parse().unwrap()),
            mode: Mode::BuildOnly,
            ..ToolchainRequest::default()
        };
        let err = tc.entries_for(&mac).await.unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedTarget { .. }) && err.is_user_error(),
            "{err}"
        );
        // With prebuilt allowed, the request maps to its entries (the build is skipped later).
        let mac_any = ToolchainRequest {
            mode: Mode::BuildOrInstall,
            ..mac
        };
        assert_eq!(tc.entries_for(&mac_any).await.unwrap().len(), 2);
        assert!(
            !dir.path().join("toolchains").exists(),
            "nothing was written"
        );
    }
}
