//! Many models behind one endpoint, built as a single server is: [`Lmcpp::proxy`] gives a
//! [`ProxyBuilder`]; each [`ProxyModel`] is started at its first request through the
//! same toolchain, model store and launcher wiring as [`Lmcpp::builder`], and the
//! endpoint is `lmcpp_server::Proxy` (what `lmcpp serve` runs for several models).
//!
//! ```no_run
//! # async fn run() -> Result<(), lmcpp::Error> {
//! use lmcpp::{Lmcpp, ModelRef, ProxyModel};
//!
//! let proxy = Lmcpp::proxy()
//!     .memory_budget(8 << 30)
//!     .model(ProxyModel::new("chat", "Qwen/Qwen2.5-0.5B-Instruct-GGUF:q4_k_m".parse()?))
//!     .model(ProxyModel::new("tiny", ModelRef::Demo))
//!     .start()
//!     .await?;
//! let models = proxy.client().models().await?;
//! println!("{} models behind {}", models.data.len(), proxy.endpoint());
//! proxy.stop().await?;
//! # Ok(()) }
//! ```
//!
//! Starting is two steps, like [`LmcppBuilder::resolve`] then [`Resolved::start`]:
//! [`ProxyBuilder::prepare`] builds every model's spec and estimates its memory from what
//! is on disk (no network), and [`PreparedProxy::start`] opens the endpoint. A model's
//! own start is two steps too: the proxy prepares it (toolchain and model ensured, memory
//! estimated) before it checks the budget, and the launch then starts what was prepared,
//! resolving nothing twice.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use lmcpp_server::{
    Launch, LaunchError, ModelSpec, Proxy, ProxyOptions, ReloadReport, Server, TransportChoice,
    default_memory_budget,
};
use lmcpp_toolchain::demo::DemoOptions;
use lmcpp_toolchain::gguf::estimate::{EstimateOptions, KvCacheType, estimate_path};
use lmcpp_toolchain::models::{
    ModelSource, ModelStore, ModelStoreOptions, PullOptions, demo_model_path,
};
use lmcpp_toolchain::{SharedProgress, Toolchain, ToolchainRequest, no_progress};
use lmcpp_types::Classify;
use lmcpp_types::args::ServerArgs;

use crate::facade::{Error, Lmcpp, LmcppBuilder, Resolved};
use crate::model_ref::ModelRef;

/// Where the lines describing each model's start go (`lmcpp serve` writes them to the
/// proxy's log).
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

impl Lmcpp {
    /// A builder for an endpoint serving several models, each started at its first
    /// request (see [`ProxyBuilder`]).
    pub fn proxy() -> ProxyBuilder {
        ProxyBuilder::default()
    }
}

/// One model of a [`ProxyBuilder`]: what [`Lmcpp::builder`] would take for a single
/// server, plus how the proxy treats it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyModel {
    /// The name clients ask for (`"model"` in a request, `?model=` on a GET).
    pub alias: String,
    /// The model, as for [`LmcppBuilder::model_ref`].
    pub model: ModelRef,
    /// Its server's arguments (model, host, port and API key are lmcpp's).
    pub args: ServerArgs,
    /// The memory it takes, when known better than the estimate from its file.
    pub memory: Option<u64>,
    /// How long it may stay idle before it is stopped; `None`: never.
    pub keep_alive: Option<Duration>,
    /// Never evicted for another model.
    pub pinned: bool,
    /// How many requests may wait for it; `None`: no bound.
    pub max_queue: Option<usize>,
    /// How long its server may take to load (default: the builder's).
    pub start_timeout: Option<Duration>,
    /// Its own toolchain request (another llama.cpp version or backend); default: the
    /// builder's.
    pub toolchain_request: Option<ToolchainRequest>,
    /// Its own `llama-server` binary instead of one from the toolchain cache.
    pub llama_server: Option<PathBuf>,
    /// A directory where its slots' KV caches are saved when its server stops for being
    /// idle or evicted, and restored at its next start (llama-server's `--slot-save-path`;
    /// see `ModelSpec::slot_cache`); `None`: the cache goes with the server.
    pub slot_cache: Option<PathBuf>,
    /// A small model of the same vocabulary its server drafts tokens with (speculative
    /// decoding); its memory is counted with the model's.
    pub draft: Option<ModelRef>,
}

