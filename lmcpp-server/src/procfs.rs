//! What the kernel knows about a pid: liveness, executable and start time.
//!
//! Pids are recycled, so a recorded pid only names "our" process when all three agree
//! with what was recorded at spawn time. Outside Linux there is no `/proc`: the
//! executable and start time are then unknown and callers must treat the pid as
//! unverifiable.

use std::path::PathBuf;

/// Whether a process with this pid exists and is neither a zombie nor dead.
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !matches!(state(pid as u32), Some('Z' | 'X'))
}

/// The process state letter from `/proc/<pid>/stat` (`R`, `S`, `Z`, ...).
pub(crate) fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The process start time in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    // Fields are counted after the parenthesised command name, which starts at field 3.
    stat_fields(pid)?.get(22 - 3)?.parse().ok()
}

/// The process group the process belongs to (field 5 of `/proc/<pid>/stat`).
pub(crate) fn pgid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(5 - 3)?.parse().ok()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): pids and start times only
/// identify a process within one boot.
pub(crate) fn boot_id() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned())
}

/// The path of the executable the process runs (`/proc/<pid>/exe`).
pub(crate) fn exe(pid: u32) -> Option<PathBuf> {
    if !cfg!(target_os = "linux") {
        return None;
    }
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
    if !cfg!(target_os = "linux") {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may itself contain spaces and parentheses; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_described() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(start_time(me).is_some());
        assert!(pgid(me).is_some());
        assert_eq!(boot_id().map(|id| id.len()), Some(36));
        assert_eq!(
            exe(me),
            std::env::current_exe()
                .ok()
                .and_then(|p| p.canonicalize().ok())
        );
        assert!(!alive(0));
        assert!(!alive(u32::MAX));
    }
}
