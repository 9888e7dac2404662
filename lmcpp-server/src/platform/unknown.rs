//! Other Unix systems: no record of a pid's start time or executable is read, so the
//! registry treats live pids as unverifiable; containment is the lifeline alone.

use std::path::PathBuf;

/// Whether a process with this pid exists (zombies included: nothing tells them apart).
pub(crate) fn alive(pid: u32) -> bool {
    super::pid_exists(pid)
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
pub fn parent_pid(_pid: u32) -> Option<u32> {
    None
}

/// Physical pages times the page size (`sysconf`), where the system answers.
pub fn total_memory() -> Option<u64> {
    // SAFETY: plain library calls.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let pages = u64::try_from(pages).ok().filter(|p| *p > 0)?;
    pages.checked_mul(u64::try_from(size).ok()?)
}

/// Unknown here.
pub(crate) fn boot_id() -> Option<String> {
    None
}

/// Unknown here.
pub(crate) fn exe(_pid: u32) -> Option<PathBuf> {
    None
}
