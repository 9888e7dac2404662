//! `cargo xtask cross`: `cargo clippy --workspace --all-targets -- -D warnings` for the
//! macOS and Windows targets, checked on this Linux machine.
//!
//! Rustup here carries only the Linux target, so the checks use Debian's Rust (`rustc-web`,
//! `cargo-web`, `rust-web-src`, `rust-web-clippy`) and build each target's standard
//! library from source (`RUSTC_BOOTSTRAP=1`, `-Zbuild-std`). Its artifacts go to
//! `target/cross`, apart from rustup's: the two compilers must not share a target dir.
//!
//! ring compiles C for every target. For the Apple targets Debian's `clang` does that with
//! three stand-ins for the SDK headers ring includes (written to `target/cross/sdk-stubs`);
//! for Windows, mingw-w64's gcc, which also links the test binaries `cargo xtask wine-test`
//! runs. Missing Debian packages are installed by name; a target whose packages cannot be
//! installed is skipped, saying which and why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// Debian's Rust 1.96 with its standard library's source and clippy.
const RUST_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "rust-web-clippy"];

/// Debian's compilers, not rustup's proxies.
const CARGO: &str = "/usr/bin/cargo";
const RUSTC: &str = "/usr/bin/rustc";

/// The targets checked, in the order they run.
pub(crate) const TARGETS: &[Target] = &[
    Target {
        triple: "aarch64-apple-darwin",
        os: Os::Apple,
    },
    Target {
        triple: "x86_64-apple-darwin",
        os: Os::Apple,
    },
    Target {
        triple: "x86_64-pc-windows-gnu",
        os: Os::Windows,
    },
];

/// The Windows target, which `cargo xtask wine-test` builds for.
pub(crate) const WINDOWS: Target = Target {
    triple: "x86_64-pc-windows-gnu",
    os: Os::Windows,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Os {
    Apple,
    Windows,
}

/// One cross target and what its C code needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) triple: &'static str,
    pub(crate) os: Os,
}

impl Target {
    /// The Debian packages this target's check needs.
    pub(crate) fn packages(self) -> Vec<&'static str> {
        let mut packages = RUST_PACKAGES.to_vec();
        packages.push(match self.os {
            Os::Apple => "clang",
            Os::Windows => "gcc-mingw-w64-x86-64",
        });
        packages
    }

    /// The `cc` crate's per-target variable name suffix (`aarch64_apple_darwin`).
    fn env_suffix(self) -> String {
        self.triple.replace('-', "_")
    }
}

/// How one target's check ended.
enum Outcome {
    Clean(Duration),
    Failed(Duration, String),
    Skipped(String),
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let targets = parse_args(args)?;
    let root = workspace_root();
    let mut results = Vec::new();
    for target in targets {
        println!(
            "xtask cross: {}: clippy --workspace --all-targets",
            target.triple
        );
        let outcome = match ensure_packages(&target.packages()) {
            Err(why) => Outcome::Skipped(why),
            Ok(()) => check(&root, target)?,
        };
        report(target, &outcome);
        results.push((target, outcome));
    }
    println!("xtask cross: summary");
    for (target, outcome) in &results {
        report(*target, outcome);
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(..)))
        .map(|(t, _)| t.triple)
        .collect();
    if !failed.is_empty() {
        bail!("clippy failed for {}", failed.join(", "));
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<Vec<Target>> {
    let mut chosen = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let triple = match arg.as_str() {
            "--target" => args
                .next()
                .context("--target needs a target triple")?
                .as_str(),
            other => match other.strip_prefix("--target=") {
                Some(triple) => triple,
                None => bail!(
                    "unknown argument `{other}`; usage: cargo xtask cross [--target <triple>]..."
                ),
            },
        };
        let Some(target) = TARGETS.iter().find(|t| t.triple == triple) else {
            let known: Vec<&str> = TARGETS.iter().map(|t| t.triple).collect();
            bail!("unknown target `{triple}`; known: {}", known.join(", "));
        };
        chosen.push(*target);
    }
    Ok(if chosen.is_empty() {
        TARGETS.to_vec()
    } else {
        chosen
    })
}

fn report(target: Target, outcome: &Outcome) {
    match outcome {
        Outcome::Clean(took) => println!("  {}: clean ({})", target.triple, minutes(*took)),
        Outcome::Failed(took, why) => {
            println!("  {}: FAILED ({}): {why}", target.triple, minutes(*took));
        }
        Outcome::Skipped(why) => println!("  {}: SKIPPED: {why}", target.triple),
    }
}

pub(crate) fn minutes(took: Duration) -> String {
    let secs = took.as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}

fn check(root: &Path, target: Target) -> Result<Outcome> {
    let mut cmd = cargo(root, target)?;
    // Every crate's lints, not only those of the first crate that fails.
    cmd.args(["clippy", "--workspace", "--all-targets", "--keep-going"])
        .args(build_std_args(root, target))
        .args(["--", "-D", "warnings"]);
    println!("xtask cross: running {}", show(&cmd));
    let started = Instant::now();
    let status = cmd.status().with_context(|| format!("running {CARGO}"))?;
    let took = started.elapsed();
    Ok(if status.success() {
        Outcome::Clean(took)
    } else {
        Outcome::Failed(took, format!("cargo clippy exited with {status}"))
    })
}

/// `-Zbuild-std`, the target and the separate target dir.
pub(crate) fn build_std_args(root: &Path, target: Target) -> Vec<String> {
    vec![
        "-Zbuild-std=std,panic_abort".to_owned(),
        "--target".to_owned(),
        target.triple.to_owned(),
        "--target-dir".to_owned(),
        cross_dir(root).display().to_string(),
    ]
}

