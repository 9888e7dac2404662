//! Launch, readiness and containment against stand-in "servers" (shell scripts), so these
//! run without llama-server.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use lmcpp_server::{
    Endpoint, Error, HttpPort, LaunchOptions, MAX_SOCKET_PATH, Readiness, Server, TransportChoice,
};

use crate::support::{eventually, running, script};

fn options(dir: &Path, binary: PathBuf) -> LaunchOptions {
    crate::support::launch_options(dir, binary)
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

/// A wrapper script that forks its server instead of `exec`ing it: the parent-death
/// signal reaches only the wrapper, so without the lifeline the forked process would
/// outlive a SIGKILLed lmcpp.
#[tokio::test]
async fn parent_death_kills_what_a_forking_wrapper_started() {
    if let Ok(dir) = std::env::var("LMCPP_IT_FORK_HELPER_DIR") {
        let dir = PathBuf::from(dir);
        let server = Server::spawn(options(&dir, dir.join("server")))
            .await
            .unwrap();
        std::mem::forget(server);
        std::future::pending::<()>().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("forked.pid");
    script(
        dir.path(),
        "server",
        &format!(
            "sleep 60 & echo $! > {0}.tmp; mv {0}.tmp {0}; wait",
            pidfile.display()
        ),
    );
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "launch::parent_death_kills_what_a_forking_wrapper_started",
            "--nocapture",
        ])
        .env("LMCPP_IT_FORK_HELPER_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(20), || pidfile.exists()).await);
    let forked: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(running(forked));
    helper.kill().unwrap();
    helper.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !running(forked)).await,
        "the wrapper's forked process {forked} outlived its SIGKILLed lmcpp"
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

#[tokio::test]
async fn passthrough_cannot_override_what_the_launcher_owns() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("spawned");
    let exe = script(
        dir.path(),
        "server",
        &format!("touch {}; exec sleep 60", marker.display()),
    );
    type Env<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Vec<&str>, Env, &str)> = vec![
        (vec!["--host", "0.0.0.0"], vec![], "--host"),
        (vec!["--ctx-size", "8", "--host=0.0.0.0"], vec![], "--host"),
        (vec!["--port", "80"], vec![], "--port"),
        (vec!["-m", "other.gguf"], vec![], "-m"),
        (vec!["--model=other.gguf"], vec![], "--model"),
        (vec!["-hf", "owner/repo"], vec![], "-hf"),
        (vec!["--api-key-file", "/k"], vec![], "--api-key-file"),
        (
            vec![],
            vec![("LLAMA_ARG_HOST", "0.0.0.0")],
            "LLAMA_ARG_HOST",
        ),
        (
            vec![],
            vec![("LLAMA_ARG_MODEL", "other.gguf")],
            "LLAMA_ARG_MODEL",
        ),
        (vec![], vec![("LLAMA_API_KEY", "k")], "LLAMA_API_KEY"),
    ];
    for (extra, env, flag) in cases {
        let mut opts = options(dir.path(), exe.clone());
        opts.args.extra = extra.iter().map(|s| s.to_string()).collect();
        opts.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match Server::spawn(opts).await {
            Err(e @ Error::LauncherOwned { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&format!("`{flag}`")), "{msg}");
                assert!(msg.contains("set "), "{msg}");
            }
            other => panic!("{extra:?} {env:?}: {other:?}"),
        }
    }
    assert!(!marker.exists(), "a server was started");
    // A value that merely looks like an owned flag is a value.
    let mut opts = options(dir.path(), exe);
    opts.args.extra = vec!["--alias".into(), "--host".into()];
    Server::spawn(opts).await.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn serving_beyond_loopback_is_an_explicit_transport() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "server", "echo \"args=$*\"; exec sleep 60");
    let mut opts = options(dir.path(), exe);
    // Another loopback address stands in for a LAN address: tests stay on loopback.
    let bind: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    opts.transport = TransportChoice::PublicHttp {
        bind,
        port: HttpPort::Auto,
    };
    let server = Server::spawn(opts).await.unwrap();
    let Endpoint::Http { host, port } = server.endpoint().clone() else {
        panic!("{:?}", server.endpoint());
    };
    assert_eq!(host, "127.0.0.2");
    let log = server.log_path().to_owned();
    let want = format!("--host 127.0.0.2 --port {port}");
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&want))
        })
        .await,
        "{:?}",
        std::fs::read_to_string(&log)
    );
    server.stop().await.unwrap();
}

