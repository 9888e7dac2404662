//! Locks that wait: an in-process keyed async lock plus an OS file lock (`fs4`).
//!
//! Tasks of one process coalesce on the in-process layer (a file lock is per open file
//! description, so two handles in one process could otherwise both "own" it on some
//! platforms); processes coalesce on the file layer. A contended lock is reported through
//! [`ProgressEvent::Waiting`] with the holder's pid and a short label (its executable's
//! name), which the holder writes into the lock file, and waited for until a deadline. The
//! lock file never holds the command line, which may carry paths or secrets, and is created
//! readable by its owner only.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use fs4::{FileExt, TryLockError};
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use crate::error::{Error, IoContext, Result};
use crate::progress::{ProgressEvent, SharedProgress};

type KeyedMutex = tokio::sync::Mutex<()>;

static IN_PROCESS: LazyLock<Mutex<HashMap<PathBuf, Weak<KeyedMutex>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Longest pause between two attempts to take a contended file lock.
const MAX_POLL: Duration = Duration::from_millis(100);

/// An exclusive lock on a path, held by this task until dropped.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    file: Option<File>,
    _in_process: OwnedMutexGuard<()>,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the lock file while the lock is still held (when the thing it guards is
    /// being removed). Waiters notice and re-create it, so exclusion is preserved. On
    /// platforms where a waiter cannot tell (neither Unix nor Windows) the file is kept.
    pub fn unlink(&self) {
        if cfg!(any(unix, windows)) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Closing the descriptor releases the lock too; unlocking first makes the release
            // independent of any other handle to the same file description.
            let _ = FileExt::unlock(&file);
        }
    }
}

fn keyed_mutex(path: &Path) -> Arc<KeyedMutex> {
    let mut map = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = map.get(path).and_then(Weak::upgrade) {
        return m;
    }
    // Forget entries whose locks are gone so the map does not grow without bound.
    map.retain(|_, w| w.strong_count() > 0);
    let m = Arc::new(KeyedMutex::new(()));
    map.insert(path.to_path_buf(), Arc::downgrade(&m));
    m
}

