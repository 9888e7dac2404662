//! Launch, readiness and containment against stand-in "servers" (shell scripts), so these
//! run without llama-server.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use lmcpp_server::{
    Endpoint, Error, HttpPort, LaunchOptions, MAX_SOCKET_PATH, Readiness, Server, TransportChoice,
};

use crate::support::{eventually, fake_gguf, script};

fn options(dir: &Path, binary: PathBuf) -> LaunchOptions {
    let mut opts = LaunchOptions::new(binary, fake_gguf(dir));
    opts.runtime_dir = Some(dir.join("run"));
    opts.socket_fallback_dir = Some(dir.join("s"));
    opts.stop_grace = Duration::from_secs(2);
    opts
}

/// Whether a process with this pid exists and is not a zombie.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn inputs_are_validated_before_spawning() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "server", "exit 0");
    let text = dir.path().join("model.txt");
    std::fs::write(&text, "not a model").unwrap();

    let mut opts = options(dir.path(), dir.path().join("missing"));
    assert!(matches!(
        Server::spawn(opts.clone()).await,
        Err(Error::BinaryNotFound { .. })
    ));
    opts.binary = exe;
    opts.model = text.clone();
    match Server::spawn(opts).await {
        Err(e @ Error::ModelNotGguf { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("not a GGUF file"), "{msg}");
            // The error shows the file's first bytes ("not " of "not a model").
            assert!(msg.contains(r#"starts with "not ""#), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was started, so nothing was registered.
    let listed = lmcpp_server::Registry::new(dir.path().join("run"))
        .list()
        .unwrap();
    assert!(listed.is_empty());
}

#[tokio::test]
async fn early_exit_is_reported_at_once_with_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "server",
        "echo 'loading'; echo 'error: failed to load model' >&2; exit 3",
    );
    let mut opts = options(dir.path(), exe);
    opts.ready_timeout = Duration::from_secs(60);
    let started = Instant::now();
    let mut server = Server::spawn(opts).await.unwrap();
    let readiness = server.wait_ready().await.unwrap();
    let elapsed = started.elapsed();
    match readiness {
        Readiness::Exited { status, log_tail } => {
            assert_eq!(status.code(), Some(3));
            assert_eq!(log_tail, ["loading", "error: failed to load model"]);
        }
        other => panic!("{other:?}"),
    }
    // Far below the 60 s timeout: the exit was noticed, not timed out.
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(server.record().pid > 0);
    assert!(
        lmcpp_server::Registry::new(dir.path().join("run"))
            .list()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn launch_turns_an_early_exit_into_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "server", "echo 'boom' >&2; exit 1");
    match Server::launch(options(dir.path(), exe)).await {
        Err(Error::Exited {
            status, log_tail, ..
        }) => {
            assert_eq!(status.code(), Some(1));
            assert_eq!(log_tail, ["boom"]);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn timeout_is_reported_and_drop_stops_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "server", "exec sleep 60");
    let mut opts = options(dir.path(), exe);
    opts.ready_timeout = Duration::from_millis(200);
    let mut server = Server::spawn(opts).await.unwrap();
    let pid = server.pid();
    match server.wait_ready().await.unwrap() {
        Readiness::TimedOut { last_health } => {
            assert!(last_health.unwrap().contains("/health"));
        }
        other => panic!("{other:?}"),
    }
    assert!(running(pid));
    let registry = lmcpp_server::Registry::new(dir.path().join("run"));
    assert_eq!(registry.list().unwrap().len(), 1);
    drop(server);
    assert!(!running(pid), "drop left the process running");
    assert!(registry.list().unwrap().is_empty());
}

#[tokio::test]
async fn launch_stops_a_server_that_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let exe = script(
        dir.path(),
        "server",
        &format!("echo $$ > {}; exec sleep 60", pidfile.display()),
    );
    let mut opts = options(dir.path(), exe);
    opts.ready_timeout = Duration::from_millis(300);
    match Server::launch(opts).await {
        Err(Error::ReadyTimeout { timeout, .. }) => {
            assert_eq!(timeout, Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!running(pid));
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // Ignores SIGTERM, so only SIGKILL ends it; `exec` keeps the pid.
    let exe = script(
        dir.path(),
        "server",
        "trap '' TERM; echo started; while :; do sleep 1; done",
    );
    let mut opts = options(dir.path(), exe);
    opts.stop_grace = Duration::from_millis(200);
    let server = Server::spawn(opts).await.unwrap();
    let log = server.log_path().to_owned();
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("started"))
        })
        .await
    );
    let pid = server.pid();
    let status = server.stop().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!running(pid));
}

