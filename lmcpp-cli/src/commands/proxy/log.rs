//! The proxy's own log: what a multi-model `lmcpp serve` says about the proxy and its
//! models (where it listens, each start, ready or failed, each stop or death of a model
//! server, its own stop), on stderr and in the log file its registry record names, so
//! `lmcpp logs <id>` shows the same in the foreground as with `--detach`.

use std::fmt::Display;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use lmcpp::server::{ModelEvent, ModelEventKind, StopReason};
use tokio::sync::broadcast::{
    Receiver,
    error::{RecvError, TryRecvError},
};

use crate::commands::ctx::human_size;

/// Lines for people on stderr, and the same lines in the proxy's log file.
pub(crate) struct ProxyLog {
    /// `None` when stderr is the log already (a detached proxy's output is its log).
    file: Option<Mutex<File>>,
}

impl ProxyLog {
    /// Appends to the log at `path`, created if needed, unless stderr goes there already.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the proxy's log {}", path.display()))?;
        let file = (!stderr_is(&file)).then(|| Mutex::new(file));
        Ok(Self { file })
    }

    /// One line: `lmcpp: <text>` in the log and on stderr (while there is one).
    pub(crate) fn line(&self, text: impl Display) {
        if let Some(file) = &self.file
            && let Ok(mut file) = file.lock()
        {
            // A log that cannot be written must not stop the proxy; stderr has the line.
            let _ = writeln!(file, "lmcpp: {text}");
        }
        say!("lmcpp: {text}");
    }
}

/// Whether this process's stderr is `file`.
fn stderr_is(file: &File) -> bool {
    // A duplicate of stderr's descriptor (or handle), so that it is not closed afterwards.
    #[cfg(unix)]
    let stderr = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned();
    #[cfg(windows)]
    let stderr = std::os::windows::io::AsHandle::as_handle(&std::io::stderr()).try_clone_to_owned();
    stderr
        .map(File::from)
        .is_ok_and(|stderr| lmcpp::toolchain::same_file(&stderr, file))
}

