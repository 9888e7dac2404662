//! The registry of running servers: one JSON state file per server in the runtime dir.
//!
//! A state file is only a claim. [`Registry::list`] checks each claim against the kernel:
//! the pid must be alive and, within this boot, still have the start time observed right
//! after spawning (which an `exec` keeps, so wrapped servers stay ours). It deletes the
//! files and sockets of claims whose process is gone, never those of a live pid, and
//! [`Registry::stop`] only ever signals a process whose claim holds.

use std::{
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    endpoint::Endpoint,
    error::{Error, Result},
    platform::{self, Stop, can_verify, default_runtime_dir, private_dir_name},
    runtime::{ensure_private_dir, validate_id},
};

/// What kind of process a registry record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProcessKind {
    /// A `llama-server` (state files written before kinds existed are servers).
    #[default]
    Server,
    /// A ggml `rpc-server` worker; its `endpoint` is the TCP address of its RPC listener
    /// (not HTTP) and its `model` is empty.
    RpcWorker,
    /// An lmcpp multi-model proxy ([`crate::Proxy`]); its `model` is the comma-separated
    /// list of its aliases and its `args` the aliases one by one. Its model servers have
    /// records of their own.
    Proxy,
}

impl std::fmt::Display for ProcessKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Server => "server",
            Self::RpcWorker => "rpc-worker",
            Self::Proxy => "proxy",
        })
    }
}

/// What the registry records about a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServerRecord {
    /// Registry id (12 hex digits).
    pub id: String,
    /// Whether this is a `llama-server` or an `rpc-server` worker.
    #[serde(default)]
    pub kind: ProcessKind,
    /// Process id.
    pub pid: u32,
    /// Canonical path of the binary that was started (a wrapper script, for example).
    pub exe: PathBuf,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22), observed right
    /// after spawning. With `pid` and `boot_id` it identifies the process: it survives
    /// an `exec`, so a wrapper that execs the real binary stays the same process.
    pub start_time: Option<u64>,
    /// The executable the kernel reported right after spawning (`/proc/<pid>/exe`; for
    /// a script, its interpreter), if known. Records without it (written by older
    /// versions) are identified by `exe` as well as by start time.
    #[serde(default)]
    pub spawned_exe: Option<PathBuf>,
    /// The boot the process was started in (`/proc/sys/kernel/random/boot_id`).
    #[serde(default)]
    pub boot_id: Option<String>,
    /// Where the server listens.
    pub endpoint: Endpoint,
    /// The model it serves.
    pub model: PathBuf,
    /// Its log file (stdout and stderr).
    pub log_path: PathBuf,
    /// Its command line after the binary (secrets are passed by environment, not here).
    pub args: Vec<String>,
    /// Whether it was started to outlive the process that launched it.
    pub detached: bool,
    /// When it was started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// The API key lmcpp generated for it (loopback HTTP on Windows), so other lmcpp
    /// processes of the user can reach it; the record is private to the user. Keys a
    /// caller chose are never recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// Why a state file no longer describes a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StaleReason {
    /// No process with the recorded pid exists (or it is a zombie), or the machine was
    /// rebooted since.
    NotRunning,
    /// The pid runs another program and its start time cannot confirm that it is the
    /// recorded process (or the record predates start-time identity). The pid is alive,
    /// so its files are kept and it is never signalled.
    OtherExecutable {
        /// What `/proc/<pid>/exe` points at, if readable.
        found: Option<PathBuf>,
    },
    /// The pid names a different process (started at another time): it was recycled.
    StartTimeChanged {
        /// The start time that was recorded.
        recorded: Option<u64>,
        /// The start time found now.
        found: Option<u64>,
    },
}

/// One registry entry, checked against the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entry {
    /// The recorded process is running.
    Live(ServerRecord),
    /// The pid is alive, but this platform cannot confirm that it is still the recorded
    /// process (no `/proc`); the entry is neither cleaned nor ever signalled.
    Unverifiable(ServerRecord),
    /// The record is stale. Its state file and socket have been removed, unless the pid
    /// is alive ([`StaleReason::OtherExecutable`]): a live pid's files are never deleted.
    Stale {
        /// The record as it was on disk.
        record: ServerRecord,
        /// Why it is stale.
        reason: StaleReason,
    },
}

