//! Finding (or bootstrapping) cmake and running configure/build with streamed, logged output.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::Mutex;

use crate::cache::{CacheLayout, remove_all};
use crate::error::{Error, IoContext, Result};
use crate::lock::lock_exclusive;
use crate::progress::{ProgressEvent, SharedProgress};
use crate::toolchain::backend::find_on_path;
use crate::toolchain::plan::Plan;

/// Oldest cmake llama.cpp accepts.
pub(crate) const MIN_VERSION: (u32, u32) = (3, 14);

/// Lines of output kept for error messages.
const TAIL_LINES: usize = 40;

/// A usable cmake binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cmake {
    /// The binary.
    pub path: PathBuf,
    /// Its version (major, minor, patch).
    pub version: (u32, u32, u32),
}

/// Parses the first line of `cmake --version` ("cmake version 3.28.1").
pub(crate) fn parse_version(output: &str) -> Option<(u32, u32, u32)> {
    let line = output.lines().next()?;
    let v = line.trim().strip_prefix("cmake version ")?;
    let mut it = v.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// Parses a `[ 42%]` progress prefix of make/ninja-style build output.
pub(crate) fn parse_percent(line: &str) -> Option<u8> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (num, _) = rest.split_once("%]")?;
    let n: u8 = num.trim().parse().ok()?;
    (n <= 100).then_some(n)
}

async fn probe_cmake(path: &Path) -> Option<Cmake> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .ok()?
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let version = parse_version(&String::from_utf8_lossy(&out.stdout))?;
    ((version.0, version.1) >= MIN_VERSION).then(|| Cmake {
        path: path.to_path_buf(),
        version,
    })
}

/// Where a bootstrapped cmake lives: `<root>/tools/cmake-pip`.
pub(crate) fn bootstrap_dir(layout: &CacheLayout) -> PathBuf {
    layout.tools().join("cmake-pip")
}

fn bootstrapped_binary(dir: &Path) -> PathBuf {
    // `bin/cmake` of a `--target` install is a Python wrapper that cannot find its module;
    // the real binary ships inside the package data.
    let exe = if cfg!(windows) { "cmake.exe" } else { "cmake" };
    dir.join("cmake").join("data").join("bin").join(exe)
}

/// Finds cmake >= 3.14 on `PATH`, or in the cache, or bootstraps it from the Python package
/// index with `pip install --target <root>/tools/cmake-pip cmake`.
pub(crate) async fn find_or_bootstrap(
    layout: &CacheLayout,
    python: &str,
    lock_timeout: Duration,
    progress: &SharedProgress,
) -> Result<Cmake> {
    let mut tried = Vec::new();
    if let Some(p) = find_on_path("cmake") {
        if let Some(c) = probe_cmake(&p).await {
            return Ok(c);
        }
        tried.push(format!("{} is older than 3.14 or broken", p.display()));
    } else {
        tried.push("no cmake on PATH".to_owned());
    }
    let dir = bootstrap_dir(layout);
    if let Some(c) = probe_cmake(&bootstrapped_binary(&dir)).await {
        return Ok(c);
    }
    let tools = layout.tools();
    std::fs::create_dir_all(&tools).ctx("create directory", &tools)?;
    let _lock = lock_exclusive(&tools.join("cmake-pip.lock"), lock_timeout, progress).await?;
    if let Some(c) = probe_cmake(&bootstrapped_binary(&dir)).await {
        return Ok(c);
    }
    progress.event(ProgressEvent::Stage {
        name: "installing cmake with pip".into(),
    });
    let tmp = tools.join("cmake-pip.tmp");
    remove_all(&tmp)?;
    let log = tools.join("cmake-pip.log");
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--no-warn-script-location",
        "--target",
    ])
    .arg(&tmp)
    .arg("cmake>=3.14");
    let run = run_logged(cmd, &tools, &log, progress).await;
    if let Err(e) = run {
        let _ = remove_all(&tmp);
        tried.push(format!("pip install cmake failed: {e}"));
        return Err(Error::CmakeNotFound {
            reason: tried.join("; "),
        });
    }
    remove_all(&dir)?;
    std::fs::rename(&tmp, &dir).ctx("rename into", &dir)?;
    progress.event(ProgressEvent::Done);
    match probe_cmake(&bootstrapped_binary(&dir)).await {
        Some(c) => Ok(c),
        None => {
            tried.push(format!(
                "pip installed cmake but {} does not run",
                bootstrapped_binary(&dir).display()
            ));
            Err(Error::CmakeNotFound {
                reason: tried.join("; "),
            })
        }
    }
}

