//! Registry verification: recycled pids, dead pids, live entries.

use std::{path::Path, process::Command, time::Duration};

use lmcpp_server::{Entry, Error, LaunchOptions, Registry, Server, StaleReason, StopOutcome};

use crate::support::{eventually, fake_gguf, running, script};

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
    // The record claims the pid runs llama-server, started at another time; the pid now
    // names `sleep`, a later process.
    let socket = dir.path().join("a.sock");
    std::fs::write(&socket, "").unwrap();
    let claimed = dir.path().join("llama-server");
    let earlier = start_time(pid) - 1;
    write_record(state, "aaaaaaaaaaaa", pid, &claimed, earlier, &socket);

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

    std::fs::write(&socket, "").unwrap();
    write_record(state, "bbbbbbbbbbbb", pid, &claimed, earlier, &socket);
    match registry.list().unwrap().as_slice() {
        [
            Entry::Stale {
                record,
                reason: StaleReason::StartTimeChanged { .. },
            },
        ] => assert_eq!(record.pid, pid),
        other => panic!("{other:?}"),
    }
    assert!(other.alive());
    assert!(
        registry.list().unwrap().is_empty(),
        "stale file not cleaned"
    );
    assert!(!socket.exists());
}

/// A record written before start-time identity, whose live pid runs another program
/// than the one recorded, cannot be confirmed: it is never signalled, and since the pid
/// is alive its state file and socket are kept.
#[tokio::test]
async fn an_unconfirmed_live_pid_is_never_signalled_nor_its_files_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(dir.path());
    registry.ensure_dir().unwrap();
    let state = registry.dir();
    let mut other = Sleeper::start();
    let pid = other.0.id();
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

    assert!(matches!(
        registry
            .stop("aaaaaaaaaaaa", Duration::from_millis(100))
            .await,
        Err(Error::UnknownServer { .. })
    ));
    match registry.list().unwrap().as_slice() {
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
    assert!(other.alive(), "the other program was signalled");
    assert!(state.join("aaaaaaaaaaaa.json").exists());
    assert!(socket.exists(), "the socket of a live pid was deleted");
}

/// Servers started through a wrapper: one that `exec`s the real binary (the pid then
/// runs another executable than the one started) and one that runs it as a child.
/// Both stay listed and are stopped through the registry, the child with its wrapper.
#[tokio::test]
async fn servers_started_through_wrappers_stay_listed_and_stoppable() {
    let dir = tempfile::tempdir().unwrap();
    let child_pid = dir.path().join("child.pid");
    let wrappers = [
        script(dir.path(), "exec-shim", "exec sleep 60"),
        script(
            dir.path(),
            "wrapper",
            &format!("sleep 60 & echo $! > {}; wait", child_pid.display()),
        ),
    ];
    let registry = Registry::new(dir.path().join("run"));
    for wrapper in wrappers {
        let mut opts = LaunchOptions::new(&wrapper, fake_gguf(dir.path()));
        opts.runtime_dir = Some(dir.path().join("run"));
        opts.socket_fallback_dir = Some(dir.path().join("s"));
        opts.detached = true;
        let server = Server::spawn(opts).await.unwrap();
        let pid = server.pid();
        // The shim has exec'd `sleep` (or the wrapper has started its child) by now.
        assert!(
            eventually(Duration::from_secs(5), || {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe.ends_with("sleep"))
                    || child_pid.exists()
            })
            .await
        );
        let record = server.detach();
        match registry.list().unwrap().as_slice() {
            [Entry::Live(live)] => assert_eq!(live.pid, pid),
            other => panic!("{wrapper:?}: {other:?}"),
        }
        let outcome = registry
            .stop(&record.id, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(outcome, StopOutcome::Terminated);
        assert!(!running(pid), "{wrapper:?} still runs");
        if let Ok(child) = std::fs::read_to_string(&child_pid) {
            let child: u32 = child.trim().parse().unwrap();
            assert!(
                eventually(Duration::from_secs(5), || !running(child)).await,
                "the wrapper's child outlived it"
            );
        }
        assert!(registry.list().unwrap().is_empty());
    }
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
