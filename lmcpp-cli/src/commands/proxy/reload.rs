//! `lmcpp serve --config` applies its file again without a restart: on SIGHUP, and with
//! `--watch` whenever the file's content changes. The file is read and checked as at
//! start-up; a file that does not read is refused with its line and key and the running
//! models stay as they are. Otherwise the proxy takes the new models (`Proxy::reload`):
//! new ones appear, removed ones stop once their requests have finished, changed ones
//! restart at their next request, and settings such as a keep-alive apply at once.
//! What only a restart can change (transport, port, API key, the proxy's timeouts) is
//! named in the log and left as it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use lmcpp::server::{ModelEvent, Proxy, ProxyOptions, ReloadReport};
use tokio::sync::broadcast::Receiver;

use super::config::ServePlan;
use super::log::ProxyLog;
use super::{memory_budget, plan, proxy_builder, shown_model};
use crate::cli::ServeArgs;
use crate::commands::ctx::Ctx;
use crate::exit::BadInput;
use crate::shutdown::{HANGUP, Shutdown};

/// How often `--watch` looks at the file.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// What a reload needs of the running `lmcpp serve`.
pub(super) struct Reloader<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) args: &'a ServeArgs,
    pub(super) log: &'a Arc<ProxyLog>,
    pub(super) kv_root: &'a Path,
    /// The options the proxy was started with (its runtime dir decides where its model
    /// servers run, so it is part of how each starts).
    pub(super) options: ProxyOptions,
    /// The plan running now.
    pub(super) plan: ServePlan,
}

impl Reloader<'_> {
    /// Follows the proxy's events into the log until a signal stops it, applying the
    /// config again on SIGHUP (unless that means stop, see [`hangup_stops`]) and, with
    /// `--watch`, when the file changes. Returns the signal that stops it.
    pub(super) async fn serve(
        &mut self,
        proxy: &mut Proxy,
        shutdown: &mut Shutdown,
        events: &mut Receiver<ModelEvent>,
        had_terminal: bool,
    ) -> &'static str {
        let log = self.log;
        let detached = self.options.detached;
        let mut watch = self
            .args
            .config
            .as_deref()
            .filter(|_| self.args.watch)
            .map(ConfigWatch::new);
        loop {
            let changed = async {
                match &mut watch {
                    Some(watch) => watch.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                signal = shutdown.recv() => {
                    if signal != HANGUP || hangup_stops(self.args, detached, had_terminal) {
                        return signal;
                    }
                    self.reload(proxy, signal).await;
                }
                () = changed => self.reload(proxy, "the config file changed").await,
                never = super::log::follow(log, events) => match never {},
            }
        }
    }

    /// Reads the config file again and applies it to `proxy`, saying in the log what
    /// changed, or why nothing did. `why` says what asked for it.
    pub(super) async fn reload(&mut self, proxy: &mut Proxy, why: &str) {
        let Some(path) = &self.args.config else {
            return;
        };
        self.log
            .line(format_args!("{why}: reading {} again", path.display()));
        match self.apply(proxy).await {
            Ok(report) => self.log.line(summary(&report)),
            Err(e) => self.log.line(format_args!(
                "reload refused: {e:#}; the models stay as they were"
            )),
        }
    }

    async fn apply(&mut self, proxy: &mut Proxy) -> Result<ReloadReport> {
        let plan = plan(self.args)?;
        let budget = memory_budget(&plan)?;
        let fixed = restart_only(&self.plan, &plan);
        let mut options = self.options.clone();
        options.memory_budget = budget;
        let prepared = proxy_builder(self.ctx, self.args, &plan, options, self.kv_root, self.log)
            .await?
            .prepare()
            .await?;
        let added: Vec<String> = plan
            .models
            .iter()
            .zip(prepared.estimates())
            .filter(|(m, _)| !self.plan.models.iter().any(|old| old.alias == m.alias))
            .map(|(m, estimate)| shown_model(m, estimate))
            .collect();
        let report = prepared.reload(proxy).await?;
        for line in added {
            self.log.line(format_args!("  {line}"));
        }
        if !fixed.is_empty() {
            self.log.line(format_args!(
                "{} changed in the file; only a restart of the proxy applies {}",
                fixed.join(", "),
                if fixed.len() == 1 { "it" } else { "them" }
            ));
        }
        self.plan = plan;
        Ok(report)
    }
}

/// The keys of the file that a running proxy cannot change, where `new` differs from
/// `old`.
fn restart_only(old: &ServePlan, new: &ServePlan) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.http != new.http {
        keys.push("transport");
    }
    if old.port != new.port {
        keys.push("port");
    }
    if old.api_key_env != new.api_key_env {
        keys.push("api_key_env");
    }
    if old.load_timeout != new.load_timeout {
        keys.push("load_timeout");
    }
    if old.max_pass_over != new.max_pass_over {
        keys.push("max_pass_over");
    }
    keys
}

