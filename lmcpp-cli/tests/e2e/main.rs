//! End-to-end tests of the `lmcpp` binary against the real llama-server and the demo model
//! (both provided by `cargo xtask prepare`; see `target/lmcpp-test/paths.json`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::{Command, Stdio};

use lmcpp_test_support::PreparedPaths;

mod blocking;
mod library_proxy;
mod names;
mod proxy;
mod proxy_reload;
mod proxy_router;
mod proxy_target;
mod real_clients;
mod rpc;

/// Places a hub snapshot file as `huggingface_hub` does: a link to its blob (`blob` is
/// relative to the link's folder), or a copy of the blob where links need a privilege
/// (Windows).
fn hub_link(blob: &str, link: &std::path::Path) {
    #[cfg(unix)]
    std::os::unix::fs::symlink(blob, link).unwrap();
    #[cfg(windows)]
    std::fs::copy(link.parent().unwrap().join(blob), link).unwrap();
}

/// Reads the prerequisites; fails (never skips) with the command that provides them.
fn paths() -> PreparedPaths {
    lmcpp_test_support::prepared()
}

/// What the `llama-server` under test says it supports (read once per test binary).
fn supports() -> &'static lmcpp_test_support::Supports {
    static SUPPORTS: std::sync::OnceLock<lmcpp_test_support::Supports> = std::sync::OnceLock::new();
    SUPPORTS.get_or_init(|| paths().supports(&lmcpp_test_support::workspace_root()))
}

struct Env {
    dir: tempfile::TempDir,
    paths: PreparedPaths,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            paths: paths(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lmcpp"));
        c.arg("--home")
            .arg(self.dir.path().join("home"))
            .arg("--runtime-dir")
            .arg(self.dir.path().join("run"))
            .arg("--llama-server")
            .arg(&self.paths.llama_server)
            .arg("--quiet")
            .args(args)
            .env_remove("LMCPP_HOME")
            // The Hugging Face cache too: nothing is looked for or written in `~`.
            .env("HF_HUB_CACHE", self.dir.path().join("hub"));
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "lmcpp {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("lmcpp {args:?}: not JSON ({e}): {text}"))
    }

    fn model(&self) -> &str {
        self.paths.demo_model.to_str().unwrap()
    }
}

/// Stops every server of this test's runtime dir even when an assertion failed.
impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.cmd(&["stop", "--all"]).output();
    }
}

fn pid_alive(pid: u64) -> bool {
    u32::try_from(pid).is_ok_and(lmcpp_test_support::running)
}

#[test]
fn run_answers_a_prompt() {
    let env = Env::new();
    let out = env.ok(&[
        "run",
        "--model",
        env.model(),
        "-n",
        "8",
        "--seed",
        "1",
        "Hello",
    ]);
    assert!(!out.trim().is_empty(), "no answer streamed");
    // The one-shot server is gone afterwards.
    assert_eq!(env.json(&["ps"]), serde_json::json!([]));
}

#[test]
fn serve_detach_ps_complete_chat_stop() {
    let env = Env::new();
    let record = env.json(&["serve", "--model", env.model(), "--detach"]);
    let id = record["id"].as_str().unwrap().to_owned();
    let pid = record["pid"].as_u64().unwrap();
    assert!(pid_alive(pid));

    let ps = env.json(&["ps"]);
    assert_eq!(ps.as_array().unwrap().len(), 1, "{ps}");
    assert_eq!(ps[0]["id"], id.as_str());

    let done = env.json(&[
        "complete",
        "Once upon a time",
        "-n",
        "6",
        "--temperature",
        "0",
        "--server",
        &id,
    ]);
    assert!(done["content"].is_string(), "{done}");
    assert!(done["tokens_predicted"].as_u64().unwrap() > 0, "{done}");

    // Streaming output equals the non-streamed answer at temperature 0.
    let streamed = env.ok(&[
        "complete",
        "Once upon a time",
        "-n",
        "6",
        "--temperature",
        "0",
        "--stream",
    ]);
    assert_eq!(
        streamed.trim_end_matches('\n'),
        done["content"].as_str().unwrap()
    );

    let tokens = env.json(&["tokenize", "Hello world"]);
    assert!(!tokens["tokens"].as_array().unwrap().is_empty(), "{tokens}");

    // Chat with piped input: two turns, then /exit.
    let mut chat = env
        .cmd(&["chat", "-n", "4", "--server", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = chat.stdin.take().unwrap();
        stdin.write_all(b"Hi there\nAnd again\n/exit\n").unwrap();
    }
    let out = chat.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        answers.lines().count(),
        2,
        "one answer line per turn: {answers:?}"
    );

    assert_eq!(env.json(&["health"])["status"], "ok");
    let props = env.json(&["props"]);
    assert!(
        props["model_path"]
            .as_str()
            .is_some_and(|p| p.ends_with(".gguf")),
        "{props}"
    );

    env.ok(&["stop", &id]);
    assert!(!pid_alive(pid), "server {pid} still running after stop");
    assert_eq!(env.json(&["ps"]), serde_json::json!([]));
}

#[test]
fn embed_with_a_pooling_server() {
    let env = Env::new();
    let record = env.json(&[
        "serve",
        "--model",
        env.model(),
        "--detach",
        "--",
        "--embeddings",
        "--pooling",
        "mean",
    ]);
    let id = record["id"].as_str().unwrap().to_owned();
    let v = env.json(&["embed", "first text", "second text", "--server", &id]);
    println!("embed: {}", &v.to_string()[..v.to_string().len().min(200)]);
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(2),
        "two embeddings expected: {v}"
    );
}

#[test]
fn a_non_gguf_model_and_an_unknown_server_are_bad_input() {
    let env = Env::new();
    let bogus = env.dir.path().join("bogus.gguf");
    // GGUF magic, then garbage: passes lmcpp's check, fails in llama-server itself.
    std::fs::write(&bogus, b"GGUF\x03\x00\x00\x00garbage that is not a model").unwrap();
    let out = env
        .cmd(&["serve", "--model", bogus.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited during start-up"), "{err}");

    let out = env
        .cmd(&["complete", "x", "--server", "ffffffffffff"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ffffffffffff"));
}
