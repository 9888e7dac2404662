//! macOS: what the kernel records about a pid (`proc_pidinfo`, `proc_pidpath`).
//!
//! The start time is absolute (microseconds since the Unix epoch), so it identifies a
//! process across reboots as well; no boot id is needed.

use std::{
    ffi::{c_int, c_void},
    os::unix::ffi::OsStringExt,
    path::PathBuf,
};

/// `SZOMB` from `<sys/proc.h>`: the process has exited and awaits its parent.
const SZOMB: u32 = 5;

fn bsd_info(pid: u32) -> Option<libc::proc_bsdinfo> {
    let raw = c_int::try_from(pid).ok().filter(|p| *p > 0)?;
    // SAFETY: proc_bsdinfo is plain data that proc_pidinfo fills in.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as c_int;
    // SAFETY: a buffer of `size` bytes for the PROC_PIDTBSDINFO flavour.
    let n = unsafe {
        libc::proc_pidinfo(
            raw,
            libc::PROC_PIDTBSDINFO,
            0,
            (&raw mut info).cast::<c_void>(),
            size,
        )
    };
    (n == size).then_some(info)
}

/// Whether a process with this pid exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    super::pid_exists(pid) && bsd_info(pid).is_none_or(|i| i.pbi_status != SZOMB)
}

/// The start time in microseconds since the Unix epoch.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let info = bsd_info(pid)?;
    Some(info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec)
}

/// The parent of the process.
pub fn parent_pid(pid: u32) -> Option<u32> {
    bsd_info(pid).map(|i| i.pbi_ppid)
}

/// The machine's memory (`hw.memsize`).
pub fn total_memory() -> Option<u64> {
    let mut bytes: u64 = 0;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: a NUL-terminated name and a buffer of `len` bytes for its 64-bit value.
    let rc = unsafe {
        libc::sysctlbyname(
            c"hw.memsize".as_ptr(),
            (&raw mut bytes).cast::<c_void>(),
            &raw mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (rc == 0 && len == std::mem::size_of::<u64>() && bytes > 0).then_some(bytes)
}

/// The process group the process belongs to.
pub(crate) fn pgid(pid: u32) -> Option<u32> {
    bsd_info(pid).map(|i| i.pbi_pgid)
}

/// Not needed: start times are absolute.
pub(crate) fn boot_id() -> Option<String> {
    None
}

/// The path of the executable the process runs.
pub(crate) fn exe(pid: u32) -> Option<PathBuf> {
    let raw = c_int::try_from(pid).ok().filter(|p| *p > 0)?;
    let mut buf = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    // SAFETY: a buffer of the size passed.
    let n = unsafe { libc::proc_pidpath(raw, buf.as_mut_ptr().cast(), buf.len() as u32) };
    let n = usize::try_from(n).ok().filter(|n| *n > 0)?;
    buf.truncate(n);
    Some(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}
