//! Windows: Job objects, console control events, process handles, and a runtime dir
//! whose ACL admits the user alone.
//!
//! An attached child is assigned, right after it starts, to a Job object created with
//! `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`. Only lmcpp holds the job's handle, so when lmcpp
//! ends, however it ends, the system closes the handle and terminates every process in
//! the job: the server and anything it started. (The child runs unassigned for the
//! moment between its creation and the assignment; llama-server starts no process then.)

use std::{
    ffi::OsString,
    fs::Metadata,
    io,
    os::windows::{
        ffi::{OsStrExt, OsStringExt},
        io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle},
        process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
};

use windows_sys::Win32::{
    Foundation::{FILETIME, HANDLE, STILL_ACTIVE},
    Security::Cryptography::{BCRYPT_USE_SYSTEM_PREFERRED_RNG, BCryptGenRandom},
    Security::{
        ACL, AddAccessAllowedAceEx, Authorization::SE_FILE_OBJECT,
        Authorization::SetNamedSecurityInfoW, CONTAINER_INHERIT_ACE, DACL_SECURITY_INFORMATION,
        GetLengthSid, GetTokenInformation, InitializeAcl, OBJECT_INHERIT_ACE,
        PROTECTED_DACL_SECURITY_INFORMATION, TOKEN_QUERY, TOKEN_USER, TokenUser,
    },
    Storage::FileSystem::FILE_ALL_ACCESS,
    System::{
        Console::{CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent},
        JobObjects::{
            AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
            JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
            SetInformationJobObject, TerminateJobObject,
        },
        Threading::{
            CREATE_NEW_PROCESS_GROUP, CREATE_SUSPENDED, DETACHED_PROCESS, GetCurrentProcess,
            GetExitCodeProcess, GetProcessTimes, INFINITE, OpenProcess, OpenProcessToken,
            PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
            QueryFullProcessImageNameW, TerminateProcess, WaitForSingleObject,
        },
    },
};

use super::Stop;

/// The exit code a terminated job or process is given.
const KILLED: u32 = 1;

/// The default runtime directory: `%LOCALAPPDATA%` (private to the user), else the
/// temporary directory. lmcpp's files go into the subdirectory [`private_dir_name`].
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("LOCALAPPDATA").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => std::env::temp_dir(),
    }
}

/// The name of lmcpp's private subdirectory of a runtime dir: `lmcpp-<user>`.
pub fn private_dir_name() -> String {
    let user: String = std::env::var("USERNAME")
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    if user.is_empty() {
        "lmcpp-user".to_owned()
    } else {
        format!("lmcpp-{user}")
    }
}

/// Where short socket paths would go (Windows servers listen on loopback TCP).
pub(crate) fn private_tmp_dir() -> PathBuf {
    std::env::temp_dir().join(private_dir_name())
}

/// Creates `dir` if needed, checks it is a real directory, and gives it an ACL that admits
/// the current user alone (protected from inheritance, inherited by what is created in
/// it). `Err` carries the reason it cannot be used.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() || meta.file_type().is_symlink() {
        return Err("it is not a directory (maybe a link)".into());
    }
    user_only_acl(dir).map_err(|e| format!("cannot make it private: {e}"))
}

