//! Clients this project did not write, against a real llama-server that lmcpp started: the
//! `async-openai` crate on the OpenAI-compatible endpoints over HTTP (selecting the model by
//! the alias lmcpp gave the server), and the system `curl` on the native endpoints over HTTP
//! and over the Unix socket; then both against `lmcpp serve` with several models, where each
//! request reaches the server of the alias it names (and `lmcpp ps` shows which started).
//!
//! The demo model has random weights, so these tests check shapes, ids, types and counts,
//! and that two ways of asking for the same greedy generation agree, never the text itself.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, ChatCompletionResponseStream,
    CreateChatCompletionRequestArgs, CreateChatCompletionResponse, FinishReason,
};
use async_openai::types::completions::CreateCompletionRequestArgs;
use async_openai::types::embeddings::{CreateEmbeddingRequestArgs, EmbeddingInput};
use futures_util::StreamExt;
use lmcpp::server::{Endpoint, HttpPort, TransportChoice};
use lmcpp::types::ServerArgs;
use serde_json::{Value, json};

/// The name the servers are started under, which the clients select the model by.
const ALIAS: &str = "org/real-clients-GGUF";
/// What any one request of a client may take (the demo model answers in well under a second).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts the demo model through the facade on `transport` under [`ALIAS`], with `args`.
async fn start(
    dir: &std::path::Path,
    transport: TransportChoice,
    mut args: ServerArgs,
) -> lmcpp::Running {
    let paths = crate::paths();
    args.threads = Some(1);
    args.ctx_size = Some(1024);
    lmcpp::Lmcpp::builder()
        .home(dir.join("home"))
        .runtime_dir(dir.join("run"))
        .llama_server(&paths.llama_server)
        .model(paths.demo_model.to_string_lossy())
        .alias(ALIAS)
        .transport(transport)
        .args(args)
        .ready_timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap_or_else(|e| panic!("the demo server starts: {e}"))
}

/// The port of a server started with [`TransportChoice::Http`].
fn port(running: &lmcpp::Running) -> u16 {
    match running.server.endpoint() {
        Endpoint::Http { port, .. } => *port,
        other => panic!("an HTTP endpoint expected, got {other}"),
    }
}

/// An `async-openai` client for the server on `port`; llama-server started without an API
/// key accepts any.
fn openai(port: u16) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("http://127.0.0.1:{port}/v1"))
            .with_api_key("unused"),
    )
}

/// Awaits one client call, failing the test when it errs or takes too long.
async fn within<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> T {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within {REQUEST_TIMEOUT:?}"),
    }
}

/// A chat answer under [`ALIAS`] (asked for at most 6 tokens): one choice with content,
/// finished by length or stop, and a usage that adds up.
fn assert_chat_answer(chat: &CreateChatCompletionResponse) {
    assert_eq!(chat.model, ALIAS, "{chat:?}");
    assert_eq!(chat.object, "chat.completion");
    assert_eq!(chat.choices.len(), 1, "{chat:?}");
    let choice = &chat.choices[0];
    assert!(choice.message.content.is_some(), "{chat:?}");
    assert!(
        matches!(
            choice.finish_reason,
            Some(FinishReason::Length | FinishReason::Stop)
        ),
        "{chat:?}"
    );
    let usage = chat
        .usage
        .as_ref()
        .expect("a chat answer reports its usage");
    assert!(
        (1..=6).contains(&usage.completion_tokens) && usage.prompt_tokens > 0,
        "{usage:?}"
    );
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
}

