//! The proxy against in-process fake model servers: routing, limits, the API key,
//! single-flight starts, failures, keep-alive, eviction and a server dying mid-stream.
//! The end-to-end tests run the same paths against real llama-servers.
#![allow(clippy::unwrap_used)]

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{StreamExt, future::BoxFuture};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::{body::Frame, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use super::{
    models::{Conf, Instance, Start},
    *,
};
use crate::Error;
use lmcpp_types::Classify;

type MockBody = BoxBody<Bytes, Infallible>;

/// A fake model server: answers every path with what it saw, streams on `/stream`
/// until killed, and "exits" when killed.
struct Fake {
    endpoint: Endpoint,
    name: String,
    key: Option<String>,
    dead: watch::Sender<bool>,
    stops: Arc<AtomicUsize>,
    /// When set, a stop takes a permit first (the process takes its time to exit).
    stop_gate: Option<Arc<Semaphore>>,
    _dir: tempfile::TempDir,
}

/// Counts when it is dropped.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a fake answers on `/v1/models`, and how often it was asked.
#[derive(Default)]
struct Listing {
    /// `None`: the same echo as every other path. An empty body: no answer until killed.
    answer: std::sync::Mutex<Option<Bytes>>,
    asked: AtomicUsize,
    /// The `Authorization` of the last ask.
    auth: std::sync::Mutex<Option<String>>,
}

impl Listing {
    fn set(&self, answer: impl Into<Bytes>) {
        *self.answer.lock().unwrap() = Some(answer.into());
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

async fn mock_answer(
    name: String,
    req: Request<Incoming>,
    mut dead: watch::Receiver<bool>,
    cancelled: Arc<AtomicUsize>,
    listing: Arc<Listing>,
) -> Result<Response<MockBody>, Infallible> {
    let path = req.uri().to_string();
    if path == "/v1/models" {
        listing.asked.fetch_add(1, Ordering::SeqCst);
        *listing.auth.lock().unwrap() = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        let answer = listing.answer.lock().unwrap().clone();
        if let Some(answer) = answer {
            if answer.is_empty() {
                let _ = dead.wait_for(|d| *d).await;
                std::future::pending::<()>().await;
            }
            return Ok(Response::builder()
                .header("content-type", "application/json")
                .body(BodyExt::boxed(http_body_util::Full::new(answer)))
                .unwrap());
        }
    }
    let auth = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if path == "/flood" {
        // Endless 64 KiB chunks; counts in `cancelled` when the proxy drops the request.
        let guard = DropCount(cancelled);
        let chunks = futures_util::stream::repeat_with(move || {
            let _ = &guard;
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))
        });
        return Ok(Response::builder()
            .header("content-type", "application/octet-stream")
            .body(BodyExt::boxed(StreamBody::new(chunks)))
            .unwrap());
    }
    if path == "/stream" {
        let first = futures_util::stream::once(async {
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"data: {\"n\":1}\n\n")))
        });
        // The stream stays open until the server is killed, which drops it mid-body.
        let hold = futures_util::stream::once(async move {
            let _ = dead.wait_for(|d| *d).await;
            std::future::pending::<()>().await;
            Ok(Frame::data(Bytes::new()))
        });
        return Ok(Response::builder()
            .header("content-type", "text/event-stream")
            .body(BodyExt::boxed(StreamBody::new(first.chain(hold))))
            .unwrap());
    }
    let answer = json!({
        "server": name,
        "path": path,
        "auth": auth,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(BodyExt::boxed(http_body_util::Full::new(Bytes::from(
            answer.to_string(),
        ))))
        .unwrap())
}

impl Fake {
    async fn start(
        name: &str,
        key: Option<String>,
        stops: Arc<AtomicUsize>,
        connections: Arc<AtomicUsize>,
        cancelled: Arc<AtomicUsize>,
        listing: Arc<Listing>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("m.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let (dead, watching) = watch::channel(false);
        let server_name = name.to_owned();
        let accepted_count = Arc::clone(&connections);
        tokio::spawn(async move {
            let mut stop = watching.clone();
            loop {
                let (io, _) = tokio::select! {
                    _ = stop.wait_for(|d| *d) => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                accepted_count.fetch_add(1, Ordering::SeqCst);
                let name = server_name.clone();
                let dead = watching.clone();
                let cancelled = Arc::clone(&cancelled);
                let listing = Arc::clone(&listing);
                let mut killed = watching.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (cancelled, listing) = (Arc::clone(&cancelled), Arc::clone(&listing));
                        mock_answer(name.clone(), req, dead.clone(), cancelled, listing)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = killed.wait_for(|d| *d) => {}
                    }
                });
            }
        });
        Self {
            endpoint: Endpoint::unix(socket),
            name: name.to_owned(),
            key,
            dead,
            stops,
            stop_gate: None,
            _dir: dir,
        }
    }
}

impl Instance for Fake {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
    fn api_key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    fn pid(&self) -> Option<u32> {
        None
    }
    fn server_id(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn exited(&self) -> BoxFuture<'_, (String, Option<i32>)> {
        let mut dead = self.dead.subscribe();
        Box::pin(async move {
            let _ = dead.wait_for(|d| *d).await;
            ("signal: 9 (SIGKILL)".to_owned(), Some(137))
        })
    }
    fn log_tail(&self) -> Vec<String> {
        vec!["fake log line".into()]
    }
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(gate) = &self.stop_gate {
                let _permit = gate.acquire().await.unwrap();
            }
            self.stops.fetch_add(1, Ordering::SeqCst);
            let _ = self.dead.send(true);
        })
    }
}

/// Starts fakes, counting starts; optionally held at a gate or failing.
struct FakeStart {
    name: String,
    key: Option<String>,
    starts: AtomicUsize,
    stops: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    /// Requests to `/flood` the proxy dropped.
    cancelled: Arc<AtomicUsize>,
    /// The fakes' `/v1/models`.
    listing: Arc<Listing>,
    gate: Option<Arc<Semaphore>>,
    fail: bool,
    /// What `prepare` returns as the estimate (and how often it was called).
    prepared: std::sync::Mutex<Option<u64>>,
    prepares: AtomicUsize,
    /// Given to each fake as its stop gate.
    stop_gate: std::sync::Mutex<Option<Arc<Semaphore>>>,
    /// The kill switch of the latest fake.
    last: std::sync::Mutex<Option<watch::Sender<bool>>>,
}

impl FakeStart {
    fn new(name: &str) -> Arc<Self> {
        Self::with(name, None, None, false)
    }

    fn with(name: &str, key: Option<&str>, gate: Option<Arc<Semaphore>>, fail: bool) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            key: key.map(str::to_owned),
            starts: AtomicUsize::new(0),
            stops: Arc::new(AtomicUsize::new(0)),
            connections: Arc::new(AtomicUsize::new(0)),
            cancelled: Arc::new(AtomicUsize::new(0)),
            listing: Arc::default(),
            gate,
            fail,
            prepared: std::sync::Mutex::new(None),
            prepares: AtomicUsize::new(0),
            stop_gate: std::sync::Mutex::new(None),
            last: std::sync::Mutex::new(None),
        })
    }

    fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    fn stops(&self) -> usize {
        self.stops.load(Ordering::SeqCst)
    }

    fn kill(&self) {
        let _ = self.last.lock().unwrap().as_ref().unwrap().send(true);
    }
}

impl Start for Arc<FakeStart> {
    fn prepare(&self) -> BoxFuture<'static, Result<Option<u64>, LaunchError>> {
        self.prepares.fetch_add(1, Ordering::SeqCst);
        let estimate = *self.prepared.lock().unwrap();
        Box::pin(async move { Ok(estimate) })
    }

    fn start(&self) -> BoxFuture<'static, Result<Box<dyn Instance>, LaunchError>> {
        let this = Arc::clone(self);
        Box::pin(async move {
            this.starts.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = &this.gate {
                let _permit = gate.acquire().await.unwrap();
            }
            if this.fail {
                return Err(LaunchError {
                    message: "llama-server exited during start-up (exit status: 1)".into(),
                    log_tail: vec!["error: failed to load model".into()],
                    user_error: false,
                    exit_code: Some(1),
                });
            }
            let fake = Fake::start(
                &this.name,
                this.key.clone(),
                Arc::clone(&this.stops),
                Arc::clone(&this.connections),
                Arc::clone(&this.cancelled),
                Arc::clone(&this.listing),
            )
            .await;
            let mut fake = fake;
            fake.stop_gate = this.stop_gate.lock().unwrap().clone();
            *this.last.lock().unwrap() = Some(fake.dead.clone());
            Ok(Box::new(fake) as Box<dyn Instance>)
        })
    }
}

fn unused_launch() -> Arc<dyn Launch> {
    Arc::new(
        || -> BoxFuture<'static, Result<crate::Server, LaunchError>> {
            Box::pin(async { Err(LaunchError::new("unused")) })
        },
    )
}

fn spec(alias: &str, estimate: u64) -> ModelSpec {
    let mut spec = ModelSpec::new(alias, unused_launch());
    spec.estimate_bytes = estimate;
    spec
}

struct Rig {
    proxy: Proxy,
    _dir: tempfile::TempDir,
}

async fn rig(
    configure: impl FnOnce(&mut ProxyOptions),
    models: Vec<(ModelSpec, Arc<FakeStart>)>,
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ProxyOptions::new(1 << 40);
    opts.runtime_dir = Some(dir.path().join("run"));
    opts.socket_fallback_dir = Some(dir.path().join("s"));
    configure(&mut opts);
    let confs = models
        .into_iter()
        .map(|(spec, start)| Conf::new(spec, Arc::new(start) as Arc<dyn Start>))
        .collect();
    let proxy = Proxy::start_confs(opts, confs).await.unwrap();
    Rig { proxy, _dir: dir }
}

/// A proxy of the one model `a` whose start waits for `gate`, and a request waiting on it.
struct Loading {
    gate: Arc<Semaphore>,
    a: Arc<FakeStart>,
    rig: Rig,
    client: crate::Client,
    waiting: tokio::task::JoinHandle<(u16, Value)>,
}

