//! The multi-model proxy in front of real llama-servers: routing by alias with the typed
//! client, one start for many first requests, keep-alive expiry, eviction within a
//! memory budget, a busy model kept, a model server killed mid-stream, and two
//! llama.cpp versions behind one endpoint.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt, future::BoxFuture};
use lmcpp_server::{
    Error, HttpPort, Launch, LaunchError, LaunchOptions, ModelSpec, ModelState, Proxy,
    ProxyOptions, Server, TransportChoice,
};
use lmcpp_test_support::PreparedPaths;
use lmcpp_types::{
    native::{completion::CompletionRequest, tokenize::TokenizeRequest},
    openai::{chat::ChatCompletionRequest, embeddings::OaiEmbeddingRequest},
};
use serde_json::json;

use crate::support::{eventually, flags, paths, req, running};

/// Starts the demo model with the given binary and arguments, counting its starts.
struct TestLaunch {
    opts: LaunchOptions,
    launches: AtomicUsize,
}

impl Launch for TestLaunch {
    fn launch(&self) -> BoxFuture<'static, Result<Server, LaunchError>> {
        self.launches.fetch_add(1, Ordering::SeqCst);
        let opts = self.opts.clone();
        Box::pin(async move { Ok(Server::launch(opts).await?) })
    }
}

impl TestLaunch {
    fn launches(&self) -> usize {
        self.launches.load(Ordering::SeqCst)
    }
}

/// Launch options of the demo model for the llama.cpp in `paths`.
fn demo(paths: &PreparedPaths, dir: &Path, embeddings: bool) -> Arc<TestLaunch> {
    let mut opts = LaunchOptions::new(&paths.llama_server, &paths.demo_model);
    opts.flags = flags(paths);
    opts.runtime_dir = Some(dir.join("run"));
    opts.socket_fallback_dir = Some(dir.join("s"));
    opts.ready_timeout = Duration::from_secs(60);
    opts.args.ctx_size = Some(2048);
    opts.args.parallel = Some(2);
    opts.args.threads = Some(1);
    if embeddings {
        opts.args.embeddings = true;
        opts.args.pooling = Some("mean".into());
    }
    Arc::new(TestLaunch {
        opts,
        launches: AtomicUsize::new(0),
    })
}

fn model(alias: &str, launch: &Arc<TestLaunch>, estimate: u64) -> ModelSpec {
    let mut spec = ModelSpec::new(alias, Arc::clone(launch) as Arc<dyn Launch>);
    spec.estimate_bytes = estimate;
    spec
}

async fn proxy(dir: &Path, budget: u64, models: Vec<ModelSpec>) -> Proxy {
    proxy_on(dir, TransportChoice::Unix, budget, models).await
}

async fn proxy_on(
    dir: &Path,
    transport: TransportChoice,
    budget: u64,
    models: Vec<ModelSpec>,
) -> Proxy {
    let mut opts = ProxyOptions::new(budget);
    opts.transport = transport;
    opts.runtime_dir = Some(dir.join("run"));
    opts.socket_fallback_dir = Some(dir.join("s"));
    opts.load_timeout = Duration::from_secs(60);
    Proxy::start(opts, models).await.expect("proxy starts")
}

fn state(proxy: &Proxy, alias: &str) -> ModelState {
    view(proxy, alias).state
}

fn view(proxy: &Proxy, alias: &str) -> lmcpp_server::ModelView {
    proxy
        .models()
        .into_iter()
        .find(|m| m.alias == alias)
        .expect("configured alias")
}

const WAIT: Duration = Duration::from_secs(30);

fn completion(alias: &str, n: u32) -> CompletionRequest {
    req(
        json!({"model": alias, "prompt": "Once upon a time", "n_predict": n,
               "temperature": 0.0, "seed": 1, "ignore_eos": true}),
    )
}

