//! `cargo xtask wine-e2e`: lmcpp on Windows end to end, under Wine, with real binaries.
//!
//! 1. `llama-server.exe` from lmcpp's own toolchain, cross-built with mingw-w64 (cached in
//!    the toolchain cache like every other build: ~15-20 minutes the first time).
//! 2. `lmcpp.exe` built for `x86_64-pc-windows-gnu` with Debian's Rust (as `cargo xtask
//!    cross` checks it).
//! 3. `lmcpp.exe run`: the server supervised by lmcpp.exe answers a prompt through the
//!    typed client, over loopback HTTP with the API key lmcpp generated.
//! 4. `lmcpp.exe serve` in the foreground, `lmcpp.exe complete --server <id>` against it
//!    (the key read from lmcpp's private registry), then lmcpp.exe is SIGKILLed: its Job
//!    object's kill-on-close must leave no `llama-server.exe` behind.
//!
//! Each step has a time limit; a failure names the step and shows what lmcpp printed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lmcpp_toolchain::{Mode, Toolchain, ToolchainRequest};

use crate::cross::{self, WINDOWS};
use crate::wine::{WINE, build_prng_dll, place_beside};
use crate::workspace_root;

/// How long one lmcpp.exe command may take under Wine.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(bad) = args.first() {
        bail!("`cargo xtask wine-e2e` takes no arguments (got `{bad}`)");
    }
    let started = Instant::now();
    let mut needs = WINDOWS.packages();
    needs.extend(["wine64", "g++-mingw-w64-x86-64"]);
    if let Err(why) = cross::ensure_packages(&needs) {
        bail!("cannot run the Windows end-to-end test: {why}");
    }
    let root = workspace_root();
    let server = windows_llama_server()?;
    println!("xtask wine-e2e: llama-server.exe {}", server.display());
    let prepared = crate::prepare::prepare()?;
    let demo = lmcpp_test_support::PreparedPaths::load_from(&prepared.paths_json)
        .context("reading the prepared paths")?
        .demo_model;
    let lmcpp = build_lmcpp(&root)?;
    let dll = build_prng_dll(&root)?;
    place_beside(&dll, &lmcpp)?;

    let work = cross::cross_dir(&root).join("wine-e2e");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let wine = Wine {
        prefix: cross::cross_dir(&root).join("wineprefix"),
        lmcpp,
        // One marker in every command line, to find this run's processes.
        common: vec![
            "--llama-server".into(),
            windows_path(&server),
            "--home".into(),
            windows_path(&work.join("home")),
            "--runtime-dir".into(),
            windows_path(&work.join("run")),
        ],
    };
    let demo = windows_path(&demo);

    // 3. One prompt, one answer.
    let answer = wine.output(&["run", "-m", &demo, "-n", "8", "--seed", "1", "Hello"])?;
    if answer.trim().is_empty() {
        bail!("lmcpp.exe run answered nothing");
    }
    println!("xtask wine-e2e: lmcpp.exe run answered {:?}", answer.trim());

    // 4. A foreground server, a client command, then SIGKILL.
    // The alias is in llama-server.exe's command line: how this run's server is found.
    let alias = format!("wine-e2e-{}", std::process::id());
    let mut serve = wine.spawn(&["serve", "--model", &demo, "--alias", &alias])?;
    let first = first_line(&mut serve)?;
    let id = first
        .split_whitespace()
        .next()
        .context("lmcpp.exe serve printed no id")?
        .to_owned();
    println!("xtask wine-e2e: lmcpp.exe serve: {first}");
    let completed = wine.output(&["complete", "--server", &id, "-n", "4", "Once"])?;
    println!("xtask wine-e2e: lmcpp.exe complete answered {completed:?}");
    let marker = alias.as_str();
    let servers = processes("llama-server.exe", marker);
    if servers.is_empty() {
        bail!("no llama-server.exe of this run is running while lmcpp.exe serves");
    }
    // SIGKILL of the Wine process that is lmcpp.exe: no cleanup of its own runs.
    serve.kill().context("killing lmcpp.exe")?;
    let _ = serve.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !processes("llama-server.exe", marker).is_empty() {
        if Instant::now() > deadline {
            bail!(
                "llama-server.exe {:?} outlived its SIGKILLed lmcpp.exe",
                processes("llama-server.exe", marker)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "xtask wine-e2e: no llama-server.exe left after lmcpp.exe was killed; passed in {}",
        cross::minutes(started.elapsed())
    );
    Ok(())
}

/// The cross-built `llama-server.exe` of the pinned version, from the toolchain cache.
fn windows_llama_server() -> Result<PathBuf> {
    let request = ToolchainRequest {
        target: Some(
            "x86_64-pc-windows-gnu"
                .parse()
                .context("the Windows target")?,
        ),
        mode: Mode::BuildOnly,
        ..ToolchainRequest::default()
    };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let toolchain = Toolchain::new(None).context("opening the toolchain cache")?;
    let installed = rt
        .block_on(toolchain.ensure(&request, &crate::prepare::line_progress()))
        .context("cross-building llama-server.exe through lmcpp-toolchain")?;
    Ok(installed.llama_server)
}

/// `lmcpp.exe`, built with Debian's Rust.
fn build_lmcpp(root: &Path) -> Result<PathBuf> {
    let mut cmd = cross::cargo(root, WINDOWS)?;
    cmd.args(["build", "-p", "lmcpp-cli", "--bin", "lmcpp"])
        .args(cross::build_std_args(root, WINDOWS));
    println!("xtask wine-e2e: running {}", cross::show(&cmd));
    let status = cmd.status().context("running Debian's cargo")?;
    if !status.success() {
        bail!("building lmcpp.exe failed ({status})");
    }
    let exe = cross::cross_dir(root).join("x86_64-pc-windows-gnu/debug/lmcpp.exe");
    if !exe.is_file() {
        bail!("{} was not built", exe.display());
    }
    Ok(exe)
}

/// How Wine sees a path of this machine: on drive `Z:`.
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

struct Wine {
    prefix: PathBuf,
    lmcpp: PathBuf,
    common: Vec<String>,
}

impl Wine {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=10", &STEP_TIMEOUT.as_secs().to_string(), WINE])
            .arg(&self.lmcpp)
            .args(&self.common)
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs lmcpp.exe to its end; its stdout, or an error with everything it printed.
    fn output(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command(args)
            .output()
            .with_context(|| format!("running lmcpp.exe {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "lmcpp.exe {} failed ({}):\n{stdout}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// Starts lmcpp.exe directly under Wine (no `timeout` in between, so killing the child
    /// kills lmcpp.exe itself).
    fn spawn(&self, args: &[&str]) -> Result<Child> {
        Command::new(WINE)
            .arg(&self.lmcpp)
            .args(&self.common)
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting lmcpp.exe {}", args.join(" ")))
    }
}

/// The first line `child` prints, within [`STEP_TIMEOUT`].
fn first_line(child: &mut Child) -> Result<String> {
    let stdout = child.stdout.take().context("lmcpp.exe's stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(STEP_TIMEOUT) {
        Ok(line) if !line.trim().is_empty() => Ok(line.trim().to_owned()),
        _ => {
            let _ = child.kill();
            bail!("lmcpp.exe serve printed no endpoint within {STEP_TIMEOUT:?}")
        }
    }
}

/// The pids of processes whose command line names `exe` and contains `marker`.
fn processes(exe: &str, marker: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains(exe) && cmdline.contains(marker)).then_some(pid)
    })
    .collect()
}
