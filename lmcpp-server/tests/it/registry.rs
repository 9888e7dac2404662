//! Registry verification: recycled pids, dead pids, live entries.

use std::{path::Path, process::Command, time::Duration};

use lmcpp_server::{Entry, Error, Registry, StaleReason, StopOutcome};
use serde_json::json;

/// Field 22 of `/proc/<pid>/stat`.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn write_record(dir: &Path, id: &str, pid: u32, exe: &Path, start: u64, socket: &Path) {
    let record = json!({
        "id": id,
        "pid": pid,
        "exe": exe,
        "start_time": start,
        "endpoint": {"transport": "unix", "socket": socket},
        "model": "/models/m.gguf",
        "log_path": dir.join(format!("{id}.log")),
        "args": ["--model", "/models/m.gguf"],
        "detached": true,
        "started_at_ms": 1,
    });
    std::fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
}

struct Sleeper(std::process::Child);

impl Sleeper {
    fn start() -> Self {
        Self(Command::new("sleep").arg("60").spawn().unwrap())
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn recycled_pid_is_stale_and_never_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(dir.path());
    registry.ensure_dir().unwrap();
    let state = registry.dir();
    let mut other = Sleeper::start();
    let pid = other.0.id();
    // The record claims the pid runs llama-server; it runs `sleep`.
    let socket = dir.path().join("a.sock");
    std::fs::write(&socket, "").unwrap();
    let claimed = dir.path().join("llama-server");
    write_record(
        state,
        "aaaaaaaaaaaa",
        pid,
        &claimed,
        start_time(pid),
        &socket,
    );

    match registry
        .stop("aaaaaaaaaaaa", Duration::from_millis(100))
        .await
    {
        Err(Error::UnknownServer { id }) => assert_eq!(id, "aaaaaaaaaaaa"),
        other => panic!("{other:?}"),
    }
    assert!(other.alive(), "the other program was signalled");
    assert!(!state.join("aaaaaaaaaaaa.json").exists());
    assert!(!socket.exists(), "stale socket left behind");

    write_record(
        state,
        "bbbbbbbbbbbb",
        pid,
        &claimed,
        start_time(pid),
        &socket,
    );
    let entries = registry.list().unwrap();
    match entries.as_slice() {
        [
            Entry::Stale {
                record,
                reason: StaleReason::OtherExecutable { found },
            },
        ] => {
            assert_eq!(record.pid, pid);
            assert!(found.as_ref().unwrap().ends_with("sleep"), "{found:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(other.alive());
    assert!(
        registry.list().unwrap().is_empty(),
        "stale file not cleaned"
    );
}

#[tokio::test]
async fn same_binary_started_at_another_time_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(dir.path());
    registry.ensure_dir().unwrap();
    let state = registry.dir();
    let mut other = Sleeper::start();
    let pid = other.0.id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let socket = dir.path().join("c.sock");
    write_record(
        state,
        "cccccccccccc",
        pid,
        &exe,
        start_time(pid) + 1,
        &socket,
    );
    match registry.list().unwrap().as_slice() {
        [
            Entry::Stale {
                reason: StaleReason::StartTimeChanged { .. },
                ..
            },
        ] => {}
        other => panic!("{other:?}"),
    }
    assert!(other.alive());
}

#[tokio::test]
async fn dead_pid_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(dir.path());
    registry.ensure_dir().unwrap();
    let state = registry.dir();
    let mut done = Command::new("true").spawn().unwrap();
    let pid = done.id();
    done.wait().unwrap();
    let socket = dir.path().join("d.sock");
    write_record(
        state,
        "dddddddddddd",
        pid,
        Path::new("/bin/true"),
        1,
        &socket,
    );
    std::fs::write(state.join("eeeeeeeeeeee.json"), "{ not json").unwrap();
    match registry.list().unwrap().as_slice() {
        [
            Entry::Stale {
                reason: StaleReason::NotRunning,
                ..
            },
        ] => {}
        other => panic!("{other:?}"),
    }
    assert!(!state.join("eeeeeeeeeeee.json").exists());
}

#[tokio::test]
async fn verified_entry_is_live_and_can_be_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(dir.path());
    registry.ensure_dir().unwrap();
    let state = registry.dir();
    let mut sleeper = Sleeper::start();
    let pid = sleeper.0.id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let socket = dir.path().join("f.sock");
    write_record(state, "ffffffffffff", pid, &exe, start_time(pid), &socket);
    std::fs::write(state.join("ffffffffffff.log"), "one\ntwo\nthree\n").unwrap();

    match registry.list().unwrap().as_slice() {
        [Entry::Live(record)] => assert_eq!(record.pid, pid),
        other => panic!("{other:?}"),
    }
    assert_eq!(registry.get("ffffffffffff").unwrap().pid, pid);
    assert_eq!(
        registry.log_tail("ffffffffffff", 2).unwrap(),
        ["two", "three"]
    );
    // `sleep` is our child here, so it stays a zombie until we reap it; the registry
    // counts a zombie as gone.
    let outcome = registry
        .stop("ffffffffffff", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outcome, StopOutcome::Terminated);
    assert!(!sleeper.alive());
    assert!(registry.list().unwrap().is_empty());
}

/// Removing or rebuilding a toolchain entry deletes the binary of servers still running
/// from it; the kernel then reports `<path> (deleted)` as their executable. Such a server
/// is still ours: it must stay listed and stoppable, not be cleaned up as stale.
#[tokio::test]
async fn a_running_server_whose_binary_was_deleted_stays_live() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(dir.path());
    registry.ensure_dir().unwrap();
    let state = registry.dir();
    let sleep = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v sleep"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let binary = dir.path().join("llama-server");
    std::fs::copy(sleep.trim(), &binary).unwrap();
    let mut server = Sleeper(Command::new(&binary).arg("60").spawn().unwrap());
    let pid = server.0.id();
    // The recorded path is canonical, as the launcher records it.
    let exe = binary.canonicalize().unwrap();
    let socket = dir.path().join("d.sock");
    write_record(state, "dddddddddddd", pid, &exe, start_time(pid), &socket);
    std::fs::remove_file(&binary).unwrap();
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(link.to_string_lossy().ends_with(" (deleted)"), "{link:?}");

    match registry.list().unwrap().as_slice() {
        [Entry::Live(record)] => assert_eq!(record.pid, pid),
        other => panic!("{other:?}"),
    }
    let outcome = registry
        .stop("dddddddddddd", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outcome, StopOutcome::Terminated);
    assert!(!server.alive());
}
