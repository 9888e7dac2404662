//! Linux: what `/proc` records about a pid, the parent-death signal, and pidfds.
//!
//! Pids are recycled, so a recorded pid only names "our" process when its start time
//! (and, for old records, its executable) agree with what was recorded at spawn time.

use std::{
    ffi::c_int,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
};

/// Whether a process with this pid exists and is neither a zombie nor dead.
pub(crate) fn alive(pid: u32) -> bool {
    super::pid_exists(pid) && !matches!(state(pid), Some('Z' | 'X'))
}

/// The process state letter from `/proc/<pid>/stat` (`R`, `S`, `Z`, ...).
fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The process start time in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    // Fields are counted after the parenthesised command name, which starts at field 3.
    stat_fields(pid)?.get(22 - 3)?.parse().ok()
}

/// The parent of the process (field 4 of `/proc/<pid>/stat`).
pub fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(4 - 3)?.parse().ok()
}

/// The machine's memory: `MemTotal` of `/proc/meminfo`.
pub fn total_memory() -> Option<u64> {
    mem_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

/// The process group the process belongs to (field 5 of `/proc/<pid>/stat`).
pub(crate) fn pgid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(5 - 3)?.parse().ok()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): pids and start times only
/// identify a process within one boot.
pub(crate) fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned())
}

/// The path of the executable the process runs (`/proc/<pid>/exe`).
pub(crate) fn exe(pid: u32) -> Option<PathBuf> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    // When the binary was deleted or replaced while running (a toolchain entry removed or
    // rebuilt), the kernel appends " (deleted)". The process still runs the recorded
    // binary; the start-time check, not the path, is what rejects a recycled pid.
    Some(
        match link.to_str().and_then(|l| l.strip_suffix(" (deleted)")) {
            Some(path) => PathBuf::from(path),
            None => link,
        },
    )
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may itself contain spaces and parentheses; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// In a forked child before `exec`: asks for SIGKILL when the parent's spawning thread
/// exits, then re-checks the parent, which may have died before the request.
///
/// The kernel delivers that signal when the *thread* that forked the child exits, not the
/// process, so every spawn runs on one dedicated thread that lives as long as the process.
///
/// # Safety
/// Async-signal-safe: only for use between `fork` and `exec`.
pub(super) unsafe fn die_with_parent(parent: u32) -> io::Result<()> {
    // SAFETY: prctl and getppid are async-signal-safe syscalls; _exit never returns.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) == -1
        {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() as u32 != parent {
            libc::_exit(1);
        }
    }
    Ok(())
}

/// Pins `pid` with a pidfd, then verifies and signals it through the pidfd.
/// `None` when pidfds are unavailable; `Some(None)` when it did not verify or the signal
/// failed; `Some(Some(leads its group))` when sent.
pub(super) fn signal_pinned(
    pid: libc::pid_t,
    verify: &dyn Fn() -> bool,
    signal: c_int,
) -> Option<Option<bool>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if !verify() {
        return Some(None);
    }
    let leads = pgid(pid as u32) == Some(pid as u32);
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    } == 0;
    Some(sent.then_some(leads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_table() {
        for (text, want) in [
            (
                "MemTotal:       16318480 kB\nMemFree: 1 kB\n",
                Some(16_710_123_520),
            ),
            ("MemFree: 1 kB\n", None),
            ("MemTotal: x kB\n", None),
            ("MemTotal: 5 MB\n", None),
            ("MemTotal: 18446744073709551615 kB\n", None),
        ] {
            assert_eq!(mem_total(text), want, "{text:?}");
        }
    }

    #[test]
    fn own_process_has_a_group_and_this_boot_an_id() {
        let me = std::process::id();
        assert!(pgid(me).is_some());
        assert_eq!(boot_id().map(|id| id.len()), Some(36));
    }
}