impl ProxyModel {
    /// A model served under `alias`, with the defaults of every other setting.
    pub fn new(alias: impl Into<String>, model: ModelRef) -> Self {
        Self {
            alias: alias.into(),
            model,
            args: ServerArgs::default(),
            memory: None,
            keep_alive: Some(lmcpp_server::DEFAULT_KEEP_ALIVE),
            pinned: false,
            max_queue: None,
            start_timeout: None,
            toolchain_request: None,
            llama_server: None,
            slot_cache: None,
            draft: None,
        }
    }
}

/// Configures and starts a multi-model endpoint. See [`Lmcpp::proxy`].
pub struct ProxyBuilder {
    models: Vec<ProxyModel>,
    options: ProxyOptions,
    home: Option<PathBuf>,
    request: ToolchainRequest,
    llama_server: Option<PathBuf>,
    start_timeout: Duration,
    no_mmproj: bool,
    progress: SharedProgress,
    lines: Option<LineSink>,
}

impl std::fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("models", &self.models)
            .field("home", &self.home)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl Default for ProxyBuilder {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            options: ProxyOptions::new(default_memory_budget()),
            home: None,
            request: ToolchainRequest::default(),
            llama_server: None,
            start_timeout: Duration::from_secs(3600),
            no_mmproj: false,
            progress: no_progress(),
            lines: None,
        }
    }
}

impl ProxyBuilder {
    /// Adds a model.
    pub fn model(mut self, model: ProxyModel) -> Self {
        self.models.push(model);
        self
    }

