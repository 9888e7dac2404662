//! Many models behind one endpoint: a proxy that speaks llama-server's HTTP API, routes
//! each request by its `model` to that model's own supervised [`Server`](crate::Server),
//! starts servers on demand (one start however many requests wait), stops them after
//! their keep-alive, and keeps the running ones within a memory budget.

mod entry;
mod events;
mod feed;
mod kv;
mod listen;
mod metrics;
mod models;
mod router;
mod service;
mod spec;
mod stall;
// The fake model servers of these tests listen on Unix sockets.
#[cfg(all(test, unix))]
mod tests;
mod view;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::{broadcast, watch};

use self::{
    models::{Conf, Models},
    service::Service,
};
use crate::{
    client::Client,
    endpoint::Endpoint,
    error::{Error, Result},
    platform,
    registry::{ProcessKind, Registry, ServerRecord},
    runtime::{self, validate_id},
    server::TransportChoice,
};

pub use events::{EVENTS_PATH, MODEL_EVENT_CAPACITY, ModelEvent, ModelEventKind, StopReason};
pub use feed::SSE_PING;
pub use kv::MAX_SLOT_CACHE_BYTES;
pub use metrics::METRICS_PATH;
pub use models::ReloadReport;
pub use spec::{DEFAULT_KEEP_ALIVE, Launch, LaunchError, MAX_ALIAS_LEN, ModelSpec};
pub use view::{ModelState, ModelView};

/// Default cap of a request body the proxy reads (it reads bodies whole, to route them).
pub const DEFAULT_PROXY_MAX_BODY: usize = 64 * 1024 * 1024;

/// Default cap of the request head (request line plus headers) in bytes.
pub const DEFAULT_PROXY_MAX_HEADER: usize = 64 * 1024;

/// Default cap of the number of request headers.
pub const DEFAULT_PROXY_MAX_HEADERS: usize = 100;

/// Default time a client may accept no byte of a response before the proxy drops the
/// request (and so cancels it upstream).
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time a client that has begun a request body may send no byte of it before
/// the proxy answers 408 and closes the connection (hyper closes one whose head takes
/// longer than 30 s).
pub const DEFAULT_READ_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time a request waits for its model to load.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Default bound on how long a request waits for memory held by busy models while
/// those keep taking newer requests ([`ProxyOptions::max_pass_over`]).
pub const DEFAULT_MAX_PASS_OVER: Duration = Duration::from_secs(30);

/// How the proxy listens and what it enforces.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyOptions {
    /// Unix socket in the private runtime dir (default), HTTP on loopback, or HTTP on a
    /// chosen address ([`TransportChoice::PublicHttp`], which warns when not loopback).
    pub transport: TransportChoice,
    /// Runtime dir for the proxy's state file and socket; default
    /// [`default_runtime_dir`](crate::default_runtime_dir).
    pub runtime_dir: Option<PathBuf>,
    /// Where the socket goes when the runtime dir path is too long; default
    /// `/tmp/lmcpp-<uid>`.
    pub socket_fallback_dir: Option<PathBuf>,
    /// The proxy's registry id (validated); default a fresh one.
    pub id: Option<String>,
    /// When set, every route except `/health` requires `Authorization: Bearer <key>`
    /// (or `X-Api-Key: <key>`), as llama-server does.
    pub api_key: Option<String>,
    /// Bytes the running and loading models' estimates may add up to.
    pub memory_budget: u64,
    /// How long a request waits for its model to load before it gets a 503.
    pub load_timeout: Duration,
    /// When a model must wait for memory that busy models hold, those keep taking
    /// newer requests (so requests are served in batches per model rather than
    /// swapping models on each) for at most this long after its oldest request came;
    /// then they take none that came later, finish what they have, and make room.
    /// `Duration::ZERO` serves requests first come first served across models.
    pub max_pass_over: Duration,
    /// How long a client may accept no byte of a response (it stopped reading its
    /// stream) before the proxy drops the request: the model server's request is
    /// cancelled and the model no longer counts it in flight.
    pub write_stall_timeout: Duration,
    /// How long a client may send no byte of a request body it has begun (a slow or
    /// stalled upload) before it gets a 408 and its connection is closed.
    pub read_stall_timeout: Duration,
    /// Largest request body read (413 above it).
    pub max_body: usize,
    /// Largest request head in bytes (431 above it).
    pub max_header: usize,
    /// Most request headers (431 above it).
    pub max_headers: usize,
    /// The log file named in the registry record (the proxy itself writes none; the CLI
    /// may); default `<runtime dir>/<id>.log`.
    pub log_path: Option<PathBuf>,
    /// Whether the proxy's process was started to outlive its caller (`lmcpp serve
    /// --detach`); recorded in the registry as a server's `detached` is.
    pub detached: bool,
}