/// The text of a streamed chat, checking its chunks: more than one, all under [`ALIAS`],
/// one id across them and exactly one finish.
async fn streamed_chat_text(mut stream: ChatCompletionResponseStream) -> String {
    let (mut ids, mut finishes, mut text, mut chunks) = (Vec::new(), 0, String::new(), 0);
    loop {
        let next = tokio::time::timeout(REQUEST_TIMEOUT, stream.next())
            .await
            .expect("the next chunk within the timeout");
        let Some(chunk) = next else { break };
        let chunk = chunk.unwrap_or_else(|e| panic!("chat stream chunk: {e}"));
        chunks += 1;
        assert_eq!(chunk.object, "chat.completion.chunk", "{chunk:?}");
        assert_eq!(chunk.model, ALIAS, "{chunk:?}");
        ids.push(chunk.id.clone());
        for c in &chunk.choices {
            finishes += usize::from(c.finish_reason.is_some());
            text.push_str(c.delta.content.as_deref().unwrap_or_default());
        }
    }
    ids.dedup();
    assert!(chunks > 1, "{chunks} chunks");
    assert_eq!(ids.len(), 1, "one id across the chunks: {ids:?}");
    assert_eq!(finishes, 1, "exactly one chunk finishes the answer");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_openai_chats_streams_completes_and_lists_the_model_by_its_alias() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(
        dir.path(),
        TransportChoice::Http(HttpPort::Auto),
        ServerArgs::default(),
    )
    .await;
    let port = port(&running);
    let client = openai(port);

    // The listed id is the alias, the name every OpenAI client selects a model by.
    let models = within("models list", client.models().list()).await;
    assert_eq!(models.object, "list");
    let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [ALIAS], "{models:?}");
    assert_eq!(models.data[0].object, "model");

    // A chat by that name. `max_tokens` rather than `max_completion_tokens`: the older
    // llama.cpp reads only the former.
    #[allow(deprecated)]
    let request = CreateChatCompletionRequestArgs::default()
        .model(ALIAS)
        .messages([ChatCompletionRequestUserMessage::from("Hi there").into()])
        .max_tokens(6u32)
        .temperature(0.0)
        .seed(1)
        .build()
        .unwrap();
    let chat = within("chat", client.chat().create(request.clone())).await;
    assert_chat_answer(&chat);
    let choice = &chat.choices[0];

    // The same chat streamed: one id across the chunks, one finish, the same greedy text.
    let stream = within("chat stream", client.chat().create_stream(request)).await;
    let text = streamed_chat_text(stream).await;
    assert_eq!(Some(text.as_str()), choice.message.content.as_deref());

    // A legacy completion by the same name agrees with the native /completion.
    let request = CreateCompletionRequestArgs::default()
        .model(ALIAS)
        .prompt("Once upon a time")
        .max_tokens(4u32)
        .temperature(0.0)
        .build()
        .unwrap();
    // A client of its own: llama.cpp 4227c9b may close a connection after an event stream
    // without saying so, and a pooled connection reused after that fails to send (any
    // HTTP client sees this; lmcpp's own client and proxy never reuse a stream's).
    let client = openai(port);
    let done = within("completion", client.completions().create(request)).await;
    assert_eq!(done.model, ALIAS, "{done:?}");
    assert_eq!(done.object, "text_completion");
    assert_eq!(done.choices.len(), 1, "{done:?}");
    let usage = done.usage.as_ref().expect("a completion reports its usage");
    assert!((1..=4).contains(&usage.completion_tokens), "{usage:?}");
    let target = Target::Http(port);
    let (status, native) = curl(
        &target,
        "/completion",
        Some(&json!({"prompt": "Once upon a time", "n_predict": 4, "temperature": 0})),
    );
    assert_eq!(status, 200, "{native}");
    assert_eq!(json_of(&native)["content"], done.choices[0].text.as_str());

    let pid = running.server.pid();
    running.server.stop().await.unwrap();
    assert!(!crate::pid_alive(u64::from(pid)));
}