/// Logs what happens to the models outside a launch, from the proxy's events as they
/// come: a server stopped (with the exact reason) or dead, a start refused for lack of
/// room, and how many events were missed when this fell behind. Starts, ready servers and
/// failed starts are logged by the launch itself ([`Launch`](lmcpp::server::Launch), with
/// the model's reference), so their events are not. Never returns; dropped when the
/// proxy is to stop.
pub(crate) async fn follow(
    log: &ProxyLog,
    events: &mut Receiver<ModelEvent>,
) -> std::convert::Infallible {
    loop {
        match events.recv().await {
            Ok(event) => write(log, &event),
            Err(RecvError::Lagged(missed)) => log.line(lagged(missed)),
            // Only once the proxy is gone, which this process does after following.
            Err(RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// Runs the proxy's `stop` while logging its events (each model server stopped because
/// the proxy stops), then those sent by the time it returned.
pub(crate) async fn while_stopping<T>(
    log: &ProxyLog,
    events: &mut Receiver<ModelEvent>,
    stop: impl Future<Output = T>,
) -> T {
    let done = tokio::select! {
        done = stop => done,
        never = follow(log, events) => match never {},
    };
    loop {
        match events.try_recv() {
            Ok(event) => write(log, &event),
            Err(TryRecvError::Lagged(missed)) => log.line(lagged(missed)),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return done,
        }
    }
}

/// Writes the line for `event`, if it is this log's to write.
fn write(log: &ProxyLog, event: &ModelEvent) {
    if let Some(line) = line(event) {
        log.line(line);
    }
}

/// The line for events a receiver that fell behind lost.
fn lagged(missed: u64) -> String {
    let events = if missed == 1 { "event" } else { "events" };
    format!(
        "missed {missed} {events} about the models (this log fell behind); `lmcpp ps` shows their state now"
    )
}

/// The line for one event, if it is this log's to write.
pub(crate) fn line(event: &ModelEvent) -> Option<String> {
    let alias = &event.alias;
    let server = match (&event.server_id, event.pid) {
        (Some(id), _) => format!("server {id}"),
        (None, Some(pid)) => format!("server with pid {pid}"),
        (None, None) => "server".to_owned(),
    };
    Some(match &event.kind {
        ModelEventKind::Stopped {
            reason: StopReason::ProxyStopping,
        } if event.server_id.is_none() && event.pid.is_none() => {
            format!("model {alias}: start abandoned (the proxy is stopping)")
        }
        ModelEventKind::Stopped {
            reason: reason @ (StopReason::Removed | StopReason::Replaced),
        } if event.server_id.is_none() && event.pid.is_none() => {
            let why = match reason {
                StopReason::Removed => "the reload removed the model",
                _ => "the reload changed how it starts; the next request starts the new one",
            };
            format!("model {alias}: start abandoned ({why})")
        }
        ModelEventKind::Stopped { reason } => {
            let why = match reason {
                StopReason::KeepAlive { keep_alive_ms } => {
                    format!("idle for its keep-alive of {}", millis(*keep_alive_ms))
                }
                StopReason::Evicted { for_model } => {
                    format!("evicted to make room for {for_model} in the memory budget")
                }
                StopReason::Unloaded => "unloaded by request".to_owned(),
                StopReason::ProxyStopping => "the proxy is stopping".to_owned(),
                StopReason::Removed => {
                    "the reload removed the model; its requests had finished".to_owned()
                }
                StopReason::Replaced => "the reload changed how it starts; its requests had \
                                         finished, and the next request starts the new one"
                    .to_owned(),
                _ => "for a reason this lmcpp does not know".to_owned(),
            };
            format!("model {alias}: {server} stopped ({why})")
        }
        ModelEventKind::Died { exit, .. } => {
            format!("model {alias}: its {server} died ({exit}); the next request starts it again")
        }
        ModelEventKind::NoRoom {
            estimate_bytes,
            budget_bytes,
        } => format!(
            "model {alias}: not started: it needs an estimated {} and the memory budget of {} is held by models that cannot be stopped now (busy, pinned or loading)",
            human_size(*estimate_bytes),
            human_size(*budget_bytes)
        ),
        // The launch logs these, with the model's reference; the reload logs what it
        // changed in one line.
        _ => return None,
    })
}

/// A keep-alive as it was given: `60s`, or `1500ms` when not whole seconds.
fn millis(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// An event about model `a` (server `s1`, pid 7 where `server`), from its JSON form.
    fn event(server: bool, kind: serde_json::Value) -> ModelEvent {
        serde_json::from_value(serde_json::json!({
            "alias": "a", "at": 1_700_000_000_000_u64,
            "server_id": server.then_some("s1"), "pid": server.then_some(7),
            "kind": kind,
        }))
        .unwrap()
    }

    #[test]
    fn each_event_is_logged_with_its_exact_reason_unless_the_launch_logs_it() {
        use serde_json::json;
        let stopped = |reason: serde_json::Value| json!({"type": "stopped", "reason": reason});
        let table: &[(bool, serde_json::Value, Option<&str>)] = &[
            (
                true,
                stopped(json!({"type": "keep_alive", "keep_alive_ms": 60_000})),
                Some("model a: server s1 stopped (idle for its keep-alive of 60s)"),
            ),
            (
                true,
                stopped(json!({"type": "keep_alive", "keep_alive_ms": 1_500})),
                Some("model a: server s1 stopped (idle for its keep-alive of 1500ms)"),
            ),
            (
                true,
                stopped(json!({"type": "evicted", "for_model": "b"})),
                Some(
                    "model a: server s1 stopped (evicted to make room for b in the memory budget)",
                ),
            ),
            (
                true,
                stopped(json!({"type": "unloaded"})),
                Some("model a: server s1 stopped (unloaded by request)"),
            ),
            (
                true,
                stopped(json!({"type": "proxy_stopping"})),
                Some("model a: server s1 stopped (the proxy is stopping)"),
            ),
            (
                false,
                stopped(json!({"type": "proxy_stopping"})),
                Some("model a: start abandoned (the proxy is stopping)"),
            ),
            (
                true,
                json!({"type": "died", "exit": "signal: 9 (SIGKILL)"}),
                Some(
                    "model a: its server s1 died (signal: 9 (SIGKILL)); the next request starts it again",
                ),
            ),
            (
                false,
                json!({"type": "no_room", "estimate_bytes": 3_u64 << 30, "budget_bytes": 4_u64 << 30}),
                Some(
                    "model a: not started: it needs an estimated 3.0 GiB and the memory budget of 4.0 GiB is held by models that cannot be stopped now (busy, pinned or loading)",
                ),
            ),
            (
                true,
                stopped(json!({"type": "removed"})),
                Some(
                    "model a: server s1 stopped (the reload removed the model; its requests had finished)",
                ),
            ),
            (
                true,
                stopped(json!({"type": "replaced"})),
                Some(
                    "model a: server s1 stopped (the reload changed how it starts; its requests had finished, and the next request starts the new one)",
                ),
            ),
            (
                false,
                stopped(json!({"type": "removed"})),
                Some("model a: start abandoned (the reload removed the model)"),
            ),
            // The reload logs what it changed in one line.
            (false, json!({"type": "added"}), None),
            (false, json!({"type": "replaced"}), None),
            (false, json!({"type": "reloaded"}), None),
            // The launch logs these, with the model's reference: not twice.
            (false, json!({"type": "starting"}), None),
            (true, json!({"type": "ready"}), None),
            (
                false,
                json!({"type": "start_failed", "message": "no such model"}),
                None,
            ),
        ];
        for (server, kind, want) in table {
            let got = line(&event(*server, kind.clone()));
            assert_eq!(got.as_deref(), *want, "{kind}");
        }
    }

    #[tokio::test]
    async fn events_are_logged_in_order_and_a_lag_says_how_many_were_missed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let log = ProxyLog::open(&path).unwrap();
        let (tx, mut rx) = tokio::sync::broadcast::channel(2);
        let unloaded = serde_json::json!({"type": "stopped", "reason": {"type": "unloaded"}});
        for exit in ["1", "2", "3"] {
            let died = serde_json::json!({"type": "died", "exit": exit});
            tx.send(event(true, died)).unwrap();
        }
        // The stop runs while the log follows, and what it sent is logged before it returns.
        let stop = async {
            tokio::task::yield_now().await;
            tx.send(event(true, unloaded)).unwrap();
            "done"
        };
        assert_eq!(while_stopping(&log, &mut rx, stop).await, "done");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "lmcpp: missed 1 event about the models (this log fell behind); `lmcpp ps` shows their state now",
                "lmcpp: model a: its server s1 died (2); the next request starts it again",
                "lmcpp: model a: its server s1 died (3); the next request starts it again",
                "lmcpp: model a: server s1 stopped (unloaded by request)",
            ]
        );
    }

    #[test]
    fn lines_go_to_the_file_unless_stderr_is_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let log = ProxyLog::open(&path).unwrap();
        log.line("one");
        log.line(format_args!("model {}: two", "a"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "lmcpp: one\nlmcpp: model a: two\n"
        );
        // Opened again it appends.
        ProxyLog::open(&path).unwrap().line("three");
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("two\nlmcpp: three\n")
        );
    }
}
