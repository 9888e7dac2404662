//! Everything about processes and files that differs by operating system, behind one
//! interface; the rest of the crate uses only what this module exports.
//!
//! | | Linux | macOS (and other Unix) | Windows |
//! |---|---|---|---|
//! | containment | own process group, `PR_SET_PDEATHSIG`, lifeline | own process group, lifeline | Job object with kill-on-close |
//! | graceful stop, then kill | SIGTERM, SIGKILL to the group | the same | `CTRL_BREAK` to the group, `TerminateJobObject` |
//! | exit without reaping | `waitid(WNOWAIT)` | the same | wait on the process handle |
//! | identity of a pid | `/proc/<pid>/stat` start time, `/proc/<pid>/exe` | `proc_pidinfo` start time, `proc_pidpath` | `GetProcessTimes`, `QueryFullProcessImageNameW` |
//! | parent, memory | `/proc/<pid>/stat`, `/proc/meminfo` | `proc_pidinfo`, `hw.memsize` (other Unix: `sysconf`) | process snapshot, `GlobalMemoryStatusEx` |
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
pub use unix::{default_runtime_dir, parent_pid, private_dir_name, total_memory};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
#[cfg(windows)]
pub use windows::{default_runtime_dir, parent_pid, private_dir_name, total_memory};

#[cfg(not(any(unix, windows)))]
compile_error!("lmcpp-server supports Unix and Windows");

/// Whether the platform has Unix sockets (tokio has none on Windows): the default
/// transport where it does, loopback HTTP with a generated key where it does not.
pub(crate) const HAS_UNIX_SOCKETS: bool = cfg!(unix);

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

    /// A child's parent is this process; the machine's memory is known (and plausible).
    #[test]
    fn parents_and_memory_are_read_from_the_os() {
        let mut child = if cfg!(windows) {
            let mut c = std::process::Command::new("cmd");
            c.args(["/C", "ping -n 30 127.0.0.1 >NUL"]);
            c
        } else {
            let mut c = std::process::Command::new("sleep");
            c.arg("30");
            c
        };
        let mut child = child.spawn().unwrap();
        let parent = parent_pid(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(parent, Some(std::process::id()));
        #[cfg(unix)]
        assert_eq!(
            parent_pid(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
        assert_eq!(parent_pid(u32::MAX), None);
        let memory = total_memory().unwrap();
        assert!(memory > 64 << 20, "{memory}");
    }

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

    #[test]
    fn random_keys_differ() {
        let a = random_key().unwrap();
        let b = random_key().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