#[tokio::test]
async fn long_runtime_dirs_get_a_short_hashed_socket() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "server", "echo \"$@\"; exec sleep 60");
    let mut opts = options(dir.path(), exe);
    let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
    opts.runtime_dir = Some(deep.clone());
    let server = Server::spawn(opts).await.unwrap();
    let Endpoint::Unix { socket } = server.endpoint().clone() else {
        panic!("default transport is a Unix socket");
    };
    assert!(socket.as_os_str().len() <= MAX_SOCKET_PATH, "{socket:?}");
    assert!(socket.starts_with(dir.path().join("s")));
    assert!(server.log_path().starts_with(&deep));
    let log = server.log_path().to_owned();
    let host_arg = format!("--host {}", socket.display());
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&host_arg))
        })
        .await
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn runtime_dir_is_private_and_the_api_key_stays_off_the_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "server",
        "echo \"key=$LLAMA_API_KEY\"; echo \"args=$*\"; exec sleep 60",
    );
    let mut opts = options(dir.path(), exe);
    opts.args.api_key = Some("hunter2".into());
    opts.transport = TransportChoice::Http(HttpPort::Auto);
    let server = Server::spawn(opts).await.unwrap();
    let mode = std::fs::metadata(dir.path().join("run"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let log = server.log_path().to_owned();
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("args="))
        })
        .await
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("key=hunter2"), "{text}");
    let args = text.lines().find(|l| l.starts_with("args=")).unwrap();
    assert!(!args.contains("hunter2"), "{args}");
    assert!(args.contains("--port"), "{args}");
    assert!(!server.record().args.iter().any(|a| a.contains("hunter2")));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn held_fixed_port_is_refused_before_spawning() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let exe = script(dir.path(), "server", "exec sleep 60");
    let mut opts = options(dir.path(), exe);
    opts.transport = TransportChoice::Http(HttpPort::Fixed(port));
    match Server::spawn(opts).await {
        Err(Error::PortInUse { port: p, .. }) => assert_eq!(p, port),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn parent_death_kills_the_server() {
    // Two roles in one test: with the variable set this process is the helper that
    // launches a server and waits to be killed.
    if let Ok(dir) = std::env::var("LMCPP_IT_HELPER_DIR") {
        let dir = PathBuf::from(dir);
        let exe = dir.join("server");
        let server = Server::spawn(options(&dir, exe)).await.unwrap();
        std::fs::write(dir.join("server.pid.tmp"), server.pid().to_string()).unwrap();
        std::fs::rename(dir.join("server.pid.tmp"), dir.join("server.pid")).unwrap();
        std::future::pending::<()>().await;
    }
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "server", "exec sleep 60");
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "launch::parent_death_kills_the_server",
            "--nocapture",
        ])
        .env("LMCPP_IT_HELPER_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pidfile = dir.path().join("server.pid");
    assert!(eventually(Duration::from_secs(20), || pidfile.exists()).await);
    let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert!(running(pid));
    helper.kill().unwrap();
    helper.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(2), || !running(pid)).await,
        "server {pid} outlived its SIGKILLed parent"
    );
}

#[test]
fn a_server_outlives_the_thread_that_spawned_it_but_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "server", "exec sleep 60");
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };

    // The parent-death signal is tied to the thread that forks; spawning from a
    // short-lived thread must not kill the server when that thread ends.
    let opts = options(dir.path(), exe.clone());
    let server = std::thread::spawn(move || runtime().block_on(Server::spawn(opts)).unwrap())
        .join()
        .unwrap();
    let pid = server.pid();
    let rt = runtime();
    let died = rt.block_on(eventually(Duration::from_millis(300), || !running(pid)));
    assert!(!died, "server died with the thread that spawned it");
    rt.block_on(server.stop()).unwrap();

    // A panic unwinds through the handle, which stops the server.
    let opts = options(dir.path(), exe);
    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = std::thread::spawn(move || {
        runtime().block_on(async {
            let server = Server::spawn(opts).await.unwrap();
            tx.send(server.pid()).unwrap();
            panic!("parent panics while the server runs");
        })
    })
    .join();
    assert!(panicked.is_err());
    let pid = rx.recv().unwrap();
    assert!(!running(pid), "server outlived the panic");
}