async fn loading() -> Loading {
    let gate = Arc::new(Semaphore::new(0));
    let a = FakeStart::with("a", None, Some(Arc::clone(&gate)), false);
    let rig = rig(|_| {}, vec![(spec("a", 0), a.clone())]).await;
    let client = rig.proxy.client();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { post(&client, "/x", json!({"model": "a"})).await }
    });
    eventually("a is loading", || a.starts() == 1).await;
    Loading {
        gate,
        a,
        rig,
        client,
        waiting,
    }
}

/// A proxy of the models `a` and `b` (estimates 0) and their fake starts.
async fn pair() -> (Arc<FakeStart>, Arc<FakeStart>, Rig) {
    let a = FakeStart::new("a");
    let b = FakeStart::new("b");
    let rig = rig(
        |_| {},
        vec![(spec("a", 0), a.clone()), (spec("b", 0), b.clone())],
    )
    .await;
    (a, b, rig)
}

/// A proxy of the one model `a` (estimate 0) and its fake start.
async fn solo() -> (Arc<FakeStart>, Rig) {
    let a = FakeStart::new("a");
    let rig = rig(|_| {}, vec![(spec("a", 0), a.clone())]).await;
    (a, rig)
}

async fn post(client: &crate::Client, path: &str, body: Value) -> (u16, Value) {
    let raw = client
        .raw(Method::POST, path, Some(Bytes::from(body.to_string())))
        .await
        .unwrap();
    (
        raw.status.as_u16(),
        serde_json::from_slice(&raw.body).unwrap_or(Value::Null),
    )
}

fn state_of(proxy: &Proxy, alias: &str) -> ModelState {
    proxy
        .models()
        .into_iter()
        .find(|m| m.alias == alias)
        .unwrap()
        .state
}

/// Polls `cond` every 2 ms until it holds; fails the test after 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn requests_are_routed_by_model_and_unknown_or_missing_models_are_named() {
    let (a, b, rig) = pair().await;
    let client = rig.proxy.client();
    let (status, body) = post(
        &client,
        "/v1/chat/completions",
        json!({"model": "b", "x": 1}),
    )
    .await;
    assert_eq!((status, body["server"].as_str()), (200, Some("b")));
    assert_eq!(body["path"], "/v1/chat/completions");
    let (status, body) = post(&client, "/completion?x=1", json!({"model": "a"})).await;
    assert_eq!((status, body["server"].as_str()), (200, Some("a")));
    assert_eq!(body["path"], "/completion?x=1");
    let raw = client
        .raw(Method::GET, "/props?model=b", None)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(body["server"], "b");
    assert_eq!((a.starts(), b.starts()), (1, 1));

    let (status, body) = post(&client, "/completion", json!({"model": "c"})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");
    assert_eq!(body["error"]["models"], json!(["a", "b"]));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`a`, `b`")
    );
    let (status, body) = post(&client, "/completion", json!({"prompt": "x"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // The typed client sees the same as an API error.
    let err = client
        .post::<_, Value>("/completion", &json!({"prompt": "x"}))
        .await;
    assert!(
        matches!(err, Err(Error::Api { status: 400, .. })),
        "{err:?}"
    );
    // `/props` naming no model is the router's own, as the web UI asks it.
    let props: Value = client.get("/props").await.unwrap();
    assert_eq!(
        (&props["role"], &props["max_instances"]),
        (&json!("router"), &json!(2))
    );
    rig.proxy.stop().await.unwrap();
    assert_eq!((a.stops(), b.stops()), (1, 1));
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let (a, rig) = solo().await;
    let client = rig.proxy.client();
    for _ in 0..50 {
        assert_eq!(post(&client, "/tokenize", json!({})).await.0, 200);
    }
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_cancelled_stream_is_replaced_by_a_pooled_connection_opened_in_the_background() {
    let (a, rig) = solo().await;
    let client = rig.proxy.client();
    assert_eq!(post(&client, "/tokenize", json!({})).await.0, 200);
    let mut stream = client
        .stream::<_, Value>("/stream", &json!({}))
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap()["n"], 1);
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
    // The client goes away: its upstream connection closes, and a new one is opened
    // before any request needs it.
    drop(stream);
    eventually("a spare connection is opened", || {
        a.connections.load(Ordering::SeqCst) == 2
    })
    .await;
    eventually("the stream no longer counts", || {
        rig.proxy.models()[0].in_flight == 0
    })
    .await;
    for _ in 0..5 {
        assert_eq!(post(&client, "/tokenize", json!({})).await.0, 200);
    }
    assert_eq!(a.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn one_model_is_the_default_and_the_listing_shows_states() {
    let a = FakeStart::new("a");
    let rig = rig(|_| {}, vec![(spec("solo", 42), a.clone())]).await;
    let client = rig.proxy.client();
    let list = client.models().await.unwrap();
    assert_eq!(list.data.len(), 1);
    assert_eq!(list.data[0].id, "solo");
    assert_eq!(list.data[0].extra["status"]["value"], "unloaded");
    assert_eq!(list.data[0].extra["lmcpp"]["estimate_bytes"], 42);
    let (status, body) = post(&client, "/tokenize", json!({"content": "hi"})).await;
    assert_eq!((status, body["server"].as_str()), (200, Some("a")));
    let routed = client.router_models().await.unwrap();
    let status = routed.data[0].status.as_ref().unwrap();
    assert_eq!(status.value.to_string(), "loaded");
    assert_eq!(state_of(&rig.proxy, "solo"), ModelState::Ready);
}

/// Every key of a `/v1/models` entry the proxy sets itself.
const PROXY_KEYS: [&str; 11] = [
    "aliases",
    "architecture",
    "can_remove",
    "created",
    "id",
    "lmcpp",
    "object",
    "owned_by",
    "source",
    "status",
    "tags",
];

/// The proxy's `/v1/models` as JSON.
async fn listing(client: &crate::Client) -> Value {
    let raw = client.raw(Method::GET, "/v1/models", None).await.unwrap();
    assert_eq!(raw.status, 200);
    serde_json::from_slice(&raw.body).unwrap()
}

/// The entry of `alias` in a listing.
fn entry_of<'a>(list: &'a Value, alias: &str) -> &'a Value {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == alias)
        .unwrap_or_else(|| panic!("no entry {alias} in {list}"))
}

fn keys(entry: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// The aliases of [`listing_rig`], in order.
const LISTING_ALIASES: [&str; 5] = ["a", "huge", "garbage", "typed", "silent"];

/// A proxy of fakes whose `/v1/models` answers: `a` what llama-server sends plus fields
/// that try to take the proxy's, and the others too large, not JSON, badly typed, or
/// nothing.
async fn listing_rig() -> (Arc<FakeStart>, Rig) {
    let a = FakeStart::with("a", Some("upstream-key"), None, false);
    // A server's entry that tries to rename the model and set its state, beside what
    // llama-server really sends (meta, aliases, tags, the Ollama-style entry).
    a.listing.set(
        json!({"object": "list", "data": [{"id": "evil", "status": {"value": "hacked"},
            "lmcpp": "mine", "owned_by": "me", "object": "x", "created": 1,
            "aliases": ["evil"], "tags": ["t"], "meta": {"n_params": 5, "n_ctx_train": 64}}],
            "models": [{"name": "evil", "model": "evil", "size": "3",
            "details": {"format": "gguf"}}]})
        .to_string(),
    );
    let huge = FakeStart::new("huge");
    let pad = "x".repeat(entry::MAX_ENTRY_BYTES);
    huge.listing
        .set(json!({"data": [{"meta": {"n_params": 1}, "pad": pad}]}).to_string());
    let garbage = FakeStart::new("garbage");
    garbage
        .listing
        .set("{\"data\": [{\"meta\": {\"n_params\": 1}}");
    let typed = FakeStart::new("typed");
    typed
        .listing
        .set(r#"{"data": [{"meta": "big", "path": 7, "tags": ["t"]}]}"#);
    let silent = FakeStart::new("silent");
    silent.listing.set(Bytes::new());
    let fakes = [&a, &huge, &garbage, &typed, &silent];
    let aliases = LISTING_ALIASES;
    let rig = rig(
        |_| {},
        aliases
            .iter()
            .zip(fakes)
            .map(|(alias, fake)| (spec(alias, 0), Arc::clone(fake)))
            .collect(),
    )
    .await;
    (a, rig)
}

#[tokio::test]
async fn the_listing_carries_what_each_model_server_says_under_the_proxy_fields() {
    let (a, rig) = listing_rig().await;
    let aliases = LISTING_ALIASES;
    let client = rig.proxy.client();
    let before = listing(&client).await;
    for alias in aliases {
        assert_eq!(keys(entry_of(&before, alias)), PROXY_KEYS);
    }
    let names: Vec<Value> = aliases
        .iter()
        .map(|a| json!({"name": a, "model": a}))
        .collect();
    assert_eq!(before["models"], json!(names));

    for alias in aliases {
        assert_eq!(post(&client, "/x", json!({"model": alias})).await.0, 200);
    }
    // Waiters are released when the entry is in, so the first answer means it is known.
    let after = listing(&client).await;
    let entry = entry_of(&after, "a");
    assert_eq!(
        (&entry["status"], &entry["owned_by"], &entry["object"]),
        (
            &json!({"value": "loaded", "args": []}),
            &json!("lmcpp"),
            &json!("model")
        )
    );
    assert_eq!(entry["lmcpp"]["alias"], "a");
    assert_eq!(entry["created"], before["data"][0]["created"]);
    assert_eq!(entry["meta"], json!({"n_params": 5, "n_ctx_train": 64}));
    assert_eq!(
        (&entry["aliases"], &entry["tags"]),
        (&json!(["evil"]), &json!(["t"]))
    );
    assert_eq!(
        after["models"][0],
        json!({"name": "a", "model": "a", "size": "3", "details": {"format": "gguf"}})
    );
    // Too large, not JSON, no answer: nothing of theirs; unreadable fields dropped.
    for alias in ["huge", "garbage", "silent"] {
        assert_eq!(keys(entry_of(&after, alias)), PROXY_KEYS, "{alias}");
    }
    assert_eq!(keys(entry_of(&after, "typed")), PROXY_KEYS);
    assert_eq!(entry_of(&after, "typed")["tags"], json!(["t"]));
    assert_eq!(after["models"][1], json!({"name": "huge", "model": "huge"}));
    // The typed client reads it all.
    let typed_list = client.models().await.unwrap();
    assert_eq!(typed_list.data[0].meta.as_ref().unwrap().n_params, Some(5));
    assert_eq!(client.router_models().await.unwrap().data.len(), 5);
    assert_eq!(
        a.listing.auth.lock().unwrap().as_deref(),
        Some("Bearer upstream-key")
    );

    // Asked once per start; the entry outlives the server.
    for _ in 0..3 {
        assert_eq!(post(&client, "/x", json!({"model": "a"})).await.0, 200);
    }
    assert_eq!(a.listing.asked(), 1);
    assert_eq!(
        post(&client, "/models/unload", json!({"model": "a"}))
            .await
            .0,
        200
    );
    let stopped = listing(&client).await;
    let entry = entry_of(&stopped, "a");
    assert_eq!(entry["status"]["value"], "unloaded");
    assert_eq!(entry["meta"]["n_params"], 5);
    assert_eq!(post(&client, "/x", json!({"model": "a"})).await.0, 200);
    assert_eq!((a.starts(), a.listing.asked()), (2, 2));
}

#[tokio::test]
async fn the_api_key_guards_every_route_but_health_and_never_reaches_the_model() {
    let a = FakeStart::with("a", Some("upstream-key"), None, false);
    let rig = rig(
        |o| o.api_key = Some("proxy-key".into()),
        vec![(spec("a", 0), a.clone())],
    )
    .await;
    let anonymous = crate::Client::new(rig.proxy.endpoint().clone());
    let wrong = crate::Client::builder(rig.proxy.endpoint().clone())
        .api_key("proxy-kez")
        .build();
    for client in [&anonymous, &wrong] {
        for (method, path) in [
            (Method::GET, "/v1/models"),
            (Method::GET, "/models"),
            (Method::GET, "/props"),
            (Method::POST, "/completion"),
        ] {
            let raw = client
                .raw(method.clone(), path, Some(Bytes::from("{}")))
                .await
                .unwrap();
            assert_eq!(raw.status.as_u16(), 401, "{method} {path}");
        }
    }
    assert_eq!(a.starts(), 0, "no start before authentication");
    let health = anonymous.probe_health().await.unwrap();
    assert_eq!(health.status.as_u16(), 200);
    let (status, body) = post(&rig.proxy.client(), "/completion", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["auth"], "Bearer upstream-key");
}

#[tokio::test]
async fn bodies_and_heads_over_the_caps_are_refused() {
    let a = FakeStart::new("a");
    let rig = rig(
        |o| {
            o.max_body = 100;
            o.max_headers = 20;
        },
        vec![(spec("a", 0), a.clone())],
    )
    .await;
    let client = rig.proxy.client();
    let big = Bytes::from(format!("{{\"p\":\"{}\"}}", "x".repeat(100)));
    let raw = client
        .raw(Method::POST, "/completion", Some(big))
        .await
        .unwrap();
    assert_eq!(raw.status.as_u16(), 413);
    // Without a length up front (chunked), the cap holds while reading.
    let Endpoint::Unix { socket } = rig.proxy.endpoint() else {
        panic!("unix by default")
    };
    let chunked = "POST /completion HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n80\r\n"
        .to_owned()
        + &"y".repeat(128) + "\r\n0\r\n\r\n";
    assert!(
        raw_exchange(socket, &chunked)
            .await
            .starts_with("HTTP/1.1 413")
    );
    let many: String = (0..30).map(|i| format!("x-h{i}: v\r\n")).collect();
    let head = format!("GET /props HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    assert!(
        raw_exchange(socket, &head)
            .await
            .starts_with("HTTP/1.1 431")
    );
    let long = format!(
        "GET /props HTTP/1.1\r\nhost: x\r\nx-long: {}\r\n\r\n",
        "z".repeat(100_000)
    );
    let got = raw_exchange(socket, &long).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got:?}");
    assert_eq!(a.starts(), 0);
}

/// Writes `request` on a new connection and reads what comes back.
async fn raw_exchange(socket: &std::path::Path, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    // The server may answer and close before reading everything.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut out = vec![0; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out[..n]).into_owned()
}

#[tokio::test]
async fn concurrent_first_requests_wait_on_one_start() {
    let gate = Arc::new(Semaphore::new(0));
    let a = FakeStart::with("a", None, Some(Arc::clone(&gate)), false);
    let rig = rig(|_| {}, vec![(spec("a", 0), a.clone())]).await;
    let client = rig.proxy.client();
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { post(&client, "/completion", json!({"n": i})).await })
        })
        .collect();
    eventually("a start begins", || a.starts() == 1).await;
    assert_eq!(state_of(&rig.proxy, "a"), ModelState::Loading);
    gate.add_permits(100);
    for r in requests {
        assert_eq!(r.await.unwrap().0, 200);
    }
    assert_eq!(a.starts(), 1);
}

