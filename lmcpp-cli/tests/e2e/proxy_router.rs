//! `lmcpp serve` of several models to a client written for llama-server's router mode:
//! list, load, use and unload through the router routes, the router's status events
//! (`/models/sse`), and the proxy's own typed events (`/lmcpp/events`) and metrics
//! (`/lmcpp/metrics`), against real llama-servers; and a model's KV cache kept across an
//! unload (`keep_kv_cache`).

use std::time::Duration;

use futures_util::StreamExt;
use lmcpp::server::{Client, Endpoint, ModelEventKind, StopReason};
use lmcpp::types::openai::chat::{ChatCompletionRequest, ChatMessage};
use lmcpp::types::router::{ModelRequest, ModelState};
use serde_json::{Value, json};

use super::Env;

/// The keys of the recorded router's model entry (`cargo xtask fixtures`) but the ones
/// the proxy documents as not given.
fn router_keys(name: &str) -> Vec<String> {
    let path = lmcpp_test_support::workspace_root()
        .join("lmcpp-types/tests/fixtures")
        .join(format!("{name}.json"));
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let entry = &fixture["data"][0];
    let mut keys: Vec<String> = entry.as_object().unwrap().keys().cloned().collect();
    keys.extend(
        entry["status"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "preset")
            .map(|k| format!("status.{k}")),
    );
    keys
}

fn missing(keys: &[String], entry: &Value) -> Vec<String> {
    keys.iter()
        .filter(|k| match k.strip_prefix("status.") {
            Some(k) => entry["status"].get(k).is_none(),
            None => entry.get(k.as_str()).is_none(),
        })
        .cloned()
        .collect()
}

#[test]
fn a_router_client_lists_loads_uses_and_unloads_models_behind_lmcpp_serve() {
    let env = Env::new();
    let a = format!("a={}", env.model());
    let b = format!("b={}", env.model());
    let record = env.json(&["serve", "--model", &a, "--model", &b, "--detach"]);
    let endpoint: Endpoint = serde_json::from_value(record["endpoint"].clone()).unwrap();
    let client = Client::new(endpoint);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let real = real_router_events(&env).await;
        let mut router_events = client.router_events().await.unwrap();
        let mut own_events = client.proxy_events().await.unwrap();

        // List: both known, neither loaded, in the router's shape.
        let list: Value = client.get("/models").await.unwrap();
        let entry = &list["data"][0];
        assert_eq!(
            (&entry["id"], &entry["status"]["value"]),
            (&json!("a"), &json!("unloaded"))
        );
        assert_eq!(
            missing(&router_keys("router_models"), entry),
            Vec::<String>::new()
        );
        // The router's own `/props`, by which the web UI offers its model picker.
        let props: Value = client.get("/props").await.unwrap();
        assert_eq!(props["role"], "router");

        // Load, then the entry is the loaded router's, with what llama-server said.
        let a_req = ModelRequest::new("a");
        assert!(client.load_model(&a_req).await.unwrap().success);
        let list: Value = client.get("/models").await.unwrap();
        let entry = &list["data"][0];
        assert_eq!(entry["status"]["value"], "loaded");
        assert_eq!(
            missing(&router_keys("router_models_loaded"), entry),
            Vec::<String>::new()
        );
        assert!(entry["meta"]["n_params"].as_u64().is_some(), "{entry}");
        let argv = entry["status"]["args"].as_array().unwrap();
        assert!(
            argv[0].as_str().unwrap().ends_with("llama-server"),
            "{argv:?}"
        );
        let typed = client.router_models().await.unwrap();
        let states: Vec<ModelState> = typed
            .data
            .iter()
            .map(|m| m.status.as_ref().unwrap().value.clone())
            .collect();
        assert_eq!(states, [ModelState::Loaded, ModelState::Unloaded]);

        // Use: a request naming it, and a GET route with `?model=`.
        let mut chat = ChatCompletionRequest::new(vec![ChatMessage::user("Hi")]).max_tokens(2);
        chat.model = Some("a".into());
        client.chat_completions(&chat).await.unwrap();
        let props: Value = client.get("/props?model=a").await.unwrap();
        assert!(props.get("role").is_none_or(|r| r != "router"), "{props}");
        assert!(props["default_generation_settings"].is_object(), "{props}");

        // Unload.
        assert!(client.unload_model(&a_req).await.unwrap().success);
        let typed = client.router_models().await.unwrap();
        assert_eq!(
            typed.data[0].status.as_ref().unwrap().value,
            ModelState::Unloaded
        );

        events_in_order(&mut router_events, &mut own_events, real).await;

        // The proxy's own metrics.
        let metrics = client.proxy_metrics().await.unwrap();
        let value = |name: &str, model: &str| {
            metrics
                .samples()
                .find(|s| {
                    s.name == name && s.labels.get("model").map(String::as_str) == Some(model)
                })
                .map(|s| s.value)
        };
        assert_eq!(value("lmcpp_proxy_requests_total", "a"), Some(3.0));
        assert_eq!(value("lmcpp_proxy_load_seconds_count", "a"), Some(1.0));
        assert_eq!(value("lmcpp_proxy_requests_total", "b"), Some(0.0));
        assert!(value("lmcpp_proxy_load_seconds_sum", "a").unwrap() > 0.0);
    });
}

