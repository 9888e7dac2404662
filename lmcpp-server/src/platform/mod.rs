//! Everything about processes and files that differs by operating system, behind one
//! interface; the rest of the crate uses only what this module exports.
//!
//! | | Linux | macOS (and other Unix) | Windows |
//! |---|---|---|---|
//! | containment | own process group, `PR_SET_PDEATHSIG`, lifeline | own process group, lifeline | Job object with kill-on-close |
//! | graceful stop, then kill | SIGTERM, SIGKILL to the group | the same | `CTRL_BREAK` to the group, `TerminateJobObject` |
//! | exit without reaping | `waitid(WNOWAIT)` | the same | wait on the process handle |
//! | identity of a pid | `/proc/<pid>/stat` start time, `/proc/<pid>/exe` | `proc_pidinfo` start time, `proc_pidpath` | `GetProcessTimes`, `QueryFullProcessImageNameW` |
//! | runtime files | `$XDG_RUNTIME_DIR` or `/tmp`, `lmcpp-<uid>` mode 0700 | the same | `%LOCALAPPDATA%`, `lmcpp-<user>` with an ACL for the user alone |
//! | default transport | Unix socket | Unix socket | loopback HTTP with a random API key |
//!
//! The *lifeline* (Unix): a pipe whose write end only lmcpp holds. A watcher process
//! forked into the child's process group blocks on the read end; when lmcpp dies, however
//! it dies, the kernel closes the write end, the read returns, and the watcher SIGKILLs
//! the whole group. That covers what a parent-death signal cannot: platforms without one,
//! and the children of a wrapper script that forks its server instead of `exec`ing it.

use std::path::PathBuf;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;
#[cfg(unix)]
pub use unix::{default_runtime_dir, private_dir_name};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
#[cfg(windows)]
pub use windows::{default_runtime_dir, private_dir_name};

#[cfg(not(any(unix, windows)))]
compile_error!("lmcpp-server supports Unix and Windows");

/// How a supervised process is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Asks it to exit cleanly (SIGTERM; `CTRL_BREAK` on Windows).
    Graceful,
    /// Ends it now (SIGKILL; job or process termination on Windows).
    Kill,
}

/// What the operating system records about a process: enough to tell it from a later
/// process that got the same pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// When it started, in the OS's own unit: clock ticks after boot on Linux,
    /// microseconds since the Unix epoch on macOS, 100 ns intervals since 1601 on Windows.
    pub(crate) start_time: Option<u64>,
    /// The executable it runs, if the OS says.
    pub(crate) exe: Option<PathBuf>,
}

/// Whether this platform can tell a recorded process from a recycled pid.
pub(crate) fn can_verify() -> bool {
    cfg!(any(target_os = "linux", target_os = "macos", windows))
}

/// The identity of `pid`, if it exists.
pub(crate) fn identity(pid: u32) -> Identity {
    Identity {
        start_time: start_time(pid),
        exe: exe(pid),
    }
}

/// A random API key: 32 hex digits from the OS's random source.
pub(crate) fn random_key() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn own_process_is_described() {
        let me = std::process::id();
        assert!(alive(me));
        if can_verify() {
            let id = identity(me);
            assert!(id.start_time.is_some());
            let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
            assert_eq!(id.exe.map(|p| p.canonicalize().unwrap_or(p)), Some(exe));
            assert_eq!(identity(me), identity(me), "the identity is stable");
        }
        assert!(!alive(0));
        assert!(!alive(u32::MAX));
    }

    #[test]
    fn a_private_dir_is_made_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("a").join("lmcpp-x");
        ensure_private_dir(&private).unwrap();
        assert!(private.is_dir());
        ensure_private_dir(&private).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(ensure_private_dir(&file).is_err(), "a file is no directory");
    }

    /// Set when this test binary runs as the contained child (it sleeps) or as the
    /// parent that contains it (then it holds the child's pid file's directory).
    const CHILD_ROLE: &str = "LMCPP_PLATFORM_TEST_CHILD";
    const PARENT_ROLE: &str = "LMCPP_PLATFORM_TEST_PARENT";

    /// Whatever ends lmcpp (here: SIGKILL on Unix, TerminateProcess on Windows), a child it
    /// started attached ends with it: the parent-death signal and lifeline on Unix, the
    /// Job object's kill-on-close on Windows.
    #[test]
    fn a_contained_child_dies_with_its_parent() {
        let exe = std::env::current_exe().unwrap();
        let this = "platform::tests::a_contained_child_dies_with_its_parent";
        if std::env::var_os(CHILD_ROLE).is_some() {
            std::thread::sleep(std::time::Duration::from_secs(60));
            return;
        }
        if let Some(dir) = std::env::var_os(PARENT_ROLE) {
            let dir = PathBuf::from(dir);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let child = crate::spawn::spawn(crate::spawn::SpawnSpec {
                    program: exe.clone(),
                    args: vec!["--exact".into(), this.into(), "--nocapture".into()],
                    cwd: dir.clone(),
                    env: vec![(CHILD_ROLE.into(), "1".into())],
                    env_remove: vec![PARENT_ROLE.into()],
                    log: dir.join("child.log"),
                    detached: false,
                })
                .await
                .unwrap();
                std::fs::write(dir.join("pid.tmp"), child.pid().to_string()).unwrap();
                std::fs::rename(dir.join("pid.tmp"), dir.join("pid")).unwrap();
                std::future::pending::<()>().await;
            });
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut parent = std::process::Command::new(&exe)
            .args(["--exact", this, "--nocapture"])
            .env(PARENT_ROLE, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let wait = |what: &str, cond: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !cond() {
                assert!(std::time::Instant::now() < deadline, "timed out: {what}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        let pidfile = dir.path().join("pid");
        wait("the child's pid", &|| pidfile.exists());
        let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
        assert!(alive(pid));
        parent.kill().unwrap();
        parent.wait().unwrap();
        wait("the child's end after its parent's", &|| !alive(pid));
    }

    #[test]
    fn random_keys_differ() {
        let a = random_key().unwrap();
        let b = random_key().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