#[tokio::test]
async fn a_failed_start_reaches_every_waiter_and_the_next_request_tries_again() {
    let gate = Arc::new(Semaphore::new(0));
    let a = FakeStart::with("a", None, Some(Arc::clone(&gate)), true);
    let rig = rig(|_| {}, vec![(spec("a", 0), a.clone())]).await;
    let client = rig.proxy.client();
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { post(&client, "/completion", json!({})).await })
        })
        .collect();
    eventually("a start begins", || a.starts() == 1).await;
    gate.add_permits(100);
    for r in requests {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, 502);
        assert_eq!(
            body["error"]["log_tail"],
            json!(["error: failed to load model"])
        );
        assert_eq!(body["error"]["model"], "a");
    }
    assert_eq!(a.starts(), 1);
    let view = &rig.proxy.models()[0];
    assert_eq!(view.state, ModelState::Failed);
    assert!(
        view.error
            .as_deref()
            .unwrap()
            .contains("failed to load model")
    );
    let (status, _) = post(&client, "/completion", json!({})).await;
    assert_eq!((status, a.starts()), (502, 2));
}

#[tokio::test]
async fn a_request_waits_for_a_loading_model_only_up_to_the_load_timeout() {
    let gate = Arc::new(Semaphore::new(0));
    let a = FakeStart::with("a", None, Some(Arc::clone(&gate)), false);
    let rig = rig(
        |o| o.load_timeout = Duration::from_millis(50),
        vec![(spec("a", 0), a.clone())],
    )
    .await;
    let (status, body) = post(&rig.proxy.client(), "/completion", json!({})).await;
    assert_eq!(status, 503);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still loading")
    );
    gate.add_permits(1);
    eventually("the start completes anyway", || {
        state_of(&rig.proxy, "a") == ModelState::Ready
    })
    .await;
}

#[tokio::test]
async fn an_idle_model_stops_after_its_keep_alive_but_not_while_streaming() {
    let a = FakeStart::new("a");
    let mut s = spec("a", 0);
    s.keep_alive = Some(Duration::from_millis(30));
    let rig = rig(|_| {}, vec![(s, a.clone())]).await;
    let client = rig.proxy.client();
    let mut stream = client
        .stream::<_, Value>("/stream", &json!({}))
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap()["n"], 1);
    // However late it is, a model with a stream open is not expired.
    let (expired, _) = rig
        .proxy
        .models
        .expire(std::time::Instant::now() + Duration::from_secs(3600));
    assert!(expired.is_empty());
    assert_eq!(rig.proxy.models()[0].in_flight, 1);
    drop(stream);
    eventually("the model stops after its keep-alive", || {
        state_of(&rig.proxy, "a") == ModelState::Stopped && a.stops() == 1
    })
    .await;
    let (status, _) = post(&client, "/completion", json!({})).await;
    assert_eq!((status, a.starts()), (200, 2));
}

