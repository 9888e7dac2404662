//! `cargo xtask wine-test`: the workspace's unit and integration tests built for
//! `x86_64-pc-windows-gnu` (with Debian's Rust, as `cargo xtask cross` checks it) and run
//! under Wine, one test binary after another, each with its passed and failed counts.
//!
//! Wine 8 lacks `bcryptprimitives.dll`, whose `ProcessPrng` Rust's std imports for random
//! numbers (hash map seeds). A one-function stand-in built here with mingw-w64, calling
//! `RtlGenRandom` (`SystemFunction036` of advapi32), goes beside the test binaries.
//!
//! Where Wine itself falls short of Windows, the failing test is listed in
//! [`WINE_SHORTFALLS`] with what Wine does differently: its failure is reported by name as
//! Wine's and does not fail the run. Any other failure does. A listed test that passes is
//! reported too, so the list does not outlive the shortfall.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cross::{self, WINDOWS};
use crate::workspace_root;

/// Wine's loader for 64-bit binaries (package `wine64`; not on PATH).
pub(crate) const WINE: &str = "/usr/lib/wine/wine64";

/// The packages crossed by default: the whole workspace but xtask (which drives Wine).
const DEFAULT_PACKAGES: &[&str] = &[
    "lmcpp-types",
    "lmcpp-toolchain",
    "lmcpp-server",
    "lmcpp-cli",
];

/// The Windows `llama-server` stand-in of the toolchain's test fixtures, committed as bytes
/// with its source; rebuilt here and compared, so the bytes are what the source says.
const FAKE_SERVER: &str = "lmcpp-toolchain/tests/data/fake-llama-server";

/// Test binaries not run: they need a real `llama-server.exe` (test target name, why).
const NOT_RUN: &[(&str, &str)] = &[("e2e", "end-to-end tests need a real llama-server.exe")];

/// Tests that fail under Wine because of Wine, not lmcpp: (package, test binary, test name,
/// what Wine does differently from Windows).
const WINE_SHORTFALLS: &[(&str, &str, &str, &str)] = &[
    (
        "lmcpp-toolchain",
        "lmcpp_toolchain",
        "lock::tests::an_unlinked_lock_file_is_detected_and_replaced",
        "Wine keeps the name of a file deleted while another handle has it open, and opens \
         it, until that handle closes; Windows removes the name at once (POSIX delete \
         semantics) or refuses to open a file pending deletion",
    ),
    (
        "lmcpp-cli",
        "it",
        "library::the_library_alone_pulls_in_none_of_the_commands_crates",
        "runs cargo tree, and the Wine prefix has no cargo",
    ),
    (
        "lmcpp-toolchain",
        "it",
        "hub_cache::a_blob_huggingface_hub_is_downloading_is_waited_for",
        "needs a Windows Python with huggingface_hub, which the Wine prefix does not have",
    ),
    (
        "lmcpp-toolchain",
        "it",
        "hub_cache::huggingface_hub_finds_what_lmcpp_wrote",
        "needs a Windows Python with huggingface_hub, which the Wine prefix does not have",
    ),
];

/// `ProcessPrng` for Wine 8, which has no `bcryptprimitives.dll`.
const PRNG_C: &str = "\
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
";

const PRNG_DEF: &str = "LIBRARY bcryptprimitives.dll\nEXPORTS\n    ProcessPrng\n";

/// One test binary cargo built.
struct TestExe {
    package: String,
    target: String,
    kind: String,
    path: PathBuf,
}

