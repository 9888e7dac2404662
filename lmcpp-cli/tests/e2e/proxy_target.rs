//! A multi-model proxy as the target of the client commands: `--server <proxy id>` and the
//! default target (the proxy alone, its model servers not counted) send requests to the
//! proxy, `--model ALIAS` names the model in each request (and finds the proxy serving it),
//! and a proxy with several models and no `--model` is bad input naming its aliases;
//! `lmcpp embed` to a proxy's pooling model; `--url` with `--model` for a proxy known only by
//! its address. The proxy's own log (`lmcpp logs <id>`), in the foreground as with `--detach`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Env;

/// How long a test waits for what the proxy logs after a command returned.
const LIMIT: Duration = Duration::from_secs(30);

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

/// `metrics` of model b through the proxy `id`, as text (by the default target) and as
/// samples: its counter of predicted tokens counts what b predicted.
fn assert_b_metrics_count_its_tokens(env: &Env, id: &str) {
    let text = env.ok(&["metrics", "--model", "b"]);
    assert!(text.contains("llamacpp:tokens_predicted_total"), "{text}");
    let samples = env.json(&["metrics", "--server", id, "--model", "b"]);
    let predicted = samples
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "llamacpp:tokens_predicted_total")
        .unwrap_or_else(|| panic!("{samples}"));
    assert!(predicted["value"].as_f64().unwrap() >= 4.0, "{samples}");
}