    /// What the running models' estimates may add up to (default: three quarters of the
    /// machine's memory, see [`default_memory_budget`]).
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.options.memory_budget = bytes;
        self
    }

    /// Where the endpoint listens (default: a Unix socket; loopback HTTP with a generated
    /// key on Windows).
    pub fn transport(mut self, transport: TransportChoice) -> Self {
        self.options.transport = transport;
        self
    }

    /// The key every request must carry.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.options.api_key = Some(key.into());
        self
    }

    /// Every option of the endpoint at once (its budget, transport, key, id, log, limits).
    pub fn options(mut self, options: ProxyOptions) -> Self {
        self.options = options;
        self
    }

    /// Cache root for toolchains and models (default `$LMCPP_HOME`, else the data dir).
    pub fn home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// The toolchain request of every model without its own.
    pub fn toolchain_request(mut self, request: ToolchainRequest) -> Self {
        self.request = request;
        self
    }

    /// The `llama-server` binary of every model without its own.
    pub fn llama_server(mut self, binary: impl Into<PathBuf>) -> Self {
        self.llama_server = Some(binary.into());
        self
    }

    /// How long a model's server may take to load, unless the model says (default 1 h:
    /// a first start may download the model).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Leave out the multimodal projectors Hugging Face repositories ship.
    pub fn no_mmproj(mut self, no_mmproj: bool) -> Self {
        self.no_mmproj = no_mmproj;
        self
    }

    /// Where download and build progress goes (default: nowhere).
    pub fn progress(mut self, progress: SharedProgress) -> Self {
        self.progress = progress;
        self
    }

    /// Where each model's start is described, line by line: starting, ready with its
    /// server, failed with why, an estimate that could not be made.
    pub fn lines(mut self, lines: LineSink) -> Self {
        self.lines = Some(lines);
        self
    }

    /// Builds every model's spec and estimates its memory from what is on disk now (no
    /// network); a model's bad arguments are an error here, before anything listens.
    pub async fn prepare(self) -> Result<PreparedProxy, Error> {
        let lines = self.lines.clone().unwrap_or_else(|| Arc::new(|_: &str| {}));
        let mut specs = Vec::with_capacity(self.models.len());
        let mut estimates = Vec::with_capacity(self.models.len());
        for model in &self.models {
            let estimate_opts = estimate_options(&model.args).map_err(|reason| {
                Error::Toolchain(lmcpp_toolchain::Error::InvalidRequest {
                    reason: format!(
                        "model {}: {reason}; fix its llama-server arguments",
                        model.alias
                    ),
                })
            })?;
            let estimate = match model.memory {
                Some(bytes) => ModelEstimate {
                    alias: model.alias.clone(),
                    bytes,
                    how: "as configured".to_owned(),
                },
                None => self.estimate(model, &estimate_opts).await,
            };
            let builder = self.builder_for(model);
            // What the launch does: its builder, and whether it estimates the memory.
            let fingerprint = format!("{} memory {:?}", builder.fingerprint(), model.memory);
            let launch = ModelLaunch {
                estimate: model.memory.is_none().then(|| estimate_opts.clone()),
                builder,
                alias: model.alias.clone(),
                reference: model.model.to_string(),
                lines: Arc::clone(&lines),
                prepared: Arc::new(Mutex::new(None)),
            };
            let mut spec = ModelSpec::new(model.alias.clone(), Arc::new(launch));
            spec.estimate_bytes = estimate.bytes;
            spec.keep_alive = model.keep_alive;
            spec.pinned = model.pinned;
            spec.max_queue = model.max_queue;
            spec.slot_cache = model.slot_cache.clone();
            spec.fingerprint = Some(fingerprint);
            // A binary given by path is whatever version it is; its server's record says.
            let given = model.llama_server.is_some() || self.llama_server.is_some();
            let request = model.toolchain_request.as_ref().unwrap_or(&self.request);
            spec.llama_version = (!given).then(|| request.version.label());
            specs.push(spec);
            estimates.push(estimate);
        }
        Ok(PreparedProxy {
            options: self.options,
            specs,
            estimates,
        })
    }

    /// [`ProxyBuilder::prepare`], then [`PreparedProxy::start`].
    pub async fn start(self) -> Result<Proxy, Error> {
        self.prepare().await?.start().await
    }

    /// The single-server builder one model starts with.
    fn builder_for(&self, model: &ProxyModel) -> LmcppBuilder {
        let request = model
            .toolchain_request
            .clone()
            .unwrap_or_else(|| self.request.clone());
        let mut args = model.args.clone();
        if model.slot_cache.is_some() {
            args.slot_save_path.clone_from(&model.slot_cache);
        }
        let mut builder = Lmcpp::builder()
            .model_ref(model.model.clone())
            .alias(model.alias.clone())
            .no_mmproj(self.no_mmproj)
            .toolchain_request(request)
            .transport(TransportChoice::default())
            .args(args)
            .ready_timeout(model.start_timeout.unwrap_or(self.start_timeout))
            .progress(self.progress.clone());
        if let Some(home) = &self.home {
            builder = builder.home(home);
        }
        if let Some(dir) = &self.options.runtime_dir {
            builder = builder.runtime_dir(dir);
        }
        if let Some(bin) = model.llama_server.as_ref().or(self.llama_server.as_ref()) {
            builder = builder.llama_server(bin);
        }
        if let Some(draft) = &model.draft {
            builder = builder.draft(draft.clone());
        }
        builder
    }

    /// The model's memory (its draft's included) from their files when those are on disk
    /// already.
    async fn estimate(&self, model: &ProxyModel, opts: &EstimateOptions) -> ModelEstimate {
        let mut estimate = self.estimate_one(model, &model.model, opts).await;
        if let Some(draft) = &model.draft {
            let of_draft = self.estimate_one(model, draft, opts).await;
            estimate.bytes = estimate.bytes.saturating_add(of_draft.bytes);
            estimate.how = format!("{}; draft {}", estimate.how, of_draft.how);
        }
        estimate
    }

    /// One file's memory, for `model`.
    async fn estimate_one(
        &self,
        model: &ProxyModel,
        file: &ModelRef,
        opts: &EstimateOptions,
    ) -> ModelEstimate {
        let (bytes, how) = match self.offline_path(file).await {
            Some(path) => match estimate_path(&path, opts).await {
                Ok(e) => (
                    e.total_bytes,
                    format!("estimated for {} cells of context", e.ctx_size),
                ),
                Err(e) => (0, format!("unknown ({e}); set its memory to count it")),
            },
            None => (
                0,
                "unknown until the model is fetched (at its first request); set its memory \
                 to count it"
                    .to_owned(),
            ),
        };
        ModelEstimate {
            alias: model.alias.clone(),
            bytes,
            how,
        }
    }

    /// The model's file when it is on disk already (a path, the demo model, or a cached
    /// reference), found without any network; `None` otherwise.
    async fn offline_path(&self, model: &ModelRef) -> Option<PathBuf> {
        let source = match model {
            ModelRef::Source(ModelSource::Local(path)) => {
                return path.is_file().then(|| path.clone());
            }
            ModelRef::Demo => {
                let toolchain = Toolchain::new(self.home.as_deref()).ok()?;
                let demo = demo_model_path(toolchain.layout(), DemoOptions::default().seed);
                return demo.is_file().then_some(demo);
            }
            ModelRef::Default => ModelSource::parse(crate::model_ref::DEFAULT_MODEL).ok()?,
            ModelRef::Source(source) => source.clone(),
        };
        let mut pull = PullOptions::cache_only();
        pull.no_mmproj = self.no_mmproj;
        let store = ModelStore::new(ModelStoreOptions {
            cache_root: self.home.clone(),
            ..ModelStoreOptions::from_env()
        })
        .ok()?;
        store.pull(&source, &pull).await.ok().map(|m| m.path)
    }
}

