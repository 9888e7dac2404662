//! Which machine the binaries are for: the host, or a cross target this host can build for,
//! with what a cross build takes (compilers, CMake arguments) and how a binary built for
//! the target can be run here (directly, under Wine, or not at all).
//!
//! The one cross build supported is Windows x86_64 from Linux with mingw-w64: its
//! `llama-server.exe` runs under Wine, which is how a Linux machine checks the Windows
//! build of lmcpp end to end. Everything else that is not the host is refused for building
//! (prebuilt release assets for any target can still be installed).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::toolchain::backend::find_on_path;

/// An operating system and architecture, in Rust's `std::env::consts` spelling
/// (`linux`/`macos`/`windows`, `x86_64`/`aarch64`).
///
/// Parsed from a Rust target triple (`x86_64-pc-windows-gnu`, `aarch64-apple-darwin`) or
/// from `<os>-<arch>` (`windows-x86_64`); shown as `<os>-<arch>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// `linux`, `macos` or `windows`.
    pub os: String,
    /// `x86_64` or `aarch64`.
    pub arch: String,
}

impl Target {
    /// The machine this program runs on.
    pub fn host() -> Self {
        Self {
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }

    /// Whether this is the machine this program runs on.
    pub fn is_host(&self) -> bool {
        *self == Self::host()
    }

    fn from_parts(os: &str, arch: &str) -> Option<Self> {
        let os = match os {
            "linux" => "linux",
            "macos" | "darwin" | "apple" => "macos",
            "windows" | "win" => "windows",
            _ => return None,
        };
        let arch = match arch {
            "x86_64" | "x64" | "amd64" => "x86_64",
            "aarch64" | "arm64" => "aarch64",
            _ => return None,
        };
        Some(Self {
            os: os.to_owned(),
            arch: arch.to_owned(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.os, self.arch)
    }
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        if s == "host" {
            return Ok(Self::host());
        }
        let parts: Vec<&str> = s.split('-').collect();
        let parsed = match parts.as_slice() {
            // `<os>-<arch>`.
            [os, arch] => Self::from_parts(os, arch),
            // A Rust triple: `<arch>-<vendor>-<os>[-<env>]`, where the OS is found by name.
            [arch, rest @ ..] => ["windows", "darwin", "linux"]
                .into_iter()
                .find(|os| rest.contains(os))
                .and_then(|os| Self::from_parts(os, arch)),
            _ => None,
        };
        parsed.ok_or_else(|| Error::InvalidRequest {
            reason: format!(
                "unknown target {s:?}; use a Rust target triple (x86_64-pc-windows-gnu, \
                 x86_64-unknown-linux-gnu, aarch64-apple-darwin) or <os>-<arch> (windows-x86_64)"
            ),
        })
    }
}

/// One tool a cross build needs: the names it may go by, in order of preference, and the
/// packages that provide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CrossTool {
    /// CMake's variable for it (`CMAKE_CXX_COMPILER`).
    pub(crate) variable: &'static str,
    /// Program names, preferred first.
    pub(crate) names: &'static [&'static str],
}

/// What building for a target other than the host takes: its tools and CMake arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CrossSpec {
    /// The target.
    pub(crate) target: Target,
    /// The compilers and resource compiler.
    pub(crate) tools: &'static [CrossTool],
    /// The sysroot CMake searches for the target's libraries and headers.
    pub(crate) sysroot: &'static str,
    /// What to install when a tool is missing.
    pub(crate) install: &'static str,
}

/// mingw-w64 for Windows x86_64. The `-posix` compilers come first: Debian's default
/// (`-win32`) threading model has no `std::thread`, which llama.cpp needs.
const MINGW_X86_64: &[CrossTool] = &[
    CrossTool {
        variable: "CMAKE_C_COMPILER",
        names: &["x86_64-w64-mingw32-gcc-posix", "x86_64-w64-mingw32-gcc"],
    },
    CrossTool {
        variable: "CMAKE_CXX_COMPILER",
        names: &["x86_64-w64-mingw32-g++-posix", "x86_64-w64-mingw32-g++"],
    },
    CrossTool {
        variable: "CMAKE_RC_COMPILER",
        names: &["x86_64-w64-mingw32-windres"],
    },
];