#[tokio::test]
async fn the_typed_client_reaches_each_alias_through_one_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths();
    let text = demo(&paths, dir.path(), false);
    let embed = demo(&paths, dir.path(), true);
    let proxy = proxy(
        dir.path(),
        u64::MAX,
        vec![
            model("chat", &text, 1),
            model("coder", &text, 1),
            model("embed", &embed, 1),
        ],
    )
    .await;
    let client = proxy.client();
    let list = client.models().await.unwrap();
    let ids: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["chat", "coder", "embed"]);
    assert!(
        proxy
            .models()
            .iter()
            .all(|m| m.state == ModelState::Stopped)
    );
    assert_eq!(
        text.launches() + embed.launches(),
        0,
        "nothing starts before it is asked for"
    );

    let done = client.completion(&completion("chat", 8)).await.unwrap();
    assert!(!done.content.is_empty());
    assert_eq!(
        (state(&proxy, "chat"), state(&proxy, "coder")),
        (ModelState::Ready, ModelState::Stopped)
    );
    let chat: ChatCompletionRequest = req(json!({"model": "coder",
        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}));
    let answer = client.chat_completions(&chat).await.unwrap();
    assert_eq!(answer.choices.len(), 1);
    let streamed: Vec<_> = client
        .completion_stream(&completion("coder", 8))
        .await
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    assert!(streamed.len() >= 8 && streamed.last().unwrap().stop);
    let tokens: TokenizeRequest = req(json!({"model": "chat", "content": "hello world"}));
    assert!(!client.tokenize(&tokens).await.unwrap().tokens.is_empty());
    let embedding: OaiEmbeddingRequest = req(json!({"model": "embed", "input": "hello"}));
    let vectors = client.embeddings(&embedding).await.unwrap();
    assert_eq!(vectors.data.len(), 1);
    // Each alias got its own server; the two over one model are two processes.
    let pids: Vec<u32> = proxy.models().iter().filter_map(|m| m.pid).collect();
    assert_eq!(pids.len(), 3);
    assert_eq!((text.launches(), embed.launches()), (2, 1));
    let unknown = client.completion(&completion("nope", 1)).await.unwrap_err();
    assert!(
        matches!(
            unknown,
            Error::Api { status: 404, .. } | Error::Unsupported { status: 404, .. }
        ),
        "{unknown:?}"
    );

    proxy.stop().await.unwrap();
    for pid in pids {
        assert!(!running(pid), "model server {pid} outlived the proxy");
    }
}

