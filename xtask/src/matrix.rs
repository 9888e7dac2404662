//! `cargo xtask matrix [--run] [--format table|json|github] [--tag TAG]`: the
//! CPU/CUDA/Metal/Vulkan × Linux/macOS/Windows × x86_64/aarch64 build matrix.
//!
//! Every leg is planned by the toolchain's own `plan()` (the code the recipe runs), then
//! checked: CMake arguments well-formed and carrying the backend's flag, prebuilt asset
//! names in the known naming scheme. Legs this host can build are marked; `--run` builds
//! them for real through the toolchain cache and reports time, size and `--version`.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use lmcpp_toolchain::backend::{Probes, check_available};
use lmcpp_toolchain::{Backend, Plan, Toolchain, ToolchainRequest, plan};
use serde_json::json;

use crate::prepare::line_progress;

const BACKENDS: [Backend; 4] = [Backend::Cpu, Backend::Cuda, Backend::Metal, Backend::Vulkan];
const OSES: [&str; 3] = ["linux", "macos", "windows"];
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// Why a leg does not exist at all (as opposed to existing but not buildable here).
fn not_applicable(backend: Backend, os: &str, arch: &str) -> Option<&'static str> {
    match (backend, os, arch) {
        (Backend::Metal, "linux" | "windows", _) => Some("metal exists only on macos"),
        (Backend::Metal, "macos", "x86_64") => Some("metal builds target apple silicon"),
        (Backend::Cuda, "macos", _) => Some("cuda does not exist on macos"),
        (Backend::Vulkan, "macos", _) => Some("vulkan on macos needs moltenvk; not planned"),
        _ => None,
    }
}

struct Leg {
    backend: Backend,
    os: &'static str,
    arch: &'static str,
    plan: Option<Plan>,
    na: Option<&'static str>,
    problems: Vec<String>,
    buildable: Result<(), String>,
    run: Option<RunResult>,
}

struct RunResult {
    status: String,
    seconds: f64,
    size: u64,
    version: String,
}

/// Checks a leg's plan against what the naming scheme and CMake expect.
fn check(plan: &Plan, tag: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for arg in &plan.cmake_args {
        if !(arg.starts_with("-D") && arg.contains('=')) {
            problems.push(format!("cmake argument `{arg}` is not -DNAME=VALUE"));
        }
    }
    let flag = match plan.backend {
        Backend::Cuda => Some("-DGGML_CUDA=ON"),
        Backend::Metal => Some("-DGGML_METAL=ON"),
        Backend::Vulkan => Some("-DGGML_VULKAN=ON"),
        _ => None,
    };
    if let Some(flag) = flag
        && !plan.cmake_args.iter().any(|a| a == flag)
    {
        problems.push(format!("cmake arguments lack {flag}"));
    }
    let ext = if plan.os == "windows" {
        ".zip"
    } else {
        ".tar.gz"
    };
    for asset in &plan.prebuilt_assets {
        // Linux names the CUDA runtime archive with the tag, Windows without it.
        let known = asset.starts_with(&format!("llama-{tag}-bin-"))
            || asset.starts_with(&format!("cudart-llama-{tag}-bin-"))
            || asset.starts_with("cudart-llama-bin-win-");
        if !known || !asset.ends_with(ext) {
            problems.push(format!(
                "asset `{asset}` is outside the naming scheme (llama-{tag}-bin-…{ext})"
            ));
        }
    }
    if plan.artefacts.is_empty() || !plan.artefacts[0].starts_with("llama-server") {
        problems.push("no llama-server artefact planned".into());
    }
    problems
}

fn host_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        _ => "linux",
    }
}