/// Absolute form of `path` without requiring it to exist (the parent must exist).
fn absolute_key(path: &Path) -> PathBuf {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    match (parent.map(std::fs::canonicalize), path.file_name()) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// Longest label recorded or reported for a holder.
const MAX_LABEL: usize = 32;

/// Keeps the characters of a file name that are safe to show, up to [`MAX_LABEL`].
fn sanitize_label(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._+-".contains(*c))
        .take(MAX_LABEL)
        .collect()
}

/// This process's label: the file name of its executable.
fn process_label() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| {
            std::env::args_os().next().and_then(|a| {
                Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
        })
        .unwrap_or_default();
    match sanitize_label(&exe) {
        l if l.is_empty() => "unknown".to_owned(),
        l => l,
    }
}

/// What this process records in a lock file: `pid <pid> (<label>)`, nothing else.
fn holder_description() -> String {
    format!("pid {} ({})", std::process::id(), process_label())
}

/// Reads the holder recorded in a lock file and reports it as `pid <pid> (<label>)`. Only
/// the start of the file is read, and only the pid and a sanitised label are kept, so a
/// file from an older version (which recorded the command line) or from anyone else
/// reports nothing more.
fn read_holder(path: &Path) -> Option<String> {
    let mut buf = Vec::new();
    File::open(path)
        .ok()?
        .take(128)
        .read_to_end(&mut buf)
        .ok()?;
    parse_holder(&String::from_utf8_lossy(&buf))
}

fn parse_holder(record: &str) -> Option<String> {
    let rest = record.trim_start().strip_prefix("pid ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let pid: u32 = digits.parse().ok()?;
    let label = rest[digits.len()..]
        .strip_prefix(" (")
        .and_then(|l| l.split_once(')'))
        .map(|(l, _)| sanitize_label(l))
        .filter(|l| !l.is_empty());
    Some(match label {
        Some(l) => format!("pid {pid} ({l})"),
        None => format!("pid {pid}"),
    })
}

/// Takes an exclusive lock on `path` (created if missing, with its parent directory).
///
/// Tries first; on contention sends [`ProgressEvent::Waiting`] with the holder and waits,
/// up to `timeout` in total, then fails with [`Error::LockTimeout`]. The returned guard
/// releases both lock layers when dropped. Callers must re-check whatever state they are
/// about to create after this returns: the previous holder probably just created it.
pub async fn lock_exclusive(
    path: &Path,
    timeout: Duration,
    progress: &SharedProgress,
) -> Result<LockGuard> {
    let start = Instant::now();
    // A caller may pass `Duration::MAX` to mean "wait forever"; a century is that, and
    // unlike the sum it cannot overflow.
    let deadline = start
        .checked_add(timeout)
        .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600));
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ctx("create directory", dir)?;
    }
    let key = absolute_key(path);
    let mutex = keyed_mutex(&key);
    let in_process = match mutex.clone().try_lock_owned() {
        Ok(g) => g,
        Err(_) => {
            progress.event(ProgressEvent::Waiting {
                path: path.to_path_buf(),
                holder: Some(format!(
                    "another task in this process (pid {})",
                    std::process::id()
                )),
            });
            match tokio::time::timeout_at(deadline, mutex.lock_owned()).await {
                Ok(g) => g,
                Err(_) => {
                    return Err(Error::LockTimeout {
                        path: path.to_path_buf(),
                        holder: read_holder(path),
                        waited: start.elapsed(),
                    });
                }
            }
        }
    };

    let mut announced = false;
    let mut pause = Duration::from_millis(5);
    let file = loop {
        let file = open_lock_file(path)?;
        match FileExt::try_lock(&file) {
            // The previous holder may have unlinked the file (removing its entry) after we
            // opened it; a lock on an unlinked file excludes nobody, so open it again.
            Ok(()) if still_linked(&file, path) => break file,
            Ok(()) => continue,
            Err(TryLockError::WouldBlock) => {
                if !announced {
                    announced = true;
                    progress.event(ProgressEvent::Waiting {
                        path: path.to_path_buf(),
                        holder: read_holder(path),
                    });
                }
                if Instant::now() + pause > deadline {
                    return Err(Error::LockTimeout {
                        path: path.to_path_buf(),
                        holder: read_holder(path),
                        waited: start.elapsed(),
                    });
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_POLL);
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
    };
    write_holder(&file);
    Ok(LockGuard {
        path: path.to_path_buf(),
        file: Some(file),
        _in_process: in_process,
    })
}

/// Blocking variant of [`lock_exclusive`] for synchronous callers such as build scripts.
///
/// Only the file layer is taken, so it must not be mixed with async callers of the same
/// path inside one process.
pub fn lock_exclusive_blocking(path: &Path, timeout: Duration) -> Result<FileLockGuard> {
    let start = std::time::Instant::now();
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ctx("create directory", dir)?;
    }
    let mut pause = Duration::from_millis(5);
    let mut wait = || {
        if start.elapsed() + pause > timeout {
            return Err(Error::LockTimeout {
                path: path.to_path_buf(),
                holder: read_holder(path),
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_POLL);
        Ok(())
    };
    let file = loop {
        let file = match open_lock_file(path) {
            Ok(file) => file,
            // A lock file its holder unlinked (see `LockGuard::unlink`) cannot be opened on
            // Windows until the holder closes it: busy, as if held.
            Err(Error::Io { ref source, .. })
                if cfg!(windows) && source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                wait()?;
                continue;
            }
            Err(e) => return Err(e),
        };
        match FileExt::try_lock(&file) {
            Ok(()) if still_linked(&file, path) => break file,
            Ok(()) => continue,
            Err(TryLockError::WouldBlock) => wait()?,
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
    };
    write_holder(&file);
    Ok(FileLockGuard { file: Some(file) })
}

/// Who holds the lock at `path` right now, without waiting: `None` when it is free (or
/// there is no lock file), else the recorded holder (or `"unknown holder"`).
pub(crate) fn current_holder(path: &Path) -> Option<String> {
    let file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    match FileExt::try_lock(&file) {
        Ok(()) => {
            let _ = FileExt::unlock(&file);
            None
        }
        Err(_) => Some(read_holder(path).unwrap_or_else(|| "unknown holder".to_owned())),
    }
}

/// A file lock taken by [`lock_exclusive_blocking`]; released on drop.
#[derive(Debug)]
pub struct FileLockGuard {
    file: Option<File>,
}

impl Drop for FileLockGuard {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            let _ = FileExt::unlock(&file);
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    // Only where the file is created; an existing lock file keeps its mode.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path).ctx("open lock file", path)
}

/// Whether `file` is still the file at `path` (it was not unlinked or replaced). Windows
/// lets a file open elsewhere be deleted too (std opens with FILE_SHARE_DELETE), so the
/// same race exists there.
fn still_linked(file: &File, path: &Path) -> bool {
    if cfg!(not(any(unix, windows))) {
        return true;
    }
    File::open(path).is_ok_and(|at_path| same_file(file, &at_path))
}

/// Whether two open files are one file: the same device and inode on Unix, the same
/// volume and file index on Windows (`false` where neither can be read).
pub fn same_file(a: &File, b: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (a.metadata(), b.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(windows)]
    {
        matches!((windows_file_id(a), windows_file_id(b)), (Some(x), Some(y)) if x == y)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (a, b);
        false
    }
}

/// The volume serial number and file index (high, low) of an open file: what tells two
/// files apart on Windows, as device and inode do on Unix.
#[cfg(windows)]
pub(crate) fn windows_file_id(file: &File) -> Option<(u32, u32, u32)> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{
        BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle,
    };
    // SAFETY: an all-zero `BY_HANDLE_FILE_INFORMATION` is a valid value of the plain record.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the handle stays open for the call and `info` is writable.
    let ok = unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) };
    (ok != 0).then_some((
        info.dwVolumeSerialNumber,
        info.nFileIndexHigh,
        info.nFileIndexLow,
    ))
}