/// `target/cross`: everything Debian's compiler builds, and the files made for it.
pub(crate) fn cross_dir(root: &Path) -> PathBuf {
    root.join("target").join("cross")
}

/// Debian's cargo in the workspace root with an environment of its own: nothing rustup or
/// the outer cargo set leaks in, and the target's C compiler is chosen.
pub(crate) fn cargo(root: &Path, target: Target) -> Result<Command> {
    let mut cmd = Command::new(CARGO);
    cmd.current_dir(root).env_clear().envs(clean_env());
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("/usr/bin:{path}"))
        .env("RUSTC", RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        // No debuginfo and no incremental state: with them every Windows test binary
        // weighed 300 MB and the cross target directory 30 GB. Panics still name file:line.
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_INCREMENTAL", "0");
    let suffix = target.env_suffix();
    match target.os {
        Os::Apple => {
            let stubs = write_sdk_stubs(root)?;
            cmd.env(format!("CC_{suffix}"), "clang").env(
                format!("CFLAGS_{suffix}"),
                format!("-ffreestanding -I{}", stubs.display()),
            );
        }
        Os::Windows => {
            cmd.env(format!("CC_{suffix}"), "x86_64-w64-mingw32-gcc")
                .env(format!("AR_{suffix}"), "x86_64-w64-mingw32-ar")
                .env(
                    "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER",
                    "x86_64-w64-mingw32-gcc",
                );
        }
    }
    Ok(cmd)
}

/// This process's environment without what rustup and the cargo running xtask set: the
/// toolchain choice, wrappers, the target dir and the package being run.
fn clean_env() -> BTreeMap<String, String> {
    const DROP: &[&str] = &[
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_RUSTC",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTDOC",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ];
    const DROP_PREFIXES: &[&str] = &[
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ];
    std::env::vars()
        .filter(|(name, _)| {
            !DROP.contains(&name.as_str()) && !DROP_PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .collect()
}

/// The three SDK headers ring includes on Apple targets, as stand-ins just big enough
/// for `-ffreestanding` clang to compile ring's C (nothing is linked for these targets).
const SDK_STUBS: &[(&str, &str)] = &[
    (
        "TargetConditionals.h",
        "#pragma once\n\
         #define TARGET_OS_MAC 1\n\
         #define TARGET_OS_OSX 1\n\
         #define TARGET_OS_IPHONE 0\n\
         #define TARGET_OS_IOS 0\n\
         #define TARGET_OS_TV 0\n\
         #define TARGET_OS_WATCH 0\n\
         #define TARGET_OS_SIMULATOR 0\n",
    ),
    (
        "assert.h",
        "#pragma once\n\
         #define assert(e) ((void)0)\n\
         #define static_assert _Static_assert\n",
    ),
    (
        "string.h",
        "#pragma once\n\
         #include <stddef.h>\n\
         void *memcpy(void *dst, const void *src, size_t n);\n\
         void *memmove(void *dst, const void *src, size_t n);\n\
         void *memset(void *dst, int c, size_t n);\n\
         int memcmp(const void *a, const void *b, size_t n);\n\
         size_t strlen(const char *s);\n",
    ),
];

fn write_sdk_stubs(root: &Path) -> Result<PathBuf> {
    let dir = cross_dir(root).join("sdk-stubs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in SDK_STUBS {
        let path = dir.join(name);
        // Rewriting an unchanged header would make ring's build script run again.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(*text) {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(dir)
}

/// Installs whichever of `packages` are missing with apt-get (after `apt-get update` if
/// the first attempt fails). `Err` says what is missing and why it could not be installed.
pub(crate) fn ensure_packages(packages: &[&str]) -> std::result::Result<(), String> {
    let missing = missing_packages(packages)?;
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing Debian packages {}", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let installed = match install() {
        Err(e) => Err(format!("apt-get could not run ({e})")),
        Ok(status) if status.success() => Ok(()),
        Ok(_) => {
            println!("xtask: apt-get install failed; running apt-get update and trying again");
            // A failed update shows in the second install's failure.
            let _ = Command::new("apt-get").arg("update").status();
            match install() {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(format!("apt-get install exited with {status}")),
                Err(e) => Err(format!("apt-get could not run ({e})")),
            }
        }
    };
    installed.map_err(|why| {
        format!(
            "Debian packages {} are missing and could not be installed: {why}; \
             install them with `apt-get install {}` (as root)",
            missing.join(", "),
            missing.join(" ")
        )
    })
}

fn missing_packages(packages: &[&str]) -> std::result::Result<Vec<String>, String> {
    let mut missing = Vec::new();
    for package in packages {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${db:Status-Abbrev}", package])
            .output()
            .map_err(|e| {
                format!(
                    "dpkg-query could not run ({e}): this needs Debian's packages {}",
                    packages.join(", ")
                )
            })?;
        if !String::from_utf8_lossy(&out.stdout).starts_with("ii") {
            missing.push((*package).to_owned());
        }
    }
    Ok(missing)
}

/// A command line as it could be typed, with the variables this module sets.
pub(crate) fn show(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            let k = k.to_string_lossy();
            let set_here = k.starts_with("CC_")
                || k.starts_with("CFLAGS_")
                || k.starts_with("AR_")
                || k.starts_with("CARGO_TARGET_")
                || k.starts_with("RUSTC")
                || k.starts_with("WINE");
            let v = v?;
            set_here.then(|| format!("{k}={}", v.to_string_lossy()))
        })
        .collect();
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}
