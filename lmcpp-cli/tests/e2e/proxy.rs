//! Many models behind one endpoint, through the `lmcpp` binary: the memory estimate of
//! `model inspect` against the demo model's metadata and against what the real
//! llama-server reports for its slots, and `lmcpp serve --model a=… --model b=…` routing
//! by alias for the typed client, `ps --json` showing the proxy with its models, and a
//! SIGKILLed `lmcpp serve` leaving no model server behind; a config file with two
//! llama.cpp versions and an embedding model behind one socket.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lmcpp::server::{Client, Endpoint};
use lmcpp::types::openai::chat::{ChatCompletionRequest, ChatMessage};
use lmcpp::types::openai::embeddings::OaiEmbeddingRequest;
use lmcpp_test_support::PreparedPaths;
use serde_json::Value;

use super::{Env, pid_alive};

/// `GGML_PAD(n, 256)`.
fn pad(n: u64) -> u64 {
    n.div_ceil(256) * 256
}

#[test]
fn inspect_estimates_the_demo_model_from_its_metadata() {
    let env = Env::new();
    let shown = env.json(&["model", "inspect", env.model()]);
    let num = |k: &str| {
        shown[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} missing: {shown}"))
    };
    let (layers, ctx, embd) = (
        num("block_count"),
        num("context_length"),
        num("embedding_length"),
    );
    let memory = &shown["memory"];
    // The demo model is plain multi-head attention (as many KV heads as heads) in F32:
    // per cell and layer one f16 key and one f16 value row of n_embd; weights 4 bytes each.
    assert_eq!(
        shown["tensor_types"],
        serde_json::json!({"F32": num("tensor_count")})
    );
    assert_eq!(memory["weights_bytes"], num("parameter_count") * 4);
    assert_eq!(
        memory["ctx_size"],
        pad(ctx),
        "the trained context by default"
    );
    assert_eq!(memory["kv_cache_bytes"], layers * pad(ctx) * 2 * embd * 2);
    assert_eq!(memory["slots"], 4);
    assert_eq!(memory["kv_unified"], true);
    let parts = ["weights_bytes", "kv_cache_bytes", "compute_bytes"]
        .iter()
        .map(|k| memory[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(memory["total_bytes"], parts);

    // --ctx-size 4096 --parallel 2: two slots of 2048 on separate streams.
    let shown = env.json(&[
        "model",
        "inspect",
        env.model(),
        "--ctx-size",
        "4096",
        "--parallel",
        "2",
    ]);
    let memory = &shown["memory"];
    assert_eq!(
        (
            &memory["ctx_size"],
            &memory["ctx_per_slot"],
            &memory["slots"]
        ),
        (&Value::from(4096), &Value::from(2048), &Value::from(2))
    );
    assert_eq!(memory["kv_unified"], false);
    assert_eq!(memory["kv_cache_bytes"], layers * 4096 * 2 * embd * 2);

    // The human form says the same.
    let text = env.ok(&["model", "inspect", env.model()]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("memory ") && l.contains("KV cache 1.0 MiB")),
        "{text}"
    );
}

/// A running `lmcpp serve` that is SIGKILLed if a test fails before it does.
pub(crate) struct Serving(pub(crate) Child);

impl Serving {
    /// Starts `lmcpp serve <args>` (which must serve over `--http`) and reads its first
    /// line, `<id> http://127.0.0.1:<port>`, printed once the proxy listens.
    pub(crate) fn http(env: &Env, args: &[&str]) -> (Self, String, u16) {
        let mut child = env
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let serving = Self(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let (id, port) = line
            .trim()
            .split_once(" http://127.0.0.1:")
            .and_then(|(id, port)| Some((id.to_owned(), port.parse().ok()?)))
            .unwrap_or_else(|| panic!("no `<id> http://127.0.0.1:<port>` line: {line:?}"));
        (serving, id, port)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `cond` holds, up to `limit`, re-checking every few milliseconds.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The proxy forwards on a current-thread runtime (a multi-threaded one wakes idle workers
/// on the request path; see the proxy bench): no tokio worker threads in process `pid`,
/// only the blocking pool's, named for lmcpp.
fn assert_no_tokio_workers(pid: u32) {
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .collect();
    assert!(
        !threads.iter().any(|comm| comm.starts_with("tokio-")),
        "{threads:?}"
    );
}

/// `ps --json` lists the proxy `id` with both models ready, each with its own server (also
/// listed, under the proxy and the alias) and the estimate `expected`; returns each model
/// server's pid and id.
fn assert_ps_shows_the_proxy_and_its_models(
    ps: &Value,
    id: &str,
    expected: &Value,
) -> Vec<(u64, String)> {
    let entries = ps.as_array().unwrap();
    let proxy = entries
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("proxy {id} not in ps: {ps}"));
    assert_eq!(proxy["kind"], "proxy");
    let models = proxy["models"].as_array().unwrap();
    let mut pids = Vec::new();
    for (m, alias) in models.iter().zip(["a", "b"]) {
        assert_eq!(m["alias"], alias, "{m}");
        assert_eq!(m["state"], "ready", "{m}");
        assert_eq!(&m["estimate_bytes"], expected, "{m}");
        assert!(m["last_used"].as_u64().is_some(), "{m}");
        let server = m["server_id"].as_str().unwrap();
        let record = entries
            .iter()
            .find(|e| e["id"] == server)
            .unwrap_or_else(|| panic!("model server {server} not in ps: {ps}"));
        assert_eq!(record["proxy"], id, "{record}");
        assert_eq!(record["alias"], alias, "{record}");
        let pid = m["pid"].as_u64().unwrap();
        assert_eq!(record["pid"], pid);
        assert!(pid_alive(pid));
        pids.push((pid, server.to_owned()));
    }
    assert_eq!(models.len(), 2);
    pids
}

/// What the real server made of the context (its `log`) agrees with the estimate's
/// reading (`inspected`, for `-c 4096 -np 2`): two slots of 2048 cells (each llama-server
/// phrases the slot's size one of these ways), and (where the server logs it) the KV
/// cache size.
fn assert_log_agrees_with_the_estimate(log: &str, inspected: &Value) {
    let slot_sizes = ["n_ctx_slot = 2048", "new slot, n_ctx = 2048"];
    assert!(
        log.contains("n_slots = 2") && slot_sizes.iter().any(|p| log.contains(p)),
        "{log}"
    );
    let kv = inspected["kv_cache_bytes"].as_u64().unwrap() as f64 / f64::from(1 << 20);
    let kv_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("llama_kv_cache") && l.contains("cells"))
        .collect();
    for line in &kv_lines {
        assert!(
            line.contains(&format!("size = {kv:>7.2} MiB")),
            "{kv}: {line}"
        );
    }
    if kv_lines.is_empty() {
        crate::supports().lacks(
            "two_aliases_behind_one_endpoint_and_no_orphans_after_sigkill",
            "a `llama_kv_cache` size line in its log at the default verbosity",
            "its slots have the context the estimate assumed",
        );
    }
}

#[test]
fn two_aliases_behind_one_endpoint_and_no_orphans_after_sigkill() {
    let env = Env::new();
    let a = format!("a={}", env.model());
    let b = format!("b={}", env.model());
    // Two slots of 2048 each, so the log line the estimate is checked against is not the
    // server's automatic default.
    let (serving, id, port) = Serving::http(
        &env,
        &[
            "serve", "--model", &a, "--model", &b, "--http", "--", "-c", "4096", "-np", "2",
        ],
    );
    let id = id.as_str();
    let endpoint = Endpoint::Http {
        host: "127.0.0.1".into(),
        port,
    };

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::new(endpoint);
    let listed = rt.block_on(client.models()).unwrap();
    let ids: Vec<_> = listed.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_no_tokio_workers(serving.0.id());

    // Each alias reaches its own server, which answers under that alias.
    for alias in ["a", "b"] {
        let mut req = ChatCompletionRequest::new(vec![ChatMessage::user("Hi")]).max_tokens(4);
        req.model = Some(alias.to_owned());
        let answer = rt
            .block_on(client.chat_completions(&req))
            .unwrap_or_else(|e| panic!("{alias}: {e}"));
        assert_eq!(answer.model, alias);
        assert!(!answer.choices.is_empty());
    }

    // ps: the proxy with both models ready, each with its own server and the estimate
    // inspect gives for the same arguments.
    let inspected = env.json(&[
        "model",
        "inspect",
        env.model(),
        "--ctx-size",
        "4096",
        "--parallel",
        "2",
    ])["memory"]
        .clone();
    let pids =
        assert_ps_shows_the_proxy_and_its_models(&env.json(&["ps"]), id, &inspected["total_bytes"]);

    // What the real server made of the context agrees with the estimate's reading.
    let log = env.ok(&["logs", &pids[0].1, "-n", "400"]);
    assert_log_agrees_with_the_estimate(&log, &inspected);

    // SIGKILL of `lmcpp serve`: no chance to clean up, and still no model server left.
    drop(serving);
    for (pid, _) in &pids {
        assert!(
            wait_until(Duration::from_secs(10), || !pid_alive(*pid)),
            "model server {pid} survived its proxy"
        );
    }
    let ps = env.json(&["ps"]);
    assert_eq!(ps, serde_json::json!([]), "stale entries left: {ps}");
}

#[test]
fn a_detached_proxy_is_listed_and_stopped_with_its_models() {
    let env = Env::new();
    let a = format!("a={}", env.model());
    let b = format!("b={}", env.model());
    let record = env.json(&["serve", "--model", &a, "--model", &b, "--detach"]);
    let id = record["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&record["kind"], &record["detached"]),
        (&"proxy".into(), &true.into())
    );
    let aliases: Vec<_> = record["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["alias"].as_str().unwrap(), m["state"].as_str().unwrap()))
        .collect();
    assert_eq!(aliases, [("a", "stopped"), ("b", "stopped")], "{record}");
    let Endpoint::Unix { socket } =
        serde_json::from_value::<Endpoint>(record["endpoint"].clone()).unwrap()
    else {
        panic!("a Unix socket by default: {record}");
    };

    // Start one model through the proxy's socket.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::new(Endpoint::Unix { socket });
    let mut req = ChatCompletionRequest::new(vec![ChatMessage::user("Hi")]).max_tokens(2);
    req.model = Some("b".to_owned());
    rt.block_on(client.chat_completions(&req)).unwrap();
    let ps = env.json(&["ps"]);
    let proxy = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id.as_str())
        .unwrap();
    let b_pid = proxy["models"][1]["pid"].as_u64().unwrap();
    assert_eq!(proxy["models"][0]["state"], "stopped");
    assert!(pid_alive(b_pid));

    env.ok(&["stop", &id]);
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(b_pid)),
        "model server {b_pid} outlived `lmcpp stop` of its proxy"
    );
    assert_eq!(env.json(&["ps"]), serde_json::json!([]));
}

#[test]
fn a_model_fetched_at_its_first_request_is_counted_with_its_estimate_from_then_on() {
    let env = Env::new();
    // A URL model is not in the store when the proxy starts, so nothing can be estimated
    // then; the start fetches it and the proxy counts its estimate before the budget check.
    let url = format!(
        "u={}",
        lmcpp_test_support::file_url(std::path::Path::new(env.model()))
    );
    let b = format!("b={}", env.model());
    let record = env.json(&["serve", "--model", &url, "--model", &b, "--detach"]);
    let id = record["id"].as_str().unwrap().to_owned();
    let estimate_of = |record: &Value, alias: &str| {
        record["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["alias"] == alias)
            .unwrap_or_else(|| panic!("{alias} not listed: {record}"))["estimate_bytes"]
            .as_u64()
            .unwrap()
    };
    let on_disk = estimate_of(&record, "b");
    assert!(on_disk > 0, "{record}");
    assert_eq!(estimate_of(&record, "u"), 0, "not fetched yet: {record}");

    let endpoint: Endpoint = serde_json::from_value(record["endpoint"].clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut req = ChatCompletionRequest::new(vec![ChatMessage::user("Hi")]).max_tokens(2);
    req.model = Some("u".to_owned());
    rt.block_on(Client::new(endpoint).chat_completions(&req))
        .unwrap();
    let ps = env.json(&["ps"]);
    let proxy = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id.as_str())
        .unwrap_or_else(|| panic!("proxy not listed: {ps}"));
    // The same file under two names: the same estimate once both are known.
    assert_eq!(estimate_of(proxy, "u"), on_disk, "{proxy}");
    env.ok(&["stop", &id]);
}

/// A config of three models: the llama.cpp under test (its model named relative to the
/// config file), another prepared version, and an embedding model that is pinned and never
/// expires.
fn two_versions_config(env: &Env, this: &PreparedPaths, other: &PreparedPaths) -> PathBuf {
    let demo = env.model();
    // A model named relative to the config file is found next to it.
    std::fs::create_dir_all(env.dir.path().join("models")).unwrap();
    let beside = env.dir.path().join("models/beside.gguf");
    #[cfg(unix)]
    std::os::unix::fs::symlink(demo, beside).unwrap();
    // Windows links need a privilege; a copy is as good a file beside the config.
    #[cfg(windows)]
    std::fs::copy(demo, beside).unwrap();
    let config = env.dir.path().join("lmcpp.toml");
    std::fs::write(
        &config,
        format!(
            r#"
memory_budget = "1GiB"
load_timeout = "2m"

[[models]]
alias = "this"
model = "models/beside.gguf"
llama_server = "{this_bin}"
ctx_size = 1024

[[models]]
alias = "other"
model = "{demo}"
llama_server = "{other_bin}"
keep_alive = "1h"

[[models]]
alias = "embed"
model = "{demo}"
llama_server = "{this_bin}"
embeddings = true
pooling = "mean"
keep_alive = "0"
pinned = true
"#,
            this_bin = this.llama_server.display(),
            other_bin = other.llama_server.display(),
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_config_serves_two_llama_cpp_versions_and_an_embedding_model_behind_one_socket() {
    let env = Env::new();
    let root = lmcpp_test_support::workspace_root();
    // The llama.cpp under test and another prepared version.
    let this = env.paths.clone();
    let other = this
        .another_version(&root)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(this.llama_version, other.llama_version);
    let config = two_versions_config(&env, &this, &other);
    let record = env.json(&["serve", "--config", config.to_str().unwrap(), "--detach"]);
    let id = record["id"].as_str().unwrap().to_owned();
    let endpoint: Endpoint = serde_json::from_value(record["endpoint"].clone()).unwrap();
    assert!(matches!(endpoint, Endpoint::Unix { .. }), "{record}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::new(endpoint);
    for alias in ["this", "other"] {
        let mut req = ChatCompletionRequest::new(vec![ChatMessage::user("Hi")]).max_tokens(2);
        req.model = Some(alias.to_owned());
        rt.block_on(client.chat_completions(&req))
            .unwrap_or_else(|e| panic!("{alias}: {e}"));
    }
    let mut req = OaiEmbeddingRequest::new("an embedded sentence");
    req.model = Some("embed".to_owned());
    let embedded = rt.block_on(client.embeddings(&req)).unwrap();
    assert_eq!(embedded.data.len(), 1);

    // Each alias runs its own binary with its own settings.
    let ps = env.json(&["ps"]);
    let entries = ps.as_array().unwrap();
    let proxy = entries.iter().find(|e| e["id"] == id.as_str()).unwrap();
    let server_of = |alias: &str| {
        let m = proxy["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["alias"] == alias)
            .unwrap_or_else(|| panic!("{alias} not under the proxy: {ps}"));
        assert_eq!(m["state"], "ready", "{m}");
        entries
            .iter()
            .find(|e| e["id"] == m["server_id"])
            .unwrap_or_else(|| panic!("{alias}'s server not in ps: {ps}"))
            .clone()
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap();
    let exe = |r: &Value| PathBuf::from(r["exe"].as_str().unwrap());
    assert_eq!(exe(&server_of("this")), canonical(&this.llama_server));
    assert_eq!(exe(&server_of("other")), canonical(&other.llama_server));
    let args = |r: &Value| -> Vec<String> { serde_json::from_value(r["args"].clone()).unwrap() };
    let embed_args = args(&server_of("embed"));
    assert!(
        embed_args
            .iter()
            .any(|a| a == "--embedding" || a == "--embeddings")
            && embed_args.windows(2).any(|w| w == ["--pooling", "mean"]),
        "{embed_args:?}"
    );
    assert!(
        args(&server_of("this"))
            .windows(2)
            .any(|w| (w[0] == "--ctx-size" || w[0] == "-c") && w[1] == "1024"),
        "{:?}",
        args(&server_of("this"))
    );
    let keep = |alias: &str| {
        proxy["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["alias"] == alias)
            .unwrap()
            .clone()
    };
    assert_eq!(keep("embed")["keep_alive_secs"], Value::Null, "0 = never");
    assert_eq!(keep("embed")["pinned"], true);
    assert_eq!(keep("other")["keep_alive_secs"], 3600);
    env.ok(&["stop", &id]);
    assert_eq!(env.json(&["ps"]), serde_json::json!([]));
}

#[test]
fn ps_shows_a_proxy_whose_models_it_cannot_read_and_the_key_opens_them() {
    let env = Env::new();
    let a = format!("a={}", env.model());
    let b = format!("b={}", env.model());
    let out = env
        .cmd(&["--json", "serve", "--model", &a, "--model", &b, "--detach"])
        .env("LLAMA_API_KEY", "s3cret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = record["id"].as_str().unwrap();

    // Without the key the proxy refuses its model list; ps says so instead of failing.
    let ps = env.json(&["ps"]);
    let proxy = &ps[0];
    assert_eq!(proxy["id"], id, "{ps}");
    assert!(proxy.get("models").is_none(), "{ps}");
    let why = proxy["proxy_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(why.contains("401"), "{why}");
    let text = env.ok(&["ps"]);
    assert!(text.contains("no model list"), "{text}");

    let out = env
        .cmd(&["--json", "ps"])
        .env("LLAMA_API_KEY", "s3cret")
        .output()
        .unwrap();
    let ps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ps[0]["models"].as_array().map(Vec::len), Some(2), "{ps}");
    assert!(ps[0].get("proxy_error").is_none(), "{ps}");
}

#[test]
fn a_budget_for_one_model_stops_the_idle_one_to_start_the_other() {
    let env = Env::new();
    // Room for one demo model's estimate, not two.
    let one = env.json(&["model", "inspect", env.model()])["memory"]["total_bytes"]
        .as_u64()
        .unwrap();
    let budget = (one + one / 2).to_string();
    let a = format!("a={}", env.model());
    let b = format!("b={}", env.model());
    let record = env.json(&[
        "serve",
        "--model",
        &a,
        "--model",
        &b,
        "--memory-budget",
        &budget,
        "--detach",
    ]);
    assert_eq!(record["memory_budget"].as_u64(), Some(one + one / 2));
    let endpoint: Endpoint = serde_json::from_value(record["endpoint"].clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::new(endpoint);
    let states = || {
        let ps = env.json(&["ps"]);
        ps[0]["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["state"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    for (alias, want) in [("a", ["ready", "stopped"]), ("b", ["stopped", "ready"])] {
        let mut req = ChatCompletionRequest::new(vec![ChatMessage::user("Hi")]).max_tokens(2);
        req.model = Some(alias.to_owned());
        rt.block_on(client.chat_completions(&req)).unwrap();
        assert_eq!(states(), want, "after a request to {alias}");
    }
}

/// A model's start-up limit is its `start_timeout`, not how long a request waits
/// (`load_timeout`): a start limited to 1 ms fails at once with the ready timeout named,
/// although requests may wait a minute; the model with none starts as usual.
#[test]
fn a_models_start_is_limited_by_its_start_timeout_not_by_the_load_timeout() {
    let env = Env::new();
    let demo = env.model();
    let config = env.dir.path().join("lmcpp.toml");
    std::fs::write(
        &config,
        format!(
            "load_timeout = \"1m\"\n\n\
             [[models]]\nalias = \"hasty\"\nmodel = \"{demo}\"\nstart_timeout = \"1ms\"\n\n\
             [[models]]\nalias = \"calm\"\nmodel = \"{demo}\"\n"
        ),
    )
    .unwrap();
    let (_serving, _id, port) = Serving::http(
        &env,
        &["serve", "--config", config.to_str().unwrap(), "--http"],
    );
    let client = Client::new(Endpoint::Http {
        host: "127.0.0.1".into(),
        port,
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chat = |alias: &str| {
        let mut req = ChatCompletionRequest::new(vec![ChatMessage::user("Hi")]).max_tokens(2);
        req.model = Some(alias.to_owned());
        rt.block_on(client.chat_completions(&req))
    };
    let started = Instant::now();
    let err = chat("hasty").unwrap_err().to_string();
    assert!(
        err.contains("could not be started") && err.contains("did not become ready within 1ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");
    assert_eq!(chat("calm").unwrap().model, "calm");
}

/// `lmcpp serve --draft`: one server drafting with a second model, passed as its draft.
#[test]
fn a_single_server_drafts_with_the_draft_model_given() {
    let env = Env::new();
    let demo = env.model();
    let record = env.json(&["serve", "--model", demo, "--draft", demo, "--detach"]);
    let id = record["id"].as_str().unwrap().to_owned();
    let answer = env.ok(&["complete", "--server", &id, "-n", "4", "Once upon a time"]);
    assert!(!answer.trim().is_empty());
    assert_eq!(draft_of(&record), Some(demo.to_owned()), "{record}");
    env.ok(&["stop", &id]);
}

/// The draft model among a server record's arguments, in any spelling the binary knows.
fn draft_of(record: &serde_json::Value) -> Option<String> {
    let args: Vec<&str> = record["args"]
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let at = args.iter().position(|a| {
        lmcpp::types::args::FlagInfo::lookup(a).is_some_and(|i| i.field == "spec_draft_model")
    })?;
    args.get(at + 1).map(|s| (*s).to_owned())
}

/// `draft` in a config: the model's server drafts with the other model (passed as its
/// draft model), answers, and the draft's memory is counted with the model's.
#[test]
fn a_draft_model_is_passed_to_its_server_and_counted_with_it() {
    let env = Env::new();
    let config = env.dir.path().join("draft.toml");
    let demo = env.model();
    std::fs::write(
        &config,
        format!(
            "memory_budget = \"2GiB\"\n\n[[models]]\nalias = \"drafted\"\nmodel = \"{demo}\"\n\
             draft = \"{demo}\"\nctx_size = 512\n\n[[models]]\nalias = \"plain\"\n\
             model = \"{demo}\"\nctx_size = 512\n"
        ),
    )
    .unwrap();
    let record = env.json(&["serve", "--config", config.to_str().unwrap(), "--detach"]);
    let id = record["id"].as_str().unwrap().to_owned();
    let answer = env.ok(&[
        "complete",
        "--server",
        &id,
        "--model",
        "drafted",
        "-n",
        "4",
        "Once upon a time",
    ]);
    assert!(!answer.trim().is_empty());
    let ps = env.json(&["ps"]);
    let entries = ps.as_array().unwrap();
    let proxy = entries.iter().find(|e| e["id"] == id.as_str()).unwrap();
    let model = |alias: &str| {
        proxy["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["alias"] == alias)
            .unwrap_or_else(|| panic!("{alias} not under the proxy: {ps}"))
            .clone()
    };
    let (drafted, plain) = (model("drafted"), model("plain"));
    let bytes = |m: &serde_json::Value| m["estimate_bytes"].as_u64().unwrap();
    assert!(bytes(&drafted) > bytes(&plain), "{drafted} vs {plain}");
    let server = entries
        .iter()
        .find(|e| e["id"] == drafted["server_id"])
        .unwrap_or_else(|| panic!("drafted's server not in ps: {ps}"));
    assert_eq!(draft_of(server), Some(demo.to_owned()), "{server}");
    env.ok(&["stop", &id]);
}