#[tokio::test]
async fn sixteen_first_requests_start_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let launch = demo(&paths(), dir.path(), false);
    // Over loopback HTTP this time; the other tests use the default Unix socket.
    let proxy = proxy_on(
        dir.path(),
        TransportChoice::Http(HttpPort::Auto),
        u64::MAX,
        vec![model("chat", &launch, 1)],
    )
    .await;
    assert!(
        matches!(proxy.endpoint(), lmcpp_server::Endpoint::Http { host, .. } if host == "127.0.0.1")
    );
    let client = proxy.client();
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let tokens: TokenizeRequest = req(json!({"content": "hello"}));
                client.tokenize(&tokens).await
            })
        })
        .collect();
    for r in requests {
        assert!(!r.await.unwrap().unwrap().tokens.is_empty());
    }
    assert_eq!(launch.launches(), 1);
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_model_stops_after_its_keep_alive() {
    let dir = tempfile::tempdir().unwrap();
    let launch = demo(&paths(), dir.path(), false);
    let mut spec = model("chat", &launch, 1);
    spec.keep_alive = Some(Duration::from_millis(300));
    let proxy = proxy(dir.path(), u64::MAX, vec![spec]).await;
    proxy
        .client()
        .completion(&completion("chat", 4))
        .await
        .unwrap();
    let pid = view(&proxy, "chat").pid.expect("a running server");
    assert!(
        eventually(WAIT, || state(&proxy, "chat") == ModelState::Stopped
            && !running(pid))
        .await,
        "the keep-alive passed and the server still runs"
    );
    // The next request starts it again.
    proxy
        .client()
        .completion(&completion("chat", 4))
        .await
        .unwrap();
    assert_eq!(launch.launches(), 2);
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn eviction_makes_room_but_never_stops_a_busy_model_and_a_full_queue_is_a_429() {
    let dir = tempfile::tempdir().unwrap();
    let launch = demo(&paths(), dir.path(), false);
    let mut chat = model("chat", &launch, 60);
    chat.max_queue = Some(1);
    let proxy = proxy(dir.path(), 100, vec![chat, model("coder", &launch, 60)]).await;
    let client = proxy.client();
    client.completion(&completion("chat", 2)).await.unwrap();
    let chat_pid = view(&proxy, "chat").pid.unwrap();
    client.completion(&completion("coder", 2)).await.unwrap();
    assert_eq!(state(&proxy, "chat"), ModelState::Stopped);
    assert!(
        !running(chat_pid),
        "the evicted server was stopped before the next loaded"
    );

    // A stream left unread keeps coder busy: chat cannot evict it, and waits for it.
    let mut stream = client
        .completion_stream(&completion("coder", 1500))
        .await
        .unwrap();
    stream.next().await.unwrap().unwrap();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.completion(&completion("chat", 2)).await }
    });
    let queued = |metrics: &lmcpp_types::metrics::Metrics| {
        metrics
            .samples()
            .find(|s| s.name == "lmcpp_proxy_queued" && s.labels["model"] == "chat")
            .map(|s| s.value)
    };
    let mut seen = None;
    for _ in 0..3000 {
        seen = queued(&client.proxy_metrics().await.unwrap());
        if seen == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, Some(1.0), "chat's request waits for coder's room");
    // Its queue holds one: the next is refused at once, with when to retry.
    let full = client
        .raw(
            http::Method::POST,
            "/completion",
            Some(serde_json::to_vec(&completion("chat", 2)).unwrap().into()),
        )
        .await
        .unwrap();
    assert_eq!(full.status, 429);
    assert!(full.body.starts_with(b"{\"error\""), "{:?}", full.body);
    assert_eq!(state(&proxy, "coder"), ModelState::Ready);
    drop(stream);
    waiting.await.unwrap().unwrap();
    assert_eq!(state(&proxy, "coder"), ModelState::Stopped);
    assert_eq!(state(&proxy, "chat"), ModelState::Ready);
    proxy.stop().await.unwrap();
}

