//! Start-up failures, ports, orphans, the registry and several servers at once, with the
//! real server.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use lmcpp_server::{
    Endpoint, Entry, Error, HttpPort, Readiness, Registry, Server, StaleReason, StopOutcome,
    TransportChoice,
};
use lmcpp_types::native::tokenize::TokenizeRequest;

use crate::support::{eventually, launch, options, running};

#[tokio::test]
async fn a_broken_model_is_reported_as_exited_with_the_servers_error() {
    let dir = tempfile::tempdir().unwrap();
    // Passes the magic check, so only the server itself can find out.
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, b"GGUF garbage after the magic").unwrap();
    let mut opts = options(dir.path(), TransportChoice::Unix);
    opts.model = broken;
    let started = Instant::now();
    let mut server = Server::spawn(opts).await.unwrap();
    let readiness = server.wait_ready().await.unwrap();
    let elapsed = started.elapsed();
    match readiness {
        Readiness::Exited { status, log_tail } => {
            assert!(!status.success());
            assert!(
                log_tail.iter().any(|l| l.contains("failed to load model")),
                "{log_tail:#?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[tokio::test]
async fn a_held_port_is_handled() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();

    // Preferred but taken: the server fails to bind, and is restarted elsewhere.
    let server = launch(
        dir.path(),
        TransportChoice::Http(HttpPort::Prefer(port)),
        |_| {},
    )
    .await;
    let Endpoint::Http { port: got, .. } = server.endpoint().clone() else {
        panic!("http endpoint expected");
    };
    assert_ne!(got, port);
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.contains("couldn't bind HTTP server socket"), "{log}");
    server.client().health().await.unwrap();
    server.stop().await.unwrap();

    // Fixed: a clear error, nothing started.
    let mut opts = options(dir.path(), TransportChoice::Http(HttpPort::Fixed(port)));
    opts.runtime_dir = Some(dir.path().join("run2"));
    match Server::launch(opts).await {
        Err(Error::PortInUse { port: p, .. }) => assert_eq!(p, port),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_sigkilled_parent_leaves_no_server_behind() {
    // Two roles in one test: with the variable set, this process is the helper that
    // launches a server and waits to be killed.
    if let Ok(dir) = std::env::var("LMCPP_E2E_HELPER_DIR") {
        let dir = PathBuf::from(dir);
        let server = launch(&dir, TransportChoice::Unix, |_| {}).await;
        std::fs::write(dir.join("pid.tmp"), server.pid().to_string()).unwrap();
        std::fs::rename(dir.join("pid.tmp"), dir.join("pid")).unwrap();
        std::future::pending::<()>().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lifecycle::a_sigkilled_parent_leaves_no_server_behind",
            "--nocapture",
        ])
        .env("LMCPP_E2E_HELPER_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pidfile = dir.path().join("pid");
    assert!(eventually(Duration::from_secs(60), || pidfile.exists()).await);
    let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert!(running(pid));
    helper.kill().unwrap();
    helper.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(2), || !running(pid)).await,
        "llama-server {pid} outlived its SIGKILLed parent"
    );
    // Its stale state file is found and cleaned.
    let entries = Registry::new(dir.path().join("run")).list().unwrap();
    assert!(
        matches!(
            entries.as_slice(),
            [Entry::Stale {
                reason: StaleReason::NotRunning,
                ..
            }]
        ),
        "{entries:?}"
    );
}

#[tokio::test]
async fn a_recycled_pid_is_stale_and_its_process_is_not_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let server = launch(dir.path(), TransportChoice::Unix, |_| {}).await;
    let registry = Registry::new(dir.path().join("run"));
    let state = registry.dir().join(format!("{}.json", server.id()));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();

    // A copy of the real record whose pid now belongs to another program.
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    record["id"] = "000000000000".into();
    record["pid"] = other.id().into();
    record["endpoint"] =
        serde_json::json!({"transport": "unix", "socket": dir.path().join("x.sock")});
    std::fs::write(
        registry.dir().join("000000000000.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();

    assert!(matches!(
        registry
            .stop("000000000000", Duration::from_millis(100))
            .await,
        Err(Error::UnknownServer { .. })
    ));
    assert!(
        other.try_wait().unwrap().is_none(),
        "the other program was signalled"
    );
    let entries = registry.list().unwrap();
    assert!(
        matches!(entries.as_slice(), [Entry::Live(r)] if r.id == server.id()),
        "{entries:?}"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn several_servers_at_once_and_a_detached_one() {
    let dir = tempfile::tempdir().unwrap();
    let paths = crate::support::paths();
    let second_model = dir.path().join("second.gguf");
    std::fs::copy(&paths.demo_model, &second_model).unwrap();

    let a = launch(dir.path(), TransportChoice::Unix, |_| {}).await;
    let mut opts = options(dir.path(), TransportChoice::Http(HttpPort::Auto));
    opts.model = second_model;
    let b = Server::launch(opts).await.unwrap();
    let mut opts = options(dir.path(), TransportChoice::Unix);
    opts.detached = true;
    let c = Server::launch(opts).await.unwrap();

    let hello = TokenizeRequest::new("hello");
    let (ca, cb, cc) = (a.client(), b.client(), c.client());
    let (ra, rb, rc) = tokio::join!(
        ca.tokenize(&hello),
        cb.tokenize(&hello),
        cc.tokenize(&hello),
    );
    assert_eq!(ra.unwrap().ids(), rb.unwrap().ids());
    assert!(!rc.unwrap().ids().is_empty());

    let registry = Registry::new(dir.path().join("run"));
    let live = registry
        .list()
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e, Entry::Live(_)))
        .count();
    assert_eq!(live, 3);

    // The detached one survives its handle and is stopped through the registry.
    let record = c.detach();
    assert!(running(record.pid));
    assert!(registry.log_tail(&record.id, 5).unwrap().len() == 5);
    let outcome = registry
        .stop(&record.id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outcome, StopOutcome::Terminated);
    assert!(eventually(Duration::from_secs(2), || !running(record.pid)).await);

    a.stop().await.unwrap();
    drop(b);
    assert!(registry.list().unwrap().is_empty());
}