#[tokio::test]
async fn idle_models_are_evicted_lru_first_and_busy_or_pinned_ones_are_not() {
    let a = FakeStart::new("a");
    let b = FakeStart::new("b");
    let c = FakeStart::new("c");
    let mut pinned = spec("c", 40);
    pinned.pinned = true;
    let rig = rig(
        |o| {
            o.memory_budget = 100;
            o.load_timeout = Duration::from_millis(300);
        },
        vec![
            (spec("a", 40), a.clone()),
            (spec("b", 40), b.clone()),
            (pinned, c.clone()),
        ],
    )
    .await;
    let client = rig.proxy.client();
    for m in ["c", "a"] {
        assert_eq!(
            post(&client, "/completion", json!({"model": m})).await.0,
            200
        );
    }
    // 80 of 100 used: b needs a's room; c is pinned, so a (idle) goes.
    assert_eq!(
        post(&client, "/completion", json!({"model": "b"})).await.0,
        200
    );
    assert_eq!(state_of(&rig.proxy, "a"), ModelState::Stopped);
    assert_eq!(a.stops(), 1);
    // b busy with a stream, c pinned: a cannot fit until b is idle, and a request that
    // gives up waiting is told why.
    let stream = client
        .stream::<_, Value>("/stream", &json!({"model": "b"}))
        .await
        .unwrap();
    let (status, body) = post(&client, "/completion", json!({"model": "a"})).await;
    assert_eq!(status, 503);
    let err = &body["error"];
    assert_eq!(
        (err["estimate_bytes"].as_u64(), err["budget_bytes"].as_u64()),
        (Some(40), Some(100))
    );
    let holders: Vec<(String, String)> = err["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["model"].as_str().unwrap().into(),
                h["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        holders,
        [
            ("b".to_owned(), "busy".to_owned()),
            ("c".to_owned(), "pinned".to_owned())
        ]
    );
    assert_eq!(state_of(&rig.proxy, "b"), ModelState::Ready);
    drop(stream);
    eventually("the stream is no longer in flight", || {
        rig.proxy.models()[1].in_flight == 0
    })
    .await;
    assert_eq!(
        post(&client, "/completion", json!({"model": "a"})).await.0,
        200
    );
    assert_eq!(state_of(&rig.proxy, "b"), ModelState::Stopped);
}

#[tokio::test]
async fn router_load_and_unload_start_and_stop_a_model() {
    let (_, b, rig) = pair().await;
    let client = rig.proxy.client();
    let load = lmcpp_types::router::ModelRequest::new("b");
    assert!(client.load_model(&load).await.unwrap().success);
    assert_eq!(
        (state_of(&rig.proxy, "a"), state_of(&rig.proxy, "b")),
        (ModelState::Stopped, ModelState::Ready)
    );
    let stream = client
        .stream::<_, Value>("/stream", &json!({"model": "b"}))
        .await
        .unwrap();
    let busy = client.unload_model(&load).await.unwrap_err();
    assert!(matches!(busy, Error::Api { status: 409, .. }), "{busy:?}");
    drop(stream);
    eventually("the stream is no longer in flight", || {
        rig.proxy.models()[1].in_flight == 0
    })
    .await;
    assert!(client.unload_model(&load).await.unwrap().success);
    assert_eq!(
        (state_of(&rig.proxy, "b"), b.stops()),
        (ModelState::Stopped, 1)
    );
    let unknown = client
        .load_model(&lmcpp_types::router::ModelRequest::new("zz"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            unknown,
            Error::Api { status: 404, .. } | Error::Unsupported { status: 404, .. }
        ),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn a_model_larger_than_the_budget_or_a_bad_model_list_is_refused_at_start() {
    for (models, needle) in [
        (vec![spec("a", 101)], "more than the whole memory budget"),
        (vec![], "no models"),
        (vec![spec("a", 1), spec("a", 1)], "given twice"),
        (vec![spec("a b", 1)], "malformed"),
        (vec![spec("", 1)], "malformed"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = ProxyOptions::new(100);
        opts.runtime_dir = Some(dir.path().to_owned());
        let err = Proxy::start(opts, models).await.unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[tokio::test]
async fn a_server_dying_mid_stream_ends_it_with_an_error_and_the_next_request_restarts_it() {
    let (a, rig) = solo().await;
    let client = rig.proxy.client();
    let mut stream = client
        .stream::<_, Value>("/stream", &json!({}))
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap()["n"], 1);
    a.kill();
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Api { error, .. } if error.message.contains("broke off the stream")),
        "{err:?}"
    );
    assert!(stream.next().await.is_none());
    eventually("the model is marked failed", || {
        state_of(&rig.proxy, "a") == ModelState::Failed
    })
    .await;
    assert!(
        rig.proxy.models()[0]
            .error
            .as_deref()
            .unwrap()
            .contains("exited")
    );
    let (status, _) = post(&client, "/completion", json!({})).await;
    assert_eq!((status, a.starts()), (200, 2));
}

#[tokio::test]
async fn the_proxy_is_registered_and_unregistered() {
    let a = FakeStart::new("a");
    let b = FakeStart::new("b");
    let rig = rig(|_| {}, vec![(spec("a", 0), a), (spec("b", 0), b)]).await;
    let dir = rig._dir.path().join("run");
    let registry = crate::Registry::new(&dir);
    let record = registry.get(rig.proxy.id()).unwrap();
    assert_eq!(record.kind, crate::ProcessKind::Proxy);
    assert_eq!(record.pid, std::process::id());
    assert_eq!(record.model, std::path::Path::new("a,b"));
    assert_eq!(&record.endpoint, rig.proxy.endpoint());
    let id = rig.proxy.id().to_owned();
    let Endpoint::Unix { socket } = rig.proxy.endpoint().clone() else {
        panic!("unix by default")
    };
    assert!(socket.exists());
    rig.proxy.stop().await.unwrap();
    assert!(registry.read(&id).unwrap().is_none());
    assert!(!socket.exists());
}

#[tokio::test]
async fn dropping_the_proxy_stops_its_servers_and_a_start_in_progress_is_stopped_when_done() {
    let a = FakeStart::new("a");
    let gate = Arc::new(Semaphore::new(0));
    let b = FakeStart::with("b", None, Some(Arc::clone(&gate)), false);
    let rig = rig(
        |_| {},
        vec![(spec("a", 0), a.clone()), (spec("b", 0), b.clone())],
    )
    .await;
    let client = rig.proxy.client();
    assert_eq!(
        post(&client, "/completion", json!({"model": "a"})).await.0,
        200
    );
    let loading = tokio::spawn({
        let client = client.clone();
        async move {
            let body = Bytes::from(json!({"model": "b"}).to_string());
            client.raw(Method::POST, "/completion", Some(body)).await
        }
    });
    eventually("b starts loading", || b.starts() == 1).await;
    let Rig { proxy, _dir } = rig;
    drop(proxy);
    eventually("a's server is stopped", || a.stops() == 1).await;
    gate.add_permits(1);
    eventually("b's server is stopped as soon as its start ends", || {
        b.stops() == 1
    })
    .await;
    // A stopping proxy answers the request that waited for a model, at once.
    let ended = loading.await.unwrap().unwrap();
    let body: Value = serde_json::from_slice(&ended.body).unwrap();
    assert_eq!(
        (ended.status.as_u16(), &body["error"]["message"]),
        (503, &json!("the proxy is stopping"))
    );
}

/// Request bytes rich in what breaks parsers and routers: odd methods and paths, header
/// floods, conflicting lengths, broken chunking, odd `model` values, random bytes.
fn hostile_request() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("OPTIONS"),
        Just("BREW"),
        Just("")
    ];
    let path = prop_oneof![
        Just("/completion".to_owned()),
        Just("/v1/models".to_owned()),
        Just("/models/load".to_owned()),
        Just("/health".to_owned()),
        Just("/props?model=%zz".to_owned()),
        Just("http://evil/x".to_owned()),
        "[ -~]{0,40}",
    ];
    let header = prop_oneof![
        Just("content-length: 5".to_owned()),
        Just("content-length: 99999999999999999999".to_owned()),
        Just("content-length: -1".to_owned()),
        Just("transfer-encoding: chunked".to_owned()),
        Just("authorization: Bearer k".to_owned()),
        Just("authorization: Bearer".to_owned()),
        Just("connection: close, x".to_owned()),
        Just("expect: 100-continue".to_owned()),
        "[a-z-]{1,10}: [ -~]{0,30}",
    ];
    let body = prop_oneof![
        Just(br#"{"model":"a"}"#.to_vec()),
        Just(br#"{"model":{"x":1}}"#.to_vec()),
        Just(b"zz\r\nnot chunked\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ];
    let structured = (method, path, proptest::collection::vec(header, 0..6), body).prop_map(
        |(method, path, headers, body)| {
            let mut out = format!("{method} {path} HTTP/1.1\r\nhost: x\r\n").into_bytes();
            for h in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            out
        },
    );
    prop_oneof![
        4 => structured,
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Whatever a client sends without the key, the proxy answers with an HTTP error or
    /// closes the connection, starts no model, and keeps serving.
    #[test]
    fn hostile_requests_start_nothing_and_leave_the_proxy_serving(request in hostile_request()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let a = FakeStart::new("a");
            let rig = rig(|o| o.api_key = Some("right".into()), vec![(spec("a", 0), a.clone())]).await;
            let Endpoint::Unix { socket } = rig.proxy.endpoint().clone() else {
                panic!("unix by default")
            };
            let answer = raw_bytes_exchange(&socket, &request).await;
            if !answer.is_empty() {
                assert!(answer.starts_with("HTTP/1.1 "), "{answer:?}");
                let status: u16 = answer[9..12].parse().unwrap();
                assert!(status == 200 || status >= 400, "{answer:?}");
            }
            assert_eq!(a.starts(), 0);
            let health = crate::Client::new(rig.proxy.endpoint().clone()).probe_health().await.unwrap();
            assert_eq!(health.status.as_u16(), 200);
        });
    }
}

/// Writes `request`, half-closes, and reads what comes back (empty when the proxy just
/// closed the connection).
async fn raw_bytes_exchange(socket: &std::path::Path, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let _ = stream.write_all(request).await;
    let _ = stream.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the proxy answers or closes within 10 s");
    String::from_utf8_lossy(&out).into_owned()
}

/// A proxy of the one model `a` (estimate 1) configured by `configure`, its fake start,
/// and the proxy's socket, for tests that speak raw HTTP/1 to it.
async fn socket_rig(
    configure: impl FnOnce(&mut ProxyOptions),
) -> (Arc<FakeStart>, Rig, std::path::PathBuf) {
    let start = FakeStart::new("a");
    let rig = rig(configure, vec![(spec("a", 1), Arc::clone(&start))]).await;
    let crate::Endpoint::Unix { socket } = rig.proxy.endpoint().clone() else {
        panic!("the rig listens on a socket")
    };
    (start, rig, socket)
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_write_stall_timeout() {
    let (start, rig, socket) =
        socket_rig(|o| o.write_stall_timeout = Duration::from_millis(300)).await;
    let mut client = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let body = r#"{"model":"a"}"#;
    let request = format!(
        "POST /flood HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut client, request.as_bytes())
        .await
        .unwrap();
    let in_flight = || rig.proxy.models()[0].in_flight;
    eventually("the flood is in flight", || in_flight() == 1).await;
    // The client reads nothing from here on.
    eventually(
        "the stalled request is dropped and cancelled upstream",
        || in_flight() == 0 && start.cancelled.load(Ordering::SeqCst) == 1,
    )
    .await;
    assert_eq!(state_of(&rig.proxy, "a"), ModelState::Ready);
    drop(client);
}

/// A client that begins a body and stops sending it gets a 408 and a closed
/// connection once the read stall timeout has passed; one that trickles its body, each
/// byte within the timeout, is served. The model is started only for the second.
#[tokio::test]
async fn a_request_body_that_stops_arriving_is_answered_408_and_a_slow_one_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (start, _rig, socket) =
        socket_rig(|o| o.read_stall_timeout = Duration::from_millis(300)).await;
    let body = br#"{"model":"a","prompt":"x"}"#;
    let head = format!(
        "POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );

    let mut stalled = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body[..5]).await.unwrap();
    // Nothing more is sent; the connection stays open on this side.
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut out))
        .await
        .expect("the proxy answers and closes within 10 s")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
    assert!(out.contains("stopped arriving"), "{out}");
    assert_eq!(start.starts(), 0);

    let mut slow = tokio::net::UnixStream::connect(&socket).await.unwrap();
    slow.write_all(head.as_bytes()).await.unwrap();
    // 26 bytes, one every 50 ms: 1.3 s in all, over four times the stall timeout.
    for byte in body {
        slow.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answer = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), slow.read_exact(&mut answer))
        .await
        .expect("the slow request is answered within 10 s")
        .unwrap();
    assert_eq!(
        &answer,
        b"HTTP/1.1 200",
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(start.starts(), 1);
}

#[tokio::test]
async fn prepare_refreshes_the_estimate_before_the_budget_is_checked() {
    let a = FakeStart::new("a");
    let b = FakeStart::new("b");
    let big = FakeStart::new("big");
    // Configured without an estimate (not downloaded yet); known once prepared.
    *a.prepared.lock().unwrap() = Some(60);
    *b.prepared.lock().unwrap() = Some(60);
    *big.prepared.lock().unwrap() = Some(101);
    let rig = rig(
        |o| o.memory_budget = 100,
        vec![
            (spec("a", 0), a.clone()),
            (spec("b", 0), b.clone()),
            (spec("big", 0), big.clone()),
        ],
    )
    .await;
    let client = rig.proxy.client();
    assert_eq!(post(&client, "/x", json!({"model": "a"})).await.0, 200);
    assert_eq!(rig.proxy.models()[0].estimate_bytes, 60);
    // a no longer counts as 0: b's start stops it.
    assert_eq!(post(&client, "/x", json!({"model": "b"})).await.0, 200);
    assert_eq!(
        (
            state_of(&rig.proxy, "a"),
            a.stops(),
            b.prepares.load(Ordering::SeqCst)
        ),
        (ModelState::Stopped, 1, 1)
    );
    // A model that turns out larger than the whole budget is refused before its start.
    let (status, body) = post(&client, "/x", json!({"model": "big"})).await;
    assert_eq!(
        (status, &body["error"]["estimate_bytes"]),
        (503, &json!(101))
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("more than the whole memory budget"),
        "{message}"
    );
    assert_eq!(
        (
            big.starts(),
            state_of(&rig.proxy, "big"),
            rig.proxy.models()[2].estimate_bytes
        ),
        (0, ModelState::Stopped, 101)
    );
    assert_eq!(state_of(&rig.proxy, "b"), ModelState::Ready);
}

#[tokio::test]
async fn a_server_being_stopped_counts_until_it_exited_and_a_start_waits_for_it() {
    let a = FakeStart::new("a");
    let b = FakeStart::new("b");
    let stop_gate = Arc::new(Semaphore::new(0));
    *a.stop_gate.lock().unwrap() = Some(Arc::clone(&stop_gate));
    let rig = rig(
        |o| o.memory_budget = 100,
        vec![(spec("a", 60), a.clone()), (spec("b", 60), b.clone())],
    )
    .await;
    let client = rig.proxy.client();
    assert_eq!(post(&client, "/x", json!({"model": "a"})).await.0, 200);
    // a's server takes its time to exit after the unload.
    let unload = tokio::spawn({
        let client = client.clone();
        async move { post(&client, "/models/unload", json!({"model": "a"})).await }
    });
    eventually("a is being stopped", || {
        state_of(&rig.proxy, "a") == ModelState::Stopped
    })
    .await;
    let start_b = tokio::spawn({
        let client = client.clone();
        async move { post(&client, "/x", json!({"model": "b"})).await }
    });
    eventually("b waits for room", || {
        state_of(&rig.proxy, "b") == ModelState::Loading
    })
    .await;
    // b's server is not started while a's memory is still in use.
    assert_eq!((b.starts(), a.stops()), (0, 0));
    stop_gate.add_permits(1);
    assert_eq!(start_b.await.unwrap().0, 200);
    assert_eq!(unload.await.unwrap().0, 200);
    assert_eq!((a.stops(), b.starts()), (1, 1));
}

#[tokio::test]
async fn unloading_a_loading_model_is_a_409_and_its_start_goes_on() {
    let Loading {
        gate,
        a: _,
        rig,
        client,
        waiting,
    } = loading().await;
    let (status, body) = post(&client, "/models/unload", json!({"model": "a"})).await;
    assert_eq!((status, &body["error"]["state"]), (409, &json!("loading")));
    gate.add_permits(1);
    assert_eq!(waiting.await.unwrap().0, 200);
    assert_eq!(state_of(&rig.proxy, "a"), ModelState::Ready);
}

#[tokio::test]
async fn stopping_the_proxy_answers_a_request_waiting_for_its_model_with_a_503() {
    let Loading {
        gate,
        a,
        rig,
        client: _,
        waiting,
    } = loading().await;
    let Rig { proxy, _dir } = rig;
    let stopping = tokio::spawn(proxy.stop());
    let (status, body) = waiting.await.unwrap();
    assert_eq!(
        (status, &body["error"]["message"]),
        (503, &json!("the proxy is stopping"))
    );
    gate.add_permits(1);
    stopping.await.unwrap().unwrap();
    eventually("the abandoned start's server is stopped", || a.stops() == 1).await;
}

/// The next `n` events, each within 10 s, as (alias, server id, kind).
async fn next_events(
    events: &mut tokio::sync::broadcast::Receiver<ModelEvent>,
    n: usize,
) -> Vec<(String, Option<String>, ModelEventKind)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event after {got:?}"))
            .unwrap();
        got.push((event.alias, event.server_id, event.kind));
    }
    got
}

/// An expected event: alias, server id, kind.
fn ev(
    alias: &str,
    server: Option<&str>,
    kind: ModelEventKind,
) -> (String, Option<String>, ModelEventKind) {
    (alias.to_owned(), server.map(str::to_owned), kind)
}

fn stopped(reason: StopReason) -> ModelEventKind {
    ModelEventKind::Stopped { reason }
}

#[tokio::test]
async fn events_tell_a_start_its_readiness_and_its_keep_alive_stop() {
    let a = FakeStart::new("a");
    let mut s = spec("a", 0);
    s.keep_alive = Some(Duration::from_millis(30));
    let rig = rig(|_| {}, vec![(s, a.clone())]).await;
    let mut events = rig.proxy.events();
    assert_eq!(post(&rig.proxy.client(), "/x", json!({})).await.0, 200);
    use ModelEventKind::*;
    assert_eq!(
        next_events(&mut events, 3).await,
        [
            ev("a", None, Starting),
            ev("a", Some("a"), Ready),
            ev(
                "a",
                Some("a"),
                stopped(StopReason::KeepAlive { keep_alive_ms: 30 })
            ),
        ]
    );
    // Sent when the server has exited.
    assert_eq!(a.stops(), 1);
}

#[tokio::test]
async fn an_eviction_names_the_model_it_made_room_for_and_a_refusal_says_no_room() {
    let a = FakeStart::new("a");
    let b = FakeStart::new("b");
    let rig = rig(
        |o| {
            o.memory_budget = 100;
            o.load_timeout = Duration::from_millis(300);
        },
        vec![(spec("a", 60), a.clone()), (spec("b", 60), b.clone())],
    )
    .await;
    let mut events = rig.proxy.events();
    let client = rig.proxy.client();
    for m in ["a", "b"] {
        assert_eq!(post(&client, "/x", json!({"model": m})).await.0, 200);
    }
    // b busy with a stream: a does not fit.
    let stream = client
        .stream::<_, Value>("/stream", &json!({"model": "b"}))
        .await
        .unwrap();
    assert_eq!(post(&client, "/x", json!({"model": "a"})).await.0, 503);
    drop(stream);
    use ModelEventKind::*;
    let evicted = StopReason::Evicted {
        for_model: "b".into(),
    };
    let no_room = NoRoom {
        estimate_bytes: 60,
        budget_bytes: 100,
    };
    assert_eq!(
        next_events(&mut events, 7).await,
        [
            ev("a", None, Starting),
            ev("a", Some("a"), Ready),
            ev("b", None, Starting),
            // a's server has exited before b's is started.
            ev("a", Some("a"), stopped(evicted)),
            ev("b", Some("b"), Ready),
            ev("a", None, Starting),
            ev("a", None, no_room),
        ]
    );
}

/// The case the CLI's log once polled for and could miss: ready, stopped and ready again
/// within milliseconds. Every step is an event, in order; and the proxy's stop is one too.
#[tokio::test]
async fn an_unload_and_a_reload_at_once_are_each_an_event_in_order() {
    let (_, _, rig) = pair().await;
    let mut events = rig.proxy.events();
    let client = rig.proxy.client();
    let b = lmcpp_types::router::ModelRequest::new("b");
    assert!(client.load_model(&b).await.unwrap().success);
    assert!(client.unload_model(&b).await.unwrap().success);
    assert!(client.load_model(&b).await.unwrap().success);
    let Rig { proxy, _dir } = rig;
    proxy.stop().await.unwrap();
    use ModelEventKind::*;
    assert_eq!(
        next_events(&mut events, 6).await,
        [
            ev("b", None, Starting),
            ev("b", Some("b"), Ready),
            ev("b", Some("b"), stopped(StopReason::Unloaded)),
            ev("b", None, Starting),
            ev("b", Some("b"), Ready),
            ev("b", Some("b"), stopped(StopReason::ProxyStopping)),
        ]
    );
    // Nothing else happened (a never started), and the stream ends with the proxy.
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), events.recv()).await,
        Ok(Err(tokio::sync::broadcast::error::RecvError::Closed))
    ));
}