/// How [`Registry::stop`] ended a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopOutcome {
    /// It exited after SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
}

/// The directory holding state files, sockets and logs.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry of runtime dir `runtime_dir`. Its files live in lmcpp's private
    /// subdirectory `<runtime_dir>/lmcpp-<uid>` (created mode 0700 on first write); the
    /// runtime dir itself is created if missing but never changed. A relative path is
    /// made absolute first, so servers (whose working directory is the registry) and
    /// clients agree on every path.
    pub fn new(runtime_dir: impl Into<PathBuf>) -> Self {
        let root = runtime_dir.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Self {
            dir: root.join(private_dir_name()),
        }
    }

    /// The registry in [`default_runtime_dir`].
    pub fn open_default() -> Self {
        Self::new(default_runtime_dir())
    }

    /// Its directory: the private subdirectory of the runtime dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the private directory (mode 0700) if needed and checks it is private.
    pub fn ensure_dir(&self) -> Result<()> {
        ensure_private_dir(&self.dir)
    }

    /// The state file of `id`, which must be a generated or validated id.
    pub(crate) fn state_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The default log file of `id`, which must be a generated or validated id.
    pub(crate) fn default_log_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    /// The default log path of server `id` ([`Error::InvalidId`] for a malformed id).
    pub fn log_path(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(self.default_log_path(id))
    }

    /// Writes `record` atomically (temporary file, then rename).
    pub(crate) fn write(&self, record: &ServerRecord) -> Result<()> {
        let path = self.state_path(&record.id);
        let tmp = self.dir.join(format!(".{}.json.tmp", record.id));
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::io("cannot encode state file", &path, std::io::Error::other(e)))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io("cannot write state file", &path, e)
        })
    }

    /// Removes the state file and socket of `record`. Missing files are fine; the log is kept.
    pub(crate) fn remove(&self, record: &ServerRecord) {
        let _ = std::fs::remove_file(self.state_path(&record.id));
        if let Endpoint::Unix { socket } = &record.endpoint {
            let _ = std::fs::remove_file(socket);
        }
    }

    /// Removes the files of a record that failed verification, when its process is
    /// certainly gone (dead, or its pid recycled); never those of a live pid.
    fn remove_if_gone(&self, record: &ServerRecord, reason: &StaleReason) {
        if matches!(
            reason,
            StaleReason::NotRunning | StaleReason::StartTimeChanged { .. }
        ) {
            self.remove(record);
        }
    }

    /// Reads the state file of `id` without checking it against the kernel
    /// ([`Error::InvalidId`] for a malformed id, before anything is read).
    pub fn read(&self, id: &str) -> Result<Option<ServerRecord>> {
        validate_id(id)?;
        let path = self.state_path(id);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::io("cannot decode state file", &path, std::io::Error::other(e))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read state file", &path, e)),
        }
    }

    /// Every entry, each checked against the kernel. Stale state files and their sockets
    /// are deleted (and reported as [`Entry::Stale`]); unreadable state files are
    /// deleted too.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot list", &self.dir, e)),
        };
        let mut entries = Vec::new();
        for item in dir {
            let item = item.map_err(|e| Error::io("cannot list", &self.dir, e))?;
            let name = item.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if validate_id(id).is_err() {
                // Temporary files (`.<id>.json.tmp`) and anything lmcpp never writes.
                continue;
            }
            let record = match self.read(id) {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "removing unreadable state file");
                    let _ = std::fs::remove_file(item.path());
                    continue;
                }
            };
            if !can_verify() && platform::alive(record.pid) {
                entries.push(Entry::Unverifiable(record));
                continue;
            }
            match verify(&record) {
                Ok(()) => entries.push(Entry::Live(record)),
                Err(reason) => {
                    self.remove_if_gone(&record, &reason);
                    entries.push(Entry::Stale { record, reason });
                }
            }
        }
        entries.sort_by_key(|e| match e {
            Entry::Live(r) | Entry::Stale { record: r, .. } | Entry::Unverifiable(r) => {
                r.started_at_ms
            }
        });
        Ok(entries)
    }

    /// The verified record of server `id`; a stale one is cleaned up and reported as
    /// [`Error::UnknownServer`].
    pub fn get(&self, id: &str) -> Result<ServerRecord> {
        let unknown = || Error::UnknownServer { id: id.to_owned() };
        let record = self.read(id)?.ok_or_else(unknown)?;
        if !can_verify() && platform::alive(record.pid) {
            return Err(Error::Unverifiable {
                id: id.to_owned(),
                pid: record.pid,
            });
        }
        match verify(&record) {
            Ok(()) => Ok(record),
            Err(reason) => {
                self.remove_if_gone(&record, &reason);
                Err(unknown())
            }
        }
    }

    /// Stops server `id`: a graceful stop (SIGTERM; `CTRL_BREAK` on Windows, which only
    /// reaches a process on the caller's console), up to `grace` for it to exit, then a
    /// kill. Only a process whose record verifies is signalled, and it is re-verified
    /// before the kill.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<StopOutcome> {
        let record = self.get(id)?;
        let pid = record.pid;
        // Where the graceful stop could not be sent, nothing is worth waiting for.
        let sent = signal_verified(&record, Stop::Graceful);
        let wait = if sent { grace } else { Duration::ZERO };
        let outcome = if wait_gone(&record, wait).await {
            StopOutcome::Terminated
        } else {
            signal_verified(&record, Stop::Kill);
            if !wait_gone(&record, Duration::from_secs(5)).await {
                return Err(Error::StopTimeout { pid });
            }
            StopOutcome::Killed
        };
        self.remove(&record);
        Ok(outcome)
    }

    /// The last `n` lines of server `id`'s log (the server need not be running).
    pub fn log_tail(&self, id: &str, n: usize) -> Result<Vec<String>> {
        if let Some(record) = self.read(id)? {
            return log_tail(&record.log_path, 0, n);
        }
        // A server that failed to start, or has stopped, has no record but keeps its log.
        let kept = self.log_path(id)?;
        if kept.is_file() {
            return log_tail(&kept, 0, n);
        }
        Err(Error::UnknownServer { id: id.to_owned() })
    }
}

