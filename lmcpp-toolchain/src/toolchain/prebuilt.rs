//! Installing a prebuilt source into scratch: the release listing's assets for the target
//! (CUDA labels newest first), or a prebuilt archive at a URL, each checked by `--version`.

use std::path::{Path, PathBuf};

use crate::cache::remove_all;
use crate::error::{Error, IoContext, Result};
use crate::toolchain::binary::{exe_name, run_binary_with};
use crate::toolchain::handle::Toolchain;
use crate::toolchain::request::{Source, ToolchainRequest};
use crate::toolchain::run::{Outcome, is_unreached};
use crate::toolchain::source::{self, Ctx};
use crate::toolchain::target::Runner;

impl Toolchain {
    /// Installs a prebuilt source into `scratch/bin`: the release listing's assets for this
    /// machine (trying CUDA labels newest first), or a prebuilt archive at a URL.
    pub(super) async fn prebuilt(
        &self,
        ctx: &Ctx<'_>,
        request: &ToolchainRequest,
        src: &Source,
        scratch: &Path,
    ) -> Result<Outcome> {
        let server = exe_name(request, "llama-server");
        let bin = scratch.join("bin");
        let runner = Runner::for_target(&request.target_or_host());
        let (dir, label, version_output) = match src {
            Source::PrebuiltUrl { url, sha256 } => {
                let archives = [(url.clone(), sha256.clone(), None)];
                let dir = source::install_prebuilt(ctx, &archives, scratch, &server).await?;
                let version = run_binary_with(&runner, &dir.join(&server), "--version").await?;
                (dir, url.clone(), version)
            }
            _ => {
                self.release_prebuilt(ctx, request, scratch, &server)
                    .await?
            }
        };
        std::fs::rename(&dir, &bin).ctx("move into", &bin)?;
        Ok(Outcome {
            bin,
            source: format!("{} {label}", src.kind()),
            source_dir: None,
            cmake_args: Vec::new(),
            version_output,
        })
    }

    /// The release listing's assets for this machine, tried in order (CUDA labels newest
    /// first) until one extracts and runs `--version`: its directory in scratch, the asset
    /// names and what `--version` printed.
    async fn release_prebuilt(
        &self,
        ctx: &Ctx<'_>,
        request: &ToolchainRequest,
        scratch: &Path,
        server: &str,
    ) -> Result<(PathBuf, String, Option<String>)> {
        let tag = request
            .version
            .tag
            .as_deref()
            .ok_or(Error::InvalidRequest {
                reason: "a prebuilt release needs a release tag".into(),
            })?;
        let api = request.github_api.trim_end_matches('/');
        let listing = source::release_listing(ctx, &format!("{api}/releases/tags/{tag}")).await?;
        let cuda = crate::toolchain::release::CudaPreference {
            label: request.cuda_label.clone(),
            driver_max: self.probes().cuda_driver,
        };
        let target = request.target_or_host();
        let runner = Runner::for_target(&target);
        let choices = crate::toolchain::release::choose_assets(
            &listing,
            &target.os,
            &target.arch,
            request.backend,
            &cuda,
        )
        .map_err(|reason| Error::NoPrebuilt { reason })?;
        let mut failures = Vec::new();
        // The first failure that reached nothing, kept while every failure is one: then
        // this source as a whole reached nothing (see `RunFailure`).
        let mut unreached: Option<Error> = None;
        let mut all_unreached = true;
        for choice in choices {
            let archives: Vec<_> = choice
                .assets
                .iter()
                .map(|a| {
                    let sha = a
                        .sha256()
                        .or_else(|| request.version.asset_sha256.get(&a.name).cloned());
                    (a.browser_download_url.clone(), sha, Some(a.size))
                })
                .collect();
            let names = choice
                .assets
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(" + ");
            let attempt = async {
                let dir = source::install_prebuilt(ctx, &archives, scratch, server).await?;
                let version = run_binary_with(&runner, &dir.join(server), "--version").await?;
                Ok::<_, Error>((dir, version))
            };
            match attempt.await {
                Ok((dir, version)) => return Ok((dir, names, version)),
                Err(e) => {
                    failures.push(format!("{names}: {e}"));
                    for i in 0..choice.assets.len() {
                        let _ = remove_all(&scratch.join(format!("prebuilt-{i}")));
                    }
                    all_unreached &= is_unreached(&e);
                    if unreached.is_none() && is_unreached(&e) {
                        unreached = Some(e);
                    }
                }
            }
        }
        match unreached {
            // The listing answered but no asset download reached its host: as offline
            // as an unreachable listing, so it must not be recorded as this entry's failure.
            Some(e) if all_unreached => Err(e),
            _ => Err(Error::NoPrebuilt {
                reason: failures.join("; "),
            }),
        }
    }
}