/// What `cargo xtask matrix` was asked for.
struct Args {
    run_legs: bool,
    format: String,
    tag: String,
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut run_legs = false;
    let mut format = "table".to_owned();
    let mut tag = lmcpp_toolchain::versions::pinned()
        .tag
        .unwrap_or("bTAG")
        .to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--run" => run_legs = true,
            "--format" => format = it.next().context("--format needs a value")?.clone(),
            "--tag" => tag = it.next().context("--tag needs a value")?.clone(),
            other => bail!(
                "unknown argument `{other}`; usage: cargo xtask matrix [--run] [--format table|json|github] [--tag TAG]"
            ),
        }
    }
    if !["table", "json", "github"].contains(&format.as_str()) {
        bail!("--format must be table, json or github (got `{format}`)");
    }
    Ok(Args {
        run_legs,
        format,
        tag,
    })
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Args {
        run_legs,
        format,
        tag,
    } = parse_args(args)?;
    let mut legs = plan_legs(&tag);
    if run_legs {
        build_legs(&mut legs)?;
    }
    let failed_checks: Vec<_> = legs.iter().filter(|l| !l.problems.is_empty()).collect();
    match format.as_str() {
        "github" => println!("{}", github_matrix(&legs)),
        "json" => println!("{}", serde_json::to_string_pretty(&legs_json(&legs))?),
        _ => print_table(&legs, &tag),
    }
    if !failed_checks.is_empty() {
        bail!("{} legs failed their plan checks", failed_checks.len());
    }
    if legs
        .iter()
        .any(|l| l.run.as_ref().is_some_and(|r| r.status != "ok"))
    {
        bail!("a leg failed to build");
    }
    Ok(())
}

/// Every backend × OS × architecture: its plan (when the leg exists), the plan's problems,
/// and whether it can be built on this host.
fn plan_legs(tag: &str) -> Vec<Leg> {
    let probes = Probes::probe();
    let mut legs = Vec::new();
    for backend in BACKENDS {
        for os in OSES {
            for arch in ARCHES {
                let na = not_applicable(backend, os, arch);
                let mut request = ToolchainRequest {
                    backend,
                    ..ToolchainRequest::default()
                };
                request.version = lmcpp_toolchain::versions::parse(tag)
                    .unwrap_or_else(|_| lmcpp_toolchain::LlamaVersion::tag(tag.to_owned()));
                let plan = na.is_none().then(|| plan(&request, os, arch));
                let problems = plan.as_ref().map(|p| check(p, tag)).unwrap_or_default();
                let buildable = if na.is_some() {
                    Err("leg does not exist".to_owned())
                } else if os != host_os() || arch != std::env::consts::ARCH {
                    Err(format!("host is {}-{}", host_os(), std::env::consts::ARCH))
                } else {
                    check_available(backend, true, &probes).map_err(|e| e.to_string())
                };
                legs.push(Leg {
                    backend,
                    os,
                    arch,
                    plan,
                    na,
                    problems,
                    buildable,
                    run: None,
                });
            }
        }
    }
    legs
}

/// Builds (or installs) every leg buildable here through the toolchain cache.
fn build_legs(legs: &mut [Leg]) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let toolchain = Toolchain::new(None)?;
    for leg in legs.iter_mut().filter(|l| l.buildable.is_ok()) {
        let request = ToolchainRequest {
            backend: leg.backend,
            ..ToolchainRequest::default()
        };
        eprintln!(
            "xtask: building leg {}-{}-{}",
            leg.backend, leg.os, leg.arch
        );
        let started = Instant::now();
        let result = rt.block_on(toolchain.ensure(&request, &line_progress()));
        let seconds = started.elapsed().as_secs_f64();
        leg.run = Some(match result {
            Ok(installed) => RunResult {
                status: "ok".into(),
                seconds,
                size: std::fs::metadata(&installed.llama_server)
                    .map(|m| m.len())
                    .unwrap_or(0),
                version: version_line(&installed.llama_server),
            },
            Err(e) => RunResult {
                status: format!("failed: {e}"),
                seconds,
                size: 0,
                version: String::new(),
            },
        });
    }
    Ok(())
}

/// The `version:` line a built `llama-server --version` prints.
fn version_line(binary: &std::path::Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .find(|l| l.starts_with("version:"))
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_else(|e| format!("cannot run: {e}"))
}