#[tokio::test]
async fn a_death_and_a_failed_start_are_events_and_the_next_request_starts_again() {
    let (a, rig) = solo().await;
    let mut events = rig.proxy.events();
    let client = rig.proxy.client();
    assert_eq!(post(&client, "/x", json!({})).await.0, 200);
    a.kill();
    use ModelEventKind::*;
    let died = Died {
        exit: "signal: 9 (SIGKILL)".into(),
        exit_code: Some(137),
    };
    assert_eq!(
        next_events(&mut events, 3).await,
        [
            ev("a", None, Starting),
            ev("a", Some("a"), Ready),
            ev("a", Some("a"), died),
        ]
    );
    assert_eq!(post(&client, "/x", json!({})).await.0, 200);
    assert_eq!(
        next_events(&mut events, 2).await,
        [ev("a", None, Starting), ev("a", Some("a"), Ready)]
    );

    let failing = FakeStart::with("f", None, None, true);
    let failing = self::rig(|_| {}, vec![(spec("f", 0), failing)]).await;
    let mut events = failing.proxy.events();
    assert_eq!(post(&failing.proxy.client(), "/x", json!({})).await.0, 502);
    let message = "llama-server exited during start-up (exit status: 1)".into();
    assert_eq!(
        next_events(&mut events, 2).await,
        [
            ev("f", None, Starting),
            ev(
                "f",
                None,
                StartFailed {
                    message,
                    exit_code: Some(1)
                }
            )
        ]
    );
}