impl ProxyOptions {
    /// Options with defaults: the platform's private transport (a Unix socket in the
    /// default runtime dir; loopback HTTP with a generated API key on Windows), the
    /// given memory budget (see [`default_memory_budget`]).
    pub fn new(memory_budget: u64) -> Self {
        Self {
            transport: TransportChoice::default(),
            runtime_dir: None,
            socket_fallback_dir: None,
            id: None,
            api_key: None,
            memory_budget,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            max_pass_over: DEFAULT_MAX_PASS_OVER,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
            read_stall_timeout: DEFAULT_READ_STALL_TIMEOUT,
            max_body: DEFAULT_PROXY_MAX_BODY,
            max_header: DEFAULT_PROXY_MAX_HEADER,
            max_headers: DEFAULT_PROXY_MAX_HEADERS,
            log_path: None,
            detached: false,
        }
    }
}

/// A running proxy. Dropping it stops serving and asks every model server to stop (in
/// the background while the runtime runs, else each one's drop stops it); prefer
/// [`Proxy::stop`], which waits for them.
///
/// What clients see:
/// - `GET /health` answers `{"status":"ok"}` for the proxy, without the API key (as
///   llama-server's does); every other route requires the key when one is set.
/// - `GET /v1/models` and `GET /models` list every model with its state, in the shape of
///   llama-server's model list and of its router's (`status.value` is `unloaded`,
///   `loading` or `loaded`, with `failed: true` after a failure), plus an `lmcpp` object
///   per model ([`ModelView`]). Each entry also carries every other field the model's
///   own server lists for it (`meta` with `n_ctx_train`, `n_params`, `n_embd`,
///   `n_vocab`, `size`, ...; `aliases` and `tags` on newer llama.cpp), under the
///   proxy's `id` (the alias), `object`, `created`, `owned_by` (`lmcpp`), `status` and
///   `lmcpp`, which win. The server is asked once per start, right after it is ready
///   and before the requests that waited for the start are answered (about 0.5 ms; at
///   most 100 ms, after which they are answered and the answer is still taken when it
///   comes); its entry is kept after the model stops, as a model's metadata does not
///   change, so only a model never started lists the proxy's fields alone. An answer
///   over 64 KiB or not a JSON object is ignored, and so is a field the typed
///   [`Client`] could not read (a `meta` that is not an object of numbers). The
///   top-level `models` is llama-server's Ollama-style list, one entry per model with
///   `name` and `model` the alias and the server's other fields when known.
/// - `POST /models/load` and `POST /models/unload` (`{"model": alias}`) start a model
///   and wait until it is ready, or stop it now and wait until its server has exited,
///   as llama-server's router does. Unloading is refused with a 409 while requests are
///   in flight, and while the model loads (`"state": "loading"`): the start is not
///   cancelled, as other requests may wait for it. `GET /models/sse` streams each model's
///   status changes in the router's shape, and `GET /props` naming no model on a proxy
///   of several is the router's own (`role: "router"`).
/// - [`EVENTS_PATH`] streams every [`ModelEvent`] as Server-Sent Events
///   ([`Client::proxy_events`]); [`METRICS_PATH`] is the proxy's own Prometheus text per
///   model ([`Client::proxy_metrics`]); `/metrics?model=` stays the model server's.
/// - A request whose model cannot serve it at once waits in that model's queue (its
///   start, room in the budget, or its turn; [`ModelSpec::max_queue`] bounds it, a 429
///   with `Retry-After` beyond), and leaves it when its client goes away. A start that
///   does not fit beside busy, loading or just-started models waits for them (a model
///   with a request in flight, or with waiting requests it would take, is never
///   evicted); meanwhile they take newer requests for up to
///   [`ProxyOptions::max_pass_over`], then drain.
/// - A model with a [`ModelSpec::slot_cache`] keeps its KV cache across idle stops.
/// - Any other request goes to the model its JSON body names in `model` (or `?model=`),
///   or to the only model when there is one and it names none; an unknown name is a 404
///   naming the models. The model's server is started if needed, and the answer (an
///   event stream too) is passed through as it arrives.
/// - Errors are llama-server's JSON shape: 401 (key), 404 (unknown model), 400 (no
///   model named), 413 (body over the cap), 431 (head over the caps), 502 (the start
///   failed, with `log_tail`; or the server did not answer), 429 (its queue is full),
///   503 (still loading, or still waiting for room, at the load timeout; a model that
///   could never fit beside the pinned ones; and `the proxy is stopping` for every
///   request still waiting for a model when [`Proxy::stop`] is called or the proxy is
///   dropped).
/// - Memory: a model counts against the budget from the moment its start is decided
///   until its server has exited (a server being stopped still counts, and a start
///   that needs its room waits for it). A model's estimate is what
///   [`Launch::prepare`] returned before its last start, else
///   [`ModelSpec::estimate_bytes`].
/// - A client that accepts no byte of its answer for
///   [`ProxyOptions::write_stall_timeout`] loses its connection, which cancels the
///   request at the model server.
/// - A model server that dies mid-answer: an event stream ends with a
///   `data: {"error":{...}}` event (which [`Client`] streams yield as
///   [`Error::Api`]), any other body breaks off (a transport error); the model is then
///   `failed` and the next request starts it again.
///
/// ```no_run
/// # async fn demo() -> lmcpp_server::Result<()> {
/// use std::sync::Arc;
///
/// use futures_util::future::BoxFuture;
/// use lmcpp_server::{Launch, LaunchError, LaunchOptions, ModelSpec, Proxy, ProxyOptions, Server};
///
/// /// Starts one GGUF with a given binary (the `lmcpp` CLI's launcher also ensures the
/// /// toolchain and the model, in `Launch::prepare`).
/// struct Gguf(LaunchOptions);
///
/// impl Launch for Gguf {
///     fn launch(&self) -> BoxFuture<'static, Result<Server, LaunchError>> {
///         let opts = self.0.clone();
///         Box::pin(async move { Ok(Server::launch(opts).await?) })
///     }
/// }
///
/// let chat = Gguf(LaunchOptions::new("/path/to/llama-server", "/models/chat.gguf"));
/// let mut embed = LaunchOptions::new("/path/to/llama-server", "/models/embed.gguf");
/// embed.args.embeddings = true;
/// let mut chat = ModelSpec::new("chat", Arc::new(chat));
/// chat.estimate_bytes = 2 << 30;
/// let embed = ModelSpec::new("embed", Arc::new(Gguf(embed)));
/// let budget = lmcpp_server::default_memory_budget();
/// let proxy = Proxy::start(ProxyOptions::new(budget), vec![chat, embed]).await?;
/// // The typed client works unchanged; each request's `model` picks the server, which
/// // starts at its first request.
/// let models = proxy.client().models().await?;
/// assert_eq!(models.data.len(), 2);
/// proxy.stop().await?;
/// # Ok(())
/// # }
/// ```
pub struct Proxy {
    endpoint: Endpoint,
    id: String,
    client: Client,
    models: Arc<Models>,
    /// The receiver subscribed before serving began, for the first [`Proxy::events`].
    first_events: std::sync::Mutex<Option<broadcast::Receiver<ModelEvent>>>,
    shutdown: watch::Sender<bool>,
    registry: Registry,
    record: ServerRecord,
    finished: bool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Checks the models, binds the endpoint, writes the registry record (kind
    /// [`ProcessKind::Proxy`](crate::ProcessKind::Proxy)) and serves in background tasks
    /// of the current tokio runtime. No model server is started yet.
    pub async fn start(opts: ProxyOptions, models: Vec<ModelSpec>) -> Result<Self> {
        check_models(&models, opts.memory_budget)?;
        let confs = models.into_iter().map(Conf::from_spec).collect();
        Self::start_confs(opts, confs).await
    }

    /// [`Proxy::start`] with the models' starters given directly.
    pub(crate) async fn start_confs(mut opts: ProxyOptions, confs: Vec<Conf>) -> Result<Self> {
        let generated = opts.transport.secure(&mut opts.api_key, "the proxy")?;
        let registry = Registry::new(
            opts.runtime_dir
                .clone()
                .unwrap_or_else(platform::default_runtime_dir),
        );
        registry.ensure_dir()?;
        let id = match &opts.id {
            Some(id) => {
                validate_id(id)?;
                if registry.read(id)?.is_some() && registry.get(id).is_ok() {
                    return Err(Error::ProxyConfig {
                        reason: format!("id {id} is used by a running process"),
                    });
                }
                id.clone()
            }
            None => loop {
                let id = runtime::new_id();
                if !registry.state_path(&id).exists() {
                    break id;
                }
            },
        };
        let fallback = opts
            .socket_fallback_dir
            .clone()
            .unwrap_or_else(platform::private_tmp_dir);
        let (listener, endpoint) = listen::bind(&opts.transport, &registry, &id, &fallback).await?;
        let aliases: Vec<String> = confs.iter().map(|c: &Conf| c.alias.clone()).collect();
        let mut record = own_record(&registry, &opts, &id, &endpoint, aliases);
        if generated {
            record.api_key.clone_from(&opts.api_key);
        }
        if let Err(e) = registry.write(&record) {
            registry.remove(&record);
            return Err(e);
        }
        let models = Arc::new(Models::new(confs, opts.memory_budget, opts.max_pass_over));
        let first_events = std::sync::Mutex::new(Some(models.events()));
        let service = Arc::new(Service {
            models: Arc::clone(&models),
            api_key: opts.api_key.clone(),
            max_body: opts.max_body,
            max_header: opts.max_header,
            read_stall: opts.read_stall_timeout,
            load_timeout: opts.load_timeout,
            created: service::unix_now(),
        });
        let (shutdown, watching) = watch::channel(false);
        let limits = listen::Limits {
            max_header: opts.max_header,
            max_headers: opts.max_headers,
            write_stall: opts.write_stall_timeout,
        };
        tokio::spawn(listen::serve(listener, service, limits, watching.clone()));
        tokio::spawn(Arc::clone(&models).keep_alive(watching));
        let mut client = Client::builder(endpoint.clone());
        if let Some(key) = &opts.api_key {
            client = client.api_key(key.clone());
        }
        Ok(Self {
            endpoint,
            id,
            client: client.build(),
            models,
            first_events,
            shutdown,
            registry,
            record,
            finished: false,
        })
    }

    /// Where the proxy listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A client for the proxy, with the proxy's API key if one is set.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The registry id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its registry record.
    pub fn record(&self) -> &ServerRecord {
        &self.record
    }

    /// Every configured model with its state, in configuration order.
    pub fn models(&self) -> Vec<ModelView> {
        self.models.views()
    }

    /// Takes `models` as the proxy's models from now on, and `memory_budget` as its
    /// budget, without dropping a request (what `lmcpp serve --config` does on SIGHUP
    /// and, with `--watch`, when the file changes). Models are matched by alias:
    /// - a model not configured before is added, and starts at its first request;
    /// - a model no longer given takes no new request; its server, if one runs, stops
    ///   once the requests in flight have finished, and a request still waiting for it
    ///   gets a 404;
    /// - a model whose start changed ([`ModelSpec::fingerprint`], or without one its
    ///   `launch`) is replaced: its running server finishes its requests and stops, and
    ///   the next request (or one that waited) starts the new configuration;
    /// - any other model keeps its server, with its keep-alive, pinning, queue bound
    ///   and estimate taken from `models`.
    ///
    /// Checked as [`Proxy::start`] checks its models: on an error nothing changes. Each
    /// change is announced as a [`ModelEvent`], and the registry record lists the new
    /// aliases.
    pub async fn reload(
        &mut self,
        models: Vec<ModelSpec>,
        memory_budget: u64,
    ) -> Result<ReloadReport> {
        self.reload_with(models, memory_budget, Conf::from_spec)
    }

    /// [`Proxy::reload`] with each model's starter made by `conf`.
    pub(crate) fn reload_with(
        &mut self,
        models: Vec<ModelSpec>,
        memory_budget: u64,
        conf: impl FnMut(ModelSpec) -> Conf,
    ) -> Result<ReloadReport> {
        check_models(&models, memory_budget)?;
        let aliases: Vec<String> = models.iter().map(|m| m.alias.clone()).collect();
        let confs = models.into_iter().map(conf).collect();
        let report = self.models.reload(confs, memory_budget);
        self.record.model = PathBuf::from(aliases.join(","));
        self.record.args = aliases;
        if let Err(e) = self.registry.write(&self.record) {
            tracing::warn!(error = %e, "the proxy's registry record still lists the models before the reload");
        }
        Ok(report)
    }

    /// A receiver of what happens to the models: each start, ready server, failed
    /// start, stop (with its exact reason) and death, as it happens and in order (see
    /// [`ModelEvent`]). The first call's receiver has every event since the proxy
    /// started serving (it was subscribed before the first request could come); a later
    /// call's has those from then on, and [`Proxy::models`] has the state.
    ///
    /// The proxy never waits for a receiver: one that falls more than
    /// [`MODEL_EVENT_CAPACITY`] events behind loses the oldest ones, and its next `recv`
    /// is [`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged) with
    /// how many it missed (then the oldest kept). The stream ends
    /// ([`RecvError::Closed`](tokio::sync::broadcast::error::RecvError::Closed)) once
    /// the proxy and every task of it are gone. The events of [`Proxy::stop`] (each
    /// server [`Stopped`](ModelEventKind::Stopped) with
    /// [`StopReason::ProxyStopping`]) are sent before it returns, unless a server took
    /// longer to exit than the stop waits.
    pub fn events(&self) -> broadcast::Receiver<ModelEvent> {
        let first = self
            .first_events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        first.unwrap_or_else(|| self.models.events())
    }

    /// Stops serving, stops every model server (waiting for each), and removes the
    /// socket and the registry record.
    pub async fn stop(mut self) -> Result<()> {
        let acks = self.begin_stop();
        models::stopped(acks).await;
        Ok(())
    }

    /// Stops accepting, asks the model servers to stop, removes the record.
    fn begin_stop(&mut self) -> Vec<futures_util::future::BoxFuture<'static, ()>> {
        self.finished = true;
        let _ = self.shutdown.send(true);
        let acks = self.models.shut_down();
        self.registry.remove(&self.record);
        acks
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if !self.finished {
            drop(self.begin_stop());
        }
    }
}

