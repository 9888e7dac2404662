//! Prebuilt releases: the release listing (asset names, sizes, SHA-256 digests) and the
//! choice of assets for a machine, CUDA labels included.
//!
//! Asset names are resolved from the listing rather than guessed: llama.cpp changes its
//! CUDA labels every few months (`12.4` → `12.8`, `13.x`), names Linux `cudart` archives
//! with the build number and Windows ones without it, and lists every asset's digest.
//! [`crate::toolchain::plan::prebuilt_assets`] keeps the names as an offline plan only.

use serde::Deserialize;

use crate::toolchain::backend::{Backend, parse_label};
use crate::toolchain::plan::{asset_ext, asset_platform, cudart_asset_name, main_asset_name};

/// One release as the listing API returns it (only the fields used here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ReleaseListing {
    /// The tag (`b11312`).
    pub tag_name: String,
    /// Every asset of the release.
    #[serde(default)]
    pub assets: Vec<ReleaseAsset>,
}

/// One asset of a release.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ReleaseAsset {
    /// File name.
    pub name: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// `sha256:<hex>`, when the listing has one.
    #[serde(default)]
    pub digest: Option<String>,
    /// Where to download it.
    pub browser_download_url: String,
}

impl ReleaseAsset {
    /// The SHA-256 from the listing's digest, lower-case, when it is one.
    pub(crate) fn sha256(&self) -> Option<String> {
        let hex = self.digest.as_deref()?.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_lowercase())
    }
}

/// The assets to install for one choice (a main archive, plus `cudart` for CUDA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssetChoice {
    /// The CUDA label, for CUDA choices.
    pub cuda_label: Option<String>,
    /// The archives, main first.
    pub assets: Vec<ReleaseAsset>,
}

/// What decides the CUDA label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CudaPreference {
    /// A label the user asked for; only it is tried.
    pub label: Option<String>,
    /// The newest CUDA version the installed driver supports (`nvidia-smi`'s "CUDA
    /// Version"), when known.
    pub driver_max: Option<(u32, u32)>,
}