/// How `host` builds for `target`: `None` natively, a [`CrossSpec`] for a supported cross
/// build, or [`Error::UnsupportedTarget`].
pub(crate) fn cross_spec(target: &Target, host: &Target) -> Result<Option<CrossSpec>> {
    if target == host {
        return Ok(None);
    }
    match (host.os.as_str(), target.os.as_str(), target.arch.as_str()) {
        ("linux", "windows", "x86_64") => Ok(Some(CrossSpec {
            target: target.clone(),
            tools: MINGW_X86_64,
            sysroot: "/usr/x86_64-w64-mingw32",
            install: "the mingw-w64 cross compilers with POSIX threads (Debian/Ubuntu: \
                      apt-get install gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix \
                      binutils-mingw-w64-x86-64; Fedora: dnf install mingw64-gcc-c++)",
        })),
        _ => Err(Error::UnsupportedTarget {
            target: target.to_string(),
            host: host.to_string(),
            reason: "the only cross build lmcpp knows is windows-x86_64 from linux \
                     (mingw-w64); build on the target itself, or install its prebuilt \
                     release with --mode install-only"
                .into(),
        }),
    }
}

/// A cross build with its tools found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CrossBuild {
    spec: CrossSpec,
    /// (CMake variable, program path), in the order of `spec.tools`.
    tools: Vec<(&'static str, PathBuf)>,
}

impl CrossBuild {
    /// Finds the spec's tools with `find` (a `PATH` lookup outside tests); a missing tool
    /// is [`Error::CrossToolsMissing`] naming it and what provides it.
    pub(crate) fn resolve(spec: CrossSpec, find: impl Fn(&str) -> Option<PathBuf>) -> Result<Self> {
        let mut tools = Vec::new();
        for tool in spec.tools {
            let found = tool.names.iter().find_map(|n| find(n));
            match found {
                Some(p) => tools.push((tool.variable, p)),
                None => {
                    return Err(Error::CrossToolsMissing {
                        target: spec.target.to_string(),
                        tool: tool.names[0].to_owned(),
                        install: spec.install.to_owned(),
                    });
                }
            }
        }
        Ok(Self { spec, tools })
    }

    /// Resolves the spec's tools on this machine's `PATH`.
    pub(crate) fn find(spec: CrossSpec) -> Result<Self> {
        Self::resolve(spec, find_on_path)
    }

    /// The C++ compiler, whose threading model decides whether llama.cpp compiles.
    pub(crate) fn cxx(&self) -> Option<&Path> {
        self.tools
            .iter()
            .find(|(v, _)| *v == "CMAKE_CXX_COMPILER")
            .map(|(_, p)| p.as_path())
    }

    /// Fails when `gcc -v` output of the C++ compiler shows the `win32` threading model,
    /// which has no `std::thread` in this gcc.
    pub(crate) fn check_thread_model(&self, gcc_v: &str) -> Result<()> {
        let model = gcc_v
            .lines()
            .find_map(|l| l.strip_prefix("Thread model:"))
            .map(str::trim);
        if model == Some("win32") {
            return Err(Error::CrossToolsMissing {
                target: self.spec.target.to_string(),
                tool: format!(
                    "a C++ compiler with POSIX threads ({} uses the win32 threading model)",
                    self.cxx()
                        .map_or_else(String::new, |p| p.display().to_string())
                ),
                install: self.spec.install.to_owned(),
            });
        }
        Ok(())
    }

