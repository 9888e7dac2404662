//! Supervises `llama-server` processes and talks to them, typed, over a Unix socket or HTTP.
//!
//! - [`Server::launch`] validates the binary and model, starts the server on a private
//!   Unix socket (or HTTP on 127.0.0.1), and waits until `/health` says it is ready,
//!   reporting an early exit with the server's last log lines as soon as it happens.
//! - The server cannot outlive its parent: it gets its own process group, a parent-death
//!   signal on Linux, and is stopped (SIGTERM, then SIGKILL) by [`Server::stop`] or on drop.
//! - [`Registry`] lists and stops servers by their state files, checking each pid
//!   against the kernel before trusting it.
//! - [`RpcWorker`] supervises a ggml `rpc-server` worker the same way, and a server
//!   launched with `--rpc` workers first checks that each one is reachable and free.
//! - [`Proxy`] serves many models behind one endpoint, speaking llama-server's API: each
//!   request goes to the model its `model` names, whose server ([`Launch`]) is started on
//!   demand (once, however many requests wait), stopped after its keep-alive, and evicted
//!   (idle, least recently used first) to keep the running models within a memory budget.
//! - [`Client`] is a pooled, concurrent, typed client over either transport, with
//!   streaming endpoints as [`futures_util::Stream`]s. Every wait has a timeout and every
//!   buffer of what a server sends a cap ([`ClientLimits`]), so a stuck or hostile
//!   server can neither hang a caller nor exhaust its memory.
//!
//! ```no_run
//! # async fn demo() -> lmcpp_server::Result<()> {
//! use futures_util::StreamExt;
//! use lmcpp_server::{LaunchOptions, Server};
//! use lmcpp_types::native::completion::CompletionRequest;
//!
//! let mut opts = LaunchOptions::new("/path/to/llama-server", "/path/to/model.gguf");
//! opts.args.ctx_size = Some(4096);
//! let server = Server::launch(opts).await?;
//! let client = server.client();
//! let request = CompletionRequest::new("Once upon a time").n_predict(32);
//! let mut stream = client.completion_stream(&request).await?;
//! while let Some(chunk) = stream.next().await {
//!     let _text = chunk?.content;
//! }
//! server.stop().await?;
//! # Ok(())
//! # }
//! ```

mod answer;
mod child;
mod client;
mod endpoint;
mod error;
mod limits;
mod owned;
mod platform;
mod pool;
mod proxy;
mod registry;
mod routes;
mod rpc;
mod runtime;
mod server;
mod spawn;
mod stream;
mod supervised;

/// The server's error object, as carried by [`Error::Api`].
pub type ApiError = lmcpp_types::ServerError;

pub use answer::RawResponse;
pub use client::{Client, ClientBuilder, DEFAULT_HEALTH_TIMEOUT};
pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use limits::{
    ClientLimits, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MAX_ERROR_BODY,
    DEFAULT_MAX_EVENT, DEFAULT_QUICK_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_STREAM_IDLE_TIMEOUT,
};
pub use lmcpp_types::{Class, Classify};
pub use platform::{default_runtime_dir, parent_pid, private_dir_name, total_memory};
pub use proxy::{
    DEFAULT_KEEP_ALIVE, DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_PASS_OVER, DEFAULT_PROXY_MAX_BODY,
    DEFAULT_PROXY_MAX_HEADER, DEFAULT_PROXY_MAX_HEADERS, DEFAULT_READ_STALL_TIMEOUT,
    DEFAULT_WRITE_STALL_TIMEOUT, EVENTS_PATH, Launch, LaunchError, MAX_ALIAS_LEN,
    MAX_SLOT_CACHE_BYTES, METRICS_PATH, MODEL_EVENT_CAPACITY, ModelEvent, ModelEventKind,
    ModelSpec, ModelState, ModelView, Proxy, ProxyOptions, ReloadReport, SSE_PING, StopReason,
    default_memory_budget,
};
pub use registry::{Entry, ProcessKind, Registry, ServerRecord, StaleReason, StopOutcome};
pub use rpc::{
    DEFAULT_RPC_HOST, DEFAULT_RPC_PORT, RpcWorker, RpcWorkerOptions, WORKER_CHECK_TIMEOUT,
    check_workers, parse_rpc_address,
};
pub use runtime::{MAX_ID_LEN, MAX_SOCKET_PATH, socket_path, validate_id};
pub use server::{HttpPort, LaunchOptions, Readiness, Server, TransportChoice, validate};
pub use stream::EventStream;
