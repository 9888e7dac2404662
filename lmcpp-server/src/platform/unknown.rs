//! Other Unix systems: no record of a pid's start time or executable is read, so the
//! registry treats live pids as unverifiable; containment is the lifeline alone.

use std::{ffi::c_int, io, path::PathBuf};

/// Whether a process with this pid exists (zombies included: nothing tells them apart).
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs only the existence and permission check.
    raw > 0
        && (unsafe { libc::kill(raw, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Unknown here.
pub(crate) fn start_time(_pid: u32) -> Option<u64> {
    None
}

/// The process group, from `getpgid`.
pub(crate) fn pgid(pid: u32) -> Option<u32> {
    let raw = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: plain syscall.
    u32::try_from(unsafe { libc::getpgid(raw) }).ok()
}

/// Unknown here.
pub(crate) fn boot_id() -> Option<String> {
    None
}

/// Unknown here.
pub(crate) fn exe(_pid: u32) -> Option<PathBuf> {
    None
}

/// No parent-death signal is used here.
///
/// # Safety
/// Async-signal-safe (does nothing).
pub(super) unsafe fn die_with_parent(_parent: u32) -> io::Result<()> {
    Ok(())
}

/// No pidfds here.
pub(super) fn signal_pinned(
    _pid: libc::pid_t,
    _verify: &dyn Fn() -> bool,
    _signal: c_int,
) -> Option<Option<bool>> {
    None
}