/// What one run of a test binary said.
#[derive(Default)]
struct Tally {
    passed: u32,
    failed: Vec<String>,
    ignored: u32,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let packages: Vec<String> = parse_args(args)?;
    let mut needs = WINDOWS.packages();
    needs.push("wine64");
    if let Err(why) = cross::ensure_packages(&needs) {
        bail!("cannot run the Windows tests: {why}");
    }
    let root = workspace_root();
    let started = Instant::now();
    let exes = build(&root, &packages)?;
    println!(
        "xtask wine-test: built {} test binaries in {}",
        exes.len(),
        cross::minutes(started.elapsed())
    );
    let dll = build_prng_dll(&root)?;
    check_fake_server(&root)?;
    let prefix = cross::cross_dir(&root).join("wineprefix");
    let logs = cross::cross_dir(&root).join("wine-logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut real_failures = Vec::new();
    for exe in &exes {
        if let Some((_, why)) = NOT_RUN.iter().find(|(t, _)| *t == exe.target) {
            println!(
                "  {} {} ({}): not run: {why}",
                exe.package, exe.target, exe.kind
            );
            continue;
        }
        place_beside(&dll, &exe.path)?;
        // The binaries a test runs (`CARGO_BIN_EXE_lmcpp`) are one folder up from it.
        if let Some(profile_dir) = exe.path.parent().and_then(Path::parent) {
            place_beside(&dll, &profile_dir.join("lmcpp.exe"))?;
        }
        let log = logs.join(format!("{}-{}-{}.log", exe.package, exe.target, exe.kind));
        let ran = Instant::now();
        let tally = run_one(&root, exe, &prefix, &log)?;
        let took = cross::minutes(ran.elapsed());
        let (wine, real): (Vec<&String>, Vec<&String>) = tally
            .failed
            .iter()
            .partition(|t| shortfall(exe, t).is_some());
        println!(
            "  {} {} ({}): {} passed, {} failed ({} of them Wine's), {} ignored, {took}; log {}",
            exe.package,
            exe.target,
            exe.kind,
            tally.passed,
            tally.failed.len(),
            wine.len(),
            tally.ignored,
            log.display()
        );
        for test in &wine {
            let why = shortfall(exe, test).unwrap_or_default();
            println!("    WINE SHORTFALL {test}: {why}");
        }
        for test in &real {
            println!("    FAILED {test}");
            real_failures.push(format!("{} {}: {test}", exe.package, exe.target));
        }
        for (package, binary, test, _) in WINE_SHORTFALLS {
            let this = *package == exe.package && *binary == exe.target;
            if this && !tally.failed.iter().any(|t| t == test) {
                println!("    listed as a Wine shortfall but did not fail: {test}");
            }
        }
    }
    println!(
        "xtask wine-test: {} in {}",
        if real_failures.is_empty() {
            "passed"
        } else {
            "FAILED"
        },
        cross::minutes(started.elapsed())
    );
    if !real_failures.is_empty() {
        bail!("failed under Wine: {}", real_failures.join("; "));
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<Vec<String>> {
    let mut packages = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-p" | "--package" => packages.push(args.next().context("-p needs a package")?.clone()),
            other => {
                bail!("unknown argument `{other}`; usage: cargo xtask wine-test [-p <package>]...")
            }
        }
    }
    if packages.is_empty() {
        packages = DEFAULT_PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    }
    Ok(packages)
}

fn shortfall(exe: &TestExe, test: &str) -> Option<&'static str> {
    WINE_SHORTFALLS
        .iter()
        .find(|(p, b, t, _)| *p == exe.package && *b == exe.target && *t == test)
        .map(|(_, _, _, why)| *why)
}

/// Builds the packages' test binaries for Windows; the paths from cargo's JSON messages.
fn build(root: &Path, packages: &[String]) -> Result<Vec<TestExe>> {
    let mut cmd = cross::cargo(root, WINDOWS)?;
    cmd.args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .args(cross::build_std_args(root, WINDOWS));
    for p in packages {
        cmd.args(["-p", p]);
    }
    println!("xtask wine-test: running {}", cross::show(&cmd));
    let out = cmd
        .stdout(Stdio::piped())
        .output()
        .context("running Debian's cargo")?;
    if !out.status.success() {
        bail!("building the Windows test binaries failed ({})", out.status);
    }
    let mut exes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true;
        let (Some(path), true) = (msg["executable"].as_str(), is_test) else {
            continue;
        };
        let target = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let kind = msg["target"]["kind"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let package = package_name(msg["package_id"].as_str().unwrap_or_default());
        exes.push(TestExe {
            package,
            target,
            kind,
            path: PathBuf::from(path),
        });
    }
    Ok(exes)
}

/// The package name in a package id (`path+file:///…/lmcpp-types#0.1.0`, or
/// `path+file:///…/dir#name@0.1.0` when the folder is named otherwise).
fn package_name(id: &str) -> String {
    let tail = id
        .rsplit_once('#')
        .map_or(id, |(path, version)| match version.split_once('@') {
            Some((name, _)) => name,
            None => path.rsplit('/').next().unwrap_or(path),
        });
    tail.to_owned()
}

