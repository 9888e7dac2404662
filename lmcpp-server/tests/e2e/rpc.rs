//! Two real `rpc-server` workers on loopback and a `llama-server` that offloads the demo
//! model to both: completions work, the workers receive tensors and graphs, losing a
//! worker is reported typed, and restarting worker and server recovers.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use lmcpp_server::{
    Entry, Error, ProcessKind, Registry, RpcWorker, RpcWorkerOptions, Server, StaleReason,
    TransportChoice,
};
use lmcpp_types::native::completion::CompletionRequest;

use crate::support::{eventually, options, running};

/// The `rpc_server` entry of the prerequisites file, failing with the command that
/// provides it.
pub(crate) fn rpc_server() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    crate::support::paths()
        .rpc_server(root)
        .map(PathBuf::from)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A loopback worker that logs every RPC command it receives.
async fn worker(dir: &Path, port: Option<u16>) -> RpcWorker {
    let mut opts = RpcWorkerOptions::new(rpc_server());
    opts.runtime_dir = Some(dir.join("run"));
    opts.port = port;
    opts.threads = Some(1);
    opts.debug_log = true;
    RpcWorker::launch(opts).await.expect("rpc-server starts")
}

/// The demo model on a server that puts every layer on the two workers.
async fn server(dir: &Path, workers: &[String]) -> Server {
    let mut opts = options(dir, TransportChoice::Unix);
    opts.args.rpc = workers.to_vec();
    // Without this the layers stay on the local CPU and the workers only hold buffers.
    opts.args.gpu_layers = Some(99);
    opts.args.parallel = Some(1);
    Server::launch(opts)
        .await
        .expect("llama-server starts with --rpc")
}

async fn complete(server: &Server) -> lmcpp_server::Result<String> {
    let req = CompletionRequest::new("Once upon a time").n_predict(8);
    Ok(server.client().completion(&req).await?.content)
}

fn kinds(registry: &Registry) -> Vec<(ProcessKind, String, bool)> {
    let mut v: Vec<_> = registry
        .list()
        .unwrap()
        .into_iter()
        .map(|e| match e {
            Entry::Live(r) => (r.kind, r.id, true),
            Entry::Stale { record, .. } => (record.kind, record.id, false),
            _ => unreachable!("unknown entry kind"),
        })
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

/// What every worker's log shows once the server used it: the model's tensors and computed
/// graphs in its command log, or (an rpc-server without one) only the connection.
fn served_markers() -> &'static [&'static str] {
    if crate::support::supports().rpc_debug_log() {
        &["[set_tensor]", "[graph_compute]"]
    } else {
        crate::support::supports().lacks(
            "two_loopback_workers_serve_then_fail_typed_and_recover",
            "an rpc-server command log (GGML_RPC_DEBUG)",
            "each worker logged the server's connection",
        );
        &["Accepted client connection"]
    }
}

fn assert_workers_logged(workers: &[&RpcWorker], markers: &[&str]) {
    for w in workers {
        let log = std::fs::read_to_string(w.log_path()).unwrap();
        for marker in markers {
            assert!(
                log.contains(marker),
                "worker {} log lacks {marker}:\n{}",
                w.address(),
                w.log_tail(20).unwrap().join("\n")
            );
        }
    }
}

