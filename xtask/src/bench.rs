//! `cargo xtask bench`: every benchmark with its reference tools in place, then the ratio
//! lines once more at the end (`cargo xtask bench swap`: the proxy's swap thrash one alone).
//!
//! The `/tokenize` throughput benchmark compares the client with the `oha` load generator.
//! Without `oha` that ratio is missing, and a different `oha` build is a different
//! reference, so a pinned version is installed once into `target/tools` unless `oha`
//! is already on `PATH` (or named by `LMCPP_OHA`).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::prepare::prepare;
use crate::workspace_root;

/// The `oha` release the benchmark numbers were taken with.
const OHA_VERSION: &str = "1.16.0";

/// Feature sets to try, in order. The benchmark speaks plain HTTP, so TLS does not
/// matter: native-tls uses the system library (quick to build where its headers are
/// installed); the default rustls backend compiles aws-lc from source, which is slower
/// and wants a C toolchain, but needs no system headers.
const OHA_FEATURES: &[&[&str]] = &[&["--no-default-features", "--features", "native-tls"], &[]];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let prepared = prepare()?;
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let swap_only = args == ["swap"];
    // The swap thrash benchmark compares the proxy with itself: no reference tool.
    let oha = if swap_only {
        None
    } else {
        let oha = ensure_oha(&cargo, &root)?;
        eprintln!("xtask: oha {}", oha.display());
        Some(oha)
    };

    let mut cmd = Command::new(&cargo);
    cmd.arg("bench");
    if args.is_empty() {
        cmd.arg("--workspace");
    }
    // `swap`: the proxy's swap thrash benchmark alone (batches per model against first
    // come first served).
    let swap = ["-p", "lmcpp-server", "--bench", "proxy", "--", "swap"].map(String::from);
    let args = if swap_only { &swap[..] } else { args };
    cmd.args(args)
        .current_dir(&root)
        .env("LMCPP_TEST_PATHS", &prepared.paths_json)
        .stdout(Stdio::piped());
    if let Some(oha) = &oha {
        cmd.env("LMCPP_OHA", oha);
    }
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd.spawn().context("running cargo bench")?;
    let mut ratios = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the benchmark output")?;
            println!("{line}");
            if line.to_ascii_lowercase().contains("ratio") {
                ratios.push(line);
            }
        }
    }
    let status = child.wait().context("waiting for cargo bench")?;
    println!();
    println!("ratios:");
    for line in &ratios {
        println!("  {line}");
    }
    if !status.success() {
        bail!("benchmarks failed ({status})");
    }
    Ok(())
}

/// `oha` from `LMCPP_OHA`, `PATH` or `target/tools`, installed there when missing.
fn ensure_oha(cargo: &str, root: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("LMCPP_OHA") {
        // Benchmarks run in their package's directory, so a relative path would break.
        return std::path::absolute(&p).with_context(|| format!("resolving LMCPP_OHA {p:?}"));
    }
    if let Some(p) = lmcpp_toolchain::backend::find_on_path("oha") {
        return Ok(p);
    }
    let tools = root.join("target").join("tools");
    let bin = tools.join("bin").join("oha");
    if bin.is_file() {
        return Ok(bin);
    }
    for features in OHA_FEATURES {
        let mut cmd = Command::new(cargo);
        cmd.args(["install", "oha", "--locked", "--version", OHA_VERSION])
            .arg("--root")
            .arg(&tools)
            .args(*features);
        eprintln!("xtask: installing the benchmark reference: {cmd:?}");
        let status = cmd.status().context("running cargo install oha")?;
        if status.success() && bin.is_file() {
            return Ok(bin);
        }
        eprintln!("xtask: installing oha with {features:?} failed ({status})");
    }
    bail!(
        "cannot install oha {OHA_VERSION} into {}; install it yourself (`cargo install oha`) \
         or point LMCPP_OHA at a binary",
        tools.display()
    )
}
