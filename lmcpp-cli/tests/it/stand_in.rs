//! The CLI against a stand-in llama-server: this test binary itself, re-run through a
//! shell script in the role of the server, answering every request with
//! `{"status":"ok"}` (requiring the `LLAMA_API_KEY` it was started with, like the real
//! one) and noting the signal that stopped it. Covers the signals that end a foreground
//! `lmcpp serve`, the one API key setting, and a closed stdout.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Set (to the server's arguments) when this binary runs as the stand-in server.
const SERVER_ARGS: &str = "LMCPP_IT_FAKE_SERVER_ARGS";
/// Where the stand-in notes the signal that ended it.
const SERVER_MARKER: &str = "LMCPP_IT_FAKE_SERVER_MARKER";

/// The stand-in llama-server's entry; a no-op in a normal test run.
#[test]
fn fake_llama_server() {
    let Ok(args) = std::env::var(SERVER_ARGS) else {
        return;
    };
    let marker = PathBuf::from(std::env::var(SERVER_MARKER).unwrap());
    let args: Vec<&str> = args.split_whitespace().collect();
    let value = |flag: &str| {
        let at = args.iter().position(|a| *a == flag)?;
        args.get(at + 1).copied()
    };
    let host = value("--host").unwrap().to_owned();
    let port = value("--port");
    let key = std::env::var("LLAMA_API_KEY").ok();
    std::fs::write(marker.with_extension("key"), key.as_deref().unwrap_or("")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).unwrap();
        let mut hup = signal(SignalKind::hangup()).unwrap();
        let accept = async {
            if let Some(port) = port {
                let l = tokio::net::TcpListener::bind((host.as_str(), port.parse().unwrap()))
                    .await
                    .unwrap();
                loop {
                    let (conn, _) = l.accept().await.unwrap();
                    tokio::spawn(answer_ok(conn, key.clone()));
                }
            } else {
                let l = tokio::net::UnixListener::bind(&host).unwrap();
                loop {
                    let (conn, _) = l.accept().await.unwrap();
                    tokio::spawn(answer_ok(conn, key.clone()));
                }
            }
        };
        let got = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
            () = accept => unreachable!(),
        };
        std::fs::write(&marker, got).unwrap();
    });
}

/// Answers one request with `200 {"status":"ok"}`, whatever it asked; with a `key`,
/// anything but `/health` without `Authorization: Bearer <key>` gets a 401.
async fn answer_ok<S>(mut conn: S, key: Option<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let allowed = head.starts_with("get /health ")
        || key
            .is_none_or(|k| head.contains(&format!("authorization: bearer {}", k.to_lowercase())));
    let (status, body) = if allowed {
        ("200 OK", r#"{"status":"ok"}"#)
    } else {
        (
            "401 Unauthorized",
            r#"{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}"#,
        )
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes()).await;
}

/// A `llama-server` that is this test binary in the stand-in role, and a GGUF for it.
pub(crate) fn stand_in(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let marker = dir.join("stopped-by");
    let script = dir.join("llama-server");
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{SERVER_ARGS}=\"$*\" {SERVER_MARKER}={} exec {} --exact stand_in::fake_llama_server --nocapture\n",
            marker.display(),
            exe.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let model = dir.join("model.gguf");
    std::fs::write(&model, b"GGUF\x03\0\0\0").unwrap();
    (script, model, marker)
}

pub(crate) fn lmcpp(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lmcpp"));
    cmd.arg("--home")
        .arg(dir.join("home"))
        .arg("--runtime-dir")
        .arg(dir.join("run"))
        .arg("--quiet")
        .env_remove("LMCPP_HOME")
        .env_remove("LMCPP_SERVER_BIN")
        .env_remove("LLAMA_API_KEY")
        .env("HF_HUB_CACHE", dir.join("hub"));
    cmd
}

/// Waits for `child` to exit, for at most `timeout`.
fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "lmcpp did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn foreground_serve_stops_its_server_gracefully_on_sigterm_and_sighup() {
    for signal in ["TERM", "HUP", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let (script, model, marker) = stand_in(dir.path());
        let mut serve = lmcpp(dir.path())
            .arg("--llama-server")
            .arg(&script)
            .args(["serve", "--model"])
            .arg(&model)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first line (`<id> <endpoint>`) comes once the server is ready.
        let mut line = String::new();
        BufReader::new(serve.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("unix:"), "{signal}: {line:?}");
        let killed = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(serve.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let status = wait_exit(&mut serve, Duration::from_secs(20));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(status.success(), "{signal}: {status:?}: {stderr}");
        // The server was asked to stop (SIGTERM), not killed with lmcpp.
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap_or_default(),
            "SIGTERM",
            "{signal}: {stderr}"
        );
        let ps = lmcpp(dir.path()).args(["--json", "ps"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "[]", "{signal}");
    }
}

/// A loopback server answering `/props` with `{}`.
fn props_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(answer_ok(conn, None));
            }
        });
    });
    url
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let url = props_server();
    let cases: Vec<Vec<&str>> = vec![
        vec!["ps"],
        vec!["--json", "ps"],
        vec!["schema"],
        vec!["--json", "schema"],
        vec!["schema", "CompletionRequest"],
        vec!["props", "--url", &url],
        vec!["health", "--url", &url],
        vec!["--json", "toolchain", "list"],
        vec!["model", "list"],
    ];
    for args in cases {
        // The reading end is closed before lmcpp writes anything: like `| head -0`.
        let mut child = lmcpp(dir.path())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let status = wait_exit(&mut child, Duration::from_secs(20));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(status.success(), "{args:?}: {status:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

/// The one key setting (`LLAMA_API_KEY`) reaches both the server a command starts and the
/// command's own client: with the key the stand-in refuses keyless requests, and the
/// command succeeds only if its client sends that key.
#[test]
fn a_server_started_for_a_command_gets_the_key_its_client_sends() {
    let dir = tempfile::tempdir().unwrap();
    let (script, model, marker) = stand_in(dir.path());
    let out = lmcpp(dir.path())
        .env("LLAMA_API_KEY", "s3cret")
        .arg("--llama-server")
        .arg(&script)
        .args(["props", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let props: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(props.is_object(), "{props}");
    // The server required the key (it reaches the server as a setting, not by inheritance).
    let seen = std::fs::read_to_string(marker.with_extension("key")).unwrap();
    assert_eq!(seen, "s3cret");
}