/// Builds the `bcryptprimitives.dll` stand-in (once; kept in `target/cross/wine-dll`).
pub(crate) fn build_prng_dll(root: &Path) -> Result<PathBuf> {
    let dir = cross::cross_dir(root).join("wine-dll");
    let dll = dir.join("bcryptprimitives.dll");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let c = dir.join("bcryptprimitives.c");
    let def = dir.join("bcryptprimitives.def");
    let same = std::fs::read_to_string(&c).ok().as_deref() == Some(PRNG_C);
    if same && dll.is_file() {
        return Ok(dll);
    }
    std::fs::write(&c, PRNG_C).with_context(|| format!("writing {}", c.display()))?;
    std::fs::write(&def, PRNG_DEF).with_context(|| format!("writing {}", def.display()))?;
    let status = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-shared", "-O2", "-o"])
        .arg(&dll)
        .arg(&c)
        .arg(&def)
        .arg("-ladvapi32")
        .status()
        .context("running x86_64-w64-mingw32-gcc")?;
    if !status.success() {
        bail!("building {} failed ({status})", dll.display());
    }
    Ok(dll)
}

/// Rebuilds the fixture stand-in from its C source (the command in its header) and fails
/// when the committed `.exe` differs.
fn check_fake_server(root: &Path) -> Result<()> {
    let src = root.join(format!("{FAKE_SERVER}.c"));
    let committed = root.join(format!("{FAKE_SERVER}.exe"));
    let out = cross::cross_dir(root).join("fake-llama-server.exe");
    let status = Command::new("x86_64-w64-mingw32-gcc")
        .args([
            "-Os",
            "-s",
            "-nostdlib",
            "-e",
            "start",
            "-Wl,--no-insert-timestamp",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .arg("-lkernel32")
        .status()
        .context("running x86_64-w64-mingw32-gcc")?;
    if !status.success() {
        bail!("building {} failed ({status})", src.display());
    }
    let built = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
    let kept =
        std::fs::read(&committed).with_context(|| format!("reading {}", committed.display()))?;
    if built != kept {
        bail!(
            "{} is not what {} builds: copy {} over it and commit",
            committed.display(),
            src.display(),
            out.display()
        );
    }
    println!(
        "xtask wine-test: {} matches its source",
        committed.display()
    );
    Ok(())
}

pub(crate) fn place_beside(dll: &Path, exe: &Path) -> Result<()> {
    let dir = exe.parent().context("a test binary has a folder")?;
    let to = dir.join("bcryptprimitives.dll");
    if std::fs::metadata(&to).map(|m| m.len()).ok() != std::fs::metadata(dll).map(|m| m.len()).ok()
    {
        std::fs::copy(dll, &to).with_context(|| format!("copying to {}", to.display()))?;
    }
    Ok(())
}

/// Runs one test binary under Wine from its package's folder, as cargo test would, its
/// output into `log`; the counts and failed tests from libtest's summary.
fn run_one(root: &Path, exe: &TestExe, prefix: &Path, log: &Path) -> Result<Tally> {
    let cwd = package_dir(root, &exe.package);
    // A hung test must not hang CI: coreutils' timeout ends the binary after 15 minutes.
    let out = Command::new("timeout")
        .args(["--kill-after=10", "900", WINE])
        .arg(&exe.path)
        // Arguments would reach tests that inspect the command line (as cargo test's do not).
        .env("RUST_TEST_THREADS", "2")
        .current_dir(&cwd)
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("CARGO_MANIFEST_DIR", &cwd)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {WINE} {}", exe.path.display()))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    std::fs::write(log, &text).with_context(|| format!("writing {}", log.display()))?;
    let tally = parse_libtest(&text);
    if !out.status.success() && tally.failed.is_empty() {
        // It ended before libtest's summary (a crash, a missing DLL).
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        println!(
            "    exited with {} before its summary:\n{}",
            out.status,
            tail.join("\n")
        );
        return Ok(Tally {
            failed: vec!["(the whole binary)".to_owned()],
            ..tally
        });
    }
    Ok(tally)
}

fn package_dir(root: &Path, package: &str) -> PathBuf {
    match package {
        "lmcpp-test-support" => root.join("xtask/test-support"),
        other => root.join(other),
    }
}

/// Counts `test <name> ... ok|FAILED|ignored` lines of libtest's output.
fn parse_libtest(text: &str) -> Tally {
    let mut tally = Tally::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, result)) = rest.rsplit_once(" ... ") else {
            continue;
        };
        match result.trim() {
            "ok" => tally.passed += 1,
            "FAILED" => tally.failed.push(name.to_owned()),
            r if r.starts_with("ignored") => tally.ignored += 1,
            _ => {}
        }
    }
    tally
}