    /// The CMake arguments of the cross build, placed before the request's own arguments
    /// (which may override them).
    ///
    /// Besides the system and its compilers: the target's libraries are searched for in
    /// its sysroot only (never the host's); the CPU backend is built for the baseline
    /// x86_64 (no host `-march=native`) without OpenMP; and every executable is linked
    /// with `-static` (libgcc, libstdc++ and winpthread included) and without OpenSSL, so
    /// the `.exe` needs no DLL beyond Windows' own. (`GGML_STATIC` is not enough: it
    /// links ggml's own targets statically, not `llama-server`.)
    ///
    /// C is compiled for Windows 7's API (`_WIN32_WINNT=0x0601`): ggml-cpu.c uses
    /// `THREAD_POWER_THROTTLING_STATE` from Windows 8 on, which mingw-w64 10's headers
    /// (Debian 12) lack. That only skips asking Windows 11 not to park the worker
    /// threads' cores; C++ keeps the Windows 10 API cpp-httplib requires.
    pub(crate) fn cmake_args(&self) -> Vec<String> {
        let processor = match self.spec.target.arch.as_str() {
            "x86_64" => "AMD64",
            other => other,
        };
        let mut args = vec![
            "-DCMAKE_SYSTEM_NAME=Windows".to_owned(),
            format!("-DCMAKE_SYSTEM_PROCESSOR={processor}"),
        ];
        for (variable, path) in &self.tools {
            args.push(format!("-D{variable}={}", path.display()));
        }
        args.extend(
            [
                &format!("-DCMAKE_FIND_ROOT_PATH={}", self.spec.sysroot),
                "-DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER",
                "-DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY",
                "-DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY",
                "-DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY",
                "-DGGML_NATIVE=OFF",
                "-DGGML_OPENMP=OFF",
                "-DCMAKE_EXE_LINKER_FLAGS=-static",
                "-DCMAKE_C_FLAGS=-D_WIN32_WINNT=0x0601",
                "-DLLAMA_OPENSSL=OFF",
            ]
            .map(str::to_owned),
        );
        args
    }
}

/// How a binary built for a target runs on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Runner {
    /// Directly.
    Native,
    /// Under Wine (a Windows binary on Linux).
    Wine(PathBuf),
    /// Not at all here: its `--version` cannot be checked before publishing.
    Unavailable(String),
}

/// Wine's program names, and where Debian's `wine64` package puts its binary (not on
/// `PATH` there).
const WINE: &[&str] = &["wine64", "wine"];
const DEBIAN_WINE: &str = "/usr/lib/wine/wine64";

impl Runner {
    /// How this host runs `target`'s binaries.
    pub(crate) fn for_target(target: &Target) -> Self {
        if target.is_host() {
            return Self::Native;
        }
        if target.os == "windows" && target.arch == "x86_64" && cfg!(target_os = "linux") {
            let wine = WINE
                .iter()
                .find_map(|n| find_on_path(n))
                .or_else(|| Path::new(DEBIAN_WINE).is_file().then(|| DEBIAN_WINE.into()));
            if let Some(w) = wine {
                return Self::Wine(w);
            }
            return Self::Unavailable(
                "wine is not installed (Debian/Ubuntu: apt-get install wine64)".into(),
            );
        }
        Self::Unavailable(format!(
            "{target} binaries cannot run on {}",
            Target::host()
        ))
    }