/// Runs a command in `cwd`, appending stdout and stderr to `log` line by line and turning
/// `[ NN%]` lines into [`ProgressEvent::BuildPercent`]. A non-zero exit is
/// [`Error::CommandFailed`] with the tail of the output. The child is killed if the
/// returned future is dropped.
pub(crate) async fn run_logged(
    cmd: Command,
    cwd: &Path,
    log: &Path,
    progress: &SharedProgress,
) -> Result<()> {
    let std_cmd = cmd.as_std();
    let command = std::iter::once(std_cmd.get_program())
        .chain(std_cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let program = std_cmd.get_program().to_string_lossy().into_owned();
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await
        .ctx("open log", log)?;
    file.write_all(format!("$ {command}\n").as_bytes())
        .await
        .ctx("write", log)?;
    let file = Arc::new(Mutex::new(file));
    let tail = Arc::new(std::sync::Mutex::new(VecDeque::<String>::new()));
    let mut cmd = contained(cmd);
    let mut child = cmd
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn { program, source })?;
    // Dropping the future (Ctrl-C, a cancelled ensure) ends the whole build, not just
    // its first process.
    let _group = GroupGuard(child.id());
    let mut pumps = Vec::new();
    let streams: Vec<Box<dyn tokio::io::AsyncRead + Unpin + Send>> = vec![
        Box::new(child.stdout.take().ok_or_else(|| Error::Task {
            message: "child stdout missing".into(),
        })?),
        Box::new(child.stderr.take().ok_or_else(|| Error::Task {
            message: "child stderr missing".into(),
        })?),
    ];
    for stream in streams {
        let (file, tail, progress) = (file.clone(), tail.clone(), progress.clone());
        pumps.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(percent) = parse_percent(&line) {
                    progress.event(ProgressEvent::BuildPercent {
                        percent,
                        line: line.clone(),
                    });
                }
                let mut f = file.lock().await;
                let _ = f.write_all(line.as_bytes()).await;
                let _ = f.write_all(b"\n").await;
                drop(f);
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }));
    }
    let status = child.wait().await.ctx("wait for", cwd)?;
    for p in pumps {
        let _ = p.await;
    }
    let _ = file.lock().await.flush().await;
    if status.success() {
        return Ok(());
    }
    let tail = tail
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    Err(Error::CommandFailed {
        command,
        status: status.to_string(),
        log: Some(log.to_path_buf()),
        tail,
    })
}

/// Watches the parent from inside the build's process group: when lmcpp is gone (killed,
/// even with SIGKILL, so no destructor runs), the whole group — cmake, make and every
/// compiler — is killed within a second instead of building on as an orphan. The parent
/// pid comes from `/proc` (Linux) or `ps` (macOS and other Unix).
const WATCHDOG: &str = r#"parent=$1; shift
"$@" &
child=$!
trap 'kill -KILL 0' TERM INT HUP
while kill -0 "$child" 2>/dev/null; do
  now=$(cut -d' ' -f4 /proc/$$/stat 2>/dev/null || ps -o ppid= -p $$ 2>/dev/null | tr -d ' ')
  now=${now:-$parent}
  if [ "$now" != "$parent" ]; then kill -KILL 0; fi
  sleep 1
done
wait "$child""#;

/// Runs `cmd` under [`WATCHDOG`] in a process group of its own (Unix), so the build is
/// contained like a supervised server: it ends with lmcpp. (On Windows a build is not
/// contained: see docs/platforms.md.)
fn contained(cmd: Command) -> Command {
    if !cfg!(unix) {
        return cmd;
    }
    let std_cmd = cmd.as_std();
    let mut wrapped = Command::new("/bin/sh");
    wrapped
        .arg("-c")
        .arg(WATCHDOG)
        .arg("lmcpp-build")
        .arg(std::process::id().to_string())
        .arg(std_cmd.get_program())
        .args(std_cmd.get_args());
    for (k, v) in std_cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    #[cfg(unix)]
    wrapped.process_group(0);
    wrapped
}

