//! Many models behind one endpoint: a proxy that speaks llama-server's HTTP API, routes
//! each request by its `model` to that model's own supervised [`Server`](crate::Server),
//! starts servers on demand (one start however many requests wait), stops them after
//! their keep-alive, and keeps the running ones within a memory budget.

mod spec;

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use crate::{
    client::Client,
    endpoint::Endpoint,
    error::{Error, Result},
    server::TransportChoice,
};

pub use spec::{DEFAULT_KEEP_ALIVE, Launch, LaunchError, MAX_ALIAS_LEN, ModelSpec};

/// Default cap of a request body the proxy reads (it reads bodies whole, to route them).
pub const DEFAULT_PROXY_MAX_BODY: usize = 64 * 1024 * 1024;

/// Default cap of the request head (request line plus headers) in bytes.
pub const DEFAULT_PROXY_MAX_HEADER: usize = 64 * 1024;

/// Default cap of the number of request headers.
pub const DEFAULT_PROXY_MAX_HEADERS: usize = 100;

/// Default time a request waits for its model to load.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(300);

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
    /// Largest request body read (413 above it).
    pub max_body: usize,
    /// Largest request head in bytes (431 above it).
    pub max_header: usize,
    /// Most request headers (431 above it).
    pub max_headers: usize,
    /// The log file named in the registry record (the proxy itself writes none; the CLI
    /// may); default `<runtime dir>/<id>.log`.
    pub log_path: Option<PathBuf>,
}

impl ProxyOptions {
    /// Options with defaults: Unix socket in the default runtime dir, no API key, the
    /// given memory budget (see [`default_memory_budget`]).
    pub fn new(memory_budget: u64) -> Self {
        Self {
            transport: TransportChoice::Unix,
            runtime_dir: None,
            socket_fallback_dir: None,
            id: None,
            api_key: None,
            memory_budget,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            max_body: DEFAULT_PROXY_MAX_BODY,
            max_header: DEFAULT_PROXY_MAX_HEADER,
            max_headers: DEFAULT_PROXY_MAX_HEADERS,
            log_path: None,
        }
    }
}

/// The lifecycle state of one model behind the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ModelState {
    /// Not running; the next request starts it.
    Stopped,
    /// Its server is starting.
    Loading,
    /// Its server is ready.
    Ready,
    /// The last start failed or the server died; the next request tries again.
    Failed,
}

impl std::fmt::Display for ModelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stopped => "stopped",
            Self::Loading => "loading",
            Self::Ready => "ready",
            Self::Failed => "failed",
        })
    }
}

/// What the proxy reports about one model ([`Proxy::models`], and the `lmcpp` object of
/// each `/v1/models` entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ModelView {
    /// The alias.
    pub alias: String,
    /// Its state.
    pub state: ModelState,
    /// Its memory estimate in bytes.
    pub estimate_bytes: u64,
    /// When a request last used it (started or finished), if ever.
    #[serde(default, with = "opt_ms")]
    pub last_used: Option<SystemTime>,
    /// The pid of its server while one runs.
    pub pid: Option<u32>,
    /// The registry id of its server while one runs.
    pub server_id: Option<String>,
    /// Requests and streams in flight.
    pub in_flight: usize,
    /// Its keep-alive in seconds (`None`: kept running).
    pub keep_alive_secs: Option<u64>,
    /// Whether it is never evicted.
    pub pinned: bool,
    /// The llama.cpp version, when known.
    pub llama_version: Option<String>,
    /// Why the last start failed or the server died (state [`ModelState::Failed`]).
    pub error: Option<String>,
}

/// `Option<SystemTime>` as milliseconds since the Unix epoch.
mod opt_ms {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }
}

/// A running proxy. Dropping it stops serving and stops every model server (each one
/// blocking for at most its stop grace); prefer [`Proxy::stop`] in async code.
#[derive(Debug)]
pub struct Proxy {
    endpoint: Endpoint,
    id: String,
}

impl Proxy {
    /// Checks the models, binds the endpoint, writes the registry record (kind
    /// [`ProcessKind::Proxy`](crate::ProcessKind::Proxy)) and serves in background tasks
    /// of the current tokio runtime. No model server is started yet.
    pub async fn start(opts: ProxyOptions, models: Vec<ModelSpec>) -> Result<Self> {
        for model in &models {
            spec::check_alias(&model.alias).map_err(|reason| Error::ProxyConfig {
                reason: format!("alias {:?} is malformed: {reason}", model.alias),
            })?;
        }
        let _ = opts;
        todo!("proxy core in progress")
    }

    /// Where the proxy listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A client for the proxy, with the proxy's API key if one is set.
    pub fn client(&self) -> Client {
        todo!("proxy core in progress")
    }

    /// The registry id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Every configured model with its state, in configuration order.
    pub fn models(&self) -> Vec<ModelView> {
        todo!("proxy core in progress")
    }

    /// Stops serving, stops every model server, and removes the socket and the registry
    /// record.
    pub async fn stop(self) -> Result<()> {
        todo!("proxy core in progress")
    }
}

/// The default memory budget: three quarters of `MemTotal` in `/proc/meminfo`, or 8 GiB
/// where that cannot be read.
pub fn default_memory_budget() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text))
        .map_or(8 << 30, |total| total / 4 * 3)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_table() {
        for (text, want) in [
            (
                "MemTotal:       16318480 kB\nMemFree: 1 kB\n",
                Some(16_710_123_520),
            ),
            ("MemFree: 1 kB\n", None),
            ("MemTotal: x kB\n", None),
            ("MemTotal: 5 MB\n", None),
            ("MemTotal: 18446744073709551615 kB\n", None),
        ] {
            assert_eq!(mem_total(text), want, "{text:?}");
        }
        assert!(default_memory_budget() > 0);
    }
}