/// Requests alternating between two models that do not fit together, all in flight at
/// once, are served in one batch per model: two starts, not one per request.
#[tokio::test]
async fn alternating_requests_are_served_in_batches_not_a_swap_each() {
    let dir = tempfile::tempdir().unwrap();
    let launch = demo(&paths(), dir.path(), false);
    let proxy = proxy(
        dir.path(),
        100,
        vec![model("chat", &launch, 60), model("coder", &launch, 60)],
    )
    .await;
    let client = proxy.client();
    let mut sent = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        let alias = if i % 2 == 0 { "chat" } else { "coder" };
        sent.push(tokio::spawn(async move {
            client.completion(&completion(alias, 2)).await
        }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for s in sent {
        s.await.unwrap().unwrap();
    }
    assert_eq!(launch.launches(), 2);
    let metrics = client.proxy_metrics().await.unwrap();
    let evictions: f64 = metrics
        .samples()
        .filter(|s| s.name == "lmcpp_proxy_evictions_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(evictions, 1.0);
    proxy.stop().await.unwrap();
}

/// A model unloaded with its KV cache kept: the same long prompt afterwards is evaluated
/// only past what was cached (the server's own `timings.prompt_n`); a cache file the
/// server cannot read is skipped and the prompt evaluated whole.
#[tokio::test]
async fn the_kv_cache_survives_an_unload_and_a_damaged_one_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let slots = dir.path().join("slots");
    let mut launch = demo(&paths(), dir.path(), false);
    Arc::get_mut(&mut launch).unwrap().opts.args.slot_save_path = Some(slots.clone());
    let mut chat = model("chat", &launch, 0);
    chat.slot_cache = Some(slots.clone());
    let proxy = proxy(dir.path(), 100, vec![chat]).await;
    let client = proxy.client();
    let unload = lmcpp_types::router::ModelRequest::new("chat");
    let long: CompletionRequest = req(json!({
        "model": "chat", "prompt": "Once upon a time there was a model. ".repeat(20),
        "n_predict": 2, "temperature": 0.0, "cache_prompt": true
    }));
    let evaluated = |r: &lmcpp_types::native::completion::CompletionResponse| {
        r.timings.as_ref().and_then(|t| t.prompt_n).unwrap()
    };
    let first = evaluated(&client.completion(&long).await.unwrap());
    assert!(
        first > 100,
        "the whole prompt is evaluated at first: {first}"
    );
    assert!(client.unload_model(&unload).await.unwrap().success);
    let saved: Vec<_> = std::fs::read_dir(&slots).unwrap().collect();
    assert!(!saved.is_empty(), "a slot was saved");

    let second = evaluated(&client.completion(&long).await.unwrap());
    assert!(
        second * 10 < first,
        "after the restore only the new tokens are evaluated: {second} of {first}"
    );
    assert_eq!(
        std::fs::read_dir(&slots).unwrap().count(),
        0,
        "restored files are removed"
    );

    assert!(client.unload_model(&unload).await.unwrap().success);
    for file in std::fs::read_dir(&slots).unwrap() {
        std::fs::write(file.unwrap().path(), b"not a slot file").unwrap();
    }
    let third = evaluated(&client.completion(&long).await.unwrap());
    assert_eq!(
        third, first,
        "a damaged cache is skipped, the prompt evaluated whole"
    );
    proxy.stop().await.unwrap();
}

// Kills the server with a signal, as a crash would.
#[cfg(unix)]
#[tokio::test]
async fn a_model_server_killed_mid_stream_is_an_error_then_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let launch = demo(&paths(), dir.path(), false);
    let proxy = proxy(dir.path(), u64::MAX, vec![model("chat", &launch, 1)]).await;
    let client = proxy.client();
    let mut stream = client
        .completion_stream(&completion("chat", 1500))
        .await
        .unwrap();
    stream.next().await.unwrap().unwrap();
    let pid = view(&proxy, "chat").pid.unwrap();
    // SAFETY: plain syscall on the pid of the server this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let mut outcome = None;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            outcome = Some(e);
            break;
        }
    }
    let err = outcome.expect("the stream ends with an error, not as if complete");
    assert!(
        matches!(&err, Error::Api { error, .. } if error.message.contains("broke off")),
        "{err:?}"
    );
    assert!(eventually(WAIT, || state(&proxy, "chat") == ModelState::Failed).await);
    assert!(view(&proxy, "chat").error.unwrap().contains("exited"));
    client.completion(&completion("chat", 4)).await.unwrap();
    assert_eq!(launch.launches(), 2);
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn two_llama_cpp_versions_behind_one_endpoint() {
    // The version under test and another prepared one.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let this = paths();
    let other = this.another_version(root).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let mut this_spec = model("this", &demo(&this, dir.path(), false), 1);
    this_spec.llama_version = Some(this.llama_version.clone());
    let mut other_spec = model("other", &demo(&other, dir.path(), false), 1);
    other_spec.llama_version = Some(other.llama_version.clone());
    let proxy = proxy(dir.path(), u64::MAX, vec![this_spec, other_spec]).await;
    let client = proxy.client();
    let mut builds = Vec::new();
    for alias in ["this", "other"] {
        client.completion(&completion(alias, 4)).await.unwrap();
        let props = client
            .raw(http::Method::GET, &format!("/props?model={alias}"), None)
            .await
            .unwrap();
        assert!(props.status.is_success());
        let props: serde_json::Value = serde_json::from_slice(&props.body).unwrap();
        builds.push(props["build_info"].to_string());
    }
    assert_ne!(builds[0], builds[1], "both answers came from one llama.cpp");
    let listed = client.models().await.unwrap();
    let mut versions: Vec<_> = listed
        .data
        .iter()
        .map(|m| {
            let version = m.extra["lmcpp"]["llama_version"].as_str().unwrap();
            (m.id.clone(), version.to_owned())
        })
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        [
            ("other".to_owned(), other.llama_version),
            ("this".to_owned(), this.llama_version)
        ]
    );
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn the_proxy_key_is_checked_and_the_model_server_gets_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let launch = {
        let mut opts = demo(&paths(), dir.path(), false).opts.clone();
        opts.args.api_key = Some("model-key".into());
        Arc::new(TestLaunch {
            opts,
            launches: AtomicUsize::new(0),
        })
    };
    let mut opts = ProxyOptions::new(u64::MAX);
    opts.runtime_dir = Some(dir.path().join("run"));
    opts.socket_fallback_dir = Some(dir.path().join("s"));
    opts.api_key = Some("proxy-key".into());
    let proxy = Proxy::start(opts, vec![model("chat", &launch, 1)])
        .await
        .unwrap();
    let anonymous = lmcpp_server::Client::new(proxy.endpoint().clone());
    let refused = anonymous
        .completion(&completion("chat", 2))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::Api { status: 401, .. }),
        "{refused:?}"
    );
    assert_eq!(
        launch.launches(),
        0,
        "nothing starts for a request without the key"
    );
    let with_model_key = lmcpp_server::Client::builder(proxy.endpoint().clone())
        .api_key("model-key")
        .build();
    let refused = with_model_key
        .completion(&completion("chat", 2))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::Api { status: 401, .. }),
        "{refused:?}"
    );
    // The proxy's key opens the proxy; the proxy sends the model server its own key.
    proxy
        .client()
        .completion(&completion("chat", 2))
        .await
        .unwrap();
    assert!(anonymous.probe_health().await.unwrap().status.is_success());
    proxy.stop().await.unwrap();
}

