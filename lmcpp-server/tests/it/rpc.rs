//! ggml RPC workers without a real `rpc-server`: the pre-launch reachability check, and
//! worker start-up failures against stand-in scripts.

use std::{net::TcpListener, path::Path, time::Duration};

use lmcpp_server::{
    Error, LaunchOptions, ProcessKind, Registry, RpcWorker, RpcWorkerOptions, Server,
};

use crate::support::{fake_gguf, script};

/// An address on 127.0.0.1 where nothing listens (bound once, then released).
fn closed_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A stand-in worker that answers the ggml RPC hello (1-byte command, 8-byte size,
/// 24-byte capabilities) like a protocol 7.0.0 `rpc-server`.
async fn answering_worker() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut request = [0u8; 1 + 8 + 24];
            if conn.read_exact(&mut request).await.is_err() {
                continue;
            }
            let mut answer = 28u64.to_le_bytes().to_vec();
            answer.extend_from_slice(&[7, 0, 0, 0]);
            answer.extend_from_slice(&[0; 24]);
            let _ = conn.write_all(&answer).await;
        }
    });
    addr
}

/// A server script that leaves a marker if it is ever started, and options for it.
fn marked_server(dir: &Path, rpc: Vec<String>) -> (LaunchOptions, std::path::PathBuf) {
    let marker = dir.join("spawned");
    let exe = script(
        dir,
        "server",
        &format!("touch {}; exec sleep 60", marker.display()),
    );
    let mut opts = LaunchOptions::new(exe, fake_gguf(dir));
    opts.runtime_dir = Some(dir.join("run"));
    opts.socket_fallback_dir = Some(dir.join("s"));
    opts.args.rpc = rpc;
    (opts, marker)
}

fn worker_options(dir: &Path, binary: std::path::PathBuf) -> RpcWorkerOptions {
    let mut opts = RpcWorkerOptions::new(binary);
    opts.runtime_dir = Some(dir.join("run"));
    opts.stop_grace = Duration::from_secs(2);
    opts
}

#[tokio::test]
async fn unreachable_worker_is_named_before_llama_server_is_spawned() {
    let dir = tempfile::tempdir().unwrap();
    let live = answering_worker().await;
    let dead = closed_addr();
    let (opts, marker) = marked_server(dir.path(), vec![live, dead.clone()]);
    let started = std::time::Instant::now();
    match Server::launch(opts).await {
        Err(e @ Error::RpcWorkerUnreachable { .. }) => {
            let Error::RpcWorkerUnreachable { addr, .. } = &e else {
                unreachable!()
            };
            assert_eq!(addr, &dead);
            let msg = e.to_string();
            assert!(
                msg.contains(&dead) && msg.contains("lmcpp rpc-worker"),
                "{msg}"
            );
        }
        other => panic!("expected RpcWorkerUnreachable, got {other:?}"),
    }
    // A refused connection is immediate; it must not wait out the check timeout.
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!marker.exists(), "llama-server was spawned");
    let run = dir.path().join("run");
    assert!(Registry::new(&run).list().unwrap().is_empty());
    let files: Vec<_> = std::fs::read_dir(Registry::new(&run).dir())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "files were created: {files:?}");
}

#[tokio::test]
async fn busy_worker_is_named_before_llama_server_is_spawned() {
    let dir = tempfile::tempdir().unwrap();
    // The kernel accepts the connection into the queue; nobody answers, which is what a
    // worker that is serving another llama-server looks like.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = silent.local_addr().unwrap().to_string();
    let (opts, marker) = marked_server(dir.path(), vec![answering_worker().await, busy.clone()]);
    match Server::launch(opts).await {
        Err(e @ Error::RpcWorkerBusy { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&busy) && msg.contains("one llama-server at a time"),
                "{msg}"
            );
        }
        other => panic!("expected RpcWorkerBusy, got {other:?}"),
    }
    assert!(!marker.exists(), "llama-server was spawned");
}

#[tokio::test]
async fn worker_exit_during_start_up_carries_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "rpc-server",
        "echo \"args: $*\"; echo 'No devices found' >&2; exit 1",
    );
    let mut opts = worker_options(dir.path(), exe);
    opts.threads = Some(3);
    match RpcWorker::launch(opts).await {
        Err(Error::RpcWorkerExited {
            status, log_tail, ..
        }) => {
            assert_eq!(status.code(), Some(1));
            assert_eq!(
                log_tail.last().map(String::as_str),
                Some("No devices found")
            );
            let args = &log_tail[0];
            assert!(
                args.starts_with("args: --host 127.0.0.1 --port ")
                    && args.ends_with(" --threads 3"),
                "{args}"
            );
        }
        other => panic!("expected RpcWorkerExited, got {other:?}"),
    }
    assert!(
        Registry::new(dir.path().join("run"))
            .list()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn taken_auto_port_is_retried_and_a_silent_worker_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    // The first start fails its bind the way rpc-server does (message, status 0); the
    // second never listens.
    let exe = script(
        dir.path(),
        "rpc-server",
        &format!(
            "if [ -e {c} ]; then echo \"second $*\"; exec sleep 60; fi; touch {c}; \
             echo 'Failed to create server socket' >&2; exit 0",
            c = count.display()
        ),
    );
    let mut opts = worker_options(dir.path(), exe);
    opts.ready_timeout = Duration::from_millis(500);
    let log_dir = dir.path().join("run");
    match RpcWorker::launch(opts).await {
        Err(Error::RpcWorkerReadyTimeout { addr, log_path, .. }) => {
            assert!(addr.starts_with("127.0.0.1:"), "{addr}");
            let log = std::fs::read_to_string(&log_path).unwrap();
            assert!(log.contains("Failed to create server socket"), "{log}");
            assert!(log.contains("second --host 127.0.0.1"), "{log}");
        }
        other => panic!("expected RpcWorkerReadyTimeout, got {other:?}"),
    }
    // The timed-out worker was stopped and unregistered.
    assert!(Registry::new(&log_dir).list().unwrap().is_empty());
}

#[tokio::test]
async fn held_fixed_port_is_refused_before_spawning() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("spawned");
    let exe = script(
        dir.path(),
        "rpc-server",
        &format!("touch {}; exec sleep 60", marker.display()),
    );
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let mut opts = worker_options(dir.path(), exe);
    opts.port = Some(port);
    match RpcWorker::launch(opts).await {
        Err(Error::PortInUse { port: p, .. }) => assert_eq!(p, port),
        other => panic!("expected PortInUse, got {other:?}"),
    }
    assert!(!marker.exists());
}

#[test]
fn state_files_without_a_kind_are_servers() {
    let dir = tempfile::tempdir().unwrap();
    let record = serde_json::json!({
        "id": "0123456789ab",
        "pid": 1,
        "exe": "/bin/llama-server",
        "start_time": 1,
        "endpoint": {"transport": "http", "host": "127.0.0.1", "port": 1},
        "model": "/m.gguf",
        "log_path": "/x.log",
        "args": [],
        "detached": false,
        "started_at_ms": 1,
    });
    let registry = Registry::new(dir.path());
    registry.ensure_dir().unwrap();
    std::fs::write(
        registry.dir().join("0123456789ab.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let read = registry.read("0123456789ab").unwrap().unwrap();
    assert_eq!(read.kind, ProcessKind::Server);
    let json = serde_json::to_value(&read).unwrap();
    assert_eq!(json["kind"], "server");
    assert_eq!(ProcessKind::RpcWorker.to_string(), "rpc-worker");
    assert_eq!(
        serde_json::to_value(ProcessKind::RpcWorker).unwrap(),
        "rpc-worker"
    );
}
