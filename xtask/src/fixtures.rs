//! `cargo xtask fixtures`: starts the real `llama-server` named in
//! `target/lmcpp-test/paths.json` (see `cargo xtask prepare`) and records the raw
//! responses of every endpoint, streaming included, into `lmcpp-types/tests/fixtures/`
//! with an `index.json` that names the typed response of each file.
//!
//! The recording is a data table: one [`Setup`] per server configuration (its flags and
//! the steps run against it, in order). Servers are launched by lmcpp-server's
//! `Server::launch` (a router through `LaunchOptions::router`) and asked through
//! `Client::raw`, so this task has no HTTP client or process supervision of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http::Method;
use lmcpp_server::{Client, HttpPort, LaunchOptions, RawResponse, Server, TransportChoice};
use serde_json::{Value, json};

use lmcpp_test_support::PreparedPaths;

use crate::workspace_root;

const DIR: &str = "lmcpp-types/tests/fixtures";

/// How long a server may take to become ready, and a router to load its model.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// In router requests, stands for the id of the model the router lists.
const ROUTER_MODEL: &str = "$ROUTER_MODEL";

/// What one fixture records.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    request: Option<Value>,
    /// `json`, `sse` or `text`.
    format: &'static str,
    /// The lmcpp-types type the body (or each SSE payload) decodes into.
    ty: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &str,
    request: Option<Value>,
    ty: &'static str,
) -> Case {
    let stream = request
        .as_ref()
        .and_then(|r| r.get("stream"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Case {
        name,
        method,
        path: path.to_owned(),
        request,
        format: if stream { "sse" } else { "json" },
        ty,
    }
}

/// One step against a running server.
enum Step {
    /// Send the case's request and record the answer.
    Record(Case),
    /// Wait until the router lists its model as loaded.
    AwaitLoaded,
}

/// How a configuration's server gets its model.
enum Model {
    /// The demo model, passed by the launcher.
    Demo,
    /// None: router mode over a models directory holding the demo model.
    Router { models_dir: PathBuf },
}

/// One server configuration and what is recorded against it.
struct Setup {
    name: &'static str,
    model: Model,
    /// Flags besides those the launcher owns (host, port, model, log file).
    flags: Vec<String>,
    steps: Vec<Step>,
}

fn flags(flags: &[&str]) -> Vec<String> {
    flags.iter().map(|f| (*f).to_owned()).collect()
}

fn records(cases: Vec<Case>) -> Vec<Step> {
    cases.into_iter().map(Step::Record).collect()
}

/// Every configuration, in recording order.
fn setups(work: &Path) -> Result<Vec<Setup>> {
    let slots = work.join("slots");
    Ok(vec![
        // Completion, chat, tokenizer, slots, props, metrics.
        Setup {
            name: "main",
            model: Model::Demo,
            flags: flags(&[
                "--ctx-size",
                "1024",
                "--parallel",
                "2",
                "--metrics",
                "--props",
                "--slot-save-path",
                path_str(&slots)?,
                "--no-webui",
                "--jinja",
                "--alias",
                "demo",
            ]),
            steps: records(main_cases()),
        },
        Setup {
            name: "embd",
            model: Model::Demo,
            flags: flags(&[
                "--ctx-size",
                "512",
                "--embeddings",
                "--pooling",
                "mean",
                "--no-webui",
            ]),
            steps: records(embedding_cases()),
        },
        Setup {
            name: "embd-none",
            model: Model::Demo,
            flags: flags(&[
                "--ctx-size",
                "512",
                "--embeddings",
                "--pooling",
                "none",
                "--no-webui",
            ]),
            steps: records(pooling_none_cases()),
        },
        // Router mode: no model, a models directory.
        Setup {
            name: "router",
            model: Model::Router {
                models_dir: work.join("models"),
            },
            flags: flags(&["--no-models-autoload", "--ctx-size", "512", "--no-webui"]),
            steps: router_steps(),
        },
    ])
}

fn main_cases() -> Vec<Case> {
    let user = json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi"}]);
    let tool = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    vec![
        case("health_ok", "GET", "/health", None, "HealthResponse"),
        case("props", "GET", "/props", None, "Props"),
        case(
            "props_post",
            "POST",
            "/props",
            Some(json!({})),
            "SuccessResponse",
        ),
        case("v1_models", "GET", "/v1/models", None, "ModelList"),
        case("models_single", "GET", "/models", None, "ModelList"),
        case(
            "tokenize",
            "POST",
            "/tokenize",
            Some(json!({"content": "Hello world", "add_special": true})),
            "TokenizeResponse",
        ),
        case(
            "tokenize_pieces",
            "POST",
            "/tokenize",
            Some(json!({"content": "Hello á world", "with_pieces": true})),
            "TokenizeResponse",
        ),
        case(
            "tokenize_bytes",
            "POST",
            "/tokenize",
            Some(json!({"content": "\u{1f999}", "with_pieces": true})),
            "TokenizeResponse",
        ),
        case(
            "tokenize_mixed",
            "POST",
            "/tokenize",
            Some(json!({"content": [1, "Hello", 2]})),
            "TokenizeResponse",
        ),
        case(
            "detokenize",
            "POST",
            "/detokenize",
            Some(json!({"tokens": [15043, 3186]})),
            "DetokenizeResponse",
        ),
        case(
            "apply_template",
            "POST",
            "/apply-template",
            Some(json!({"messages": user})),
            "ApplyTemplateResponse",
        ),
        case(
            "completion",
            "POST",
            "/completion",
            Some(
                json!({"prompt": "Once upon a time", "n_predict": 8, "seed": 1, "return_tokens": true, "cache_prompt": false}),
            ),
            "CompletionResponse",
        ),
        case(
            "completion_probs",
            "POST",
            "/completion",
            Some(json!({"prompt": [1, 9038, 2501], "n_predict": 3, "seed": 1, "n_probs": 2})),
            "CompletionResponse",
        ),
        case(
            "completion_post_sampling_probs",
            "POST",
            "/completion",
            Some(
                json!({"prompt": "Hi", "n_predict": 3, "seed": 1, "n_probs": 2, "post_sampling_probs": true}),
            ),
            "CompletionResponse",
        ),
        case(
            "completion_multi",
            "POST",
            "/completion",
            Some(json!({"prompt": ["One", [1, 9038]], "n_predict": 2, "seed": 1})),
            "CompletionResponseList",
        ),
        case(
            "completion_stop_word",
            "POST",
            "/completion",
            Some(json!({"prompt": "a b c", "n_predict": 16, "seed": 1, "stop": ["e", "a"]})),
            "CompletionResponse",
        ),
        case(
            "completion_stream",
            "POST",
            "/completion",
            Some(
                json!({"prompt": "Once upon a time", "n_predict": 6, "seed": 1, "stream": true, "return_progress": true,
                "timings_per_token": true, "n_probs": 1}),
            ),
            "CompletionChunk",
        ),
        case(
            "infill",
            "POST",
            "/infill",
            Some(
                json!({"input_prefix": "def f(", "input_suffix": "):\n    pass", "n_predict": 4, "seed": 1}),
            ),
            "CompletionResponse",
        ),
        case(
            "v1_completions",
            "POST",
            "/v1/completions",
            Some(
                json!({"model": "demo", "prompt": "Once upon a time", "max_tokens": 6, "seed": 1}),
            ),
            "OaiCompletionResponse",
        ),
        case(
            "v1_completions_stream",
            "POST",
            "/v1/completions",
            Some(
                json!({"model": "demo", "prompt": "Once upon a time", "max_tokens": 4, "seed": 1, "stream": true}),
            ),
            "OaiCompletionChunk",
        ),
        case(
            "chat",
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": "demo", "messages": user, "max_tokens": 6, "seed": 1})),
            "ChatCompletionResponse",
        ),
        case(
            "chat_logprobs",
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": "demo", "messages": user, "max_tokens": 3, "seed": 1, "logprobs": true, "top_logprobs": 2}),
            ),
            "ChatCompletionResponse",
        ),
        case(
            "chat_json_schema",
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": "demo", "messages": user, "max_tokens": 12, "seed": 1,
                "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
                    "schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}}),
            ),
            "ChatCompletionResponse",
        ),
        case(
            "chat_tools",
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": "demo", "messages": [{"role": "user", "content": "Weather in Paris?"}],
                "tools": tool, "tool_choice": "auto", "max_tokens": 8, "seed": 1}),
            ),
            "ChatCompletionResponse",
        ),
        case(
            "chat_tool_roundtrip",
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": "demo", "max_tokens": 4, "seed": 1, "tools": tool, "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}),
            ),
            "ChatCompletionResponse",
        ),
        case(
            "chat_stream",
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": "demo", "messages": user, "max_tokens": 4, "seed": 1, "stream": true,
                "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 1}),
            ),
            "ChatCompletionChunk",
        ),
        case(
            "chat_input_tokens",
            "POST",
            "/v1/chat/completions/input_tokens",
            Some(json!({"model": "demo", "messages": user})),
            "InputTokensResponse",
        ),
        case(
            "chat_control",
            "POST",
            "/v1/chat/completions/control",
            Some(json!({"id": "chatcmpl-none", "action": "reasoning_end"})),
            "ChatControlResponse",
        ),
        case(
            "responses",
            "POST",
            "/v1/responses",
            Some(
                json!({"model": "demo", "input": "Say hi", "instructions": "Be terse.", "max_output_tokens": 5, "seed": 1}),
            ),
            "ResponsesResponse",
        ),
        case(
            "responses_stream",
            "POST",
            "/v1/responses",
            Some(
                json!({"model": "demo", "input": [{"role": "user", "content": "Say hi"}], "max_output_tokens": 3,
                "seed": 1, "stream": true}),
            ),
            "ResponsesStreamEvent",
        ),
        case(
            "responses_input_tokens",
            "POST",
            "/v1/responses/input_tokens",
            Some(json!({"model": "demo", "input": "Say hi"})),
            "InputTokensResponse",
        ),
        case(
            "messages",
            "POST",
            "/v1/messages",
            Some(
                json!({"model": "demo", "max_tokens": 5, "system": "Be terse.",
                "messages": [{"role": "user", "content": "Say hi"}], "seed": 1}),
            ),
            "MessagesResponse",
        ),
        case(
            "messages_stream",
            "POST",
            "/v1/messages",
            Some(
                json!({"model": "demo", "max_tokens": 3, "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}],
                "stream": true, "seed": 1}),
            ),
            "MessagesStreamEvent",
        ),
        case(
            "messages_count_tokens",
            "POST",
            "/v1/messages/count_tokens",
            Some(json!({"model": "demo", "messages": [{"role": "user", "content": "Say hi"}]})),
            "CountTokensResponse",
        ),
        case("slots", "GET", "/slots", None, "SlotsResponse"),
        case(
            "slot_save",
            "POST",
            "/slots/0?action=save",
            Some(json!({"filename": "slot0.bin"})),
            "SlotSaveResponse",
        ),
        case(
            "slot_restore",
            "POST",
            "/slots/0?action=restore",
            Some(json!({"filename": "slot0.bin"})),
            "SlotRestoreResponse",
        ),
        case(
            "slot_erase",
            "POST",
            "/slots/0?action=erase",
            Some(json!({})),
            "SlotEraseResponse",
        ),
        case(
            "lora_adapters",
            "GET",
            "/lora-adapters",
            None,
            "LoraAdaptersResponse",
        ),
        case(
            "lora_adapters_post",
            "POST",
            "/lora-adapters",
            Some(json!([])),
            "SuccessResponse",
        ),
        Case {
            format: "text",
            ..case("metrics", "GET", "/metrics", None, "Metrics")
        },
        case(
            "slot_save_unknown_id",
            "POST",
            "/slots/99?action=save",
            Some(json!({"filename": "nope.bin"})),
            "SlotSaveResponse",
        ),
        case(
            "error_slot_restore_missing_file",
            "POST",
            "/slots/0?action=restore",
            Some(json!({"filename": "missing.bin"})),
            "ErrorBody",
        ),
        case(
            "error_slot_bad_action",
            "POST",
            "/slots/0?action=explode",
            Some(json!({})),
            "ErrorBody",
        ),
        case(
            "error_bad_prompt",
            "POST",
            "/completion",
            Some(json!({"prompt": {"nonsense": true}})),
            "ErrorBody",
        ),
        case(
            "error_missing_messages",
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": "demo"})),
            "ErrorBody",
        ),
        case(
            "error_not_found",
            "GET",
            "/no-such-endpoint",
            None,
            "ErrorBody",
        ),
        case(
            "error_embeddings_disabled",
            "POST",
            "/embedding",
            Some(json!({"content": "hi"})),
            "ErrorBody",
        ),
        case(
            "error_rerank_disabled",
            "POST",
            "/reranking",
            Some(json!({"query": "q", "documents": ["a", "b"]})),
            "ErrorBody",
        ),
        case(
            "error_context_exceeded",
            "POST",
            "/completion",
            Some(json!({"prompt": "word ".repeat(1200), "n_predict": 1})),
            "ErrorBody",
        ),
    ]
}