/// Checks a record against the kernel. A process is identified by what was observed
/// right after it was spawned: its pid and start time within this boot. That identity
/// holds across `exec`, so a server started through a wrapper script or an exec shim
/// stays ours although its executable changed. Only where the start time is unknown
/// (or the record is too old to say what the kernel saw at spawn) must the executable
/// match as well.
pub(crate) fn verify(record: &ServerRecord) -> Result<(), StaleReason> {
    if !platform::alive(record.pid) {
        return Err(StaleReason::NotRunning);
    }
    if let (Some(recorded), Some(now)) = (&record.boot_id, platform::boot_id())
        && *recorded != now
    {
        return Err(StaleReason::NotRunning);
    }
    let now = platform::start_time(record.pid);
    match (record.start_time, now) {
        (Some(recorded), Some(found)) if recorded != found => {
            return Err(StaleReason::StartTimeChanged {
                recorded: record.start_time,
                found: now,
            });
        }
        (Some(_), Some(_)) if record.spawned_exe.is_some() => return Ok(()),
        _ => {}
    }
    let found = platform::exe(record.pid);
    let expected = [Some(&record.exe), record.spawned_exe.as_ref()];
    if found.is_none() || !expected.contains(&found.as_ref()) {
        return Err(StaleReason::OtherExecutable { found });
    }
    if now.is_none() || now != record.start_time {
        return Err(StaleReason::StartTimeChanged {
            recorded: record.start_time,
            found: now,
        });
    }
    Ok(())
}