/// `keep_kv_cache = true` in the config: a long prompt, an unload, the same prompt again,
/// and the server evaluates only what was not cached; the cache goes with the proxy.
#[test]
fn a_model_that_keeps_its_kv_cache_evaluates_only_new_tokens_after_an_unload() {
    let env = Env::new();
    let config = env.dir.path().join("lmcpp.toml");
    std::fs::write(
        &config,
        format!(
            "[[models]]\nalias = \"chat\"\nmodel = {:?}\nctx_size = 2048\nkeep_kv_cache = true\n",
            env.model()
        ),
    )
    .unwrap();
    let record = env.json(&["serve", "--config", config.to_str().unwrap(), "--detach"]);
    let endpoint: Endpoint = serde_json::from_value(record["endpoint"].clone()).unwrap();
    let client = Client::new(endpoint);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let long: lmcpp::types::native::completion::CompletionRequest = serde_json::from_value(json!({
        "model": "chat", "prompt": "Once upon a time there was a model. ".repeat(20),
        "n_predict": 2, "temperature": 0.0, "cache_prompt": true
    }))
    .unwrap();
    let kv_root = env.dir.path().join("home/kv");
    rt.block_on(async {
        let evaluated = |r: lmcpp::types::native::completion::CompletionResponse| {
            r.timings.and_then(|t| t.prompt_n).unwrap()
        };
        let first = evaluated(client.completion(&long).await.unwrap());
        assert!(
            client
                .unload_model(&ModelRequest::new("chat"))
                .await
                .unwrap()
                .success
        );
        let second = evaluated(client.completion(&long).await.unwrap());
        assert!(second * 10 < first, "{second} of {first} evaluated again");
    });
    assert!(kv_root.is_dir(), "the cache lives in the cache root");
    env.ok(&["stop", "--all"]);
    let left: Vec<_> = std::fs::read_dir(&kv_root).unwrap().collect();
    assert!(
        left.is_empty(),
        "the proxy's KV caches go with it: {left:?}"
    );
}

/// The router's status events of `a`'s load and unload, and the proxy's typed ones, in
/// order: the same events, each with the keys and JSON types of the events the real
/// router of this llama-server sends for a load and an unload (where it has a router).
async fn events_in_order(
    router_events: &mut lmcpp::server::EventStream<lmcpp::types::router::ModelsEvent>,
    own_events: &mut lmcpp::server::EventStream<lmcpp::server::ModelEvent>,
    real: Option<Vec<Value>>,
) {
    let mut ours = Vec::new();
    while ours
        .last()
        .is_none_or(|e: &Value| e["data"]["status"] != "unloaded")
    {
        let event = next_event(router_events).await;
        assert_eq!(event.model, "a", "{event:?}");
        ours.push(serde_json::to_value(&event).unwrap());
    }
    assert_eq!(
        steps(&ours),
        [
            ("model_status", "loading"),
            ("status_change", "loading"),
            ("status_change", "loaded"),
            ("status_change", "unloaded"),
        ],
        "{ours:?}"
    );
    assert_eq!(ours[3]["data"]["exit_code"], 0);
    assert_eq!(ours[2]["data"]["info"]["id"], "a");
    if let Some(real) = real {
        // Each status change the real router sends for the same load and unload is among
        // ours, in order, with its keys and JSON types (ours may say more: a router of
        // another version may send fewer kinds of event).
        let mut at = 0;
        for theirs in dedup(&real) {
            let step = steps(std::slice::from_ref(theirs))[0];
            let found = ours[at..]
                .iter()
                .position(|mine| steps(std::slice::from_ref(mine))[0] == step)
                .unwrap_or_else(|| {
                    panic!("the router's {step:?} is not among ours from {at}: ours {ours:?}, the router's {real:?}")
                });
            let mine = &ours[at + found];
            let gaps = shape_gaps(theirs, mine, &["data.progress"]);
            assert!(
                gaps.is_empty(),
                "{gaps:?}: ours {mine}, the router's {theirs}"
            );
            at += found + 1;
        }
    }
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(next_event(own_events).await.kind);
    }
    assert_eq!(
        kinds,
        [
            ModelEventKind::Starting,
            ModelEventKind::Ready,
            ModelEventKind::Stopped {
                reason: StopReason::Unloaded
            }
        ]
    );
}