#[tokio::test]
async fn a_start_the_proxy_stop_cut_short_ends_with_a_stopped_event() {
    let Loading {
        gate,
        a,
        rig,
        client: _,
        waiting,
    } = loading().await;
    let mut events = rig.proxy.events();
    let Rig { proxy, _dir } = rig;
    let stopping = tokio::spawn(proxy.stop());
    assert_eq!(waiting.await.unwrap().0, 503);
    gate.add_permits(1);
    stopping.await.unwrap().unwrap();
    eventually("the abandoned start's server is stopped", || a.stops() == 1).await;
    use ModelEventKind::*;
    assert_eq!(
        next_events(&mut events, 2).await,
        [
            ev("a", None, Starting),
            ev("a", Some("a"), stopped(StopReason::ProxyStopping)),
        ]
    );
}

#[tokio::test]
async fn a_receiver_that_never_reads_blocks_nothing_and_learns_what_it_missed() {
    let (_, rig) = solo().await;
    let mut idle = rig.proxy.events();
    let client = rig.proxy.client();
    let a = lmcpp_types::router::ModelRequest::new("a");
    // 3 events a round, well over what is kept for a reader: every request is answered.
    let rounds = 100;
    for _ in 0..rounds {
        assert!(client.load_model(&a).await.unwrap().success);
        assert!(client.unload_model(&a).await.unwrap().success);
    }
    let missed = 3 * rounds - MODEL_EVENT_CAPACITY;
    assert_eq!(
        idle.recv().await.unwrap_err(),
        tokio::sync::broadcast::error::RecvError::Lagged(missed as u64)
    );
    let mut kept = Vec::new();
    while let Ok(event) = idle.try_recv() {
        kept.push(event.kind);
    }
    assert_eq!(kept.len(), MODEL_EVENT_CAPACITY);
    assert_eq!(kept.last(), Some(&stopped(StopReason::Unloaded)));
    // And it goes on with what happens next.
    assert!(client.load_model(&a).await.unwrap().success);
    use ModelEventKind::*;
    assert_eq!(
        next_events(&mut idle, 2).await,
        [ev("a", None, Starting), ev("a", Some("a"), Ready)]
    );
}

/// A recorded answer of llama-server's router (`cargo xtask fixtures`).
fn router_fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lmcpp-types/tests/fixtures")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The JSON type of a value, as a word.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where `ours` lacks a key of `router` or has another JSON type for it, recursively
/// (objects key by key, arrays by their first elements); `skip` names the keys the
/// proxy documents as not given.
fn shape_gaps(router: &Value, ours: &Value, at: &str, skip: &[&str], gaps: &mut Vec<String>) {
    if json_type(router) != json_type(ours) {
        gaps.push(format!(
            "{at}: {} in the router's, {} in the proxy's",
            json_type(router),
            json_type(ours)
        ));
        return;
    }
    match (router, ours) {
        (Value::Object(r), Value::Object(o)) => {
            for (key, value) in r {
                let here = format!("{at}.{key}");
                if skip.contains(&here.as_str()) {
                    continue;
                }
                match o.get(key) {
                    Some(mine) => shape_gaps(value, mine, &here, skip, gaps),
                    None => gaps.push(format!("{here}: missing")),
                }
            }
        }
        (Value::Array(r), Value::Array(o)) => {
            if let (Some(r), Some(o)) = (r.first(), o.first()) {
                shape_gaps(r, o, &format!("{at}[0]"), skip, gaps);
            }
        }
        _ => {}
    }
}

/// What the proxy leaves out of the router's shapes, and why: `status.preset` is the
/// router's INI preset, which lmcpp has no counterpart of.
const ROUTER_SHAPE_SKIPS: [&str; 1] = ["$.data[0].status.preset"];

fn router_shape_gaps(router: &Value, ours: &Value) -> Vec<String> {
    let mut gaps = Vec::new();
    shape_gaps(router, ours, "$", &ROUTER_SHAPE_SKIPS, &mut gaps);
    gaps
}

#[test]
fn the_shape_check_finds_a_missing_key_and_a_wrong_type() {
    let router = json!({"data": [{"id": "m", "status": {"value": "loaded", "args": []}}]});
    assert!(router_shape_gaps(&router, &router).is_empty());
    let ours = json!({"data": [{"id": 1, "status": {"value": "loaded"}}]});
    assert_eq!(
        router_shape_gaps(&router, &ours),
        [
            "$.data[0].id: string in the router's, number in the proxy's",
            "$.data[0].status.args: missing"
        ]
    );
}

#[tokio::test]
async fn the_router_routes_answer_in_the_recorded_router_shapes() {
    let a = FakeStart::new("a");
    // What a llama-server of one model lists for it (b11312, the demo model).
    a.listing.set(
        json!({"object": "list", "data": [{"id": "demo", "aliases": ["demo"], "tags": [],
            "object": "model", "owned_by": "llamacpp", "created": 1,
            "meta": {"vocab_type": 1, "n_vocab": 32000, "n_ctx": 512, "n_ctx_train": 2048,
                "n_embd": 64, "n_params": 4_178_240, "size": 16_712_960, "ftype": "all F32"}}]})
        .to_string(),
    );
    let rig = rig(|_| {}, vec![(spec("a", 0), a.clone())]).await;
    let client = rig.proxy.client();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let raw = client.raw(Method::GET, path, None).await.unwrap();
            serde_json::from_slice::<Value>(&raw.body).unwrap()
        }
    };
    let unloaded = get("/models").await;
    assert_eq!(unloaded["data"][0]["status"]["value"], "unloaded");
    assert_eq!(
        router_shape_gaps(&router_fixture("router_models"), &unloaded),
        Vec::<String>::new()
    );
    let (status, loaded) = post(&client, "/models/load", json!({"model": "a"})).await;
    assert_eq!(status, 200);
    assert_eq!(loaded, router_fixture("router_load"));
    let listed = get("/models").await;
    assert_eq!(listed["data"][0]["status"]["value"], "loaded");
    assert_eq!(
        router_shape_gaps(&router_fixture("router_models_loaded"), &listed),
        Vec::<String>::new()
    );
    let (status, unloaded) = post(&client, "/models/unload", json!({"model": "a"})).await;
    assert_eq!((status, unloaded), (200, router_fixture("router_unload")));
    let (status, unknown) = post(&client, "/models/load", json!({"model": "zz"})).await;
    assert_eq!(status, 404);
    assert_eq!(
        router_shape_gaps(&router_fixture("router_error_unknown_model"), &unknown),
        Vec::<String>::new()
    );
    // The typed router client reads it all.
    let typed = client.router_models().await.unwrap();
    assert_eq!(
        typed.data[0].status.as_ref().unwrap().value,
        lmcpp_types::router::ModelState::Unloaded
    );
}

#[tokio::test]
async fn a_failed_model_is_listed_unloaded_with_failed_and_its_exit_code() {
    let (a, rig) = solo().await;
    let client = rig.proxy.client();
    assert_eq!(post(&client, "/x", json!({})).await.0, 200);
    a.kill();
    eventually("a is failed", || {
        state_of(&rig.proxy, "a") == ModelState::Failed
    })
    .await;
    let list = listing(&client).await;
    assert_eq!(
        entry_of(&list, "a")["status"],
        json!({"value": "unloaded", "args": [], "failed": true, "exit_code": 137})
    );
    let typed = client.router_models().await.unwrap();
    let status = typed.data[0].status.clone().unwrap();
    assert_eq!((status.failed, status.exit_code), (Some(true), Some(137)));
}

#[tokio::test]
async fn models_sse_and_lmcpp_events_stream_each_transition_as_it_happens() {
    let (_, b, rig) = pair().await;
    let client = rig.proxy.client();
    let mut router = client.router_events().await.unwrap();
    let mut own = client.proxy_events().await.unwrap();
    let load = lmcpp_types::router::ModelRequest::new("b");
    assert!(client.load_model(&load).await.unwrap().success);
    assert!(client.unload_model(&load).await.unwrap().success);
    b.kill();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = tokio::time::timeout(Duration::from_secs(10), router.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(serde_json::to_value(&event).unwrap());
    }
    // A loaded model's `info` is its listing entry, as the router's is.
    let info = seen[2]["data"]
        .as_object_mut()
        .unwrap()
        .remove("info")
        .unwrap();
    assert_eq!(
        (&info["id"], &info["object"]),
        (&json!("b"), &json!("model"))
    );
    assert_eq!(
        seen,
        [
            json!({"model": "b", "event": "model_status", "data": {"status": "loading"}}),
            json!({"model": "b", "event": "status_change", "data": {"status": "loading"}}),
            json!({"model": "b", "event": "status_change", "data": {"status": "loaded"}}),
            json!({"model": "b", "event": "status_change",
                "data": {"status": "unloaded", "exit_code": 0}}),
        ]
    );
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(10), own.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.alias, "b");
        kinds.push(event.kind);
    }
    use ModelEventKind::*;
    assert_eq!(kinds, [Starting, Ready, stopped(StopReason::Unloaded)]);
    // A stream of a stopping proxy ends.
    rig.proxy.stop().await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), own.collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

/// The value of the proxy's metric `name` for model `alias`.
async fn metric(client: &crate::Client, name: &str, alias: &str) -> f64 {
    let metrics = client.proxy_metrics().await.unwrap();
    metrics
        .samples()
        .find(|s| s.name == name && s.labels.get("model").map(String::as_str) == Some(alias))
        .unwrap_or_else(|| panic!("no {name} for {alias}"))
        .value
}