/// What a stand-in server saw of its environment, one `NAME=value` per line.
fn seen_env(dump: &Path) -> Vec<String> {
    let mut seen: Vec<String> = std::fs::read_to_string(dump)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("LLAMA_") || l.starts_with("HF_"))
        .map(str::to_owned)
        .collect();
    seen.sort();
    seen
}

#[tokio::test]
async fn the_child_environment_is_explicit() {
    // With the variable set, this process is a helper whose own environment carries
    // llama-server variables (set by the parent test, so no test mutates its own
    // environment while others run).
    if let Ok(dir) = std::env::var("LMCPP_IT_ENV_HELPER_DIR") {
        let dir = PathBuf::from(dir);
        for (inherit, name) in [(false, "plain"), (true, "inherit")] {
            let dump = dir.join(format!("{name}.env"));
            let exe = script(
                &dir,
                &format!("server-{name}"),
                &format!(
                    "env > {0}.tmp; mv {0}.tmp {0}; exec sleep 60",
                    dump.display()
                ),
            );
            let opts = options(&dir, exe).inherit_llama_env(inherit);
            let server = Server::spawn(opts).await.unwrap();
            assert!(eventually(Duration::from_secs(10), || dump.exists()).await);
            server.stop().await.unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "launch::the_child_environment_is_explicit"])
        .env("LMCPP_IT_ENV_HELPER_DIR", dir.path())
        .env("LLAMA_ARG_CTX_SIZE", "4096")
        .env("LLAMA_ARG_HOST", "0.0.0.0")
        .env("LLAMA_API_KEY", "from-env")
        .env("HF_TOKEN", "hf-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // By default nothing of the caller's llama-server environment reaches the child.
    assert_eq!(
        seen_env(&dir.path().join("plain.env")),
        Vec::<String>::new()
    );
    // Asked to inherit: the caller's settings pass, the owned host never does, and the
    // inherited key reaches the server as `ServerArgs::api_key`, the one setting that
    // lmcpp's client sends too.
    assert_eq!(
        seen_env(&dir.path().join("inherit.env")),
        [
            "HF_TOKEN=hf-secret",
            "LLAMA_API_KEY=from-env",
            "LLAMA_ARG_CTX_SIZE=4096"
        ]
    );
}

#[tokio::test]
async fn a_given_runtime_dir_is_never_changed_and_may_be_relative() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let exe = script(dir.path(), "server", "exec sleep 60");
    // An existing, shared runtime dir (like /tmp): lmcpp works in its own subdirectory.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Given relative to the working directory, as a user might type it.
    let cwd = std::env::current_dir().unwrap();
    let relative = PathBuf::from("../".repeat(cwd.components().count() - 1))
        .join(shared.strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    let mut opts = options(dir.path(), exe);
    opts.runtime_dir = Some(relative.clone());
    let server = Server::spawn(opts).await.unwrap();

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&shared), 0o1777, "the given runtime dir was changed");
    let private = shared.join(lmcpp_server::private_dir_name());
    assert_eq!(mode(&private), 0o700);
    let Endpoint::Unix { socket } = server.endpoint().clone() else {
        panic!("default transport is a Unix socket");
    };
    assert!(socket.is_absolute(), "{socket:?}");
    assert_eq!(
        socket.parent().unwrap().canonicalize().unwrap(),
        private.canonicalize().unwrap()
    );
    let registry = lmcpp_server::Registry::new(&relative);
    assert!(registry.dir().is_absolute());
    assert_eq!(
        registry.read(server.id()).unwrap().unwrap().pid,
        server.pid()
    );
    server.stop().await.unwrap();
    // A private dir opened up by someone is made private again; it is lmcpp's own.
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
    registry.ensure_dir().unwrap();
    assert_eq!(mode(&private), 0o700);
    assert_eq!(mode(&shared), 0o1777);
}
