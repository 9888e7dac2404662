//! The proxy's own log: what a multi-model `lmcpp serve` says about the proxy and its
//! models (where it listens, each start, ready or failed, each stop or death of a model
//! server, its own stop), on stderr and in the log file its registry record names, so
//! `lmcpp logs <id>` shows the same in the foreground as with `--detach`.

use std::fmt::Display;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use lmcpp::server::{ModelState, ModelView};

/// How often the models' states are compared (see [`watch_models`]).
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

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

    /// One line: `lmcpp: <text>` on stderr and in the log.
    pub(crate) fn line(&self, text: impl Display) {
        eprintln!("lmcpp: {text}");
        if let Some(file) = &self.file
            && let Ok(mut file) = file.lock()
        {
            // A log that cannot be written must not stop the proxy; stderr has the line.
            let _ = writeln!(file, "lmcpp: {text}");
        }
    }
}

/// Whether this process's stderr is `file` (same device and inode).
fn stderr_is(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata("/proc/self/fd/2"), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Logs what happens to models outside a start: a ready model's server that stopped
/// (keep-alive, eviction, unload) or died. Starts are logged by the launch itself; the
/// proxy reports no other events, so its model views are compared every
/// [`WATCH_INTERVAL`]. Never returns; dropped when the proxy stops.
pub(crate) async fn watch_models(
    log: &ProxyLog,
    views: impl Fn() -> Vec<ModelView>,
) -> std::convert::Infallible {
    let mut before = views();
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let after = views();
        for line in changes(&before, &after, SystemTime::now()) {
            log.line(line);
        }
        before = after;
    }
}

/// The lines for the models that left the ready state between two looks.
pub(crate) fn changes(before: &[ModelView], after: &[ModelView], now: SystemTime) -> Vec<String> {
    let mut lines = Vec::new();
    for (was, is) in before.iter().zip(after) {
        if was.state != ModelState::Ready || is.state == ModelState::Ready {
            continue;
        }
        let server = was.server_id.as_deref().unwrap_or("?");
        let alias = &is.alias;
        match is.state {
            ModelState::Failed => lines.push(format!(
                "model {alias}: its server {server} died ({}); the next request starts it again",
                is.error.as_deref().unwrap_or("no reason given")
            )),
            ModelState::Stopped => {
                let idle = is
                    .last_used
                    .and_then(|t| now.duration_since(t).ok())
                    .zip(is.keep_alive_secs);
                let why = match idle {
                    Some((idle, keep)) if idle.as_secs() >= keep => {
                        format!("idle for its keep-alive of {keep}s")
                    }
                    _ => "to make room in the memory budget, or unloaded".to_owned(),
                };
                lines.push(format!("model {alias}: server {server} stopped ({why})"));
            }
            _ => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn view(state: ModelState, used_secs_ago: u64, now: SystemTime) -> ModelView {
        let mut v: ModelView = serde_json::from_value(serde_json::json!({
            "alias": "a", "state": "stopped", "estimate_bytes": 0, "last_used": null,
            "pid": null, "server_id": "s1", "in_flight": 0, "keep_alive_secs": 60,
            "pinned": false, "llama_version": null, "error": "exit status 9"
        }))
        .unwrap();
        v.state = state;
        v.last_used = Some(now - Duration::from_secs(used_secs_ago));
        v
    }

    #[test]
    fn leaving_the_ready_state_is_logged_with_its_reason() {
        use ModelState::*;
        let now = SystemTime::now();
        let table: &[(ModelState, ModelState, u64, Option<&str>)] = &[
            (
                Ready,
                Stopped,
                61,
                Some("server s1 stopped (idle for its keep-alive of 60s)"),
            ),
            (Ready, Stopped, 5, Some("server s1 stopped (to make room")),
            (Ready, Failed, 5, Some("its server s1 died (exit status 9)")),
            (Ready, Ready, 5, None),
            (Stopped, Loading, 5, None),
            (Loading, Ready, 5, None),
            (Loading, Failed, 5, None),
        ];
        for (was, is, ago, want) in table {
            let got = changes(&[view(*was, *ago, now)], &[view(*is, *ago, now)], now);
            match want {
                Some(w) => {
                    assert_eq!(got.len(), 1, "{was} -> {is}: {got:?}");
                    assert!(got[0].starts_with("model a: "), "{got:?}");
                    assert!(got[0].contains(w), "{was} -> {is}: {got:?}");
                }
                None => assert!(got.is_empty(), "{was} -> {is}: {got:?}"),
            }
        }
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