/// Sets a protected DACL with one entry: full control for the current user.
fn user_only_acl(dir: &Path) -> io::Result<()> {
    let sid_buf = current_user()?;
    // SAFETY: the buffer holds a TOKEN_USER written by GetTokenInformation.
    let sid = unsafe { (*sid_buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    // SAFETY: a valid SID from the token.
    let sid_len = unsafe { GetLengthSid(sid) };
    // ACL header, one ACCESS_ALLOWED_ACE (header and mask: 8 bytes) and the SID.
    let acl_len = std::mem::size_of::<ACL>() as u32 + 8 + sid_len + 8;
    let mut acl_buf = vec![0u64; (acl_len as usize).div_ceil(8)];
    let acl = acl_buf.as_mut_ptr().cast::<ACL>();
    // SAFETY: a buffer of at least acl_len bytes, aligned for ACL.
    if unsafe { InitializeAcl(acl, acl_len, 2) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let inherit = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE;
    // SAFETY: an initialised ACL with room for the entry; a valid SID.
    if unsafe { AddAccessAllowedAceEx(acl, 2, inherit, FILE_ALL_ACCESS, sid) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let wide: Vec<u16> = dir.as_os_str().encode_wide().chain([0]).collect();
    // SAFETY: a NUL-terminated path and a valid ACL; the other parts are not set.
    let rc = unsafe {
        SetNamedSecurityInfoW(
            wide.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            acl,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    Ok(())
}

/// The current process token's `TOKEN_USER`, in a buffer aligned for it.
fn current_user() -> io::Result<Vec<u64>> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of this process and a pointer for the token.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a handle we just opened and own.
    let token = unsafe { OwnedHandle::from_raw_handle(token as RawHandle) };
    let mut buf = vec![0u64; 64];
    let mut len = 0u32;
    // SAFETY: a buffer of the size passed.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            TokenUser,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut len,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf)
}

/// Whether a file's metadata says it can be run: a regular file (Windows has no
/// execute bit; the loader decides).
pub(crate) fn is_executable(meta: &Metadata) -> bool {
    meta.is_file()
}

/// Fills `buf` from the system's preferred random generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let len = u32::try_from(buf.len()).map_err(io::Error::other)?;
    // SAFETY: a buffer of the length passed; no algorithm handle with this flag.
    let status = unsafe {
        BCryptGenRandom(
            std::ptr::null_mut(),
            buf.as_mut_ptr(),
            len,
            BCRYPT_USE_SYSTEM_PREFERRED_RNG,
        )
    };
    if status != 0 {
        return Err(io::Error::other(format!(
            "BCryptGenRandom failed: {status:#x}"
        )));
    }
    Ok(())
}

/// A process handle opened with `access`, or `None` if there is no such process.
fn open(pid: u32, access: u32) -> Option<OwnedHandle> {
    if pid == 0 {
        return None;
    }
    // SAFETY: plain call; a null result means no such process (or no access).
    let handle = unsafe { OpenProcess(access, 0, pid) };
    if handle.is_null() {
        return None;
    }
    // SAFETY: a handle we just opened and own.
    Some(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
}

fn running(handle: &OwnedHandle) -> bool {
    let mut code = 0u32;
    // SAFETY: a valid process handle with query access.
    let ok = unsafe { GetExitCodeProcess(handle.as_raw_handle() as HANDLE, &mut code) };
    ok != 0 && code == STILL_ACTIVE as u32
}

/// Whether a process with this pid exists and has not exited.
pub(crate) fn alive(pid: u32) -> bool {
    open(pid, PROCESS_QUERY_LIMITED_INFORMATION).is_some_and(|h| running(&h))
}

/// The creation time, in 100 ns intervals since 1601 (absolute, so no boot id is needed).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let handle = open(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a valid process handle with query access and four FILETIMEs.
    let ok = unsafe {
        GetProcessTimes(
            handle.as_raw_handle() as HANDLE,
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    (ok != 0).then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

/// Not needed: start times are absolute.
pub(crate) fn boot_id() -> Option<String> {
    None
}

/// The parent of the process, from a snapshot of the process list (Windows records the
/// pid of the creating process, which may since have exited).
pub fn parent_pid(pid: u32) -> Option<u32> {
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW,
        TH32CS_SNAPPROCESS,
    };
    // SAFETY: plain call; the handle is owned (and closed) below.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snapshot == INVALID_HANDLE_VALUE || snapshot.is_null() {
        return None;
    }
    // SAFETY: a handle we just opened and own.
    let snapshot = unsafe { OwnedHandle::from_raw_handle(snapshot as RawHandle) };
    // SAFETY: plain data, with its size set as the API requires.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    let raw = snapshot.as_raw_handle() as HANDLE;
    // SAFETY: a valid snapshot handle and an entry of the declared size.
    let mut more = unsafe { Process32FirstW(raw, &mut entry) } != 0;
    while more {
        if entry.th32ProcessID == pid {
            return Some(entry.th32ParentProcessID);
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(raw, &mut entry) } != 0;
    }
    None
}

/// The machine's physical memory (`GlobalMemoryStatusEx`).
pub fn total_memory() -> Option<u64> {
    use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
    // SAFETY: plain data, with its length set as the API requires.
    let mut status: MEMORYSTATUSEX = unsafe { std::mem::zeroed() };
    status.dwLength = std::mem::size_of::<MEMORYSTATUSEX>() as u32;
    // SAFETY: a structure of the declared length.
    let ok = unsafe { GlobalMemoryStatusEx(&mut status) } != 0;
    (ok && status.ullTotalPhys > 0).then_some(status.ullTotalPhys)
}

/// The full path of the executable the process runs.
pub(crate) fn exe(pid: u32) -> Option<PathBuf> {
    let handle = open(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let mut buf = vec![0u16; 32_768];
    let mut len = buf.len() as u32;
    // SAFETY: a valid process handle and a buffer of `len` UTF-16 units.
    let ok = unsafe {
        QueryFullProcessImageNameW(
            handle.as_raw_handle() as HANDLE,
            PROCESS_NAME_WIN32,
            buf.as_mut_ptr(),
            &mut len,
        )
    };
    if ok == 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(PathBuf::from(OsString::from_wide(&buf)))
}

/// What [`contain`] set up before the spawn; [`Pending::adopt`] completes it.
pub(crate) struct Pending {
    detached: bool,
}

/// Prepares `cmd`: a process group of its own (so a console control event can reach it
/// alone); a detached child also leaves lmcpp's console. An attached child is created
/// suspended and runs only once [`Pending::adopt`] has put it in its Job object: there is
/// no moment in which lmcpp could die and leave it running outside one (dying between
/// the two leaves a process that never ran a line).
pub(crate) fn contain(cmd: &mut Command, detached: bool) -> io::Result<Pending> {
    let flags = if detached {
        CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS
    } else {
        CREATE_NEW_PROCESS_GROUP | CREATE_SUSPENDED
    };
    cmd.creation_flags(flags);
    Ok(Pending { detached })
}

impl Pending {
    /// After a successful spawn: puts an attached child in a kill-on-close Job object,
    /// then lets it run. On an error the caller kills the child (still suspended).
    pub(crate) fn adopt(self, child: &Child) -> io::Result<Group> {
        let process = open(
            child.id(),
            PROCESS_TERMINATE | PROCESS_QUERY_LIMITED_INFORMATION,
        )
        .ok_or_else(io::Error::last_os_error)?;
        let job = if self.detached {
            None
        } else {
            let job = kill_on_close_job()?;
            // SAFETY: a job handle and a process handle we own.
            let ok = unsafe {
                AssignProcessToJobObject(
                    job.as_raw_handle() as HANDLE,
                    child.as_raw_handle() as HANDLE,
                )
            };
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            resume(child.id())?;
            Some(job)
        };
        Ok(Group {
            pid: child.id(),
            job,
            process,
        })
    }
}

/// Resumes the threads of process `pid`, created suspended (its one main thread).
fn resume(pid: u32) -> io::Result<()> {
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
    };
    use windows_sys::Win32::System::Threading::{OpenThread, ResumeThread, THREAD_SUSPEND_RESUME};
    // SAFETY: plain call; the handle is owned (and closed) below.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snapshot == INVALID_HANDLE_VALUE || snapshot.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a handle we just opened and own.
    let snapshot = unsafe { OwnedHandle::from_raw_handle(snapshot as RawHandle) };
    let snapshot_handle = snapshot.as_raw_handle() as HANDLE;
    // SAFETY: plain data, with its size set as the API requires.
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut resumed = 0;
    // SAFETY: a snapshot handle and an entry of the declared size.
    let mut more = unsafe { Thread32First(snapshot_handle, &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            // SAFETY: plain call; the handle is owned (and closed) below.
            let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
            if !thread.is_null() {
                // SAFETY: a handle we just opened and own.
                let thread = unsafe { OwnedHandle::from_raw_handle(thread as RawHandle) };
                // SAFETY: a thread handle with suspend/resume access.
                if unsafe { ResumeThread(thread.as_raw_handle() as HANDLE) } != u32::MAX {
                    resumed += 1;
                }
            }
        }
        // SAFETY: as for the first entry.
        more = unsafe { Thread32Next(snapshot_handle, &mut entry) } != 0;
    }
    match resumed {
        0 => Err(io::Error::other(format!(
            "cannot resume process {pid}, created suspended until it was in its Job object"
        ))),
        _ => Ok(()),
    }
}

fn kill_on_close_job() -> io::Result<OwnedHandle> {
    // SAFETY: an anonymous job with default security.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a handle we just created and own.
    let job = unsafe { OwnedHandle::from_raw_handle(job as RawHandle) };
    // SAFETY: plain data; zero is "no limit" for every field.
    let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: a valid job handle and the structure its class names.
    let ok = unsafe {
        SetInformationJobObject(
            job.as_raw_handle() as HANDLE,
            JobObjectExtendedLimitInformation,
            (&raw const info).cast(),
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(job)
}

/// The job (for attached children) or the process a child runs as.
#[derive(Debug)]
pub(crate) struct Group {
    pid: u32,
    /// Closing it terminates every process in it.
    job: Option<OwnedHandle>,
    process: OwnedHandle,
}

impl Group {
    /// Graceful: `CTRL_BREAK` to the child's process group (only a child that shares
    /// lmcpp's console can get it). Kill: the whole job, or the process.
    pub(crate) fn signal(&self, stop: Stop) -> bool {
        match stop {
            // SAFETY: plain call with the id of the group the child leads.
            Stop::Graceful => unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, self.pid) != 0 },
            Stop::Kill => match &self.job {
                // SAFETY: a job handle we own.
                Some(job) => unsafe {
                    TerminateJobObject(job.as_raw_handle() as HANDLE, KILLED) != 0
                },
                // SAFETY: a process handle with terminate access.
                None => unsafe {
                    TerminateProcess(self.process.as_raw_handle() as HANDLE, KILLED) != 0
                },
            },
        }
    }

    /// After the child was reaped: closing the job stops whatever is left in it.
    pub(crate) fn release(&mut self) {
        drop(self.job.take());
    }

    /// Lets the child run on after its handle is gone; it still dies with this process.
    pub(crate) fn keep_until_exit(&mut self) {
        if let Some(job) = self.job.take() {
            std::mem::forget(job);
        }
    }
}

/// Waits for a child's exit; its handle (held by the `Child`) keeps the pid from being
/// reused until the `Child` is dropped.
pub(crate) struct ExitWatch {
    /// The `Child`'s process handle; the caller keeps the `Child` alive while waiting.
    handle: usize,
}

impl ExitWatch {
    /// Watches `child`, which must outlive [`ExitWatch::wait`].
    pub(crate) fn new(child: &Child) -> Self {
        Self {
            handle: child.as_raw_handle() as usize,
        }
    }

    /// Blocks until the child has exited.
    pub(crate) fn wait(&self) {
        // SAFETY: the `Child` that owns the handle outlives the wait (see `new`).
        unsafe { WaitForSingleObject(self.handle as HANDLE, INFINITE) };
    }
}

/// Sends `stop` to `pid` if `verify` holds while a handle pins the process (a pid with an
/// open handle is never reused). Windows has no process groups to signal beyond the
/// console's: `Some(false)` when sent.
pub(crate) fn signal_verified(pid: u32, verify: impl Fn() -> bool, stop: Stop) -> Option<bool> {
    let handle = open(pid, PROCESS_TERMINATE | PROCESS_QUERY_LIMITED_INFORMATION)?;
    if !running(&handle) || !verify() {
        return None;
    }
    let sent = match stop {
        // SAFETY: plain call; fails unless the process leads a group on our console.
        Stop::Graceful => unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid) != 0 },
        // SAFETY: a process handle with terminate access.
        Stop::Kill => unsafe { TerminateProcess(handle.as_raw_handle() as HANDLE, KILLED) != 0 },
    };
    sent.then_some(false)
}

/// The signal that ended a process: none on Windows, where every exit has a code.
pub(crate) fn exit_signal(_status: &ExitStatus) -> Option<i32> {
    None
}

/// An `ExitStatus` for a child whose status could not be read.
pub(crate) fn unknown_exit() -> ExitStatus {
    ExitStatus::from_raw(0)
}