fn embedding_cases() -> Vec<Case> {
    vec![
        case(
            "embedding",
            "POST",
            "/embedding",
            Some(json!({"content": "Hello world"})),
            "EmbeddingResponse",
        ),
        case(
            "embeddings_native",
            "POST",
            "/embeddings",
            Some(json!({"content": ["Hello", "world"]})),
            "EmbeddingResponse",
        ),
        case(
            "v1_embeddings",
            "POST",
            "/v1/embeddings",
            Some(json!({"model": "demo", "input": ["Hello", "world"], "encoding_format": "float"})),
            "OaiEmbeddingResponse",
        ),
        case(
            "v1_embeddings_base64",
            "POST",
            "/v1/embeddings",
            Some(json!({"model": "demo", "input": "Hello", "encoding_format": "base64"})),
            "OaiEmbeddingResponse",
        ),
        case(
            "error_embeddings_missing_input",
            "POST",
            "/v1/embeddings",
            Some(json!({"model": "demo"})),
            "ErrorBody",
        ),
    ]
}

fn pooling_none_cases() -> Vec<Case> {
    vec![
        case(
            "embedding_pooling_none",
            "POST",
            "/embedding",
            Some(json!({"content": "Hi there"})),
            "EmbeddingResponse",
        ),
        case(
            "error_v1_embeddings_pooling_none",
            "POST",
            "/v1/embeddings",
            Some(json!({"input": "Hi"})),
            "ErrorBody",
        ),
    ]
}

