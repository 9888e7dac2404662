//! `cargo xtask fixtures`: starts the real `llama-server` named in
//! `target/lmcpp-test/paths.json` (see `cargo xtask prepare`) and records the raw
//! responses of every endpoint, streaming included, into `lmcpp-types/tests/fixtures/`
//! with an `index.json` that names the typed response of each file.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use lmcpp_toolchain::prepared::PreparedPaths;

use crate::workspace_root;

const DIR: &str = "lmcpp-types/tests/fixtures";

/// A running llama-server that is killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    subst: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

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

pub(crate) fn run(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("`cargo xtask fixtures` takes no options");
    }
    let root = workspace_root();
    let paths = PreparedPaths::load(&root)?;
    let server_bin = paths.llama_server;
    let model = paths.demo_model;
    let out_dir = root.join(DIR);
    std::fs::create_dir_all(&out_dir)?;
    let work = std::env::temp_dir().join(format!("lmcpp-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(work.join("slots"))?;
    let mut index = Vec::new();

    // Main server: completion, chat, tokenizer, slots, props, metrics.
    {
        let slots = work.join("slots");
        let s = start(
            &server_bin,
            &work,
            "main",
            &[
                "--model",
                path_str(&model)?,
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
            ],
        )?;
        let user = json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi"}]);
        let tool = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
        let cases = vec![
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
        ];
        for c in cases {
            index.push(record(&s, &c, &out_dir)?);
        }
    }

    // Embedding server.
    {
        let s = start(
            &server_bin,
            &work,
            "embd",
            &[
                "--model",
                path_str(&model)?,
                "--ctx-size",
                "512",
                "--embeddings",
                "--pooling",
                "mean",
                "--no-webui",
            ],
        )?;
        let cases = vec![
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
                Some(
                    json!({"model": "demo", "input": ["Hello", "world"], "encoding_format": "float"}),
                ),
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
        ];
        for c in cases {
            index.push(record(&s, &c, &out_dir)?);
        }
    }
    {
        let s = start(
            &server_bin,
            &work,
            "embd-none",
            &[
                "--model",
                path_str(&model)?,
                "--ctx-size",
                "512",
                "--embeddings",
                "--pooling",
                "none",
                "--no-webui",
            ],
        )?;
        for c in [
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
        ] {
            index.push(record(&s, &c, &out_dir)?);
        }
    }

    // Router mode: no model, a models directory.
    {
        let models = work.join("models");
        std::fs::create_dir_all(&models)?;
        let link = models.join("demo.gguf");
        if !link.exists() {
            std::os::unix::fs::symlink(&model, &link)?;
        }
        let s = start(
            &server_bin,
            &work,
            "router",
            &[
                "--models-dir",
                path_str(&models)?,
                "--no-models-autoload",
                "--ctx-size",
                "512",
                "--no-webui",
            ],
        )?;
        index.push(record(
            &s,
            &case("router_models", "GET", "/models", None, "RouterModelList"),
            &out_dir,
        )?);
        let id = {
            let r = request(s.port, "GET", "/models", None)?;
            let v: Value = serde_json::from_slice(&r.body)?;
            v["data"][0]["id"]
                .as_str()
                .context("router lists no model")?
                .to_owned()
        };
        index.push(record(
            &s,
            &case(
                "router_load",
                "POST",
                "/models/load",
                Some(json!({"model": id})),
                "SuccessResponse",
            ),
            &out_dir,
        )?);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = request(s.port, "GET", "/models", None)?;
            let v: Value = serde_json::from_slice(&r.body)?;
            let state = v["data"][0]["status"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if state == "loaded" {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "router model did not load (state `{state}`); see {}",
                    s.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        index.push(record(
            &s,
            &case(
                "router_models_loaded",
                "GET",
                "/models",
                None,
                "RouterModelList",
            ),
            &out_dir,
        )?);
        index.push(record(
            &s,
            &case("router_chat", "POST", "/v1/chat/completions",
                Some(json!({"model": id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "seed": 1})),
                "ChatCompletionResponse"),
            &out_dir,
        )?);
        index.push(record(
            &s,
            &case(
                "router_unload",
                "POST",
                "/models/unload",
                Some(json!({"model": id})),
                "SuccessResponse",
            ),
            &out_dir,
        )?);
        index.push(record(
            &s,
            &case(
                "router_error_unknown_model",
                "POST",
                "/models/load",
                Some(json!({"model": "no-such-model"})),
                "ErrorBody",
            ),
            &out_dir,
        )?);
    }

    let text = serde_json::to_string_pretty(&Value::Array(index))? + "\n";
    std::fs::write(out_dir.join("index.json"), text)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

fn start(bin: &Path, work: &Path, name: &str, args: &[&str]) -> Result<Server> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = work.join(format!("{name}.log"));
    let file = std::fs::File::create(&log)?;
    let child = Command::new(bin)
        .args(args)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
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
    if let Some(i) = args.iter().position(|a| *a == "--model") {
        subst.insert(0, (args[i + 1].to_owned(), "/models/demo.gguf".to_owned()));
    }
    let mut server = Server {
        child,
        port,
        log,
        subst,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "llama-server ({name}) exited with {status}; see {}",
                server.log.display()
            );
        }
        if let Ok(r) = request(port, "GET", "/health", None)
            && r.status == 200
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!(
                "llama-server ({name}) not ready after 60 s; see {}",
                server.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn record(s: &Server, c: &Case, dir: &Path) -> Result<Value> {
    let subst = &s.subst;
    let r = request(s.port, c.method, &c.path, c.request.as_ref())
        .with_context(|| format!("{} {} (see {})", c.method, c.path, s.log.display()))?;
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
    for (from, to) in subst {
        body = body.replace(from.as_str(), to);
    }
    std::fs::write(dir.join(&file), body)?;
    Ok(json!({
        "name": c.name,
        "method": c.method,
        "path": c.path,
        "request": c.request,
        "status": r.status,
        "file": file,
        "format": c.format,
        // Failures decode into the error body whatever the endpoint.
        "type": if r.status >= 400 { "ErrorBody" } else { c.ty },
    }))
}

/// A minimal HTTP/1.1 client (one request per connection, chunked bodies decoded), so
/// the xtask needs no HTTP dependency.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let body = body
        .map(serde_json::to_vec)
        .transpose()?
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("response without a header terminator")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("response without a status")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        rest = dechunk(&rest)?;
    }
    Ok(Response { status, body: rest })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk header")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size `{size_text}`"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