#[tokio::test]
async fn the_proxys_own_metrics_count_requests_loads_evictions_and_state() {
    let a = FakeStart::new("a");
    let b = FakeStart::new("b");
    let rig = rig(
        |o| o.memory_budget = 100,
        vec![(spec("a", 60), a.clone()), (spec("b", 60), b.clone())],
    )
    .await;
    let client = rig.proxy.client();
    for m in ["a", "a", "b"] {
        assert_eq!(post(&client, "/x", json!({"model": m})).await.0, 200);
    }
    let text = client
        .raw(Method::GET, "/lmcpp/metrics", None)
        .await
        .unwrap();
    assert_eq!(text.status, 200);
    let values = [
        ("lmcpp_proxy_requests_total", "a", 2.0),
        ("lmcpp_proxy_requests_total", "b", 1.0),
        ("lmcpp_proxy_load_seconds_count", "a", 1.0),
        ("lmcpp_proxy_evictions_total", "a", 1.0),
        ("lmcpp_proxy_evictions_total", "b", 0.0),
        // The first request of each model waited for its start.
        ("lmcpp_proxy_queue_wait_seconds_count", "a", 1.0),
        ("lmcpp_proxy_queued", "a", 0.0),
    ];
    for (name, alias, want) in values {
        assert_eq!(metric(&client, name, alias).await, want, "{name} {alias}");
    }
    let metrics = client.proxy_metrics().await.unwrap();
    let states: Vec<(String, String)> = metrics
        .samples()
        .filter(|s| s.name == "lmcpp_proxy_model_state" && s.value == 1.0)
        .map(|s| (s.labels["model"].clone(), s.labels["state"].clone()))
        .collect();
    assert_eq!(
        states,
        [("a".into(), "stopped".into()), ("b".into(), "ready".into())]
    );
    // A model's own metrics stay where they were: forwarded with `?model=`.
    let raw = client
        .raw(Method::GET, "/metrics?model=b", None)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(
        (body["server"].as_str(), body["path"].as_str()),
        (Some("b"), Some("/metrics?model=b"))
    );
}

#[tokio::test]
async fn a_full_queue_is_a_429_with_retry_after_and_a_gone_client_leaves_the_queue() {
    let gate = Arc::new(Semaphore::new(0));
    let a = FakeStart::with("a", None, Some(Arc::clone(&gate)), false);
    let mut s = spec("a", 0);
    s.max_queue = Some(2);
    let rig = rig(|_| {}, vec![(s, a.clone())]).await;
    let client = rig.proxy.client();
    let first = tokio::spawn({
        let client = client.clone();
        async move { post(&client, "/x", json!({})).await.0 }
    });
    // The second waits on a connection of its own, which the test then drops.
    let crate::Endpoint::Unix { socket } = rig.proxy.endpoint().clone() else {
        panic!("the rig listens on a socket")
    };
    let mut gone = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let body = r#"{"model":"a"}"#;
    let request = format!(
        "POST /x HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut gone, request.as_bytes())
        .await
        .unwrap();
    let mut queued = 0.0;
    for _ in 0..5000 {
        queued = metric(&client, "lmcpp_proxy_queued", "a").await;
        if queued == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(queued, 2.0);
    let full = client
        .raw(Method::POST, "/x", Some(Bytes::from("{}")))
        .await
        .unwrap();
    assert_eq!(full.status, 429);
    let body: Value = serde_json::from_slice(&full.body).unwrap();
    assert_eq!(body["error"]["max_queue"], 2);
    // No start has finished yet: retry in a second.
    let head = raw_exchange(
        &socket,
        "POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n"),
        "{head}"
    );
    assert_eq!(
        metric(&client, "lmcpp_proxy_rejected_total", "a").await,
        2.0
    );
    drop(gone);
    let mut left = 2.0;
    for _ in 0..5000 {
        left = metric(&client, "lmcpp_proxy_queued", "a").await;
        if left == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        left, 1.0,
        "the request of the client that went away left the queue"
    );
    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(
        metric(&client, "lmcpp_proxy_requests_total", "a").await,
        1.0
    );
}

/// Two models of which only one fits, `a` busy with a stream and `b` waiting for its
/// room; `pass_over` is the bound.
async fn one_fits(pass_over: Duration) -> (Arc<FakeStart>, Arc<FakeStart>, Rig) {
    let a = FakeStart::new("a");
    let b = FakeStart::new("b");
    let rig = rig(
        |o| {
            o.memory_budget = 100;
            o.max_pass_over = pass_over;
        },
        vec![(spec("a", 60), a.clone()), (spec("b", 60), b.clone())],
    )
    .await;
    (a, b, rig)
}

/// Waits until `alias` has `n` requests queued.
async fn queued(client: &crate::Client, alias: &str, n: f64) {
    for _ in 0..5000 {
        if metric(client, "lmcpp_proxy_queued", alias).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{alias} never had {n} queued");
}

#[tokio::test]
async fn a_request_waits_for_a_busy_models_room_and_the_busy_model_batches_within_the_bound() {
    let (a, b, rig) = one_fits(Duration::from_secs(3600)).await;
    let client = rig.proxy.client();
    let stream = client
        .stream::<_, Value>("/stream", &json!({"model": "a"}))
        .await
        .unwrap();
    let waiting_b = tokio::spawn({
        let client = client.clone();
        async move { post(&client, "/x", json!({"model": "b"})).await }
    });
    queued(&client, "b", 1.0).await;
    // Within the bound, a (resident) still takes newer requests: no swap for them.
    for _ in 0..3 {
        assert_eq!(post(&client, "/x", json!({"model": "a"})).await.0, 200);
    }
    assert_eq!((a.starts(), b.starts(), a.stops()), (1, 0, 0));
    // a is never evicted while its stream is in flight; once it is done, b gets its room.
    drop(stream);
    let (status, body) = waiting_b.await.unwrap();
    assert_eq!((status, body["server"].as_str()), (200, Some("b")));
    assert_eq!((a.stops(), b.starts()), (1, 1));
}

#[tokio::test]
async fn past_the_bound_the_busy_model_takes_no_newer_request_until_the_waiting_one_had_its_turn() {
    let (a, b, rig) = one_fits(Duration::ZERO).await;
    let client = rig.proxy.client();
    let stream = client
        .stream::<_, Value>("/stream", &json!({"model": "a"}))
        .await
        .unwrap();
    let waiting_b = tokio::spawn({
        let client = client.clone();
        async move { post(&client, "/x", json!({"model": "b"})).await.0 }
    });
    queued(&client, "b", 1.0).await;
    // First come first served: a's newer request waits behind b's.
    let later_a = tokio::spawn({
        let client = client.clone();
        async move { post(&client, "/x", json!({"model": "a"})).await }
    });
    queued(&client, "a", 1.0).await;
    assert_eq!(
        metric(&client, "lmcpp_proxy_requests_total", "a").await,
        1.0
    );
    drop(stream);
    assert_eq!(waiting_b.await.unwrap(), 200);
    let (status, body) = later_a.await.unwrap();
    assert_eq!((status, body["server"].as_str()), (200, Some("a")));
    // a was stopped for b and started again for its later request.
    assert_eq!((a.starts(), a.stops(), b.starts()), (2, 1, 1));
}

/// `n` requests alternating between `a` and `b`, all sent at once (in that order), and
/// their statuses.
async fn alternating(client: &crate::Client, n: usize) -> Vec<u16> {
    let mut sent = Vec::new();
    for i in 0..n {
        let client = client.clone();
        let model = if i % 2 == 0 { "a" } else { "b" };
        sent.push(tokio::spawn(async move {
            post(&client, "/x", json!({"model": model})).await.0
        }));
        // Each arrives after the one before.
        tokio::task::yield_now().await;
    }
    let mut statuses = Vec::new();
    for s in sent {
        statuses.push(s.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn alternating_requests_for_two_models_that_do_not_fit_together_are_served_in_two_batches() {
    let (a, b, rig) = one_fits(Duration::from_secs(3600)).await;
    let statuses = alternating(&rig.proxy.client(), 16).await;
    assert_eq!(statuses, [200; 16]);
    // One start each: every request of a model that waited for its start is served
    // before that model makes room for the other.
    assert_eq!((a.starts(), b.starts()), (1, 1));
}

#[tokio::test]
async fn first_come_first_served_swaps_on_every_alternation() {
    let (a, b, rig) = one_fits(Duration::ZERO).await;
    let statuses = alternating(&rig.proxy.client(), 8).await;
    assert_eq!(statuses, [200; 8]);
    assert_eq!((a.starts(), b.starts()), (4, 4));
}

/// A spec whose start is identified by `fingerprint`.
fn fingerprinted(alias: &str, fingerprint: &str) -> ModelSpec {
    let mut spec = spec(alias, 0);
    spec.fingerprint = Some(fingerprint.to_owned());
    spec.keep_alive = None;
    spec
}

/// Reloads `rig`'s proxy with these models and their fake starts.
fn reload(rig: &mut Rig, models: Vec<(ModelSpec, Arc<FakeStart>)>) -> crate::Result<ReloadReport> {
    let mut starts: std::collections::VecDeque<_> =
        models.iter().map(|(_, start)| Arc::clone(start)).collect();
    let specs = models.into_iter().map(|(spec, _)| spec).collect();
    rig.proxy.reload_with(specs, 1 << 40, |spec| {
        let start = starts.pop_front().unwrap();
        Conf::new(spec, Arc::new(start) as Arc<dyn Start>)
    })
}

/// The server a request for `alias` reached, or the status of its refusal.
async fn served_by(client: &crate::Client, alias: &str) -> Result<String, (u16, Value)> {
    match post(client, "/x", json!({"model": alias})).await {
        (200, answer) => Ok(answer["server"].as_str().unwrap().to_owned()),
        refused => Err(refused),
    }
}

#[tokio::test]
async fn a_reload_adds_updates_replaces_and_removes_models_without_dropping_a_request() {
    let (a, b, c) = (
        FakeStart::new("a"),
        FakeStart::new("b"),
        FakeStart::new("c"),
    );
    let mut rig = rig(
        |_| {},
        vec![
            (fingerprinted("a", "a1"), a.clone()),
            (fingerprinted("b", "b1"), b.clone()),
            (fingerprinted("c", "c1"), c.clone()),
        ],
    )
    .await;
    let client = rig.proxy.client();
    // `a` streams (in flight until its client goes away); `b` and `c` ran one request.
    let mut stream = client
        .stream::<_, Value>("/stream", &json!({"model": "a"}))
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap()["n"], 1);
    assert_eq!(served_by(&client, "b").await, Ok("b".into()));
    assert_eq!(served_by(&client, "c").await, Ok("c".into()));
    // The first receiver has every event since the start; a later one from now on.
    drop(rig.proxy.events());
    let mut events = rig.proxy.events();
    let mut router = client.router_events().await.unwrap();

    let (c2, d) = (FakeStart::new("c2"), FakeStart::new("d"));
    let report = reload(&mut rig, moved_to(&d, &c2)).unwrap();
    assert_eq!(
        report,
        ReloadReport {
            added: vec!["d".into()],
            removed: vec!["a".into()],
            replaced: vec!["c".into()],
            updated: vec!["b".into()],
            unchanged: vec![],
        }
    );
    assert_reload_events(&mut events, &mut router).await;
    // The listing and the record follow the new configuration, in its order.
    let aliases: Vec<String> = rig.proxy.models().into_iter().map(|m| m.alias).collect();
    assert_eq!(aliases, ["d", "b", "c"]);
    assert_eq!(rig.proxy.record().args, ["d", "b", "c"]);
    // `b` kept its server and took its new keep-alive.
    assert_eq!(served_by(&client, "b").await, Ok("b".into()));
    assert_eq!((b.starts(), b.stops()), (1, 0));
    let view = rig
        .proxy
        .models()
        .into_iter()
        .find(|m| m.alias == "b")
        .unwrap();
    assert_eq!(view.keep_alive_secs, Some(600));
    // `c`: the idle old server stopped at once; the next request starts the new one.
    assert_eq!(c.stops(), 1);
    assert_eq!(served_by(&client, "c").await, Ok("c2".into()));
    assert_eq!(served_by(&client, "d").await, Ok("d".into()));
    // `a` takes no new request, but its stream goes on until its client leaves; then its
    // server stops.
    let (status, body) = served_by(&client, "a").await.unwrap_err();
    assert_eq!(status, 404, "{body}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        a.stops(),
        0,
        "a server with a request in flight is not stopped"
    );
    drop(stream);
    eventually("a stops once its stream ended", || a.stops() == 1).await;
    let removed = ev("a", Some("a"), stopped(StopReason::Removed));
    let mut seen = Vec::new();
    while !seen.contains(&removed) {
        seen.extend(next_events(&mut events, 1).await);
    }
    // The same configuration again changes nothing.
    let same = reload(&mut rig, moved_to(&d, &c2)).unwrap();
    assert_eq!(same.unchanged, ["d", "b", "c"]);
    assert_eq!(served_by(&client, "c").await, Ok("c2".into()));
    assert_eq!(c2.starts(), 1);
}

/// The configuration the reload test moves to: `d` added, `b` with a new keep-alive, `c`
/// started another way.
fn moved_to(d: &Arc<FakeStart>, c2: &Arc<FakeStart>) -> Vec<(ModelSpec, Arc<FakeStart>)> {
    let mut b = fingerprinted("b", "b1");
    b.keep_alive = Some(Duration::from_secs(600));
    vec![
        (fingerprinted("d", "d1"), d.clone()),
        (b, FakeStart::new("unused")),
        (fingerprinted("c", "c2"), c2.clone()),
    ]
}

/// The events of the reload in `a_reload_adds_updates_replaces_and_removes_models…`: one
/// per model it touched, the final `reloaded` and the stop of c's old idle server; router
/// clients get the router's one `models_reload` (and that stop).
async fn assert_reload_events(
    events: &mut tokio::sync::broadcast::Receiver<ModelEvent>,
    router: &mut crate::EventStream<lmcpp_types::router::ModelsEvent>,
) {
    use ModelEventKind::*;
    let mut got = next_events(events, 6).await;
    got.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
    assert_eq!(
        got,
        [
            ev("*", None, Reloaded),
            ev("a", None, Removed),
            ev("b", None, Updated),
            ev("c", None, Replaced),
            ev("c", Some("c"), stopped(StopReason::Replaced)),
            ev("d", None, Added),
        ]
    );
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), router.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let event = serde_json::to_value(&event).unwrap();
        if event == json!({"model": "*", "event": "models_reload"}) {
            break;
        }
        assert_eq!(event["model"], "c", "{event}");
    }
}

#[tokio::test]
async fn requests_waiting_for_a_replaced_model_move_to_the_new_one_and_those_for_a_removed_one_get_a_404()
 {
    let gate = Arc::new(Semaphore::new(0));
    let a = FakeStart::with("a", None, Some(Arc::clone(&gate)), false);
    let b = FakeStart::with("b", None, Some(Arc::clone(&gate)), false);
    let mut rig = rig(
        |_| {},
        vec![
            (fingerprinted("a", "a1"), a.clone()),
            (fingerprinted("b", "b1"), b.clone()),
        ],
    )
    .await;
    let client = rig.proxy.client();
    let waiting = |alias: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { served_by(&client, alias).await })
    };
    let (for_a, for_b) = (waiting("a"), waiting("b"));
    eventually("both are loading", || a.starts() == 1 && b.starts() == 1).await;
    let a2 = FakeStart::new("a2");
    reload(&mut rig, vec![(fingerprinted("a", "a2"), a2.clone())]).unwrap();
    assert_eq!(for_a.await.unwrap(), Ok("a2".into()));
    let (status, body) = for_b.await.unwrap().unwrap_err();
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("removed by a reload"),
        "{body}"
    );
    // The abandoned starts end with their servers stopped, not serving.
    gate.add_permits(2);
    eventually("both abandoned servers are stopped", || {
        a.stops() == 1 && b.stops() == 1
    })
    .await;
    assert_eq!(served_by(&client, "a").await, Ok("a2".into()));
    assert_eq!(a2.starts(), 1);
}