/// SIGKILLs `worker`: the next request through `server` fails in transport, the server
/// exits on the lost connection, and its handle reports that exit as `RpcWorkerLost`.
async fn kill_and_see_the_server_fail_typed(worker: &RpcWorker, server: &Server, addrs: &[String]) {
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &worker.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(eventually(Duration::from_secs(10), || worker.exit_status().is_some()).await);
    match complete(server).await {
        Err(Error::Transport { .. }) => {}
        other => panic!("expected the request to fail with a transport error, got {other:?}"),
    }
    // llama-server aborts on the lost connection (it may take a while: it prints a
    // backtrace first); the handle classifies that exit.
    assert!(
        eventually(Duration::from_secs(60), || server.exit_status().is_some()).await,
        "llama-server kept running without its worker"
    );
    match server.rpc_worker_lost() {
        Some(Error::RpcWorkerLost {
            workers, log_tail, ..
        }) => {
            assert_eq!(workers, addrs);
            assert!(
                log_tail[0].contains("Remote RPC server crashed"),
                "{log_tail:?}"
            );
        }
        other => panic!("expected RpcWorkerLost, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loopback_workers_serve_then_fail_typed_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(dir.path().join("run"));
    let w1 = worker(dir.path(), None).await;
    let w2 = worker(dir.path(), None).await;
    assert_ne!(w1.port(), w2.port());
    assert!(w1.address().starts_with("127.0.0.1:"));
    let addrs = vec![w1.address(), w2.address()];

    let server1 = server(dir.path(), &addrs).await;
    assert!(server1.record().args.join(" ").contains(&addrs.join(",")));
    complete(&server1)
        .await
        .expect("completion through both workers");

    let markers = served_markers();
    assert_workers_logged(&[&w1, &w2], markers);
    let mut expected = vec![
        (ProcessKind::Server, server1.id().to_owned(), true),
        (ProcessKind::RpcWorker, w1.id().to_owned(), true),
        (ProcessKind::RpcWorker, w2.id().to_owned(), true),
    ];
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(kinds(&registry), expected);

    // While the server holds them, the workers are busy for anyone else.
    match lmcpp_server::check_workers(&addrs[..1], Duration::from_millis(500)).await {
        Err(Error::RpcWorkerBusy { addr, .. }) => assert_eq!(addr, addrs[0]),
        other => panic!("expected RpcWorkerBusy, got {other:?}"),
    }

    // Kill worker 1 outright: llama-server has no way to continue without it.
    let (w1_id, w1_port) = (w1.id().to_owned(), w1.port());
    kill_and_see_the_server_fail_typed(&w1, &server1, &addrs).await;
    // The registry reports the dead worker (and the dead server) as stale.
    let listed = registry.list().unwrap();
    let w1_entry = listed.iter().find_map(|e| match e {
        Entry::Stale { record, reason } if record.id == w1_id => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(w1_entry, Some(StaleReason::NotRunning), "{listed:?}");
    assert!(listed.iter().any(|e| matches!(e,
        Entry::Live(r) if r.id == w2.id() && r.kind == ProcessKind::RpcWorker)));
    drop(w1);
    server1.stop().await.unwrap();

    // Restart the worker on its old port and the server: it works again.
    let w1 = worker(dir.path(), Some(w1_port)).await;
    assert_eq!(w1.address(), addrs[0]);
    let server2 = server(dir.path(), &addrs).await;
    complete(&server2)
        .await
        .expect("completion after restarting worker and server");
    let log = std::fs::read_to_string(w1.log_path()).unwrap();
    assert!(log.contains(markers[markers.len() - 1]), "{log}");

    let server_pid = server2.pid();
    server2.stop().await.unwrap();
    let (p1, p2) = (w1.pid(), w2.pid());
    w1.stop().await.unwrap();
    w2.stop().await.unwrap();
    assert!(!running(server_pid) && !running(p1) && !running(p2));
    assert!(registry.list().unwrap().is_empty());
}

#[tokio::test]
async fn the_pre_launch_handshake_is_the_one_rpc_server_expects() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), None).await;
    lmcpp_server::check_workers(&[w.address()], Duration::from_secs(5))
        .await
        .unwrap();
    // The worker logs the hello it answered (its command log) and no complaint about it;
    // an rpc-server without a command log logs the connection it closed.
    let marker = if crate::support::supports().rpc_debug_log() {
        "[hello] version:"
    } else {
        crate::support::supports().lacks(
            "the_pre_launch_handshake_is_the_one_rpc_server_expects",
            "an rpc-server command log (GGML_RPC_DEBUG)",
            "the worker closed the connection without a complaint",
        );
        "Client connection closed"
    };
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(
            w.log_path()
        )
        .is_ok_and(|l| l.contains(marker)))
        .await,
        "{:?}",
        w.log_tail(20)
    );
    let log = std::fs::read_to_string(w.log_path()).unwrap();
    assert!(
        !log.contains("mismatch") && !log.contains("Expected HELLO"),
        "{log}"
    );
    w.stop().await.unwrap();
}

#[tokio::test]
async fn an_attached_worker_dies_with_its_parent_and_with_its_handle() {
    // Two roles in one test: with the variable set this process is the helper that
    // launches a worker and waits to be killed.
    if let Ok(dir) = std::env::var("LMCPP_E2E_RPC_HELPER_DIR") {
        let dir = PathBuf::from(dir);
        let w = worker(&dir, None).await;
        std::fs::write(dir.join("pid.tmp"), w.pid().to_string()).unwrap();
        std::fs::rename(dir.join("pid.tmp"), dir.join("pid")).unwrap();
        std::future::pending::<()>().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rpc::an_attached_worker_dies_with_its_parent_and_with_its_handle",
            "--nocapture",
        ])
        .env("LMCPP_E2E_RPC_HELPER_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pidfile = dir.path().join("pid");
    assert!(eventually(Duration::from_secs(30), || pidfile.exists()).await);
    let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert!(running(pid));
    helper.kill().unwrap();
    helper.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !running(pid)).await,
        "rpc-server {pid} outlived its SIGKILLed parent"
    );

    // The orphaned record is reported stale (and cleaned up) by the next listing.
    let registry = Registry::new(dir.path().join("run"));
    let listed = registry.list().unwrap();
    assert!(
        matches!(listed.as_slice(), [Entry::Stale { record, reason: StaleReason::NotRunning }]
            if record.pid == pid && record.kind == ProcessKind::RpcWorker),
        "{listed:?}"
    );

    // Dropping the handle stops the worker and removes its record.
    let w = worker(dir.path(), None).await;
    let pid = w.pid();
    drop(w);
    assert!(!running(pid));
    assert!(registry.list().unwrap().is_empty());
}
