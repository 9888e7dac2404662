//! End-to-end tests of lmcpp-types against the real `llama-server` named in
//! `target/lmcpp-test/paths.json` (written by `cargo xtask prepare`): a rendered argv
//! with many flags is accepted, secrets reach the server through the environment, and
//! a `.sock` host serves over a Unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lmcpp_toolchain::prepared::PreparedPaths;
use lmcpp_types::ServerArgs;
use lmcpp_types::health::{HealthResponse, HealthStatus};
use lmcpp_types::openai::models::ModelList;
use lmcpp_types::props::Props;

fn paths() -> PreparedPaths {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    PreparedPaths::load(root).unwrap_or_else(|e| panic!("{e}"))
}

/// Kills the server when the test ends, however it ends.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn spawn(bin: &Path, args: &ServerArgs, dir: &Path) -> Running {
    let argv = args.to_argv().expect("valid ServerArgs");
    let log = dir.join("server.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(bin)
        .args(&argv)
        .envs(args.secret_env())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("spawn llama-server");
    Running { child, log }
}

/// One HTTP/1.1 request over any stream; returns status and body (the server closes
/// the connection because we ask it to, so reading to the end is enough).
fn http<S: Read + Write>(mut s: S, method: &str, path: &str, headers: &str) -> (u16, String) {
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\nContent-Length: 0\r\n\r\n")
        .expect("write request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `/health` until 200, failing early when the server exits.
fn wait_ready(server: &mut Running, mut connect: impl FnMut() -> Option<(u16, String)>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            panic!(
                "llama-server rejected the argv and exited with {status}:\n{}",
                server.log_tail()
            );
        }
        if let Some((200, body)) = connect() {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "llama-server not ready after 60 s:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn rendered_argv_with_many_flags_is_accepted_and_secrets_arrive_via_env() {
    let p = paths();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut a = ServerArgs::new(&p.demo_model);
    a.host = Some("127.0.0.1".into());
    a.port = Some(port);
    a.ctx_size = Some(1024);
    a.parallel = Some(2);
    a.threads = Some(1);
    a.threads_batch = Some(1);
    a.threads_http = Some(2);
    a.batch_size = Some(256);
    a.ubatch_size = Some(128);
    a.n_predict = Some(-1);
    a.keep = Some(0);
    a.seed = Some(42);
    a.temp = Some(0.7);
    a.top_k = Some(20);
    a.top_p = Some(0.9);
    a.min_p = Some(0.05);
    a.repeat_penalty = Some(1.1);
    a.repeat_last_n = Some(32);
    a.samplers = Some("top_k;top_p;min_p;temperature".into());
    a.flash_attn = Some("off".into());
    a.kv_offload = Some(false);
    a.cont_batching = Some(true);
    a.context_shift = Some(false);
    a.cache_prompt = Some(true);
    a.cache_reuse = Some(0);
    a.jinja = Some(true);
    a.alias = vec!["demo".into(), "demo-alias".into()];
    a.metrics = true;
    a.props = true;
    a.slots = Some(true);
    a.slot_save_path = Some(dir.path().join("slots"));
    a.ui = Some(false);
    a.timeout = Some(30);
    a.warmup = Some(false);
    a.api_key = Some("lmcpp-e2e-secret".into());
    a.extra = vec!["--log-verbosity".into(), "3".into()];
    std::fs::create_dir_all(dir.path().join("slots")).expect("slots dir");

    let argv = a.to_argv().expect("valid");
    assert!(argv.len() > 60, "{argv:?}");
    assert!(!argv.iter().any(|x| x.contains("lmcpp-e2e-secret")));

    let mut server = spawn(&p.llama_server, &a, dir.path());
    let body = wait_ready(&mut server, || {
        TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|s| http(s, "GET", "/health", ""))
    });
    let health: HealthResponse = serde_json::from_str(&body).expect("health body");
    assert_eq!(health.status, HealthStatus::Ok);

    // The key travelled through LLAMA_API_KEY: requests without it are refused.
    let (status, _) = http(
        TcpStream::connect(("127.0.0.1", port)).expect("connect"),
        "GET",
        "/v1/models",
        "",
    );
    assert_eq!(
        status, 401,
        "the API key from the environment is not enforced"
    );
    let auth = "Authorization: Bearer lmcpp-e2e-secret\r\n";
    let (status, body) = http(
        TcpStream::connect(("127.0.0.1", port)).expect("connect"),
        "GET",
        "/v1/models",
        auth,
    );
    assert_eq!(status, 200, "{body}");
    let models: ModelList = serde_json::from_str(&body).expect("models");
    assert_eq!(models.data[0].id, "demo");

    // Settings from argv are visible in /props.
    let (status, body) = http(
        TcpStream::connect(("127.0.0.1", port)).expect("connect"),
        "GET",
        "/props",
        auth,
    );
    assert_eq!(status, 200, "{body}");
    let props: Props = serde_json::from_str(&body).expect("props");
    assert_eq!(props.total_slots, 2);
    let params = props
        .default_generation_settings
        .and_then(|d| d.params)
        .expect("params");
    assert_eq!(params.top_k, Some(20));
    assert_eq!(params.seed, Some(42));
}

#[test]
fn sock_host_serves_over_a_unix_socket() {
    let p = paths();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("llama.sock");
    let mut a = ServerArgs::new(&p.demo_model);
    a.host = Some(sock.to_string_lossy().into_owned());
    a.ctx_size = Some(256);
    a.threads = Some(1);
    a.ui = Some(false);
    assert!(a.is_unix_socket());

    let mut server = spawn(&p.llama_server, &a, dir.path());
    let body = wait_ready(&mut server, || {
        UnixStream::connect(&sock)
            .ok()
            .map(|s| http(s, "GET", "/health", ""))
    });
    let health: HealthResponse = serde_json::from_str(&body).expect("health body");
    assert_eq!(health.status, HealthStatus::Ok);
}