/// What one model was counted with when the endpoint started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelEstimate {
    /// The model.
    pub alias: String,
    /// The memory counted for it (0 while unknown).
    pub bytes: u64,
    /// How that was found ("estimated for 4096 cells of context", "as configured", ...).
    pub how: String,
}

/// Every model's spec, ready for [`PreparedProxy::start`]. See [`ProxyBuilder::prepare`].
pub struct PreparedProxy {
    options: ProxyOptions,
    specs: Vec<ModelSpec>,
    estimates: Vec<ModelEstimate>,
}

impl std::fmt::Debug for PreparedProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedProxy")
            .field("estimates", &self.estimates)
            .finish_non_exhaustive()
    }
}

impl PreparedProxy {
    /// What each model is counted with, in the order they were added.
    pub fn estimates(&self) -> &[ModelEstimate] {
        &self.estimates
    }

    /// The endpoint's options (its budget among them).
    pub fn options(&self) -> &ProxyOptions {
        &self.options
    }

    /// Opens the endpoint; models start at their first request.
    pub async fn start(self) -> Result<Proxy, Error> {
        Ok(Proxy::start(self.options, self.specs).await?)
    }

    /// Makes these the models of a running `proxy`, with this builder's memory budget
    /// (see `Proxy::reload`): a model whose alias, model, arguments, binary and
    /// toolchain are unchanged keeps its server and takes its new keep-alive, pinning
    /// and queue bound; a changed one restarts at its next request; a removed one stops
    /// once its requests have finished; a new one starts at its first request. The
    /// endpoint's other options (transport, API key, timeouts) stay as the proxy was
    /// started with them.
    pub async fn reload(self, proxy: &mut Proxy) -> Result<ReloadReport, Error> {
        Ok(proxy.reload(self.specs, self.options.memory_budget).await?)
    }
}

/// Starts one model's server through the facade, resolving once: [`Launch::prepare`]
/// ensures the toolchain and the model (so a model pulled at its first request is
/// counted with its real size before the budget is checked) and keeps what it resolved
/// for [`Launch::launch`].
struct ModelLaunch {
    /// How to estimate the model's memory once it is on disk; `None` when it is given.
    estimate: Option<EstimateOptions>,
    builder: LmcppBuilder,
    alias: String,
    reference: String,
    lines: LineSink,
    /// What the last prepare resolved, taken by the next launch.
    prepared: Arc<Mutex<Option<Resolved>>>,
}

/// The slot's content, whoever panicked while holding it.
fn lock(slot: &Mutex<Option<Resolved>>) -> std::sync::MutexGuard<'_, Option<Resolved>> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Launch for ModelLaunch {
    fn prepare(&self) -> BoxFuture<'static, Result<Option<u64>, LaunchError>> {
        (self.lines)(&format!(
            "model {}: starting {}",
            self.alias, self.reference
        ));
        let builder = self.builder.clone();
        let (lines, alias, estimate) = (
            Arc::clone(&self.lines),
            self.alias.clone(),
            self.estimate.clone(),
        );
        // The resolved start goes to a slot the launch takes it from.
        let slot = Arc::clone(&self.prepared);
        Box::pin(async move {
            let resolved = builder.resolve().await.map_err(|e| {
                let e = launch_error(e);
                lines(&format!("model {alias}: failed to start: {}", e.message));
                e
            })?;
            let mut bytes = None;
            if let Some(opts) = &estimate {
                let files = std::iter::once(&resolved.model.path).chain(&resolved.model.draft);
                for file in files {
                    match estimate_path(file, opts).await {
                        Ok(e) => *bytes.get_or_insert(0u64) += e.total_bytes,
                        Err(e) => {
                            lines(&format!(
                                "model {alias}: memory estimate unknown ({e}); counted as before"
                            ));
                            bytes = None;
                            break;
                        }
                    }
                }
            }
            *lock(&slot) = Some(resolved);
            Ok(bytes)
        })
    }

    fn launch(&self) -> BoxFuture<'static, Result<Server, LaunchError>> {
        let prepared = lock(&self.prepared).take();
        let builder = self.builder.clone();
        let (lines, alias) = (Arc::clone(&self.lines), self.alias.clone());
        Box::pin(async move {
            let started = match prepared {
                Some(resolved) => resolved.start().await,
                None => builder.start().await,
            };
            match started {
                Ok(running) => {
                    let server = running.server;
                    lines(&format!(
                        "model {alias}: ready (server {}, pid {})",
                        server.id(),
                        server.pid()
                    ));
                    Ok(server)
                }
                Err(e) => {
                    let e = launch_error(e);
                    lines(&format!("model {alias}: failed to start: {}", e.message));
                    Err(e)
                }
            }
        })
    }
}