/// The legs that exist, as a GitHub Actions matrix (`include` entries).
fn github_matrix(legs: &[Leg]) -> serde_json::Value {
    let include: Vec<_> = legs
        .iter()
        .filter(|l| l.na.is_none())
        .map(|l| {
            json!({
                "backend": l.backend.to_string(),
                "os": l.os,
                "arch": l.arch,
                "runs-on": runner(l.os, l.arch),
                "cmake-args": l.plan.as_ref().map(|p| p.cmake_args.join(" ")),
                "assets": l.plan.as_ref().map(|p| p.prebuilt_assets.clone()),
            })
        })
        .collect();
    json!({ "include": include })
}

/// Every leg with its plan, problems and run, as JSON.
fn legs_json(legs: &[Leg]) -> Vec<serde_json::Value> {
    legs.iter()
        .map(|l| {
            json!({
                "backend": l.backend.to_string(),
                "os": l.os,
                "arch": l.arch,
                "not_applicable": l.na,
                "plan": l.plan,
                "problems": l.problems,
                "buildable_here": l.buildable.is_ok(),
                "not_buildable_because": l.buildable.as_ref().err(),
                "run": l.run.as_ref().map(|r| json!({
                    "status": r.status, "seconds": r.seconds,
                    "size": r.size, "version": r.version,
                })),
            })
        })
        .collect()
}

fn runner(os: &str, arch: &str) -> &'static str {
    match (os, arch) {
        ("linux", "aarch64") => "ubuntu-24.04-arm",
        ("linux", _) => "ubuntu-24.04",
        ("macos", "aarch64") => "macos-14",
        ("macos", _) => "macos-13",
        ("windows", "aarch64") => "windows-11-arm",
        _ => "windows-2022",
    }
}

fn print_table(legs: &[Leg], tag: &str) {
    println!("build matrix (asset names for tag {tag}; --tag picks another release)");
    println!(
        "{:<7} {:<8} {:<8} {:<10} {:<9} {:>8} {:>10}  DETAIL",
        "BACKEND", "OS", "ARCH", "PLAN", "HERE", "TIME", "SIZE"
    );
    for l in legs {
        let plan = match (&l.na, l.problems.is_empty()) {
            (Some(_), _) => "n/a",
            (None, true) => "checked",
            (None, false) => "INVALID",
        };
        let here = match (&l.run, &l.buildable) {
            _ if l.na.is_some() => "-",
            (Some(r), _) if r.status == "ok" => "built",
            (Some(_), _) => "FAILED",
            (None, Ok(())) => "buildable",
            (None, Err(_)) => "planned",
        };
        let (time, size) = l.run.as_ref().map_or((String::new(), String::new()), |r| {
            (format!("{:.1}s", r.seconds), format!("{}", r.size))
        });
        let detail = if let Some(na) = l.na {
            na.to_owned()
        } else if !l.problems.is_empty() {
            l.problems.join("; ")
        } else if let Some(r) = &l.run {
            if r.status == "ok" {
                r.version.clone()
            } else {
                r.status.clone()
            }
        } else {
            let p = l.plan.as_ref();
            let assets = p.map(|p| p.prebuilt_assets.join(" + ")).unwrap_or_default();
            let flags: Vec<_> = p
                .map(|p| {
                    p.cmake_args
                        .iter()
                        .filter(|a| a.starts_with("-DGGML_"))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let why = l
                .buildable
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| "buildable on this host".to_owned());
            format!(
                "{} | {} | {}",
                if assets.is_empty() {
                    "no prebuilt".to_owned()
                } else {
                    assets
                },
                flags.join(" "),
                why
            )
        };
        println!(
            "{:<7} {:<8} {:<8} {:<10} {:<9} {:>8} {:>10}  {}",
            l.backend.to_string(),
            l.os,
            l.arch,
            plan,
            here,
            time,
            size,
            detail
        );
    }
}
