//! A multi-model proxy as the target of the client commands: `--server <proxy id>` and the
//! default target (the proxy alone, its model servers not counted) send requests to the
//! proxy, `--model ALIAS` names the model in each request (and finds the proxy serving it),
//! and a proxy with several models and no `--model` is bad input naming its aliases.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};

use serde_json::Value;

use super::Env;

/// A foreground `lmcpp serve`, SIGKILLed if a test ends before it stops.
struct Foreground {
    child: Child,
    id: String,
}

impl Foreground {
    /// Starts `lmcpp serve ARGS` and waits for its first line, `<id> <endpoint>`, which
    /// it prints once the proxy listens.
    fn start(env: &Env, args: &[&str]) -> Self {
        let mut child = env
            .cmd(&[&["serve"], args].concat())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let id = line.split_whitespace().next().unwrap_or_else(|| {
            let _ = child.kill();
            panic!("no `<id> <endpoint>` line from lmcpp serve {args:?}: {line:?}")
        });
        Self {
            id: id.to_owned(),
            child,
        }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `lmcpp ARGS` expecting exit status 2 and every word of `words` on stderr.
fn bad_input(env: &Env, args: &[&str], words: &[&str]) {
    let out = env.cmd(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "lmcpp {args:?}: {err}");
    for w in words {
        assert!(err.contains(w), "lmcpp {args:?}: {w:?} not in {err}");
    }
}

/// `complete` with a fixed seed and temperature 0, as JSON.
fn complete(env: &Env, target: &[&str]) -> Value {
    let args = [
        &[
            "complete",
            "Once upon a time",
            "-n",
            "4",
            "--temperature",
            "0",
        ][..],
        target,
    ]
    .concat();
    env.json(&args)
}

#[test]
fn client_commands_reach_a_proxy_by_id_alias_or_as_the_only_one_running() {
    let env = Env::new();
    let (a, b) = (format!("a={}", env.model()), format!("b={}", env.model()));
    let proxy = Foreground::start(&env, &["--model", &a, "--model", &b]);
    let id = proxy.id.as_str();

    // Two models and none chosen: bad input naming them, by id or as the default target.
    let several = ["serves 2 models (a, b)", "--model ALIAS"];
    bad_input(
        &env,
        &["complete", "x", "-n", "1", "--server", id],
        &several,
    );
    bad_input(&env, &["tokenize", "x"], &several);
    bad_input(
        &env,
        &["complete", "x", "--server", id, "--model", "c"],
        &["serves no model c", "a, b"],
    );

    // `--model` names the model in the request: by the proxy's id, or alone (the proxy
    // serving that alias is found).
    let by_id = complete(&env, &["--server", id, "--model", "b"]);
    assert_eq!(by_id["model"], "b", "{by_id}");
    assert!(by_id["tokens_predicted"].as_u64().unwrap() > 0, "{by_id}");
    let by_alias = complete(&env, &["--model", "a"]);
    assert_eq!(by_alias["model"], "a", "{by_alias}");
    assert_eq!(
        by_alias["content"], by_id["content"],
        "the same model twice"
    );
    let tokens = env.json(&["tokenize", "Hello world", "--model", "a"]);
    assert!(!tokens["tokens"].as_array().unwrap().is_empty(), "{tokens}");
    let text = env.ok(&["detokenize", "15043", "--model", "b"]);
    assert!(!text.trim().is_empty());
    let props = env.json(&["props", "--server", id, "--model", "b"]);
    assert_eq!(props["model_alias"], "b", "{props}");
    // The proxy answers its own health, whichever models run.
    assert_eq!(env.ok(&["health"]).trim(), "ok");

    // Streaming and chat through the proxy.
    let streamed = env.ok(&[
        "complete",
        "Once upon a time",
        "-n",
        "4",
        "--temperature",
        "0",
        "--stream",
        "--model",
        "b",
    ]);
    assert_eq!(streamed.trim_end_matches('\n'), by_id["content"]);
    let mut chat = env
        .cmd(&["chat", "-n", "3", "--server", id, "--model", "a"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    chat.stdin
        .take()
        .unwrap()
        .write_all(b"Hi\n/exit\n")
        .unwrap();
    let out = chat.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);

    // Both model servers run now, and the proxy is still the only target: its model
    // servers are its own, not servers to talk to behind its back.
    let ps = env.json(&["ps"]);
    let running = ps.as_array().unwrap();
    assert_eq!(running.len(), 3, "the proxy and two model servers: {ps}");
    bad_input(&env, &["complete", "x", "-n", "1"], &several);
    // A llama-server with `--model` is refused, naming what --model means there.
    let server = running.iter().find(|e| e["kind"] == "server").unwrap();
    bad_input(
        &env,
        &[
            "complete",
            "x",
            "--server",
            server["id"].as_str().unwrap(),
            "--model",
            "a",
        ],
        &["serving one model", "drop --model"],
    );
}

#[test]
fn a_proxy_of_one_model_is_the_default_target_without_model() {
    let env = Env::new();
    let only = format!("only={}", env.model());
    let _proxy = Foreground::start(&env, &["--model", &only, "--keep-alive", "10m"]);
    let done = complete(&env, &[]);
    assert_eq!(done["model"], "only", "{done}");
}
