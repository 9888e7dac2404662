//! Compute backends: detection for `auto`, availability checks for explicit requests.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The ggml backend llama-server is built or installed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Pick the best backend this machine supports (see [`detect`]).
    #[default]
    Auto,
    /// Plain CPU.
    Cpu,
    /// NVIDIA CUDA.
    Cuda,
    /// Apple Metal.
    Metal,
    /// Vulkan.
    Vulkan,
}

impl Backend {
    /// Every backend, `auto` first: the one list of their names (see [`Backend::as_str`]).
    pub const ALL: [Backend; 5] = [Self::Auto, Self::Cpu, Self::Cuda, Self::Metal, Self::Vulkan];

    /// Lower-case name, as used in fingerprints, asset names and state files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
            Self::Vulkan => "vulkan",
        }
    }

    /// CMake flags that select this backend.
    pub fn cmake_flags(self) -> Vec<String> {
        match self {
            Self::Auto | Self::Cpu => vec![],
            Self::Cuda => vec!["-DGGML_CUDA=ON".into()],
            Self::Metal => vec!["-DGGML_METAL=ON".into()],
            Self::Vulkan => vec!["-DGGML_VULKAN=ON".into()],
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|b| b.as_str()).collect();
                Error::InvalidRequest {
                    reason: format!("{s:?} is not a backend; write one of {}", names.join(", ")),
                }
            })
    }
}

/// The outcome of backend detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The backend chosen (never [`Backend::Auto`]).
    pub backend: Backend,
    /// Why, in a sentence fragment ("nvidia driver found at /proc/driver/nvidia").
    pub reason: String,
}

/// What the machine offers, as far as cheap probes can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    /// Evidence of an NVIDIA driver (`nvidia-smi` on PATH or `/proc/driver/nvidia`).
    pub nvidia: Option<String>,
    /// Whether the CUDA toolkit (`nvcc`) is present, needed to build with CUDA.
    pub nvcc: Option<String>,
    /// Apple silicon (Metal is always there).
    pub apple_silicon: bool,
    /// Evidence of a Vulkan loader.
    pub vulkan: Option<String>,
    /// The Vulkan shader compiler (`glslc`), needed to build with Vulkan.
    pub glslc: Option<String>,
    /// The newest CUDA version the driver supports (`nvidia-smi`'s "CUDA Version").
    pub cuda_driver: Option<(u32, u32)>,
}

impl Probes {
    /// Probes this machine.
    pub fn probe() -> Self {
        let nvidia = if Path::new("/proc/driver/nvidia").exists() {
            Some("nvidia driver found at /proc/driver/nvidia".to_owned())
        } else {
            find_on_path("nvidia-smi").map(|p| format!("nvidia-smi found at {}", p.display()))
        };
        let nvcc = find_on_path("nvcc")
            .or_else(|| {
                let p = Path::new("/usr/local/cuda/bin/nvcc");
                p.exists().then(|| p.to_path_buf())
            })
            .map(|p| format!("nvcc found at {}", p.display()));
        let apple_silicon = cfg!(all(target_os = "macos", target_arch = "aarch64"));
        let vulkan = vulkan_loader();
        let glslc = find_on_path("glslc").map(|p| format!("glslc found at {}", p.display()));
        let cuda_driver = nvidia.as_ref().and_then(|_| driver_cuda_version());
        Self {
            nvidia,
            nvcc,
            apple_silicon,
            vulkan,
            glslc,
            cuda_driver,
        }
    }
}

/// Asks `nvidia-smi` (bounded to a few seconds) which CUDA version the driver supports.
fn driver_cuda_version() -> Option<(u32, u32)> {
    let smi = find_on_path("nvidia-smi")?;
    let mut child = std::process::Command::new(smi)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    parse_driver_cuda(&out)
}

/// What can be obtained here besides the machine's devices: which backends have a
/// prebuilt asset for this OS and architecture (and the mode allows installing one), and
/// whether the mode allows building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obtainable {
    /// Prebuilt assets may be installed (mode and CMake arguments allow it).
    pub prebuilt: bool,
    /// Source builds are allowed.
    pub build: bool,
}

impl Obtainable {
    fn has_asset(self, backend: Backend) -> bool {
        self.prebuilt
            && asset_platform(std::env::consts::OS, std::env::consts::ARCH, backend).is_ok()
    }
}

fn vulkan_loader() -> Option<String> {
    let candidates: &[&str] = if cfg!(target_os = "windows") {
        &["C:\\Windows\\System32\\vulkan-1.dll"]
    } else if cfg!(target_os = "macos") {
        &[
            "/usr/local/lib/libvulkan.1.dylib",
            "/opt/homebrew/lib/libvulkan.1.dylib",
        ]
    } else {
        &[
            "/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
            "/usr/lib/aarch64-linux-gnu/libvulkan.so.1",
            "/usr/lib64/libvulkan.so.1",
            "/usr/lib/libvulkan.so.1",
        ]
    };
    candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| format!("vulkan loader found at {p}"))
}