fn router_steps() -> Vec<Step> {
    let model = || Some(json!({ "model": ROUTER_MODEL }));
    vec![
        Step::Record(case(
            "router_models",
            "GET",
            "/models",
            None,
            "RouterModelList",
        )),
        Step::Record(case(
            "router_load",
            "POST",
            "/models/load",
            model(),
            "SuccessResponse",
        )),
        Step::AwaitLoaded,
        Step::Record(case(
            "router_models_loaded",
            "GET",
            "/models",
            None,
            "RouterModelList",
        )),
        Step::Record(case(
            "router_chat",
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": ROUTER_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "seed": 1}),
            ),
            "ChatCompletionResponse",
        )),
        Step::Record(case(
            "router_unload",
            "POST",
            "/models/unload",
            model(),
            "SuccessResponse",
        )),
        Step::Record(case(
            "router_error_unknown_model",
            "POST",
            "/models/load",
            Some(json!({"model": "no-such-model"})),
            "ErrorBody",
        )),
    ]
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let root = workspace_root();
    // `--out DIR` records somewhere else than the committed fixtures (to compare a run).
    let out_dir = match args {
        [] => root.join(DIR),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => bail!("usage: cargo xtask fixtures [--out DIR]"),
    };
    let paths = PreparedPaths::load(&root)?;
    std::fs::create_dir_all(&out_dir)?;
    let work = std::env::temp_dir().join(format!("lmcpp-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(work.join("slots"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut index = Vec::new();
    for setup in setups(&work)? {
        runtime.block_on(record_setup(&paths, &work, &setup, &out_dir, &mut index))?;
    }
    let text = serde_json::to_string_pretty(&Value::Array(index))? + "\n";
    std::fs::write(out_dir.join("index.json"), text)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Starts the setup's server, runs its steps and stops it.
async fn record_setup(
    paths: &PreparedPaths,
    work: &Path,
    setup: &Setup,
    out_dir: &Path,
    index: &mut Vec<Value>,
) -> Result<()> {
    let running = start(paths, work, setup).await?;
    let model_id = match setup.model {
        Model::Demo => None,
        Model::Router { .. } => Some(router_model_id(&running).await?),
    };
    for step in &setup.steps {
        match step {
            Step::Record(c) => index.push(record(&running, c, model_id.as_deref(), out_dir).await?),
            Step::AwaitLoaded => await_loaded(&running).await?,
        }
    }
    running.stop().await
}

/// A server being recorded.
struct Running {
    client: Client,
    log: PathBuf,
    /// Machine-specific text (paths) and the stable placeholder written instead.
    subst: Vec<(String, String)>,
    server: Server,
}

impl Running {
    async fn stop(self) -> Result<()> {
        self.server.stop().await?;
        Ok(())
    }

    /// Sends a request, whatever the answer's status.
    async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<RawResponse> {
        let method = Method::from_bytes(method.as_bytes())?;
        let stream = body
            .and_then(|b| b.get("stream"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // llama-server closes the connection after a streamed answer although it announces
        // keep-alive, so such a request gets a connection of its own.
        let client = if stream {
            Client::builder(self.client.endpoint().clone()).build()
        } else {
            self.client.clone()
        };
        let body = body.map(serde_json::to_vec).transpose()?.map(Into::into);
        let answer = client
            .raw(method.clone(), path, body)
            .await
            .with_context(|| format!("{method} {path} (see {})", self.log.display()))?;
        if answer.truncated {
            bail!("{method} {path}: the error body was cut at the client's cap");
        }
        Ok(answer)
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// Launches the setup's server on HTTP 127.0.0.1 and waits until it is ready.
async fn start(paths: &PreparedPaths, work: &Path, setup: &Setup) -> Result<Running> {
    let bin = &paths.llama_server;
    let log = work.join(format!("{}.log", setup.name));
    let mut subst = vec![
        (
            bin.to_string_lossy().into_owned(),
            "/opt/llama.cpp/bin/llama-server".to_owned(),
        ),
        (
            work.to_string_lossy().into_owned(),
            "/tmp/lmcpp-fixtures".to_owned(),
        ),
    ];
    // The launcher resolves a router's models directory; its paths name the resolved one.
    let resolved = work.canonicalize()?;
    if resolved != work {
        subst.insert(
            0,
            (
                resolved.to_string_lossy().into_owned(),
                "/tmp/lmcpp-fixtures".to_owned(),
            ),
        );
    }
    let mut opts = match &setup.model {
        Model::Demo => {
            // The server reports the model by the path it was given, which the launcher
            // resolves first.
            for model in [paths.demo_model.canonicalize()?, paths.demo_model.clone()] {
                subst.insert(
                    0,
                    (
                        model.to_string_lossy().into_owned(),
                        "/models/demo.gguf".to_owned(),
                    ),
                );
            }
            LaunchOptions::new(bin, &paths.demo_model)
        }
        Model::Router { models_dir } => {
            std::fs::create_dir_all(models_dir)?;
            let link = models_dir.join("demo.gguf");
            if !link.exists() {
                #[cfg(unix)]
                std::os::unix::fs::symlink(&paths.demo_model, &link)?;
                // Windows links need a privilege; a copy of the small demo model serves.
                #[cfg(windows)]
                std::fs::copy(&paths.demo_model, &link)?;
            }
            LaunchOptions::router(bin, models_dir)
        }
    };
    opts.transport = TransportChoice::Http(HttpPort::Auto);
    opts.args.extra = setup.flags.clone();
    opts.runtime_dir = Some(work.join("run"));
    opts.cwd = Some(work.to_owned());
    opts.log_path = Some(log.clone());
    opts.ready_timeout = READY_TIMEOUT;
    let server = Server::launch(opts).await.with_context(|| {
        format!(
            "llama-server ({}) did not start; see {}",
            setup.name,
            log.display()
        )
    })?;
    Ok(Running {
        client: server.client(),
        log,
        subst,
        server,
    })
}

/// The id of the (only) model a router lists.
async fn router_model_id(s: &Running) -> Result<String> {
    let listing: Value = serde_json::from_slice(&s.request("GET", "/models", None).await?.body)?;
    Ok(listing["data"][0]["id"]
        .as_str()
        .context("router lists no model")?
        .to_owned())
}

/// Polls the router's listing until its model is loaded.
async fn await_loaded(s: &Running) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let listing: Value =
            serde_json::from_slice(&s.request("GET", "/models", None).await?.body)?;
        let state = listing["data"][0]["status"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state == "loaded" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "router model did not load (state `{state}`); see {}",
                s.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `value` with every string equal to [`ROUTER_MODEL`] replaced by `id`.
fn with_model_id(value: &Value, id: &str) -> Value {
    match value {
        Value::String(s) if s == ROUTER_MODEL => Value::String(id.to_owned()),
        Value::Array(items) => Value::Array(items.iter().map(|v| with_model_id(v, id)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_model_id(v, id)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Records one case: the body into its file, and its index entry.
async fn record(s: &Running, c: &Case, model_id: Option<&str>, dir: &Path) -> Result<Value> {
    let request = match (&c.request, model_id) {
        (Some(r), Some(id)) => Some(with_model_id(r, id)),
        (r, _) => r.clone(),
    };
    let r = s.request(c.method, &c.path, request.as_ref()).await?;
    let ext = match c.format {
        "sse" => "sse",
        "text" => "txt",
        _ => "json",
    };
    let file = format!("{}.{ext}", c.name);
    if c.format == "json" {
        serde_json::from_slice::<Value>(&r.body).with_context(|| {
            format!(
                "{}: body is not JSON: {}",
                c.name,
                String::from_utf8_lossy(&r.body)
            )
        })?;
    }
    // Machine-specific paths (binary, model, scratch dir) become stable placeholders.
    let mut body = String::from_utf8_lossy(&r.body).into_owned();
    for (from, to) in &s.subst {
        body = body.replace(from.as_str(), to);
    }
    std::fs::write(dir.join(&file), body)?;
    let status = r.status.as_u16();
    Ok(json!({
        "name": c.name,
        "method": c.method,
        "path": c.path,
        "request": request,
        "status": status,
        "file": file,
        "format": c.format,
        // Failures decode into the error body whatever the endpoint.
        "type": if status >= 400 { "ErrorBody" } else { c.ty },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_are_unique_and_streams_are_recorded_as_sse() {
        let work = Path::new("/tmp/w");
        let mut names = Vec::new();
        for setup in setups(work).expect("utf-8 paths") {
            for step in setup.steps {
                if let Step::Record(c) = step {
                    let streams =
                        c.request.as_ref().and_then(|r| r.get("stream")) == Some(&json!(true));
                    assert_eq!(c.format == "sse", streams, "{}", c.name);
                    names.push(c.name);
                }
            }
        }
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a fixture name is used twice");
    }

    #[test]
    fn the_router_model_placeholder_is_replaced_everywhere() {
        let request =
            json!({"model": ROUTER_MODEL, "messages": [{"content": ROUTER_MODEL}], "n": 1});
        assert_eq!(
            with_model_id(&request, "demo"),
            json!({"model": "demo", "messages": [{"content": "demo"}], "n": 1})
        );
    }
}