/// Kills a build's process group when dropped (the group id is the leader's pid).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: killpg only sends a signal; a group that is gone yields ESRCH.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
        // Windows has no process groups to kill; the build's own processes end with it.
        #[cfg(not(unix))]
        let _ = self.0;
    }
}

/// The compiler-launcher arguments to add, if a launcher is worth adding.
///
/// llama.cpp picks up `ccache` by itself (`GGML_CCACHE`), so only `sccache` needs help.
pub(crate) fn launcher_args() -> Vec<String> {
    if find_on_path("ccache").is_some() {
        return vec![];
    }
    match find_on_path("sccache") {
        Some(p) => vec![
            "-DGGML_CCACHE=OFF".into(),
            format!("-DCMAKE_C_COMPILER_LAUNCHER={}", p.display()),
            format!("-DCMAKE_CXX_COMPILER_LAUNCHER={}", p.display()),
        ],
        None => vec![],
    }
}

/// Configures `source` into `build_dir` and builds `targets` with `-j jobs`, logging to `log`.
pub(crate) async fn configure_and_build(
    cmake: &Cmake,
    source: &Path,
    build_dir: &Path,
    args: &[String],
    targets: &[String],
    log: &Path,
    progress: &SharedProgress,
) -> Result<()> {
    std::fs::create_dir_all(build_dir).ctx("create directory", build_dir)?;
    progress.event(ProgressEvent::Stage {
        name: "configuring llama.cpp".into(),
    });
    let mut configure = Command::new(&cmake.path);
    configure
        .arg("-S")
        .arg(source)
        .arg("-B")
        .arg(build_dir)
        .args(args)
        .args(launcher_args());
    run_logged(configure, build_dir, log, progress).await?;
    progress.event(ProgressEvent::Stage {
        name: format!("building {}", targets.join(", ")),
    });
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut build = Command::new(&cmake.path);
    build
        .arg("--build")
        .arg(build_dir)
        .args(["--config", "Release", "-j"])
        .arg(jobs.to_string())
        .arg("--target")
        .args(targets);
    run_logged(build, build_dir, log, progress).await?;
    progress.event(ProgressEvent::Done);
    Ok(())
}

/// Splits `-DKEY=VALUE` arguments into defines; everything else stays a plain argument.
pub(crate) fn split_defines(args: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let mut defines = Vec::new();
    let mut other = Vec::new();
    for a in args {
        match a.strip_prefix("-D").and_then(|d| d.split_once('=')) {
            Some((k, v)) => {
                // `-DNAME:TYPE=VALUE` keeps only the name; the cmake crate passes it untyped.
                let k = k.split(':').next().unwrap_or(k);
                defines.push((k.to_owned(), v.to_owned()));
            }
            None => other.push(a.clone()),
        }
    }
    (defines, other)
}