/// Finds an executable on `PATH`.
pub fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Some(candidate);
        }
        if cfg!(windows) {
            let exe = dir.join(format!("{name}.exe"));
            if exe.is_file() {
                return Some(exe);
            }
        }
    }
    None
}

/// Picks a backend for `auto`: CUDA, then Metal, then Vulkan, then CPU, taking a GPU
/// backend only when its device is there *and* it can be obtained (a prebuilt asset exists
/// for this machine, or its build tools are present). The reason says what was skipped.
pub fn choose(probes: &Probes, can: Obtainable) -> Detection {
    let metal = probes
        .apple_silicon
        .then(|| "apple silicon has metal".to_owned());
    // (device evidence, backend, its build tools are present, what building needs)
    let candidates = [
        (
            &probes.nvidia,
            Backend::Cuda,
            probes.nvcc.is_some(),
            "the cuda toolkit (nvcc)",
        ),
        (&metal, Backend::Metal, true, "xcode"),
        (
            &probes.vulkan,
            Backend::Vulkan,
            probes.glslc.is_some(),
            "the vulkan sdk (glslc)",
        ),
    ];
    let mut skipped = Vec::new();
    for (evidence, backend, tools, needs) in candidates {
        let Some(reason) = evidence else { continue };
        if can.has_asset(backend) || (can.build && tools) {
            return Detection {
                backend,
                reason: reason.clone(),
            };
        }
        skipped.push(format!(
            "{reason}, but no {backend} prebuilt fits this machine and {needs} is missing"
        ));
    }
    let reason = if skipped.is_empty() {
        "no nvidia driver, metal or vulkan loader found".to_owned()
    } else {
        format!("cpu, since {}", skipped.join("; "))
    };
    Detection {
        backend: Backend::Cpu,
        reason,
    }
}

/// Detects the backend for `auto` on this machine.
pub fn detect(can: Obtainable) -> Detection {
    choose(&Probes::probe(), can)
}

/// Checks that `backend` can be used here; `building` also requires the build toolkit.
///
/// Returns [`Error::BackendUnavailable`] naming what is missing.
pub fn check_available(backend: Backend, building: bool, probes: &Probes) -> Result<(), Error> {
    let missing = |reason: &str| {
        Err(Error::BackendUnavailable {
            backend: backend.to_string(),
            reason: reason.to_owned(),
        })
    };
    match backend {
        Backend::Auto | Backend::Cpu => Ok(()),
        Backend::Cuda => {
            if probes.nvidia.is_none() {
                return missing(
                    "no nvidia driver (nvidia-smi not on PATH, no /proc/driver/nvidia); install the nvidia driver or choose another backend",
                );
            }
            if building && probes.nvcc.is_none() {
                return missing(
                    "the cuda toolkit (nvcc) is needed to build; install it or use install-only mode",
                );
            }
            Ok(())
        }
        Backend::Metal => {
            if probes.apple_silicon || cfg!(target_os = "macos") {
                Ok(())
            } else {
                missing("metal exists only on macos; choose cpu, cuda or vulkan")
            }
        }
        Backend::Vulkan => {
            if probes.vulkan.is_none() {
                return missing(
                    "no vulkan loader (libvulkan) found; install the vulkan loader and driver or choose another backend",
                );
            }
            if building && probes.glslc.is_none() {
                return missing("the vulkan sdk (glslc) is needed to build; install it");
            }
            Ok(())
        }
    }
}

pub(crate) fn asset_arch(arch: &str) -> Result<&'static str, String> {
    match arch {
        "x86_64" | "x64" | "amd64" => Ok("x64"),
        "aarch64" | "arm64" => Ok("arm64"),
        other => Err(format!("no prebuilt assets for architecture {other}")),
    }
}

