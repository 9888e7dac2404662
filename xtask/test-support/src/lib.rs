//! Test plumbing shared by the workspace's test binaries, benchmarks and `cargo xtask`, kept
//! out of every library's public API (`publish = false`; only dev-dependencies name it).
//!
//! - [`PreparedPaths`]: the record of what `cargo xtask prepare` made (a `llama-server` from
//!   the toolchain's cache, the demo model), one definition for the writer and every reader.
//! - [`Supports`]: what the `llama-server` under test says it supports (its `--help`,
//!   `--version`, the routes it answers), which end-to-end expectations come from.
//! - [`file_url`]: a path as a `file://` URL on every OS.
//! - [`check_class_table`]: an error type's classification table, complete and obeyed.
//! - [`running`] and [`eventually`]: whether a process lives, and polling a condition with a
//!   deadline (state observed, never a sleep as synchronisation).

mod prepared;
mod supports;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lmcpp_types::{Class, Classify};

pub use prepared::{Error, PATHS_ENV, PreparedPaths};
pub use supports::{Supports, is_unknown_route, read_report};

/// The workspace root (this crate lives in `xtask/test-support`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// Reads the prerequisites of the workspace (`$LMCPP_TEST_PATHS`, else the default
/// record), panicking with the command that creates them: a missing record fails the
/// test, it never skips it.
pub fn prepared() -> PreparedPaths {
    PreparedPaths::load(&workspace_root()).unwrap_or_else(|e| panic!("{e}"))
}

/// The `file://` URL of an absolute path: `file:///home/m.gguf`, and on Windows
/// `file:///C:/Users/m.gguf` (the drive after a third slash, forward slashes).
pub fn file_url(path: &Path) -> String {
    let path = path.display().to_string().replace('\\', "/");
    if path.starts_with('/') {
        format!("file://{path}")
    } else {
        format!("file:///{path}")
    }
}

/// Checks an error type's table of examples: every variant (numbered by `ordinal`, a
/// `match` without a catch-all, so a new variant does not compile until it is numbered)
/// has an example, and each example has the class the table says, through
/// [`Classify::class`] and the `is_user_error`/`is_transient` answers.
pub fn check_class_table<E: std::fmt::Debug + Classify>(
    table: &[(E, Class)],
    ordinal: fn(&E) -> usize,
    variants: usize,
) {
    let mut seen: Vec<usize> = table.iter().map(|(e, _)| ordinal(e)).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        (0..variants).collect::<Vec<_>>(),
        "every variant needs an example in the table"
    );
    for (e, expected) in table {
        assert_eq!(e.class(), *expected, "{e:?}");
        assert_eq!(e.is_user_error(), *expected == Class::UserError, "{e:?}");
        assert_eq!(e.is_transient(), *expected == Class::Transient, "{e:?}");
    }
}

/// Whether a process with this pid exists and is not a zombie.
#[cfg(target_os = "linux")]
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Whether a process with this pid exists and is not a zombie (its BSD status).
#[cfg(target_os = "macos")]
pub fn running(pid: u32) -> bool {
    let Ok(pid) = libc::c_int::try_from(pid) else {
        return false;
    };
    // SAFETY: a zeroed `proc_bsdinfo` is a valid value, and the call writes at most
    // `size` bytes into it.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    let wrote =
        unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, (&raw mut info).cast(), size) };
    wrote == size && info.pbi_status != libc::SZOMB
}

/// Whether a process with this pid exists and has not exited (a handle to an exited
/// process that someone still holds keeps its pid, with an exit code).
#[cfg(windows)]
pub fn running(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: plain calls with a pid; the handle, when one is returned, is closed once.
    unsafe {
        let handle = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if handle.is_null() {
            return false;
        }
        let mut code = 0u32;
        let ok = GetExitCodeProcess(handle, &mut code);
        CloseHandle(handle);
        ok != 0 && code == STILL_ACTIVE as u32
    }
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes; whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `request` from `concurrency` tasks until `duration` has passed; requests per second
/// and how many were made. The benchmarks' load loop, the same for every client measured.
pub async fn load<F, Fut>(concurrency: usize, duration: Duration, request: F) -> (f64, u64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let deadline = tokio::time::Instant::now() + duration;
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while tokio::time::Instant::now() < deadline {
                    request().await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await.unwrap_or(0);
    }
    (total as f64 / started.elapsed().as_secs_f64(), total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{manifest}");
    }

    #[test]
    fn this_process_runs_and_a_reaped_child_does_not() {
        assert!(running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!running(pid));
    }

    #[tokio::test]
    async fn load_counts_every_request_of_every_task() {
        let made = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = std::sync::Arc::clone(&made);
        let (rps, n) = load(3, Duration::from_millis(30), move || {
            let counter = std::sync::Arc::clone(&counter);
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert_eq!(n, made.load(std::sync::atomic::Ordering::SeqCst));
        assert!(n >= 3 && rps > 0.0, "{n} {rps}");
    }

    #[tokio::test]
    async fn eventually_reports_both_outcomes() {
        assert!(eventually(Duration::from_millis(50), || true).await);
        assert!(!eventually(Duration::from_millis(20), || false).await);
    }
}