/// Builds the plan's targets from `source` with the `cmake` crate into `out/build`.
///
/// Needs the environment cargo gives build scripts (`TARGET`, `HOST`, `OPT_LEVEL`, ...).
pub(crate) fn build_with_cmake_crate(
    cmake: &Cmake,
    source: &Path,
    out: &Path,
    plan: &Plan,
) -> Result<()> {
    let mut args = plan.cmake_args.clone();
    args.extend(launcher_args());
    let (defines, other) = split_defines(&args);
    for target in &plan.build_targets {
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut cfg = ::cmake::Config::new(source);
            cfg.out_dir(out).profile("Release").build_target(target);
            for (k, v) in &defines {
                cfg.define(k, v);
            }
            for a in &other {
                cfg.configure_arg(a);
            }
            cfg.build()
        }));
        if let Err(panic) = built {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the cmake crate panicked".to_owned());
            return Err(Error::CommandFailed {
                command: format!(
                    "{} (via the cmake crate) --target {target}",
                    cmake.path.display()
                ),
                status: "failed".into(),
                log: None,
                tail: message,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn versions_and_percentages_parse() {
        assert_eq!(
            parse_version("cmake version 3.28.1\n\nCMake suite"),
            Some((3, 28, 1))
        );
        assert_eq!(parse_version("cmake version 4.4"), Some((4, 4, 0)));
        assert_eq!(parse_version("cmake version 3.31.0-rc2"), Some((3, 31, 0)));
        assert_eq!(parse_version("nope"), None);
        assert_eq!(parse_percent("[ 42%] Building CXX object"), Some(42));
        assert_eq!(parse_percent("[100%] Built target llama-server"), Some(100));
        assert_eq!(parse_percent("  [  3%] x"), Some(3));
        assert_eq!(parse_percent("[abc%] x"), None);
        assert_eq!(parse_percent("no percent"), None);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_dropped_build_takes_its_whole_process_group_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        let pidfile = dir.path().join("grandchild.pid");
        let mut cmd = Command::new("sh");
        // A grandchild, as make's compilers are, that would outlive a plain kill.
        cmd.args([
            "-c",
            &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        ]);
        let progress = crate::progress::no_progress();
        let run = run_logged(cmd, dir.path(), &log, &progress);
        let pid = tokio::select! {
            _ = run => panic!("the build ended early"),
            pid = async {
                loop {
                    if let Some(p) = std::fs::read_to_string(&pidfile)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok())
                    {
                        break p;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            } => pid,
        };
        // The select dropped the build future: the grandchild must be gone too.
        let gone = lmcpp_test_support::eventually(Duration::from_secs(10), || {
            !lmcpp_test_support::running(pid)
        });
        assert!(gone.await, "grandchild {pid} outlived the build");
    }

    /// A command running these shell lines (`sh`; on Windows a batch file, where `'` is
    /// literal and so dropped, and `%` doubled).
    fn script(dir: &Path, name: &str, lines: &[&str]) -> Command {
        if cfg!(windows) {
            let path = dir.join(format!("{name}.cmd"));
            let body: Vec<String> = lines
                .iter()
                .map(|l| {
                    let l = l
                        .replace('\'', "")
                        .replace('%', "%%")
                        .replace(">&2", "1>&2");
                    let l = l.replace("exit ", "exit /b ");
                    format!("@{l}\r\n")
                })
                .collect();
            std::fs::write(&path, body.concat()).unwrap();
            let mut cmd = Command::new("cmd");
            cmd.arg("/C").arg(path);
            cmd
        } else {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &lines.join("; ")]);
            cmd
        }
    }

    #[tokio::test]
    async fn run_logged_records_output_and_fails_with_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let progress: SharedProgress = Arc::new(move |e: ProgressEvent| {
            if let ProgressEvent::BuildPercent { percent, .. } = e {
                s.lock().unwrap().push(percent);
            }
        });
        let ok = script(
            dir.path(),
            "ok",
            &["echo '[ 10%] a'", "echo '[ 55%] b' >&2"],
        );
        run_logged(ok, dir.path(), &log, &progress).await.unwrap();
        let mut percents = seen.lock().unwrap().clone();
        percents.sort_unstable();
        assert_eq!(percents, [10, 55]);
        let bad = script(dir.path(), "bad", &["echo boom", "exit 3"]);
        let err = run_logged(bad, dir.path(), &log, &progress)
            .await
            .unwrap_err();
        match err {
            Error::CommandFailed { tail, log: l, .. } => {
                assert_eq!(tail, "boom");
                assert_eq!(l.as_deref(), Some(log.as_path()));
            }
            other => panic!("unexpected {other}"),
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("[ 55%] b") && text.contains("boom"), "{text}");
    }

    #[test]
    fn defines_are_split_from_other_arguments() {
        let args = [
            "-DGGML_RPC=ON".to_owned(),
            "-DCMAKE_BUILD_TYPE:STRING=Release".to_owned(),
            "-G".to_owned(),
            "Ninja".to_owned(),
        ];
        let (d, o) = split_defines(&args);
        assert_eq!(
            d,
            [
                ("GGML_RPC".to_owned(), "ON".to_owned()),
                ("CMAKE_BUILD_TYPE".to_owned(), "Release".to_owned())
            ]
        );
        assert_eq!(o, ["-G", "Ninja"]);
    }
}