/// Sends `stop` to the process if the record still verifies (once the platform has
/// pinned the pid, where it can), and to its process group when it leads one (lmcpp
/// starts every server as a group leader), so the children of a wrapper script that does
/// not `exec` are stopped with it. Returns whether it was sent.
fn signal_verified(record: &ServerRecord, stop: Stop) -> bool {
    platform::signal_verified(record.pid, || verify(record).is_ok(), stop).is_some()
}

/// Polls until the recorded process is gone (dead or a zombie, or the pid now names a
/// process started at another time), for at most `timeout`.
async fn wait_gone(record: &ServerRecord, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // Not `verify`: a process in the middle of exiting has already lost its
        // executable link but still exists; only death or a new process counts.
        if !platform::alive(record.pid) || platform::start_time(record.pid) != record.start_time {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The last `n` lines of `path` after byte offset `from`.
pub(crate) fn log_tail(path: &Path, from: u64, n: usize) -> Result<Vec<String>> {
    const WINDOW: u64 = 256 * 1024;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("cannot open log", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("cannot read log", path, e))?
        .len();
    let start = from.max(len.saturating_sub(WINDOW));
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io("cannot read log", path, e))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .map_err(|e| Error::io("cannot read log", path, e))?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<String> = text
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(str::to_owned)
        .collect();
    lines.reverse();
    Ok(lines)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Strings rich in what path tricks are made of: dots, separators, NUL, and any char.
    fn hostile_id() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just('.'),
            Just('/'),
            Just('\0'),
            Just('-'),
            proptest::char::range('a', 'f'),
            any::<char>(),
        ];
        prop_oneof![
            proptest::collection::vec(piece, 0..80).prop_map(String::from_iter),
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whatever a user passes as an id, the registry either refuses it or names a file
        /// directly inside the runtime dir.
        #[test]
        fn user_ids_never_resolve_outside_the_runtime_dir(id in hostile_id()) {
            // A directory that does not exist: nothing is created, nothing can be found.
            let registry = Registry::new("/nonexistent-lmcpp-test/run");
            let dir = registry.dir();
            match registry.log_path(&id) {
                Ok(path) => {
                    prop_assert_eq!(path.parent(), Some(dir));
                    // A drive (`C:`) prefixes absolute paths on Windows.
                    prop_assert!(path.components().all(|c| matches!(
                        c,
                        std::path::Component::Prefix(_)
                            | std::path::Component::RootDir
                            | std::path::Component::Normal(_)
                    )));
                    let state = registry.state_path(&id);
                    prop_assert_eq!(state.parent(), Some(dir));
                    prop_assert!(registry.read(&id).unwrap().is_none());
                }
                Err(Error::InvalidId { .. }) => {
                    let invalid = |r: Result<()>| matches!(r, Err(Error::InvalidId { .. }));
                    prop_assert!(invalid(registry.read(&id).map(drop)));
                    prop_assert!(invalid(registry.get(&id).map(drop)));
                    prop_assert!(invalid(registry.log_tail(&id, 1).map(drop)));
                }
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }
    }

    #[test]
    fn log_tail_takes_the_last_lines_after_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "old\nline 1\n\nline 2\nline 3\n").unwrap();
        assert_eq!(log_tail(&path, 0, 2).unwrap(), ["line 2", "line 3"]);
        assert_eq!(
            log_tail(&path, 4, 10).unwrap(),
            ["line 1", "line 2", "line 3"]
        );
        assert!(log_tail(&path, 100, 10).unwrap().is_empty());
    }

    /// `lmcpp logs <id>` of a server that failed to start: no record, its log kept.
    #[test]
    fn the_log_of_a_server_without_a_record_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(dir.path());
        let log = registry.log_path("0123456789ab").unwrap();
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, "loading\nerror: failed to load model\n").unwrap();
        assert!(registry.read("0123456789ab").unwrap().is_none());
        assert_eq!(
            registry.log_tail("0123456789ab", 1).unwrap(),
            ["error: failed to load model"]
        );
        assert!(matches!(
            registry.log_tail("ba9876543210", 1),
            Err(Error::UnknownServer { .. })
        ));
    }
}