/// What `async-openai` makes of answers that are not a plain success, in each form a
/// llama-server gives them: a request for two choices (answered, or refused with a 500 by
/// a server that allows one) and a prompt longer than the context (refused with a 400
/// whose integer `code` this client cannot read, since OpenAI's is a string, or cut and
/// answered by a server that truncates prompts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_openai_meets_refusals_as_each_version_gives_them() {
    const TEST: &str = "async_openai_meets_refusals_as_each_version_gives_them";
    let dir = tempfile::tempdir().unwrap();
    let running = start(
        dir.path(),
        TransportChoice::Http(HttpPort::Auto),
        ServerArgs::default(),
    )
    .await;
    let client = openai(port(&running));
    let supports = crate::supports();
    let chat = |content: String, n: u8| {
        #[allow(deprecated)]
        CreateChatCompletionRequestArgs::default()
            .model(ALIAS)
            .messages([ChatCompletionRequestUserMessage::from(content.as_str()).into()])
            .max_tokens(2u32)
            .n(n)
            .build()
            .unwrap()
    };

    let two = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.chat().create(chat("Hi".to_owned(), 2)),
    )
    .await
    .expect("an answer within the timeout");
    match two {
        Ok(answer) => {
            let indices: Vec<u32> = answer.choices.iter().map(|c| c.index).collect();
            assert_eq!(indices, [0, 1], "{answer:?}");
        }
        Err(OpenAIError::ApiError(e))
            if e.api_error
                .message
                .contains("Only one completion choice is allowed") =>
        {
            // A server error's body is kept as the message, unparsed.
            assert_eq!(e.status_code.as_u16(), 500, "{e}");
            supports.lacks(
                TEST,
                "several choices per chat request (n > 1)",
                "async-openai gets its 500 with the server's message",
            );
        }
        other => panic!("two choices: {other:?}"),
    }

    let long = "hello ".repeat(3000);
    let too_long = tokio::time::timeout(REQUEST_TIMEOUT, client.chat().create(chat(long, 1)))
        .await
        .expect("an answer within the timeout");
    match too_long {
        Err(OpenAIError::JSONDeserialize(_, body)) => {
            let error = &json_of(&body)["error"];
            assert_eq!(error["type"], "exceed_context_size_error", "{body}");
            assert_eq!(error["code"], 400, "{body}");
        }
        Ok(answer) => {
            let usage = answer.usage.expect("usage");
            assert!(usage.prompt_tokens < 1024, "the prompt is cut: {usage:?}");
            supports.lacks(
                TEST,
                "a refusal of prompts longer than the context (it cuts them)",
                "async-openai gets the answer to the cut prompt",
            );
        }
        other => panic!("an over-long prompt: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_openai_embeds_with_mean_pooling() {
    let dir = tempfile::tempdir().unwrap();
    let args = ServerArgs {
        embeddings: true,
        pooling: Some("mean".to_owned()),
        ..ServerArgs::default()
    };
    let running = start(dir.path(), TransportChoice::Http(HttpPort::Auto), args).await;
    let client = openai(port(&running));
    let n_embd = lmcpp::toolchain::gguf::read_gguf(&crate::paths().demo_model)
        .unwrap()
        .summary()
        .embedding_length
        .unwrap();

    let request = CreateEmbeddingRequestArgs::default()
        .model(ALIAS)
        .input(EmbeddingInput::StringArray(vec![
            "first text".to_owned(),
            "a second, longer text".to_owned(),
        ]))
        .build()
        .unwrap();
    let answer = within("embeddings", client.embeddings().create(request)).await;
    assert_eq!(answer.model, ALIAS, "{answer:?}");
    assert_eq!(answer.object, "list");
    let indices: Vec<u32> = answer.data.iter().map(|e| e.index).collect();
    assert_eq!(indices, [0, 1]);
    for e in &answer.data {
        assert_eq!(e.object, "embedding");
        assert_eq!(u64::try_from(e.embedding.len()).unwrap(), n_embd);
        // The OpenAI endpoint returns unit vectors (Euclidean normalisation).
        let norm = e.embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    }
    assert_ne!(answer.data[0].embedding, answer.data[1].embedding);
    assert!(answer.usage.prompt_tokens > 0, "{:?}", answer.usage);

    let models = within("models list", client.models().list()).await;
    assert_eq!(models.data[0].id, ALIAS);
}

/// Where `curl` sends a request: a loopback port or a Unix socket.
pub(crate) enum Target {
    Http(u16),
    Unix(PathBuf),
}

impl Target {
    fn of(running: &lmcpp::Running) -> Self {
        match running.server.endpoint() {
            Endpoint::Http { port, .. } => Self::Http(*port),
            Endpoint::Unix { socket } => Self::Unix(socket.clone()),
            other => panic!("no curl target for {other}"),
        }
    }
}

/// Runs the system `curl` (bounded by `--max-time`) for `path`: a GET, or a POST of `body`
/// as JSON. Returns the status and the body. A missing curl fails the test saying so.
fn curl(target: &Target, path: &str, body: Option<&Value>) -> (u16, String) {
    curl_with(target, path, body, &[])
}

/// [`curl`] with `extra` arguments for curl.
pub(crate) fn curl_with(
    target: &Target,
    path: &str,
    body: Option<&Value>,
    extra: &[&str],
) -> (u16, String) {
    const STATUS: &str = "\nlmcpp-status:";
    let mut cmd = Command::new("curl");
    cmd.args([
        "--silent",
        "--show-error",
        "--max-time",
        "60",
        "--no-buffer",
    ])
    .args(extra)
    .arg("--write-out")
    .arg(format!("{STATUS}%{{http_code}}"));
    let url = match target {
        Target::Http(port) => format!("http://127.0.0.1:{port}{path}"),
        Target::Unix(socket) => {
            cmd.arg("--unix-socket").arg(socket);
            format!("http://localhost{path}")
        }
    };
    if let Some(body) = body {
        cmd.args([
            "--header",
            "Content-Type: application/json",
            "--data-binary",
        ])
        .arg(body.to_string());
    }
    let out = match cmd.arg(url).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "these tests run the system curl, which is not installed: install it \
             (e.g. `apt-get install curl`)"
        ),
        Err(e) => panic!("running curl: {e}"),
    };
    assert!(
        out.status.success(),
        "curl {path} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("the server answers UTF-8");
    let (body, status) = text
        .rsplit_once(STATUS)
        .unwrap_or_else(|| panic!("curl wrote no status: {text}"));
    (status.trim().parse().unwrap(), body.to_owned())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The native endpoints through curl: health, props, tokenize and back, a completion, and
/// the same completion streamed, whose `data:` lines parse and add up to it.
fn native_endpoints_answer_curl(target: &Target) {
    let (status, body) = curl(target, "/health", None);
    assert_eq!((status, json_of(&body)), (200, json!({"status": "ok"})));

    let (status, body) = curl(target, "/props", None);
    assert_eq!(status, 200, "{body}");
    let props = json_of(&body);
    assert!(
        props["total_slots"].as_u64().is_some_and(|n| n >= 1),
        "{props}"
    );
    assert!(
        props["model_path"]
            .as_str()
            .is_some_and(|p| p.ends_with(".gguf")),
        "{props}"
    );
    assert!(props["default_generation_settings"].is_object(), "{props}");

    let (status, body) = curl(
        target,
        "/tokenize",
        Some(&json!({"content": "Hello world"})),
    );
    assert_eq!(status, 200, "{body}");
    let tokens = json_of(&body)["tokens"].clone();
    let ids = tokens.as_array().expect("a list of token ids");
    assert!(!ids.is_empty() && ids.iter().all(Value::is_u64), "{tokens}");
    let (status, body) = curl(target, "/detokenize", Some(&json!({"tokens": tokens})));
    assert_eq!(status, 200, "{body}");
    let text = json_of(&body)["content"].as_str().unwrap().to_owned();
    // SentencePiece vocabularies add a leading space when tokenizing.
    assert_eq!(text.trim_start(), "Hello world");

    let request = json!({"prompt": "Once upon a time", "n_predict": 5, "temperature": 0});
    let (status, body) = curl(target, "/completion", Some(&request));
    assert_eq!(status, 200, "{body}");
    let done = json_of(&body);
    assert!(done["content"].is_string(), "{done}");
    assert!(
        done["tokens_predicted"]
            .as_u64()
            .is_some_and(|n| (1..=5).contains(&n)),
        "{done}"
    );
    assert_eq!(done["stop"], true, "{done}");

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (status, body) = curl(target, "/completion", Some(&streamed));
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(json_of)
        .collect();
    assert!(events.len() > 1, "{body}");
    // Only the last event ends the stream.
    let stops: Vec<bool> = events.iter().map(|e| e["stop"] == true).collect();
    assert_eq!(stops.iter().filter(|s| **s).count(), 1, "{body}");
    assert_eq!(stops.last(), Some(&true), "{body}");
    let text: String = events
        .iter()
        .map(|e| e["content"].as_str().expect("every event has content"))
        .collect();
    assert_eq!(text, done["content"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reaches_the_native_endpoints_over_http_and_the_unix_socket() {
    for transport in [TransportChoice::Http(HttpPort::Auto), TransportChoice::Unix] {
        let dir = tempfile::tempdir().unwrap();
        let running = start(dir.path(), transport.clone(), ServerArgs::default()).await;
        let target = Target::of(&running);
        // curl blocks; keep it off the runtime's threads.
        tokio::task::spawn_blocking(move || native_endpoints_answer_curl(&target))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        running.server.stop().await.unwrap();
    }
}

/// `lmcpp serve --config … --http` as a user runs it: the demo model under the aliases `a`
/// and `b`, and once more as `embed` with mean pooling, behind one loopback port.
struct ServedProxy {
    /// Declared first, so the proxy is killed before its runtime dir goes.
    _serving: crate::proxy::Serving,
    env: crate::Env,
    id: String,
    port: u16,
}

impl ServedProxy {
    fn start() -> Self {
        let env = crate::Env::new();
        let demo = env.model();
        let config = env.dir.path().join("lmcpp.toml");
        std::fs::write(
            &config,
            format!(
                "[[models]]\nalias = \"a\"\nmodel = \"{demo}\"\n\n\
                 [[models]]\nalias = \"b\"\nmodel = \"{demo}\"\n\n\
                 [[models]]\nalias = \"embed\"\nmodel = \"{demo}\"\n\
                 embeddings = true\npooling = \"mean\"\n"
            ),
        )
        .unwrap();
        let (serving, id, port) = crate::proxy::Serving::http(
            &env,
            &["serve", "--config", config.to_str().unwrap(), "--http"],
        );
        Self {
            _serving: serving,
            env,
            id,
            port,
        }
    }

    /// The proxy's entry in `lmcpp ps --json`.
    fn entry(&self) -> Value {
        let ps = self.env.json(&["ps"]);
        ps.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == self.id.as_str())
            .unwrap_or_else(|| panic!("proxy {} not in ps: {ps}", self.id))
            .clone()
    }

    /// `alias:state` of each model, in the config's order, as `lmcpp ps` reports them.
    fn states(&self) -> Vec<String> {
        crate::proxy_target::model_states(&self.env, &self.id)
    }
}

/// The error text an `async-openai` call failed with: llama.cpp's and the proxy's 4xx
/// bodies fail to deserialize (their `code` is a number), and are kept whole in the error.
fn refusal<T: std::fmt::Debug>(result: Result<T, OpenAIError>) -> String {
    match result {
        Err(OpenAIError::JSONDeserialize(_, body)) => body,
        Err(OpenAIError::ApiError(e)) => e.api_error.message,
        other => panic!("a refusal expected: {other:?}"),
    }
}

/// A greedy chat of a few tokens for the model `alias`.
fn greedy_chat(alias: &str) -> async_openai::types::chat::CreateChatCompletionRequest {
    #[allow(deprecated)]
    CreateChatCompletionRequestArgs::default()
        .model(alias)
        .messages([ChatCompletionRequestUserMessage::from("Hi there").into()])
        .max_tokens(6u32)
        .temperature(0.0)
        .seed(1)
        .build()
        .unwrap()
}

/// A streamed chat read to its end: the `model` of every chunk, the text, and how many
/// chunks finished the answer.
async fn read_chat_stream(
    client: &Client<OpenAIConfig>,
    request: async_openai::types::chat::CreateChatCompletionRequest,
) -> (Vec<String>, String, usize) {
    let mut stream = within("chat stream", client.chat().create_stream(request)).await;
    let (mut models, mut text, mut finishes) = (Vec::new(), String::new(), 0);
    loop {
        let next = tokio::time::timeout(REQUEST_TIMEOUT, stream.next())
            .await
            .expect("the next chunk within the timeout");
        let Some(chunk) = next else { break };
        let chunk = chunk.unwrap_or_else(|e| panic!("chat stream chunk: {e}"));
        models.push(chunk.model.clone());
        for c in &chunk.choices {
            finishes += usize::from(c.finish_reason.is_some());
            text.push_str(c.delta.content.as_deref().unwrap_or_default());
        }
    }
    (models, text, finishes)
}

/// curl through the proxy before any model runs: `/health` is the proxy's own, a body
/// without `model` is refused naming the models, `?model=a` routes a body without one,
/// a streamed `/completion` names `a` in its body, and `/v1/messages` (the Anthropic API)
/// names `b`. Which servers run after each request shows where it went. Returns the text
/// of the streamed completion.
fn curl_routes_by_alias(proxy: &ServedProxy) -> String {
    let target = Target::Http(proxy.port);
    let (status, body) = curl(&target, "/health", None);
    assert_eq!((status, json_of(&body)), (200, json!({"status": "ok"})));
    assert_eq!(proxy.states(), ["a:stopped", "b:stopped", "embed:stopped"]);

    let hello = json!({"content": "Hello world"});
    let (status, body) = curl(&target, "/tokenize", Some(&hello));
    assert_eq!(status, 400, "{body}");
    let error = &json_of(&body)["error"];
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("names no model") && message.contains("`a`, `b`, `embed`"),
        "{body}"
    );
    assert_eq!(proxy.states(), ["a:stopped", "b:stopped", "embed:stopped"]);
    let (status, body) = curl(&target, "/tokenize?model=a", Some(&hello));
    assert_eq!(status, 200, "{body}");
    assert!(
        json_of(&body)["tokens"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(proxy.states(), ["a:ready", "b:stopped", "embed:stopped"]);

    let request = json!({"model": "a", "prompt": "Once upon a time", "n_predict": 4,
        "temperature": 0, "stream": true});
    let (status, body) = curl(&target, "/completion", Some(&request));
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(json_of)
        .collect();
    let last = events.last().unwrap_or_else(|| panic!("no events: {body}"));
    assert_eq!(last["stop"], true, "{body}");
    // A llama-server names its own alias here, or echoes the request's: "a" either way.
    assert_eq!(last["model"], "a", "{body}");
    let streamed: String = events
        .iter()
        .map(|e| e["content"].as_str().expect("every event has content"))
        .collect();
    assert_eq!(proxy.states(), ["a:ready", "b:stopped", "embed:stopped"]);

    let message = json!({"model": "b", "max_tokens": 4,
        "messages": [{"role": "user", "content": "Hi"}]});
    let (status, body) = curl(&target, "/v1/messages", Some(&message));
    // Whether b's llama-server has the Anthropic API, asked on its own socket.
    let server = crate::proxy_target::ps_entry_of_model(&proxy.env, "b");
    let direct = Target::Unix(PathBuf::from(
        server["endpoint"]["socket"].as_str().unwrap(),
    ));
    let (probe_status, probe) = curl(&direct, "/v1/messages", Some(&json!({})));
    if !lmcpp_test_support::is_unknown_route(probe_status, probe.as_bytes()) {
        assert_eq!(status, 200, "{body}");
        let answer = json_of(&body);
        assert_eq!(
            (&answer["type"], &answer["role"], &answer["model"]),
            (&json!("message"), &json!("assistant"), &json!("b")),
            "{body}"
        );
        assert_eq!(answer["content"][0]["type"], "text", "{body}");
        assert!(
            answer["usage"]["output_tokens"]
                .as_u64()
                .is_some_and(|n| (1..=4).contains(&n)),
            "{body}"
        );
    } else {
        // A llama-server without the Anthropic API: the proxy relays b's server's answer
        // to the unknown route as it is.
        assert_eq!((status, body.as_str()), (probe_status, probe.as_str()));
        crate::supports().lacks(
            "async_openai_and_curl_reach_each_alias_of_a_proxy",
            "/v1/messages",
            "the proxy relays its 404 for the route unchanged",
        );
    }
    assert_eq!(proxy.states(), ["a:ready", "b:ready", "embed:stopped"]);
    streamed
}

/// Embeddings of two texts by `embed` (started with pooling), one vector per text of the
/// demo model's width; `a` (without) refuses them, naming `--embeddings`.
async fn embeddings_by_embed_and_refused_by_a(client: &Client<OpenAIConfig>) {
    let n_embd = lmcpp::toolchain::gguf::read_gguf(&crate::paths().demo_model)
        .unwrap()
        .summary()
        .embedding_length
        .unwrap();
    let embed = |alias: &str| {
        CreateEmbeddingRequestArgs::default()
            .model(alias)
            .input(EmbeddingInput::StringArray(vec![
                "first text".to_owned(),
                "a second, longer text".to_owned(),
            ]))
            .build()
            .unwrap()
    };
    let answer = within("embeddings", client.embeddings().create(embed("embed"))).await;
    assert_eq!(answer.model, "embed", "{answer:?}");
    assert_eq!(answer.data.len(), 2, "{answer:?}");
    for e in &answer.data {
        assert_eq!(u64::try_from(e.embedding.len()).unwrap(), n_embd);
    }
    let body = refusal(
        tokio::time::timeout(REQUEST_TIMEOUT, client.embeddings().create(embed("a")))
            .await
            .expect("an answer within the timeout"),
    );
    assert!(body.contains("--embeddings"), "{body}");
}

#[test]
fn async_openai_and_curl_reach_each_alias_of_a_proxy() {
    let proxy = ServedProxy::start();
    let streamed = curl_routes_by_alias(&proxy);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // One client throughout: the proxy keeps its connection usable after an event
    // stream, even where the llama-server behind it closes its own (4227c9b).
    let client = openai(proxy.port);

    let models = rt.block_on(within("models list", client.models().list()));
    let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "embed"], "{models:?}");
    assert!(
        models.data.iter().all(|m| m.object == "model"),
        "{models:?}"
    );

    for alias in ["a", "b"] {
        let chat = rt.block_on(within(alias, client.chat().create(greedy_chat(alias))));
        assert_eq!(chat.model, alias, "{chat:?}");
        let content = chat.choices[0].message.content.clone();
        assert!(content.is_some(), "{chat:?}");
        let (models, text, finishes) = rt.block_on(read_chat_stream(&client, greedy_chat(alias)));
        assert!(models.len() > 1, "{models:?}");
        assert!(models.iter().all(|m| m == alias), "{alias}: {models:?}");
        assert_eq!(finishes, 1, "exactly one chunk finishes the answer");
        assert_eq!(Some(text), content);
    }

    // An alias the proxy does not serve: a 404 naming the ones it does.
    let body = refusal(rt.block_on(async {
        tokio::time::timeout(REQUEST_TIMEOUT, client.chat().create(greedy_chat("c")))
            .await
            .expect("an answer within the timeout")
    }));
    let error = &json_of(&body)["error"];
    assert_eq!(error["code"], 404, "{body}");
    assert_eq!(error["models"], json!(["a", "b", "embed"]), "{body}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("`c`") && m.contains("`a`, `b`, `embed`")),
        "{body}"
    );

    // A legacy completion by `a` agrees with the streamed native one curl asked `a` for.
    let request = CreateCompletionRequestArgs::default()
        .model("a")
        .prompt("Once upon a time")
        .max_tokens(4u32)
        .temperature(0.0)
        .build()
        .unwrap();
    let done = rt.block_on(within("completion", client.completions().create(request)));
    assert_eq!(done.model, "a", "{done:?}");
    assert_eq!(done.choices[0].text, streamed);

    // Embeddings by `embed`, the model started with pooling; `a` has none and says so.
    rt.block_on(embeddings_by_embed_and_refused_by_a(&client));

    // Three models used, three servers: each its own llama-server process.
    assert_eq!(proxy.states(), ["a:ready", "b:ready", "embed:ready"]);
    let entry = proxy.entry();
    let mut pids: Vec<u64> = entry["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["pid"].as_u64().unwrap_or_else(|| panic!("{m}")))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "{entry}");
    assert!(pids.iter().all(|pid| crate::pid_alive(*pid)), "{entry}");
}