    /// The command that runs `binary` here, when there is one.
    pub(crate) fn command(&self, binary: &Path) -> Option<tokio::process::Command> {
        match self {
            Self::Native => Some(tokio::process::Command::new(binary)),
            Self::Wine(wine) => {
                let mut c = tokio::process::Command::new(wine);
                c.arg(binary);
                // Wine's own diagnostics would drown the binary's output.
                if std::env::var_os("WINEDEBUG").is_none() {
                    c.env("WINEDEBUG", "-all");
                }
                Some(c)
            }
            Self::Unavailable(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lmcpp_types::Classify;

    fn t(os: &str, arch: &str) -> Target {
        Target {
            os: os.into(),
            arch: arch.into(),
        }
    }

    #[test]
    fn targets_parse_from_triples_and_pairs() {
        let cases = [
            ("x86_64-pc-windows-gnu", t("windows", "x86_64")),
            ("x86_64-pc-windows-msvc", t("windows", "x86_64")),
            ("windows-x86_64", t("windows", "x86_64")),
            ("x86_64-unknown-linux-gnu", t("linux", "x86_64")),
            ("aarch64-unknown-linux-musl", t("linux", "aarch64")),
            ("aarch64-apple-darwin", t("macos", "aarch64")),
            ("macos-arm64", t("macos", "aarch64")),
            ("host", Target::host()),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Target>().unwrap(), want, "{s}");
        }
        for bad in [
            "",
            "windows",
            "riscv64-unknown-linux-gnu",
            "x86_64-unknown-freebsd",
        ] {
            let err = bad.parse::<Target>().unwrap_err();
            assert!(err.is_user_error(), "{bad}: {err}");
        }
        assert_eq!(t("windows", "x86_64").to_string(), "windows-x86_64");
    }

    #[test]
    fn only_windows_from_linux_is_a_supported_cross_build() {
        let linux = t("linux", "x86_64");
        assert_eq!(cross_spec(&linux, &linux).unwrap(), None);
        let spec = cross_spec(&t("windows", "x86_64"), &linux)
            .unwrap()
            .unwrap();
        assert_eq!(spec.target, t("windows", "x86_64"));
        for (target, host) in [
            (t("macos", "aarch64"), linux.clone()),
            (t("windows", "aarch64"), linux.clone()),
            (t("linux", "aarch64"), linux.clone()),
            (t("windows", "x86_64"), t("macos", "aarch64")),
        ] {
            let err = cross_spec(&target, &host).unwrap_err();
            let msg = err.to_string();
            assert!(err.is_user_error(), "{msg}");
            assert!(
                msg.contains(&target.to_string()) && msg.contains(&host.to_string()),
                "{msg}"
            );
        }
    }

    fn windows_spec() -> CrossSpec {
        cross_spec(&t("windows", "x86_64"), &t("linux", "x86_64"))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_windows_cross_build_configures_mingw_statically() {
        // Debian: both names exist; the POSIX-threads one is taken.
        let debian = |n: &str| Some(PathBuf::from(format!("/usr/bin/{n}")));
        let build = CrossBuild::resolve(windows_spec(), debian).unwrap();
        assert_eq!(
            build.cmake_args(),
            [
                "-DCMAKE_SYSTEM_NAME=Windows",
                "-DCMAKE_SYSTEM_PROCESSOR=AMD64",
                "-DCMAKE_C_COMPILER=/usr/bin/x86_64-w64-mingw32-gcc-posix",
                "-DCMAKE_CXX_COMPILER=/usr/bin/x86_64-w64-mingw32-g++-posix",
                "-DCMAKE_RC_COMPILER=/usr/bin/x86_64-w64-mingw32-windres",
                "-DCMAKE_FIND_ROOT_PATH=/usr/x86_64-w64-mingw32",
                "-DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER",
                "-DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY",
                "-DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY",
                "-DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY",
                "-DGGML_NATIVE=OFF",
                "-DGGML_OPENMP=OFF",
                "-DCMAKE_EXE_LINKER_FLAGS=-static",
                "-DCMAKE_C_FLAGS=-D_WIN32_WINNT=0x0601",
                "-DLLAMA_OPENSSL=OFF",
            ]
        );
        // Where only the unsuffixed names exist (Fedora, Arch), those are used.
        let plain = |n: &str| (!n.ends_with("-posix")).then(|| PathBuf::from("/opt/bin").join(n));
        let build = CrossBuild::resolve(windows_spec(), plain).unwrap();
        assert_eq!(
            build.cxx(),
            Some(Path::new("/opt/bin/x86_64-w64-mingw32-g++"))
        );
    }

    #[test]
    fn missing_cross_compilers_name_the_tool_and_what_to_install() {
        let no_cxx = |n: &str| (!n.contains("g++")).then(|| PathBuf::from(format!("/usr/bin/{n}")));
        let err = CrossBuild::resolve(windows_spec(), no_cxx).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::CrossToolsMissing { .. }), "{msg}");
        assert!(
            msg.contains("x86_64-w64-mingw32-g++-posix")
                && msg.contains("g++-mingw-w64-x86-64-posix")
                && msg.contains("windows-x86_64"),
            "{msg}"
        );
        let all = |n: &str| Some(PathBuf::from(format!("/usr/bin/{n}")));
        let build = CrossBuild::resolve(windows_spec(), all).unwrap();
        let win32 = "Target: x86_64-w64-mingw32\nThread model: win32\ngcc version 12\n";
        let err = build.check_thread_model(win32).unwrap_err().to_string();
        assert!(
            err.contains("POSIX threads") && err.contains("win32"),
            "{err}"
        );
        build.check_thread_model("Thread model: posix\n").unwrap();
    }

    #[test]
    fn windows_binaries_run_under_wine_or_not_at_all_on_linux() {
        assert_eq!(Runner::for_target(&Target::host()), Runner::Native);
        if cfg!(target_os = "linux") {
            match Runner::for_target(&t("windows", "x86_64")) {
                Runner::Wine(_) => {}
                Runner::Unavailable(why) => assert!(why.contains("wine"), "{why}"),
                Runner::Native => panic!("a windows binary is not native on linux"),
            }
            assert!(matches!(
                Runner::for_target(&t("macos", "aarch64")),
                Runner::Unavailable(_)
            ));
        }
    }
}