#[tokio::test]
async fn a_reload_that_does_not_check_out_changes_nothing() {
    let (a, mut rig) = solo().await;
    let client = rig.proxy.client();
    assert_eq!(served_by(&client, "a").await, Ok("a".into()));
    let mut too_big = fingerprinted("b", "b1");
    too_big.estimate_bytes = u64::MAX;
    for models in [
        vec![],
        vec![fingerprinted("b", "1"), fingerprinted("b", "2")],
        vec![fingerprinted("bad alias", "1")],
        vec![too_big],
    ] {
        let with_starts = models
            .into_iter()
            .map(|m| (m, FakeStart::new("unused")))
            .collect();
        let e = reload(&mut rig, with_starts).unwrap_err();
        assert!(matches!(e, Error::ProxyConfig { .. }), "{e}");
    }
    assert_eq!(served_by(&client, "a").await, Ok("a".into()));
    assert_eq!((a.starts(), a.stops()), (1, 0));
    assert_eq!(rig.proxy.record().args, ["a"]);
}

#[tokio::test]
async fn a_removed_models_saved_kv_cache_is_cleared_and_nothing_else_in_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("kv-a");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("slot-0.bin"), b"saved").unwrap();
    std::fs::write(cache.join("notes.txt"), b"the user's").unwrap();
    let mut a = fingerprinted("a", "a1");
    a.slot_cache = Some(cache.clone());
    let mut rig = rig(
        |_| {},
        vec![
            (a, FakeStart::new("a")),
            (fingerprinted("b", "b1"), FakeStart::new("b")),
        ],
    )
    .await;
    reload(
        &mut rig,
        vec![(fingerprinted("b", "b1"), FakeStart::new("b"))],
    )
    .unwrap();
    eventually("the saved slot is gone", || {
        !cache.join("slot-0.bin").exists()
    })
    .await;
    assert!(cache.join("notes.txt").exists());
}

/// A generated configuration: some of the models `a` to `d` in any order, each with how
/// it starts (`0` or `1`) and whether it has a keep-alive.
fn generated_config() -> impl proptest::strategy::Strategy<Value = Vec<(String, u8, bool)>> {
    use proptest::prelude::*;
    proptest::collection::vec(proptest::option::of((0u8..2, any::<bool>())), 4)
        .prop_filter("at least one model", |v| v.iter().any(Option::is_some))
        .prop_map(|v| {
            v.into_iter()
                .zip(["a", "b", "c", "d"])
                .filter_map(|(m, alias)| m.map(|(start, keep)| (alias.to_owned(), start, keep)))
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

/// A generated model as the proxy takes it; its fake server is named alias and start.
fn generated_model(model: &(String, u8, bool)) -> (ModelSpec, Arc<FakeStart>) {
    let (alias, start, keep) = model;
    let name = format!("{alias}{start}");
    let mut spec = fingerprinted(alias, &name);
    spec.keep_alive = keep.then_some(Duration::from_secs(60));
    (spec, FakeStart::new(&name))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// Whatever sequence of configurations is reloaded, each reload says exactly what it
    /// added, removed, replaced, updated and left alone, lists the models in the new
    /// order, and every model is then served by a server of its current configuration.
    #[test]
    fn any_sequence_of_reloads_reports_each_change_and_serves_the_current_configuration(
        configs in proptest::collection::vec(generated_config(), 2..5)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut rig = rig(|_| {}, configs[0].iter().map(generated_model).collect()).await;
            let client = rig.proxy.client();
            let mut before: &Vec<(String, u8, bool)> = &configs[0];
            for config in &configs[1..] {
                let report =
                    reload(&mut rig, config.iter().map(generated_model).collect()).unwrap();
                let mut expected = ReloadReport::default();
                for (alias, start, keep) in config {
                    let list = match before.iter().find(|m| &m.0 == alias) {
                        None => &mut expected.added,
                        Some((_, was, _)) if was != start => &mut expected.replaced,
                        Some((_, _, kept)) if kept != keep => &mut expected.updated,
                        Some(_) => &mut expected.unchanged,
                    };
                    list.push(alias.clone());
                }
                expected.removed = before
                    .iter()
                    .filter(|m| !config.iter().any(|n| n.0 == m.0))
                    .map(|m| m.0.clone())
                    .collect();
                assert_eq!(report, expected);
                let aliases: Vec<String> = config.iter().map(|m| m.0.clone()).collect();
                let listed: Vec<String> =
                    rig.proxy.models().into_iter().map(|m| m.alias).collect();
                assert_eq!(&listed, &aliases);
                assert_eq!(&rig.proxy.record().args, &aliases);
                for (alias, start, _) in config {
                    assert_eq!(served_by(&client, alias).await, Ok(format!("{alias}{start}")));
                }
                before = config;
            }
        });
    }
}