/// The facade's error as the proxy tells it to every waiting request.
fn launch_error(e: Error) -> LaunchError {
    match e {
        Error::Server(e) => e.into(),
        other => LaunchError {
            message: other.to_string(),
            log_tail: Vec::new(),
            user_error: other.is_user_error(),
            exit_code: None,
        },
    }
}

/// The memory estimate's options from a model's server arguments: its typed context and
/// slots, and the pass-through flags that change the memory a server takes (context,
/// slots, cache types, ubatch, unified cache), read with the one pass-through reader.
pub fn estimate_options(args: &ServerArgs) -> Result<EstimateOptions, String> {
    let mut o = EstimateOptions::default();
    o.ctx_size = args.ctx_size.and_then(|c| u64::try_from(c).ok());
    o.parallel = args.parallel.and_then(|p| u64::try_from(p).ok());
    for flag in lmcpp_types::args::passthrough::read(&args.extra) {
        let Some(info) = flag.info else { continue };
        let name = flag.name;
        if flag.lacks_value() {
            return Err(format!("{name} needs a value"));
        }
        let value = flag.value.unwrap_or_default();
        let number = || -> Result<i64, String> {
            value
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("{name} {value}: not a number"))
        };
        let cache_type = || {
            KvCacheType::parse(value).ok_or_else(|| {
                format!(
                    "{name} {value}: not a cache type llama-server knows ({})",
                    KvCacheType::names().collect::<Vec<_>>().join(", ")
                )
            })
        };
        match info.field {
            "ctx_size" => o.ctx_size = u64::try_from(number()?).ok(),
            // Negative is llama-server's "auto".
            "parallel" => o.parallel = u64::try_from(number()?).ok(),
            "cache_type_k" => o.cache_type_k = cache_type()?,
            "cache_type_v" => o.cache_type_v = cache_type()?,
            "ubatch_size" => o.ubatch = u64::try_from(number()?).unwrap_or(o.ubatch),
            "kv_unified" => o.kv_unified = !flag.negated(),
            _ => {}
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn memory_flags_among_the_server_arguments_reach_the_estimate() {
        let with = |args: &[&str]| {
            estimate_options(&ServerArgs {
                extra: args.iter().map(|s| (*s).to_owned()).collect(),
                ..ServerArgs::default()
            })
        };
        let o = with(&[
            "--temp",
            "0",
            "-c",
            "8192",
            "--parallel=2",
            "-ctk",
            "q8_0",
            "--cache-type-v=q4_0",
            "-kvu",
            "-ub",
            "256",
        ])
        .unwrap();
        assert_eq!(o.ctx_size, Some(8192));
        assert_eq!(o.parallel, Some(2));
        assert_eq!(o.cache_type_k, KvCacheType::Q8_0);
        assert_eq!(o.cache_type_v, KvCacheType::Q4_0);
        assert!(o.kv_unified);
        assert_eq!(o.ubatch, 256);
        assert!(!with(&["-kvu", "--no-kv-unified"]).unwrap().kv_unified);
        assert_eq!(with(&["-np", "-1"]).unwrap().parallel, None);
        // A value that looks like a flag is the value, as llama-server reads it.
        assert!(with(&["--alias", "-c"]).unwrap().ctx_size.is_none());
        for bad in [&["-c"][..], &["-c", "lots"], &["-ctk", "q3_k"]] {
            assert!(with(bad).is_err(), "{bad:?}");
        }
        // The typed fields count too.
        let typed = ServerArgs {
            ctx_size: Some(512),
            parallel: Some(3),
            ..ServerArgs::default()
        };
        let o = estimate_options(&typed).unwrap();
        assert_eq!((o.ctx_size, o.parallel), (Some(512), Some(3)));
    }
}