/// The platform part of a release asset name (`ubuntu-vulkan-x64`), where `{cuda}` stands
/// for the CUDA label; or why no asset exists for the target.
pub fn asset_platform(os: &str, arch: &str, backend: Backend) -> Result<String, String> {
    let a = asset_arch(arch)?;
    let backend = if backend == Backend::Auto {
        Backend::Cpu
    } else {
        backend
    };
    let none = |why: &str| {
        Err(format!(
            "no prebuilt {backend} asset for {os}-{arch}: {why}"
        ))
    };
    match (os, backend) {
        ("linux", Backend::Cpu) => Ok(format!("ubuntu-{a}")),
        ("linux", Backend::Vulkan) => Ok(format!("ubuntu-vulkan-{a}")),
        ("linux", Backend::Cuda) => Ok(format!("ubuntu-cuda-{{cuda}}-{a}")),
        ("macos", Backend::Cpu | Backend::Metal) => Ok(format!("macos-{a}")),
        ("windows", Backend::Cpu) => Ok(format!("win-cpu-{a}")),
        ("windows", Backend::Vulkan) => Ok(format!("win-vulkan-{a}")),
        ("windows", Backend::Cuda) if a == "x64" => Ok(format!("win-cuda-{{cuda}}-{a}")),
        ("windows", Backend::Cuda) => none("windows cuda assets exist for x64 only"),
        ("linux" | "windows", Backend::Metal) => none("metal exists only on macos"),
        ("macos", _) => none("macos assets support cpu and metal only"),
        (other, _) => Err(format!("no prebuilt assets for {other}")),
    }
}

/// Reads a CUDA version label (`12.8`, `13`) as (major, minor).
pub(crate) fn parse_label(label: &str) -> Option<(u32, u32)> {
    let mut it = label.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// Parses `nvidia-smi` output for the newest CUDA version the driver supports.
pub(crate) fn parse_driver_cuda(nvidia_smi: &str) -> Option<(u32, u32)> {
    let at = nvidia_smi.find("CUDA Version:")?;
    let rest = nvidia_smi[at + "CUDA Version:".len()..].trim_start();
    let token: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    parse_label(&token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ANY: Obtainable = Obtainable {
        prebuilt: true,
        build: true,
    };

    #[test]
    fn auto_prefers_cuda_then_metal_then_vulkan() {
        let mut p = Probes::default();
        assert_eq!(choose(&p, ANY).backend, Backend::Cpu);
        p.vulkan = Some("v".into());
        assert_eq!(choose(&p, ANY).backend, Backend::Vulkan);
        p.apple_silicon = true;
        assert_eq!(choose(&p, ANY).backend, Backend::Metal);
        p.nvidia = Some("n".into());
        let d = choose(&p, ANY);
        assert_eq!((d.backend, d.reason.as_str()), (Backend::Cuda, "n"));
    }

    #[test]
    fn auto_takes_only_what_can_be_obtained_and_says_why() {
        let devices = Probes {
            nvidia: Some("nvidia driver found".into()),
            vulkan: Some("vulkan loader found".into()),
            ..Probes::default()
        };
        // Building only, without nvcc or glslc: neither GPU backend can be had.
        let build_only = Obtainable {
            prebuilt: false,
            build: true,
        };
        let d = choose(&devices, build_only);
        assert_eq!(d.backend, Backend::Cpu);
        assert!(
            d.reason.contains("nvcc") && d.reason.contains("glslc"),
            "{}",
            d.reason
        );
        // With the vulkan sdk, a build-only request gets vulkan.
        let sdk = Probes {
            glslc: Some("glslc".into()),
            ..devices.clone()
        };
        assert_eq!(choose(&sdk, build_only).backend, Backend::Vulkan);
        // A prebuilt exists for this machine's cuda (linux/windows x64 here).
        if asset_platform(std::env::consts::OS, std::env::consts::ARCH, Backend::Cuda).is_ok() {
            assert_eq!(choose(&devices, ANY).backend, Backend::Cuda);
        }
    }

    #[test]
    fn explicit_backends_fail_fast_naming_what_is_missing() {
        let p = Probes::default();
        let err = check_available(Backend::Cuda, true, &p).unwrap_err();
        assert!(err.to_string().contains("nvidia"), "{err}");
        let with_driver = Probes {
            nvidia: Some("x".into()),
            ..Probes::default()
        };
        let err = check_available(Backend::Cuda, true, &with_driver).unwrap_err();
        assert!(err.to_string().contains("nvcc"), "{err}");
        check_available(Backend::Cuda, false, &with_driver).unwrap();
        assert!(check_available(Backend::Vulkan, false, &p).is_err());
        check_available(Backend::Cpu, true, &p).unwrap();
    }

    #[test]
    fn parse_round_trips() {
        for b in [
            Backend::Auto,
            Backend::Cpu,
            Backend::Cuda,
            Backend::Metal,
            Backend::Vulkan,
        ] {
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
        }
        assert!("rocm".parse::<Backend>().is_err());
    }

    #[test]
    fn driver_cuda_versions_parse() {
        let smi = "| NVIDIA-SMI 570.86.10   Driver Version: 570.86.10   CUDA Version: 12.8     |";
        assert_eq!(parse_driver_cuda(smi), Some((12, 8)));
        assert_eq!(parse_driver_cuda("no gpu"), None);
    }
}