/// Each event's `event` and `data.status`, a repeat of the previous one left out (the
/// router sends one `loading` per progress report).
fn steps(events: &[Value]) -> Vec<(&str, &str)> {
    dedup(events)
        .into_iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default(),
                e["data"]["status"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

fn dedup(events: &[Value]) -> Vec<&Value> {
    let mut kept: Vec<&Value> = Vec::new();
    for e in events {
        let same = kept.last().is_some_and(|k| {
            k["event"] == e["event"] && k["data"]["status"] == e["data"]["status"]
        });
        if !same {
            kept.push(e);
        }
    }
    kept
}

/// The keys of `theirs` (and of its objects, one level down) that `ours` lacks or holds
/// with another JSON type, but those in `skip`.
fn shape_gaps(theirs: &Value, ours: &Value, skip: &[&str]) -> Vec<String> {
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut gaps = Vec::new();
    let Some(top) = theirs.as_object() else {
        return gaps;
    };
    for (key, value) in top {
        let inner = value.as_object().into_iter().flatten();
        let pairs = std::iter::once((key.clone(), value, &ours[key.as_str()]))
            .chain(inner.map(|(k, v)| (format!("{key}.{k}"), v, &ours[key.as_str()][k.as_str()])));
        for (at, want, got) in pairs {
            if !skip.contains(&at.as_str()) && kind(want) != kind(got) {
                gaps.push(format!(
                    "{at}: {} where the router has {}",
                    kind(got),
                    kind(want)
                ));
            }
        }
    }
    gaps
}

/// What the real router of this llama-server sends on `/models/sse` while its one model
/// (the demo model) is loaded and unloaded; `None`, said in the lacks report, when this
/// llama-server has no router mode.
async fn real_router_events(env: &Env) -> Option<Vec<Value>> {
    use lmcpp::server::{HttpPort, LaunchOptions, Server, TransportChoice};
    const TEST: &str = "a_router_client_lists_loads_uses_and_unloads_models_behind_lmcpp_serve";
    let supports = crate::supports();
    if !supports.flag("--models-dir") {
        supports.lacks(
            TEST,
            "router mode (--models-dir)",
            "the proxy's events are the status changes of a load and an unload, in order",
        );
        return None;
    }
    let models = env.dir.path().join("router-models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(env.model(), models.join("demo.gguf")).unwrap();
    let mut opts = LaunchOptions::router(&env.paths.llama_server, &models);
    opts.runtime_dir = Some(env.dir.path().join("router-run"));
    opts.transport = TransportChoice::Http(HttpPort::Auto);
    opts.args.ctx_size = Some(512);
    if supports.flag("--no-models-autoload") {
        opts.args.extra = vec!["--no-models-autoload".into()];
    }
    let server = Server::launch(opts).await.unwrap();
    let client = server.client();
    let mut events = match client.router_events().await {
        Ok(events) => events,
        Err(lmcpp::server::Error::Unsupported { .. }) => {
            supports.lacks(
                TEST,
                "/models/sse in router mode",
                "the proxy's events are the status changes of a load and an unload, in order",
            );
            server.stop().await.unwrap();
            return None;
        }
        Err(e) => panic!("the router's /models/sse: {e}"),
    };
    let list: Value = client.get("/models").await.unwrap();
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let req = ModelRequest::new(id.as_str());
    assert!(client.load_model(&req).await.unwrap().success);
    let mut seen = Vec::new();
    let mut next = async || serde_json::to_value(next_event(&mut events).await).unwrap();
    // A load answers before its model is loaded: wait for the router to say so.
    while seen
        .last()
        .is_none_or(|e: &Value| e["data"]["status"] != "loaded")
    {
        seen.push(next().await);
    }
    assert!(client.unload_model(&req).await.unwrap().success);
    while seen
        .last()
        .is_none_or(|e: &Value| e["data"]["status"] != "unloaded")
    {
        seen.push(next().await);
    }
    server.stop().await.unwrap();
    Some(seen)
}

/// The next event of `stream`, within 30 s.
async fn next_event<T: serde::de::DeserializeOwned>(
    stream: &mut lmcpp::server::EventStream<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}