/// Refuses what cannot work: no models, a malformed or repeated alias, a model that
/// could never fit the budget.
fn check_models(models: &[ModelSpec], budget: u64) -> Result<()> {
    let refuse = |reason: String| Err(Error::ProxyConfig { reason });
    if models.is_empty() {
        return refuse("no models were given".into());
    }
    let mut seen = std::collections::HashSet::new();
    for model in models {
        if let Err(reason) = spec::check_alias(&model.alias) {
            return refuse(format!("alias {:?} is malformed: {reason}", model.alias));
        }
        if !seen.insert(model.alias.as_str()) {
            return refuse(format!("alias `{}` is given twice", model.alias));
        }
        if model.estimate_bytes > budget {
            return refuse(format!(
                "model `{}` needs an estimated {} bytes, more than the whole memory budget of {budget} bytes; raise the budget or use a smaller model (or context)",
                model.alias, model.estimate_bytes
            ));
        }
    }
    Ok(())
}

/// The proxy's own registry record: this process, its endpoint, its aliases.
fn own_record(
    registry: &Registry,
    opts: &ProxyOptions,
    id: &str,
    endpoint: &Endpoint,
    aliases: Vec<String>,
) -> ServerRecord {
    let pid = std::process::id();
    let identity = platform::identity(pid);
    ServerRecord {
        id: id.to_owned(),
        kind: ProcessKind::Proxy,
        pid,
        exe: std::env::current_exe().unwrap_or_default(),
        start_time: identity.start_time,
        spawned_exe: identity.exe,
        boot_id: platform::boot_id(),
        endpoint: endpoint.clone(),
        model: PathBuf::from(aliases.join(",")),
        log_path: opts
            .log_path
            .clone()
            .unwrap_or_else(|| registry.default_log_path(id)),
        args: aliases,
        detached: opts.detached,
        started_at_ms: SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
        api_key: None,
    }
}

/// The default memory budget: three quarters of the machine's memory, or 8 GiB where the
/// OS does not say.
pub fn default_memory_budget() -> u64 {
    crate::platform::total_memory().map_or(8 << 30, |total| total / 4 * 3)
}
