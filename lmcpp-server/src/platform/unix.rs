//! Unix: process groups, signals, the lifeline, `waitid`, and the private runtime dir.
//! What the kernel records about a pid comes from [`linux`] or [`macos`].

use std::{
    ffi::c_int,
    fs::Metadata,
    io::{self, Read as _},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{
            fs::{DirBuilderExt, MetadataExt, PermissionsExt},
            process::CommandExt,
        },
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
};

use super::Stop;

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod os;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod os;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
#[path = "unknown.rs"]
mod os;

use os::pgid;
pub(crate) use os::{alive, boot_id, exe, start_time};
#[cfg(target_os = "linux")]
use os::{die_with_parent, signal_pinned};
pub use os::{parent_pid, total_memory};

/// Whether a process with this pid exists (zombies included), by signal 0: only the
/// existence and permission check.
fn pid_exists(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing.
    raw > 0
        && (unsafe { libc::kill(raw, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// No parent-death signal outside Linux: the lifeline alone stops the group.
///
/// # Safety
/// Async-signal-safe (does nothing).
#[cfg(not(target_os = "linux"))]
unsafe fn die_with_parent(_parent: u32) -> io::Result<()> {
    Ok(())
}

/// No pidfds outside Linux: [`signal_verified`] checks, then signals by pid.
#[cfg(not(target_os = "linux"))]
fn signal_pinned(
    _pid: libc::pid_t,
    _verify: &dyn Fn() -> bool,
    _signal: c_int,
) -> Option<Option<bool>> {
    None
}

/// The default runtime directory: `$XDG_RUNTIME_DIR` when that variable holds an absolute
/// path, else `/tmp`. lmcpp never changes it; its files go into the private subdirectory
/// [`private_dir_name`] it makes there (see [`crate::Registry::new`]).
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => PathBuf::from("/tmp"),
    }
}

/// The name of lmcpp's private subdirectory of a runtime dir: `lmcpp-<uid>`, so users
/// sharing one runtime dir (such as `/tmp`) never share a subdirectory.
pub fn private_dir_name() -> String {
    format!("lmcpp-{}", uid())
}

/// `/tmp/lmcpp-<uid>`: where short socket paths go when the runtime dir's are too long.
pub(crate) fn private_tmp_dir() -> PathBuf {
    Path::new("/tmp").join(private_dir_name())
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Creates `dir` (mode 0700, and any missing parents likewise) if needed and checks that
/// it is a real directory owned by us that nobody else can enter; one that is open to
/// others is made private. `Err` carries the reason it cannot be used.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("it is not a directory (maybe a symlink)".into());
    }
    let uid = uid();
    if meta.uid() != uid {
        return Err(format!(
            "it is owned by uid {} and not by us ({uid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make it private: {e}"))?;
    }
    Ok(())
}

/// Whether a file's metadata says it can be executed (any execute bit).
pub(crate) fn is_executable(meta: &Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

/// Fills `buf` from the kernel's random source.
pub(crate) fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// The signal that ended a process, if one did.
pub(crate) fn exit_signal(status: &ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

/// An `ExitStatus` for a child whose status could not be read.
pub(crate) fn unknown_exit() -> ExitStatus {
    std::os::unix::process::ExitStatusExt::from_raw(0)
}

/// What [`contain`] set up before the spawn; [`Pending::adopt`] completes it.
pub(crate) struct Pending {
    /// The lifeline's read end, open in the parent until the child (and its watcher)
    /// have their own copy.
    read: Option<OwnedFd>,
    write: Option<OwnedFd>,
}

/// Prepares `cmd` so that its process cannot outlive lmcpp: its own process group, a
/// parent-death signal on Linux, and a lifeline watcher in the group. A detached process
/// starts a new session instead and gets none of these.
pub(crate) fn contain(cmd: &mut Command, detached: bool) -> io::Result<Pending> {
    if detached {
        // SAFETY: the closure runs between fork and exec and only calls setsid.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        return Ok(Pending {
            read: None,
            write: None,
        });
    }
    let (read, write) = lifeline_pipe()?;
    let read_fd = read.as_raw_fd();
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
    // calls (setpgid, prctl, getppid, fork, close, and in the watcher dup2, close, read,
    // kill, sigaction, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            die_with_parent(parent)?;
            match libc::fork() {
                -1 => return Err(io::Error::last_os_error()),
                0 => watch(read_fd),
                _ => {}
            }
            // The write end is close-on-exec; the read end is the watcher's alone.
            libc::close(read_fd);
            Ok(())
        });
    }
    Ok(Pending {
        read: Some(read),
        write: Some(write),
    })
}

/// A pipe whose ends are close-on-exec and above the standard descriptors (which the
/// spawn replaces in the child).
fn lifeline_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: a valid pointer to two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just returned to us and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((high_cloexec(read)?, high_cloexec(write)?))
}