fn write_holder(mut file: &File) {
    // Advisory only: failing to record the holder must not fail the lock.
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.write_all(holder_description().as_bytes());
    let _ = file.flush();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn an_unbounded_timeout_means_wait_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forever.lock");
        let guard = lock_exclusive(&path, Duration::MAX, &crate::no_progress())
            .await
            .unwrap();
        drop(guard);
    }

    #[tokio::test]
    async fn second_locker_waits_and_reports_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let progress: SharedProgress = Arc::new(move |e: ProgressEvent| {
            ev.lock().unwrap().push(e);
        });
        let first = lock_exclusive(&path, Duration::from_secs(5), &progress)
            .await
            .unwrap();
        let err = lock_exclusive(&path, Duration::from_millis(50), &progress)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
        drop(first);
        let _again = lock_exclusive(&path, Duration::from_secs(5), &progress)
            .await
            .unwrap();
        let waits = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, ProgressEvent::Waiting { .. }))
            .count();
        assert_eq!(waits, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_are_mutually_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("y.lock"));
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..8 {
            let (path, inside, max) = (path.clone(), inside.clone(), max.clone());
            handles.push(tokio::spawn(async move {
                let p = crate::progress::no_progress();
                let _g = lock_exclusive(&path, Duration::from_secs(10), &p)
                    .await
                    .unwrap();
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_unlinked_lock_file_is_detected_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.lock");
        // A waiter that opened the file before the holder unlinked it...
        let early = open_lock_file(&path).unwrap();
        assert!(still_linked(&early, &path));
        let holder = lock_exclusive_blocking(&path, Duration::from_secs(1)).unwrap();
        std::fs::remove_file(&path).unwrap();
        drop(holder);
        // ...would win a lock that excludes nobody, so it must notice and start over.
        FileExt::try_lock(&early).unwrap();
        assert!(!still_linked(&early, &path));
        let fresh = lock_exclusive_blocking(&path, Duration::from_secs(1)).unwrap();
        assert!(path.exists());
        let err = lock_exclusive_blocking(&path, Duration::from_millis(20)).unwrap_err();
        assert!(matches!(err, Error::LockTimeout { .. }));
        drop(fresh);
    }

    #[test]
    fn the_lock_file_holds_only_pid_and_label_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        let _g = lock_exclusive_blocking(&path, Duration::from_secs(1)).unwrap();
        let record = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            record,
            format!("pid {} ({})", std::process::id(), process_label())
        );
        assert!(record.len() <= "pid 4294967295 ()".len() + MAX_LABEL);
        // The test harness runs with arguments (filters, flags); none may be recorded.
        for arg in std::env::args().skip(1) {
            assert!(!record.contains(&arg), "{arg:?} in {record:?}");
        }
        assert_eq!(read_holder(&path).unwrap(), record);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn recorded_holders_are_reduced_to_pid_and_label() {
        let cases = [
            ("pid 42 (lmcpp)", Some("pid 42 (lmcpp)")),
            (
                "pid 42: /usr/bin/lmcpp serve --api-key s3cret -m /home/u/x.gguf",
                Some("pid 42"),
            ),
            ("pid 7 (a b/c;$(rm -rf ~))", Some("pid 7 (abcrm-rf)")),
            (&"x".repeat(500), None),
            ("pid 9 (\u{1b}[2J)", Some("pid 9 (2J)")),
            ("pid x (lmcpp)", None),
            ("", None),
            ("garbage", None),
        ];
        for (record, want) in cases {
            assert_eq!(parse_holder(record).as_deref(), want, "{record:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.lock");
        let long = format!("pid 5 ({})", "x".repeat(10_000));
        std::fs::write(&path, long).unwrap();
        // Only the start is read; a label cut off there is dropped.
        assert_eq!(read_holder(&path).unwrap(), "pid 5");
    }

    #[test]
    fn file_lock_excludes_second_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.lock");
        let g = lock_exclusive_blocking(&path, Duration::from_secs(1)).unwrap();
        assert!(
            read_holder(&path)
                .unwrap()
                .contains(&std::process::id().to_string())
        );
        let err = lock_exclusive_blocking(&path, Duration::from_millis(20)).unwrap_err();
        assert!(matches!(
            err,
            Error::LockTimeout {
                holder: Some(_),
                ..
            }
        ));
        assert!(current_holder(&path).unwrap().starts_with("pid "));
        drop(g);
        assert_eq!(current_holder(&path), None);
        lock_exclusive_blocking(&path, Duration::from_millis(20)).unwrap();
    }
}
