//! A spawned child: exit notification without polling, and signals that can never hit a
//! recycled pid.
//!
//! A waiter thread blocks until the child has exited but is not yet reaped (so its pid
//! cannot be reused yet: a zombie on Unix, an open handle on Windows). It then reaps the
//! child under the same lock that every signal takes, and signals are only sent while the
//! child is unreaped. Once reaped, the child's group is released: whatever the child left
//! running is stopped with it. The exit status is published both to async waiters (a
//! `watch` channel) and to blocking ones (a condvar, for `Drop`).

use std::{
    process::{Child, ExitStatus},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::platform::{self, Group, Stop};

/// How long to wait for the kernel to report the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

struct State {
    child: Child,
    group: Group,
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
    /// Takes ownership of `child` and its group and starts its waiter thread.
    pub(crate) fn new(child: Child, group: Group) -> Self {
        let pid = child.id();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                child,
                group,
                status: None,
            }),
            cond: Condvar::new(),
            exited: watch::channel(None).0,
        });
        let waiter = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("lmcpp-wait-{pid}"))
            .spawn(move || wait_and_reap(&waiter));
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

    /// Sends `stop` to the child's group while the child is unreaped. Returns false when
    /// the child has already exited (or the signal could not be sent).
    pub(crate) fn signal(&self, stop: Stop) -> bool {
        let state = self.shared.lock();
        if state.status.is_some() {
            return false;
        }
        // The child is unreaped (we hold the lock the reaper needs), so its pid and the
        // group it leads are still ours.
        state.group.signal(stop)
    }

    /// Lets the child run on after every handle is gone, until this process ends.
    pub(crate) fn keep_until_exit(&self) {
        self.shared.lock().group.keep_until_exit();
    }

    /// A graceful stop, up to `grace` for a clean exit, then a kill; always reaps.
    pub(crate) async fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        if self.signal(Stop::Graceful)
            && let Ok(status) = tokio::time::timeout(grace, self.exited()).await
        {
            return Some(status);
        }
        self.signal(Stop::Kill);
        tokio::time::timeout(KILL_WAIT, self.exited()).await.ok()
    }

    /// Blocking version of [`ChildProc::stop`], for `Drop`.
    pub(crate) fn stop_blocking(&self, grace: Duration) -> Option<ExitStatus> {
        if self.signal(Stop::Graceful)
            && let Some(status) = self.wait_blocking(grace)
        {
            return Some(status);
        }
        self.signal(Stop::Kill);
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
fn wait_and_reap(shared: &Shared) {
    let watch = platform::ExitWatch::new(&shared.lock().child);
    watch.wait();
    let mut state = shared.lock();
    let status = match state.child.wait() {
        Ok(status) => status,
        Err(e) => {
            // Someone else reaped it (e.g. SIGCHLD set to SIG_IGN). It is gone either way.
            tracing::warn!(pid = state.child.id(), error = %e, "cannot reap child");
            platform::unknown_exit()
        }
    };
    state.group.release();
    state.status = Some(status);
    drop(state);
    shared.cond.notify_all();
    shared.exited.send_replace(Some(status));
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::process::Command;

    /// Starts `cmd` as spawning does: contained, in its own group.
    fn start(mut cmd: Command) -> ChildProc {
        let pending = platform::contain(&mut cmd, false).unwrap();
        let child = cmd.spawn().unwrap();
        let group = pending.adopt(&child).unwrap();
        ChildProc::new(child, group)
    }

    #[tokio::test]
    async fn stop_terminates_and_reaps() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let child = start(cmd);
        assert!(child.status().is_none());
        let status = child.stop(Duration::from_secs(5)).await.unwrap();
        assert_eq!(platform::exit_signal(&status), Some(libc::SIGTERM));
        assert!(!child.signal(Stop::Graceful), "no signal after reaping");
    }

    #[test]
    fn stop_blocking_escalates_to_sigkill() {
        // A shell that ignores SIGTERM needs the SIGKILL.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"])
            .stdout(std::process::Stdio::piped());
        let pending = platform::contain(&mut cmd, false).unwrap();
        let mut child = cmd.spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut buf).unwrap();
        let group = pending.adopt(&child).unwrap();
        let child = ChildProc::new(child, group);
        let status = child.stop_blocking(Duration::from_millis(200)).unwrap();
        assert_eq!(platform::exit_signal(&status), Some(libc::SIGKILL));
    }

    /// What a wrapper script that forks its server (rather than `exec`ing it) leaves
    /// behind is stopped once the wrapper is reaped: the lifeline's watcher kills the
    /// group.
    #[tokio::test]
    async fn the_group_is_stopped_once_the_leader_is_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "sleep 60 & echo $! > {}; exit 0",
            pidfile.display()
        ));
        let child = start(cmd);
        child.exited().await;
        let grandchild: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while platform::alive(grandchild) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !platform::alive(grandchild),
            "the forked sleep outlived its group"
        );
    }
}