/// One turn of `lmcpp chat -n 3 <target>` ("Hi", then `/exit`); its stdout.
fn chat_one_turn(env: &Env, target: &[&str]) -> String {
    let mut chat = env
        .cmd(&[&["chat", "-n", "3"][..], target].concat())
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
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn client_commands_reach_a_proxy_by_id_alias_or_as_the_only_one_running() {
    let env = Env::new();
    let (a, b) = (format!("a={}", env.model()), format!("b={}", env.model()));
    let proxy = Foreground::start(&env, &["--model", &a, "--model", &b, "--", "--metrics"]);
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
    props_are_bs(
        &props,
        "client_commands_reach_a_proxy_by_id_alias_or_as_the_only_one_running",
    );
    // GETs name their model in the query: b's metrics count what b predicted.
    assert_b_metrics_count_its_tokens(&env, id);
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
    let answer = chat_one_turn(&env, &["--server", id, "--model", "a"]);
    assert_eq!(answer.lines().count(), 1, "{answer}");

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

/// The proxy's log as `lmcpp logs` shows it, once it holds `want` (what the proxy logs
/// after the command that caused it has returned: a stop, say), within `limit`.
fn log_with(env: &Env, id: &str, want: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let log = env.ok(&["logs", id, "-n", "200"]);
        if log.contains(want) {
            return log;
        }
        assert!(Instant::now() < deadline, "{want:?} not logged: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_foreground_proxy_logs_its_starts_stops_and_failures_where_its_record_says() {
    let env = Env::new();
    let bogus = env.dir.path().join("bogus.gguf");
    // GGUF magic, then garbage: llama-server itself refuses it.
    std::fs::write(&bogus, b"GGUF\x03\x00\x00\x00garbage that is not a model").unwrap();
    let (a, bad) = (
        format!("a={}", env.model()),
        format!("bad={}", bogus.display()),
    );
    let mut proxy = Foreground::start(
        &env,
        &["--model", &a, "--model", &bad, "--keep-alive", "1s"],
    );
    let id = proxy.id.clone();
    let log = env.ok(&["logs", &id]);
    assert!(log.contains("lmcpp: serving 2 models on unix:"), "{log}");

    complete(&env, &["--model", "a"]);
    let out = env
        .cmd(&["complete", "x", "--model", "bad"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // A second of keep-alive: the idle model's server stops, and the log says why.
    let log = log_with(&env, &id, "stopped (idle for its keep-alive of 1s)", LIMIT);
    let lines = |prefix: &str| log.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(lines("lmcpp: model a: starting "), 1, "{log}");
    assert_eq!(lines("lmcpp: model a: ready (server "), 1, "{log}");
    assert_eq!(lines("lmcpp: model bad: failed to start: "), 1, "{log}");
    assert_eq!(lines("lmcpp: serving 2 models"), 1, "{log}");

    // Stopped, the proxy says so last, in the file its record named.
    let record = env.json(&["ps"])[0].clone();
    assert_eq!(record["id"], id.as_str(), "{record}");
    let path = PathBuf::from(record["log_path"].as_str().unwrap());
    env.ok(&["stop", &id]);
    proxy.child.wait().unwrap();
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(
        log.ends_with("stopping the proxy and its models\nlmcpp: stopped\n"),
        "{log}"
    );
}

#[test]
fn a_detached_proxy_logs_each_line_once() {
    let env = Env::new();
    let (a, b) = (format!("a={}", env.model()), format!("b={}", env.model()));
    let record = env.json(&["serve", "--model", &a, "--model", &b, "--detach"]);
    let id = record["id"].as_str().unwrap();
    complete(&env, &["--model", "b"]);
    let log = log_with(&env, id, "model b: ready", LIMIT);
    for line in [
        "lmcpp: serving 2 models",
        "lmcpp: model b: starting",
        "lmcpp: model b: ready",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line}: {log}");
    }
}

/// The models of the proxy `id`, as `lmcpp ps --json` lists them.
pub(crate) fn ps_models(env: &Env, id: &str) -> Vec<serde_json::Value> {
    let ps = env.json(&["ps"]);
    let proxy = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("proxy {id} not in ps: {ps}"));
    proxy["models"]
        .as_array()
        .unwrap_or_else(|| panic!("no models: {proxy}"))
        .clone()
}

/// `alias:state` of each model of the proxy `id`, as `lmcpp ps --json` reports them.
pub(crate) fn model_states(env: &Env, id: &str) -> Vec<String> {
    ps_models(env, id)
        .iter()
        .map(|m| {
            format!(
                "{}:{}",
                m["alias"].as_str().unwrap(),
                m["state"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn embed_reaches_the_pooling_model_of_a_proxy() {
    let env = Env::new();
    let config = env.dir.path().join("lmcpp.toml");
    std::fs::write(
        &config,
        format!(
            "[[models]]\nalias = \"chat\"\nmodel = \"{demo}\"\n\n\
             [[models]]\nalias = \"embed\"\nmodel = \"{demo}\"\n\
             embeddings = true\npooling = \"mean\"\n",
            demo = env.model()
        ),
    )
    .unwrap();
    let proxy = Foreground::start(&env, &["--config", config.to_str().unwrap()]);
    let id = proxy.id.as_str();
    bad_input(
        &env,
        &["embed", "x"],
        &["serves 2 models (chat, embed)", "--model ALIAS"],
    );

    let n_embd = env.json(&["model", "inspect", env.model()])["embedding_length"].clone();
    let embedded = env.json(&["embed", "first text", "second text", "--model", "embed"]);
    let vectors: Vec<&Value> = embedded
        .as_array()
        .unwrap_or_else(|| panic!("{embedded}"))
        .iter()
        .map(|e| &e["embedding"][0])
        .collect();
    assert_eq!(vectors.len(), 2, "{embedded}");
    for v in &vectors {
        assert_eq!(
            Value::from(v.as_array().map(Vec::len)),
            n_embd,
            "{embedded}"
        );
    }
    assert_ne!(vectors[0], vectors[1], "{embedded}");
    // Only the model asked for started.
    assert_eq!(model_states(&env, id), ["chat:stopped", "embed:ready"]);

    // The chat model was started without pooling: its server, not the proxy, refuses.
    let out = env
        .cmd(&["embed", "x", "--server", id, "--model", "chat"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--embeddings"), "{err}");
    assert_eq!(model_states(&env, id), ["chat:ready", "embed:ready"]);
}

#[test]
fn url_and_model_reach_a_proxy_known_only_by_its_address() {
    let env = Env::new();
    let (a, b) = (format!("a={}", env.model()), format!("b={}", env.model()));
    let proxy = Foreground::start(&env, &["--model", &a, "--model", &b, "--http"]);
    let id = proxy.id.as_str();
    let ps = env.json(&["ps"]);
    let endpoint = &ps[0]["endpoint"];
    assert_eq!(ps[0]["id"], id, "{ps}");
    let url = format!(
        "http://{}:{}",
        endpoint["host"].as_str().unwrap(),
        endpoint["port"]
    );
    // A client whose registry knows nothing of the proxy: only the URL leads to it.
    let elsewhere = Env::new();
    let done = complete(&elsewhere, &["--url", &url, "--model", "b"]);
    assert_eq!(done["model"], "b", "{done}");
    assert!(done["tokens_predicted"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(model_states(&env, id), ["a:stopped", "b:ready"]);
    let tokens = elsewhere.json(&["tokenize", "Hello world", "--url", &url, "--model", "a"]);
    assert!(!tokens["tokens"].as_array().unwrap().is_empty(), "{tokens}");
    assert_eq!(model_states(&env, id), ["a:ready", "b:ready"]);
    // A GET names its model in the query.
    let props = elsewhere.json(&["props", "--url", &url, "--model", "b"]);
    props_are_bs(
        &props,
        "url_and_model_reach_a_proxy_known_only_by_its_address",
    );

    // The proxy's own refusals: no model named, and one it does not serve.
    for (model, words) in [
        (None, ["names no model", "`a`, `b`"]),
        (Some("c"), ["`c` is not served here", "`a`, `b`"]),
    ] {
        let mut args = vec!["complete", "x", "-n", "1", "--url", &url];
        args.extend(model.iter().flat_map(|m| ["--model", *m]));
        let out = elsewhere.cmd(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The proxy's 400 and 404 are the request as asked: bad input, as the registry
        // path's refusal is.
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {w:?} not in {err}");
        }
    }

    // A llama-server of one model (b's own, on its socket) takes the name and ignores it.
    let server = ps_entry_of_model(&env, "b");
    let socket = server["endpoint"]["socket"].as_str().unwrap().to_owned();
    let done = complete(&elsewhere, &["--url", &socket, "--model", "any-name"]);
    assert!(done["tokens_predicted"].as_u64().unwrap() > 0, "{done}");
    let props = elsewhere.json(&["props", "--url", &socket, "--model", "any-name"]);
    assert!(props["model_path"].is_string(), "{props}");
    // A llama-server that names its model in `/props` answers under that name; one that
    // does not echoes the request's.
    let expected = props["model_alias"].as_str().unwrap_or("any-name");
    assert_eq!(done["model"], expected, "{done} {props}");
}

/// `/props` of the proxy's model `b`: with its alias where the llama-server names its model
/// there, else (reported by `test`) a model server's answer all the same.
fn props_are_bs(props: &Value, test: &str) {
    if props.get("model_alias").is_some() {
        assert_eq!(props["model_alias"], "b", "{props}");
    } else {
        assert!(props["model_path"].is_string(), "{props}");
        crate::supports().lacks(
            test,
            "`model_alias` in /props",
            "the proxy's /props answer for b is a model server's",
        );
    }
}

/// The `lmcpp ps --json` entry of the server of the proxy's model `alias`.
pub(crate) fn ps_entry_of_model(env: &Env, alias: &str) -> Value {
    let ps = env.json(&["ps"]);
    ps.as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "server" && e["alias"] == alias)
        .unwrap_or_else(|| panic!("no server of {alias}: {ps}"))
        .clone()
}