/// The log line of a reload that was applied.
fn summary(report: &ReloadReport) -> String {
    let parts: Vec<String> = [
        ("added", &report.added, ""),
        (
            "removed",
            &report.removed,
            " (each stops once its requests have finished)",
        ),
        (
            "changed",
            &report.replaced,
            " (each restarts at its next request)",
        ),
        ("updated in place", &report.updated, ""),
    ]
    .into_iter()
    .filter(|(_, aliases, _)| !aliases.is_empty())
    .map(|(what, aliases, then)| format!("{what} {}{then}", aliases.join(", ")))
    .collect();
    if parts.is_empty() {
        "reloaded: no model changed".to_owned()
    } else {
        format!("reloaded: {}", parts.join("; "))
    }
}

/// Whether a SIGHUP stops the proxy rather than reloading its config: without a config
/// it stops, as for a closed terminal; with one it reloads, unless the proxy runs in
/// the foreground of a terminal that has gone away (closing the terminal still stops
/// it). A detached proxy always reloads: its SIGHUP is sent on purpose.
fn hangup_stops(args: &ServeArgs, detached: bool, had_terminal: bool) -> bool {
    args.config.is_none() || (!detached && had_terminal && !has_terminal())
}

/// Whether the process still has the terminal it may have started in: `false` once a
/// terminal it had has hung up (its SIGHUP then means "stop", not "reload"), and on
/// systems without `/dev/tty`.
pub(super) fn has_terminal() -> bool {
    std::fs::File::open("/dev/tty").is_ok()
}

/// Watches the config file for `--watch`: resolves when its content differs from what
/// was last seen, once it has stopped changing (an editor's save in several writes, or
/// a rename over it, is seen once, whole). Cancel-safe: dropped between looks, it
/// forgets nothing.
pub(super) struct ConfigWatch {
    path: PathBuf,
    /// Size and modification time at the last look.
    stamp: Option<(u64, SystemTime)>,
    /// Whether the stamp changed at the last look (the file may still be being written).
    unsettled: bool,
    /// The content last seen whole.
    content: Option<Vec<u8>>,
}

impl ConfigWatch {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            stamp: stamp(path),
            unsettled: false,
            content: read_text(path).ok(),
        }
    }

    /// Resolves when the file's content has changed and held still for one look.
    pub(super) async fn changed(&mut self) {
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let now = stamp(&self.path);
            if now != self.stamp {
                self.stamp = now;
                self.unsettled = true;
                continue;
            }
            if !std::mem::take(&mut self.unsettled) {
                continue;
            }
            // Gone (between an editor's delete and write): wait for it to come back. What is
            // not a file of a config's size is not read here (the reload says why).
            let Ok(content) = read_text(&self.path) else {
                continue;
            };
            if self.content.as_ref() != Some(&content) {
                self.content = Some(content);
                return;
            }
        }
    }
}

/// The config file's bytes as the reload would read them.
fn read_text(path: &Path) -> Result<Vec<u8>, BadInput> {
    super::config::read_file(path).map(String::into_bytes)
}

/// A file's size and modification time; `None` when it cannot be read.
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_summary_names_each_change_and_what_follows_from_it() {
        let mut report = ReloadReport::default();
        assert_eq!(summary(&report), "reloaded: no model changed");
        report.added = vec!["c".into()];
        report.removed = vec!["a".into(), "d".into()];
        report.replaced = vec!["b".into()];
        report.updated = vec!["e".into()];
        report.unchanged = vec!["f".into()];
        assert_eq!(
            summary(&report),
            "reloaded: added c; removed a, d (each stops once its requests have finished); \
             changed b (each restarts at its next request); updated in place e"
        );
    }

    #[tokio::test]
    async fn a_watched_file_fires_once_per_new_content_and_not_for_a_touch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lmcpp.toml");
        std::fs::write(&path, "a").unwrap();
        let mut watch = ConfigWatch::new(&path);
        async fn fired(w: &mut ConfigWatch) -> bool {
            tokio::time::timeout(WATCH_EVERY * 8, w.changed())
                .await
                .is_ok()
        }
        // The same content written again (a new modification time) is no change.
        std::fs::write(&path, "a").unwrap();
        assert!(!fired(&mut watch).await);
        // Removed, then written anew with other content: one change.
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(WATCH_EVERY * 2).await;
        std::fs::write(&path, "bb").unwrap();
        assert!(fired(&mut watch).await);
        assert!(!fired(&mut watch).await);
        // Written beside it and renamed over it, as editors save: one change.
        let beside = dir.path().join(".lmcpp.toml.swp");
        std::fs::write(&beside, "ccc").unwrap();
        std::fs::rename(&beside, &path).unwrap();
        assert!(fired(&mut watch).await);
        assert!(!fired(&mut watch).await);
    }
}
