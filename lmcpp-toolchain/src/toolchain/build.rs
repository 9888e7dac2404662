//! Building from source in scratch: the cross build a target takes (or why it cannot be
//! done here), the backend a build can make, the source tree of a source, and the cmake
//! build with its artefacts collected into `bin/`.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result, SourceAttempt};
use crate::progress::{ProgressEvent, SharedProgress};
use crate::toolchain::backend::{self, Backend};
use crate::toolchain::binary::VERSION_TIMEOUT;
use crate::toolchain::cmake;
use crate::toolchain::handle::{BuildDriver, Toolchain};
use crate::toolchain::plan::Plan;
use crate::toolchain::request::{Source, ToolchainRequest};
use crate::toolchain::run::RunFailure;
use crate::toolchain::source::{self, Ctx};
use crate::toolchain::state::BUILD_LOG;
use crate::toolchain::target::{CrossBuild, Target, cross_spec};

impl Toolchain {
    /// The cross build a build for `request` needs, if any. A cross build this machine
    /// cannot do leaves the entry as it was (the failure is not recorded): it says
    /// nothing about what was asked for.
    pub(super) async fn cross_for_build(
        &self,
        request: &ToolchainRequest,
    ) -> Result<Option<CrossBuild>, RunFailure> {
        match self.cross_build(request).await {
            Ok(c) => Ok(c),
            Err(error @ Error::CrossToolsMissing { .. }) => Err(RunFailure {
                error,
                record: false,
            }),
            Err(e) => Err(RunFailure {
                error: Error::AllSourcesFailed {
                    attempts: vec![SourceAttempt {
                        source: "build".into(),
                        location: "-".into(),
                        error: format!("skipped: {e}"),
                    }],
                },
                record: false,
            }),
        }
    }

    /// Whether a build can make `request`'s backend: a cross build (for `os`) makes the
    /// cpu backend only (see `resolve_backend`); a native one needs the backend's tools.
    pub(super) fn check_build_backend(
        &self,
        request: &ToolchainRequest,
        cross: bool,
        os: &str,
    ) -> Result<()> {
        if !cross {
            return backend::check_available(request.backend, true, self.probes());
        }
        match request.backend {
            Backend::Auto | Backend::Cpu => Ok(()),
            other => Err(Error::BackendUnavailable {
                backend: other.to_string(),
                reason: format!("lmcpp builds for {os} with the cpu backend only"),
            }),
        }
    }

    /// The cross build `request` takes on this machine: `None` for its own target, else
    /// the cross compilers found (and a C++ compiler with POSIX threads checked), or why
    /// it cannot be done here.
    async fn cross_build(&self, request: &ToolchainRequest) -> Result<Option<CrossBuild>> {
        let Some(spec) = cross_spec(&request.target_or_host(), &Target::host())? else {
            return Ok(None);
        };
        let build = CrossBuild::find(spec)?;
        if let Some(cxx) = build.cxx() {
            let mut cmd = tokio::process::Command::new(cxx);
            cmd.arg("-v");
            // `gcc -v` prints its configuration to stderr; a compiler that cannot even say
            // that fails the build later with its own error.
            if let Ok(Ok(out)) = tokio::time::timeout(VERSION_TIMEOUT, cmd.output()).await {
                build.check_thread_model(&String::from_utf8_lossy(&out.stderr))?;
            }
        }
        Ok(Some(build))
    }

    /// The llama.cpp source tree of a source: a local directory as it is, else an
    /// archive or sdist extracted into the shared `sources/` cache.
    pub(super) async fn source_tree(
        &self,
        ctx: &Ctx<'_>,
        request: &ToolchainRequest,
        src: &Source,
        location: &str,
    ) -> Result<PathBuf> {
        match src {
            Source::LocalDir(p) => {
                let p = std::fs::canonicalize(p).ctx("resolve", p)?;
                source::check_tree(&p)?;
                Ok(p)
            }
            Source::PypiSdist => {
                let pin = request
                    .version
                    .pypi
                    .as_ref()
                    .ok_or_else(|| Error::InvalidRequest {
                        reason: "no llama-cpp-python version configured".into(),
                    })?;
                source::pypi_sdist(ctx, &request.python, &pin.version, pin.sha256.as_deref()).await
            }
            Source::GithubSource => {
                source::source_archive(ctx, location, request.version.source_sha256.as_deref())
                    .await
            }
            Source::LocalArchive { path, sha256 } => {
                source::source_archive(ctx, &path.to_string_lossy(), sha256.as_deref()).await
            }
            Source::Url { url, sha256 } => {
                source::source_archive(ctx, url, sha256.as_deref()).await
            }
            Source::GithubRelease | Source::PrebuiltUrl { .. } => Err(Error::InvalidRequest {
                reason: "a prebuilt source has no source tree".into(),
            }),
        }
    }

    /// Builds `plan`'s targets from `tree` in scratch (log in the entry's `build.log`) and
    /// collects its artefacts into `scratch/bin`.
    pub(super) async fn build(
        &self,
        tree: &Path,
        plan: &Plan,
        python: &str,
        entry: &Path,
        scratch: &Path,
        progress: &SharedProgress,
    ) -> Result<PathBuf> {
        let cmake =
            cmake::find_or_bootstrap(&self.layout, python, self.lock_timeout, progress).await?;
        let mut plan = plan.clone();
        let rpc = crate::toolchain::plan::exe(&plan.os, "rpc-server");
        if plan.artefacts.contains(&rpc) {
            match source::rpc_target(tree) {
                Some(target) => plan.build_targets.push(target),
                None => {
                    progress.event(ProgressEvent::Note {
                        message: "this llama.cpp has no rpc-server target; building without it"
                            .into(),
                    });
                    plan.artefacts.retain(|a| *a != rpc);
                    plan.cmake_args.retain(|a| a != "-DGGML_RPC=ON");
                }
            }
        }
        let plan = &plan;
        let log = entry.join(BUILD_LOG);
        std::fs::write(&log, b"").ctx("create", &log)?;
        let build_dir = scratch.join("build");
        match self.driver {
            BuildDriver::CmakeCli => {
                cmake::configure_and_build(
                    &cmake,
                    tree,
                    &build_dir,
                    &plan.cmake_args,
                    &plan.build_targets,
                    &log,
                    progress,
                )
                .await?;
            }
            BuildDriver::CmakeCrate => {
                let (tree, out, plan) = (tree.to_path_buf(), scratch.to_path_buf(), plan.clone());
                tokio::task::spawn_blocking(move || {
                    cmake::build_with_cmake_crate(&cmake, &tree, &out, &plan)
                })
                .await
                .map_err(crate::error::join_error)??;
            }
        }
        let bin = scratch.join("bin");
        std::fs::create_dir_all(&bin).ctx("create directory", &bin)?;
        for artefact in &plan.artefacts {
            // Upstream prefixes some tool binaries with `ggml-` (`ggml-rpc-server`).
            let prefixed = format!("ggml-{artefact}");
            let found = [
                build_dir.join("bin").join(artefact),
                build_dir.join("bin").join("Release").join(artefact),
                build_dir.join("bin").join(&prefixed),
                build_dir.join("bin").join("Release").join(&prefixed),
            ]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| Error::ArtefactMissing {
                path: build_dir.join("bin").join(artefact),
                stage: "the cmake build".into(),
            })?;
            let dest = bin.join(artefact);
            std::fs::rename(&found, &dest).ctx("move into", &dest)?;
        }
        Ok(bin)
    }
}
