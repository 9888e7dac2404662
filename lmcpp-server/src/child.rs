//! A spawned child: exit notification without polling, and signals that can never hit a
//! recycled pid.
//!
//! A waiter thread blocks in `waitid(WEXITED | WNOWAIT)`, which reports the exit but
//! leaves the child a zombie, so its pid cannot be reused yet. It then reaps the child
//! under the same lock that every signal takes, and signals are only sent while the child
//! is unreaped. The exit status is published both to async waiters (a `watch` channel)
//! and to blocking ones (a condvar, for `Drop`).

use std::{
    os::unix::process::ExitStatusExt,
    process::{Child, ExitStatus},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// How long to wait for the kernel to report the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

struct State {
    child: Child,
    status: Option<ExitStatus>,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    exited: watch::Sender<Option<ExitStatus>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to a child process started by [`crate::spawn::spawn`].
#[derive(Clone)]
pub(crate) struct ChildProc {
    pid: u32,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ChildProc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProc")
            .field("pid", &self.pid)
            .field("status", &self.status())
            .finish()
    }
}

impl ChildProc {
    /// Takes ownership of `child` and starts its waiter thread.
    pub(crate) fn new(child: Child) -> Self {
        let pid = child.id();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                child,
                status: None,
            }),
            cond: Condvar::new(),
            exited: watch::channel(None).0,
        });
        let waiter = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("lmcpp-wait-{pid}"))
            .spawn(move || wait_and_reap(pid, &waiter));
        if let Err(e) = spawned {
            // Without a waiter nobody would notice the exit; fall back to reaping on
            // demand in `status()` (readiness then polls).
            tracing::warn!(pid, error = %e, "cannot start waiter thread");
        }
        Self { pid, shared }
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status, once the child has exited and been reaped.
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        self.shared.lock().status
    }

    /// Resolves when the child has exited.
    pub(crate) async fn exited(&self) -> ExitStatus {
        let mut rx = self.shared.exited.subscribe();
        loop {
            if let Some(status) = *rx.borrow_and_update() {
                return status;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `shared`, which we hold, so this cannot happen; be
                // safe anyway and fall back to polling.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Sends `signal` to the child's process group while the child is unreaped. Returns
    /// false when the child has already exited.
    pub(crate) fn signal(&self, signal: libc::c_int) -> bool {
        let state = self.shared.lock();
        if state.status.is_some() {
            return false;
        }
        let Ok(pgid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        // SAFETY: the child is unreaped (we hold the lock the reaper needs), so the pid
        // and the process group it leads are still ours.
        unsafe { libc::kill(-pgid, signal) == 0 || libc::kill(pgid, signal) == 0 }
    }

    /// SIGTERM, up to `grace` for a clean exit, then SIGKILL; always reaps.
    pub(crate) async fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        if self.signal(libc::SIGTERM)
            && let Ok(status) = tokio::time::timeout(grace, self.exited()).await
        {
            return Some(status);
        }
        self.signal(libc::SIGKILL);
        tokio::time::timeout(KILL_WAIT, self.exited()).await.ok()
    }

    /// Blocking version of [`ChildProc::stop`], for `Drop`.
    pub(crate) fn stop_blocking(&self, grace: Duration) -> Option<ExitStatus> {
        if self.signal(libc::SIGTERM)
            && let Some(status) = self.wait_blocking(grace)
        {
            return Some(status);
        }
        self.signal(libc::SIGKILL);
        self.wait_blocking(KILL_WAIT)
    }

    fn wait_blocking(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.status.is_some() {
                return state.status;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .shared
                .cond
                .wait_timeout(state, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// Body of the waiter thread.
fn wait_and_reap(pid: u32, shared: &Shared) {
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
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    let mut state = shared.lock();
    let status = match state.child.wait() {
        Ok(status) => status,
        Err(e) => {
            // Someone else reaped it (e.g. SIGCHLD set to SIG_IGN). It is gone either way.
            tracing::warn!(pid, error = %e, "cannot reap child");
            ExitStatus::from_raw(0)
        }
    };
    state.status = Some(status);
    drop(state);
    shared.cond.notify_all();
    shared.exited.send_replace(Some(status));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sleeper() -> ChildProc {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        ChildProc::new(child)
    }
    use std::os::unix::process::CommandExt;

    #[tokio::test]
    async fn stop_terminates_and_reaps() {
        let child = sleeper();
        assert!(child.status().is_none());
        let status = child.stop(Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(!child.signal(libc::SIGTERM), "no signal after reaping");
    }

    #[test]
    fn stop_blocking_escalates_to_sigkill() {
        // A shell that ignores SIGTERM needs the SIGKILL.
        let child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut child = child;
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut buf).unwrap();
        let child = ChildProc::new(child);
        let status = child.stop_blocking(Duration::from_millis(200)).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