/// `GET /v1/models` of `client` as JSON.
async fn models_json(client: &lmcpp_server::Client) -> serde_json::Value {
    let raw = client
        .raw(http::Method::GET, "/v1/models", None)
        .await
        .unwrap();
    assert!(raw.status.is_success(), "{}", raw.status);
    serde_json::from_slice(&raw.body).unwrap()
}

#[tokio::test]
async fn the_listing_carries_what_the_model_server_lists_under_the_alias() {
    let dir = tempfile::tempdir().unwrap();
    let launch = demo(&paths(), dir.path(), false);
    // The same server started directly: what llama-server itself lists.
    let direct = Server::launch(launch.opts.clone()).await.unwrap();
    let own = models_json(&direct.client()).await;
    direct.stop().await.unwrap();
    let own_entry = own["data"][0].as_object().unwrap();
    assert!(own_entry["meta"].is_object(), "{own}");

    let proxy = proxy(
        dir.path(),
        u64::MAX,
        vec![model("chat", &launch, 1), model("idle", &launch, 1)],
    )
    .await;
    let client = proxy.client();
    client.completion(&completion("chat", 2)).await.unwrap();
    let listed = models_json(&client).await;
    let entry = &listed["data"][0];
    for key in own_entry.keys() {
        assert!(
            entry.get(key).is_some(),
            "{key} of {own} missing in {listed}"
        );
    }
    assert_eq!(entry["meta"], own_entry["meta"]);
    assert_eq!(
        (&entry["id"], &entry["owned_by"], &entry["status"]["value"]),
        (&json!("chat"), &json!("lmcpp"), &json!("loaded"))
    );
    assert_eq!(entry["lmcpp"]["alias"], "chat");
    // The model not started yet has the proxy's fields only.
    assert_eq!(listed["data"][1]["id"], "idle");
    assert!(listed["data"][1].get("meta").is_none(), "{listed}");
    // llama-server's Ollama-style list, one entry per alias.
    if let Some(own_models) = own["models"].as_array() {
        let models = &listed["models"];
        assert_eq!(models[1], json!({"name": "idle", "model": "idle"}));
        for key in own_models[0].as_object().unwrap().keys() {
            assert!(models[0].get(key).is_some(), "{key} missing in {listed}");
        }
        assert_eq!(
            (&models[0]["name"], &models[0]["model"]),
            (&json!("chat"), &json!("chat"))
        );
    }
    let typed = client.models().await.unwrap();
    let meta = typed.data[0].meta.as_ref().unwrap();
    assert_eq!(meta.n_params, own_entry["meta"]["n_params"].as_i64());
    assert!(client.router_models().await.unwrap().data.len() == 2);
    proxy.stop().await.unwrap();
}