/// The choices for a target from a listing, in the order to try them; or why none fits.
///
/// CUDA choices are ordered newest label first among those the driver supports (every label
/// when the driver's version is unknown), so a failing archive falls back to an older label.
pub(crate) fn choose_assets(
    listing: &ReleaseListing,
    os: &str,
    arch: &str,
    backend: Backend,
    cuda: &CudaPreference,
) -> Result<Vec<AssetChoice>, String> {
    let tag = &listing.tag_name;
    let platform = asset_platform(os, arch, backend)?;
    let find = |name: &str| listing.assets.iter().find(|a| a.name == name).cloned();
    if !platform.contains("{cuda}") {
        let name = main_asset_name(tag, &platform, "", os);
        return match find(&name) {
            Some(a) => Ok(vec![AssetChoice {
                cuda_label: None,
                assets: vec![a],
            }]),
            None => Err(format!("release {tag} has no asset {name}")),
        };
    }
    // `llama-<tag>-bin-<prefix><label><suffix>`, e.g. `ubuntu-cuda-` + `12.8` + `-x64.tar.gz`.
    let (prefix, rest) = platform.split_once("{cuda}").unwrap_or((&platform, ""));
    let head = format!("llama-{tag}-bin-{prefix}");
    let tail = format!("{rest}.{}", asset_ext(os));
    let mut labels: Vec<(String, (u32, u32))> = listing
        .assets
        .iter()
        .filter_map(|a| {
            let label = a.name.strip_prefix(&head)?.strip_suffix(&tail)?;
            Some((label.to_owned(), parse_label(label)?))
        })
        .collect();
    labels.sort_by_key(|l| std::cmp::Reverse(l.1));
    labels.dedup();
    if labels.is_empty() {
        return Err(format!(
            "release {tag} has no {backend} asset for {os}-{arch} ({head}<label>{tail})"
        ));
    }
    let available = labels
        .iter()
        .map(|(l, _)| l.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let wanted: Vec<&(String, (u32, u32))> = match (&cuda.label, cuda.driver_max) {
        (Some(want), _) => labels.iter().filter(|(l, _)| l == want).collect(),
        (None, Some(max)) => labels.iter().filter(|(_, v)| *v <= max).collect(),
        (None, None) => labels.iter().collect(),
    };
    if wanted.is_empty() {
        return Err(match (&cuda.label, cuda.driver_max) {
            (Some(want), _) => {
                format!("release {tag} has no cuda {want} asset (it has {available})")
            }
            (None, Some((ma, mi))) => format!(
                "the nvidia driver supports cuda up to {ma}.{mi}, but release {tag} has cuda {available}; update the driver or build from source"
            ),
            (None, None) => format!("release {tag} has no cuda asset"),
        });
    }
    Ok(wanted
        .into_iter()
        .filter_map(|(label, _)| {
            let main = find(&main_asset_name(tag, &platform, label, os))?;
            let mut assets = vec![main];
            // Linux names the runtime with the build number, Windows without it.
            if let Some(rt) = find(&cudart_asset_name(tag, os, arch, label)) {
                assets.push(rt);
            }
            Some(AssetChoice {
                cuda_label: Some(label.clone()),
                assets,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn listing(names: &[&str]) -> ReleaseListing {
        ReleaseListing {
            tag_name: "b11312".into(),
            assets: names
                .iter()
                .map(|n| ReleaseAsset {
                    name: (*n).to_owned(),
                    size: 1,
                    digest: Some(format!("sha256:{}", "ab".repeat(32))),
                    browser_download_url: format!("http://127.0.0.1/{n}"),
                })
                .collect(),
        }
    }

    const REAL: &[&str] = &[
        "llama-b11312-bin-ubuntu-x64.tar.gz",
        "llama-b11312-bin-ubuntu-vulkan-x64.tar.gz",
        "llama-b11312-bin-ubuntu-cuda-12.8-x64.tar.gz",
        "llama-b11312-bin-ubuntu-cuda-13.4-x64.tar.gz",
        "llama-b11312-bin-ubuntu-cuda-13.4-arm64.tar.gz",
        "cudart-llama-b11312-bin-ubuntu-cuda-12.8-x64.tar.gz",
        "cudart-llama-b11312-bin-ubuntu-cuda-13.4-x64.tar.gz",
        "llama-b11312-bin-macos-arm64.tar.gz",
        "llama-b11312-bin-win-cpu-x64.zip",
        "llama-b11312-bin-win-cuda-12.4-x64.zip",
        "llama-b11312-bin-win-cuda-13.4-x64.zip",
        "cudart-llama-bin-win-cuda-12.4-x64.zip",
        "cudart-llama-bin-win-cuda-13.4-x64.zip",
    ];

    fn names(c: &AssetChoice) -> Vec<&str> {
        c.assets.iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn plain_backends_take_their_one_asset() {
        let l = listing(REAL);
        let none = CudaPreference::default();
        for (os, arch, b, want) in [
            (
                "linux",
                "x86_64",
                Backend::Cpu,
                "llama-b11312-bin-ubuntu-x64.tar.gz",
            ),
            (
                "linux",
                "x86_64",
                Backend::Vulkan,
                "llama-b11312-bin-ubuntu-vulkan-x64.tar.gz",
            ),
            (
                "macos",
                "aarch64",
                Backend::Metal,
                "llama-b11312-bin-macos-arm64.tar.gz",
            ),
            (
                "windows",
                "x86_64",
                Backend::Cpu,
                "llama-b11312-bin-win-cpu-x64.zip",
            ),
        ] {
            let c = choose_assets(&l, os, arch, b, &none).unwrap();
            assert_eq!(c.len(), 1);
            assert_eq!(names(&c[0]), [want]);
        }
        let e = choose_assets(&l, "linux", "aarch64", Backend::Cpu, &none).unwrap_err();
        assert!(
            e.contains("no asset llama-b11312-bin-ubuntu-arm64.tar.gz"),
            "{e}"
        );
    }

    #[test]
    fn cuda_label_follows_the_driver_and_falls_back_newest_first() {
        let l = listing(REAL);
        let driver = |v| CudaPreference {
            label: None,
            driver_max: Some(v),
        };
        let c = choose_assets(&l, "linux", "x86_64", Backend::Cuda, &driver((13, 4))).unwrap();
        assert_eq!(
            c.iter()
                .map(|c| c.cuda_label.clone().unwrap())
                .collect::<Vec<_>>(),
            ["13.4", "12.8"]
        );
        assert_eq!(
            names(&c[0]),
            [
                "llama-b11312-bin-ubuntu-cuda-13.4-x64.tar.gz",
                "cudart-llama-b11312-bin-ubuntu-cuda-13.4-x64.tar.gz"
            ]
        );
        let c = choose_assets(&l, "linux", "x86_64", Backend::Cuda, &driver((12, 9))).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].cuda_label.as_deref(), Some("12.8"));
        let e = choose_assets(&l, "linux", "x86_64", Backend::Cuda, &driver((12, 2))).unwrap_err();
        assert!(e.contains("up to 12.2") && e.contains("12.8"), "{e}");
        // arm64 has a cuda asset but no cudart archive: the main asset alone.
        let c = choose_assets(
            &l,
            "linux",
            "aarch64",
            Backend::Cuda,
            &CudaPreference::default(),
        )
        .unwrap();
        assert_eq!(
            names(&c[0]),
            ["llama-b11312-bin-ubuntu-cuda-13.4-arm64.tar.gz"]
        );
    }

    #[test]
    fn windows_cudart_has_no_build_number_and_missing_labels_are_named() {
        let l = listing(REAL);
        let pinned = CudaPreference {
            label: Some("12.4".into()),
            driver_max: None,
        };
        let c = choose_assets(&l, "windows", "x86_64", Backend::Cuda, &pinned).unwrap();
        assert_eq!(
            names(&c[0]),
            [
                "llama-b11312-bin-win-cuda-12.4-x64.zip",
                "cudart-llama-bin-win-cuda-12.4-x64.zip"
            ]
        );
        let missing = CudaPreference {
            label: Some("12.4".into()),
            driver_max: None,
        };
        let e = choose_assets(&l, "linux", "x86_64", Backend::Cuda, &missing).unwrap_err();
        assert!(
            e.contains("no cuda 12.4 asset") && e.contains("13.4, 12.8"),
            "{e}"
        );
    }

    #[test]
    fn digests_parse() {
        let a = &listing(REAL).assets[0];
        assert_eq!(a.sha256().unwrap(), "ab".repeat(32));
        let bad = ReleaseAsset {
            digest: Some("md5:00".into()),
            ..a.clone()
        };
        assert_eq!(bad.sha256(), None);
    }
}