/// A close-on-exec duplicate of `fd` numbered 3 or above.
fn high_cloexec(fd: OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own returns a new fd or -1.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// The watcher: holds only the lifeline's read end, outlasts the polite signals a
/// graceful stop sends the group, and SIGKILLs the group once the read returns (lmcpp
/// dropped or lost the write end).
///
/// # Safety
/// Only to be called in a freshly forked child: it never returns.
unsafe fn watch(read_fd: c_int) -> ! {
    // SAFETY: async-signal-safe calls on descriptors this process owns.
    unsafe {
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
        if libc::dup2(read_fd, 0) == -1 {
            libc::_exit(1);
        }
        // Nothing lmcpp holds (locks, sockets, logs, the write end) stays open here.
        close_from(1);
        let mut byte = 0u8;
        loop {
            let n = libc::read(0, (&raw mut byte).cast(), 1);
            if n == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        libc::kill(0, libc::SIGKILL);
        libc::_exit(0)
    }
}

/// Closes every descriptor from `first` up.
///
/// # Safety
/// Async-signal-safe; the caller must own every descriptor from `first` up.
unsafe fn close_from(first: c_int) {
    #[cfg(target_os = "linux")]
    // SAFETY: close_range takes two descriptor numbers and flags.
    if unsafe { libc::syscall(libc::SYS_close_range, first, c_int::MAX, 0) } == 0 {
        return;
    }
    // SAFETY: sysconf has no preconditions; close of an unused number fails harmlessly.
    unsafe {
        let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(256, 65_536) as c_int;
        for fd in first..max {
            libc::close(fd);
        }
    }
}

impl Pending {
    /// After a successful spawn: closes the parent's read end and returns the group.
    pub(crate) fn adopt(mut self, child: &Child) -> io::Result<Group> {
        drop(self.read.take());
        Ok(Group {
            pgid: child.id(),
            lifeline: self.write.take(),
        })
    }
}

/// The process group a child leads (detached children lead a session, others a group),
/// and the lifeline its watcher follows.
#[derive(Debug)]
pub(crate) struct Group {
    pgid: u32,
    lifeline: Option<OwnedFd>,
}

impl Group {
    /// Sends `stop` to the group (and to the leader, should the group be gone). The
    /// caller guarantees the leader is unreaped, so its pid is not recycled.
    pub(crate) fn signal(&self, stop: Stop) -> bool {
        let Ok(pgid) = libc::pid_t::try_from(self.pgid) else {
            return false;
        };
        let signal = unix_signal(stop);
        // SAFETY: plain syscalls on a pid the caller holds unreaped.
        unsafe { libc::kill(-pgid, signal) == 0 || libc::kill(pgid, signal) == 0 }
    }

    /// After the leader was reaped: lets the watcher stop whatever is left of the group.
    pub(crate) fn release(&mut self) {
        drop(self.lifeline.take());
    }

    /// Lets the child run on after its handle is gone; it still dies with this process.
    pub(crate) fn keep_until_exit(&mut self) {
        if let Some(fd) = self.lifeline.take() {
            std::mem::forget(fd);
        }
    }
}

fn unix_signal(stop: Stop) -> c_int {
    match stop {
        Stop::Graceful => libc::SIGTERM,
        Stop::Kill => libc::SIGKILL,
    }
}

/// Waits for a child's exit without reaping it, so its pid cannot be reused yet.
pub(crate) struct ExitWatch {
    pid: u32,
}

impl ExitWatch {
    /// Watches `child`.
    pub(crate) fn new(child: &Child) -> Self {
        Self { pid: child.id() }
    }

    /// Blocks until the child has exited (it stays a zombie until reaped).
    pub(crate) fn wait(&self) {
        wait_exit(self.pid);
    }
}

fn wait_exit(pid: u32) {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a siginfo_t; WNOWAIT leaves the child unreaped.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Sends `stop` to the process `pid` if `verify` still holds once the pid is pinned, and
/// to its process group when it leads one; `Some(whether it leads its group)` when sent.
///
/// On Linux the process is first pinned with a pidfd and verified afterwards: a pidfd
/// refers to one process, never to a later one that reuses the pid, so nothing can be
/// recycled between the check and the signal. Elsewhere (or on kernels without pidfds)
/// the window between check and `kill` remains, as small as two syscalls. The group is
/// signalled right after its verified leader; a group id cannot be reused while any
/// member lives.
pub(crate) fn signal_verified(pid: u32, verify: impl Fn() -> bool, stop: Stop) -> Option<bool> {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return None;
    };
    let signal = unix_signal(stop);
    let leads = match signal_pinned(raw, &verify, signal) {
        Some(sent) => sent?,
        None => {
            if !verify() {
                return None;
            }
            let leads = pgid(pid) == Some(pid);
            // SAFETY: plain syscall on a pid we just verified.
            if unsafe { libc::kill(raw, signal) } != 0 {
                return None;
            }
            leads
        }
    };
    if leads {
        // SAFETY: plain syscall; the group is the one the verified leader leads.
        unsafe { libc::kill(-raw, signal) };
    }
    Some(leads)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_lifeline_pipe_is_above_stdio_and_close_on_exec() {
        let (r, w) = lifeline_pipe().unwrap();
        for fd in [&r, &w] {
            assert!(fd.as_raw_fd() > 2);
            // SAFETY: F_GETFD on an fd we own.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        }
    }
}
