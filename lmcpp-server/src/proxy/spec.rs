//! What the proxy is told about each model: its alias, memory estimate, keep-alive, and
//! how to start its server ([`Launch`]).

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;

use crate::{error::Error, server::Server};
use lmcpp_types::Classify;

/// Starts one model's `llama-server`. The proxy calls it when a request needs a model
/// that is not running; the implementation ensures toolchain and model as it sees fit
/// (the CLI goes through its facade) and returns the server ready
/// ([`Server::launch`]). The proxy owns the returned server: it stops it on keep-alive
/// expiry, eviction, or when the proxy stops.
pub trait Launch: Send + Sync + 'static {
    /// Starts the server and waits until it is ready.
    fn launch(&self) -> BoxFuture<'static, Result<Server, LaunchError>>;

    /// Readies what [`launch`](Launch::launch) needs (the CLI ensures toolchain and
    /// model here) and returns the model's memory estimate when it is known now. The
    /// proxy calls it before each start of a stopped model, before the memory budget is
    /// checked, and uses the estimate it returns for eviction and in listings from then
    /// on; `None` keeps [`ModelSpec::estimate_bytes`]. A failure is the start's failure.
    /// The default readies nothing and returns `None`.
    fn prepare(&self) -> BoxFuture<'static, Result<Option<u64>, LaunchError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Why a model server could not be started, as every request waiting on that start is
/// told: a 502 JSON error naming the model, with `log_tail` and `config_error`
/// (`user_error`) beside llama-server's usual fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError {
    /// What went wrong, as a lower-case sentence that says what to do.
    pub message: String,
    /// The last lines of the server's log, if it got that far.
    pub log_tail: Vec<String>,
    /// Whether the configuration is wrong (a missing model, bad arguments) rather than
    /// the start failing.
    pub user_error: bool,
    /// The exit code of a server that exited during its start, when it did (a signal
    /// `N` is `128 + N`, as a shell reports it).
    pub exit_code: Option<i32>,
}

impl LaunchError {
    /// A failure with `message` and no log.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            log_tail: Vec::new(),
            user_error: false,
            exit_code: None,
        }
    }
}

/// An exit status as one number: the exit code, or `128 + N` for signal `N` (as a shell
/// reports it); `None` where neither is known.
pub(crate) fn exit_code(status: &std::process::ExitStatus) -> Option<i32> {
    crate::platform::exit_signal(status)
        .map(|signal| 128 + signal)
        .or_else(|| status.code())
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if !self.log_tail.is_empty() {
            write!(f, "; last log lines:\n{}", self.log_tail.join("\n"))?;
        }
        Ok(())
    }
}

impl std::error::Error for LaunchError {}

impl From<Error> for LaunchError {
    fn from(e: Error) -> Self {
        let log_tail = match &e {
            Error::Exited { log_tail, .. } | Error::RpcWorkerExited { log_tail, .. } => {
                log_tail.clone()
            }
            _ => Vec::new(),
        };
        let user_error = e.is_user_error();
        let exit_code = match &e {
            Error::Exited { status, .. } => exit_code(status),
            _ => None,
        };
        // The tail is carried on its own; the message names where the rest is.
        let message = match &e {
            Error::Exited {
                status, log_path, ..
            } => format!(
                "llama-server exited during start-up ({status}); see {}",
                log_path.display()
            ),
            _ => e.to_string(),
        };
        Self {
            message,
            log_tail,
            user_error,
            exit_code,
        }
    }
}

/// Any async closure returning a ready [`Server`] is a [`Launch`].
impl<F> Launch for F
where
    F: Fn() -> BoxFuture<'static, Result<Server, LaunchError>> + Send + Sync + 'static,
{
    fn launch(&self) -> BoxFuture<'static, Result<Server, LaunchError>> {
        self()
    }
}

/// One model behind the proxy.
#[derive(Clone)]
#[non_exhaustive]
pub struct ModelSpec {
    /// The name clients use as `model` (1 to 128 printable ASCII characters, no spaces).
    pub alias: String,
    /// How many bytes the running server is expected to use (weights plus KV cache),
    /// counted against [`ProxyOptions::memory_budget`](crate::ProxyOptions::memory_budget);
    /// replaced by what [`Launch::prepare`] returns, when it returns one.
    pub estimate_bytes: u64,
    /// How long the server may stay idle before it is stopped; `None` keeps it running.
    pub keep_alive: Option<Duration>,
    /// Where its KV cache is kept while its server is stopped for being idle, evicted or
    /// unloaded: each slot is saved there before the stop and restored into the next
    /// server before any request reaches it. The [`Launch`] must start the server with
    /// `--slot-save-path` set to this directory. `None`: not kept.
    pub slot_cache: Option<std::path::PathBuf>,
    /// How many requests may wait for it at once (for its start, for room in the
    /// budget, or for their turn); one more is refused with a 429 and `Retry-After`.
    /// `None`: no bound.
    pub max_queue: Option<usize>,
    /// A pinned model is never stopped to make room for another.
    pub pinned: bool,
    /// Starts the server.
    pub launch: Arc<dyn Launch>,
    /// The llama.cpp version, shown in listings.
    pub llama_version: Option<String>,
    /// Everything that decides what server `launch` starts (its binary, model and
    /// arguments), as text. On [`Proxy::reload`](crate::Proxy::reload) a model whose
    /// fingerprint is unchanged keeps its running server (its other settings are
    /// applied in place); a changed one is replaced. `None`: the model is unchanged only
    /// when it is given the same `launch` (the same `Arc`).
    pub fingerprint: Option<String>,
}

impl ModelSpec {
    /// A model named `alias` started by `launch`: no estimate, kept alive 5 minutes,
    /// not pinned.
    pub fn new(alias: impl Into<String>, launch: Arc<dyn Launch>) -> Self {
        Self {
            alias: alias.into(),
            estimate_bytes: 0,
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            pinned: false,
            max_queue: None,
            slot_cache: None,
            launch,
            llama_version: None,
            fingerprint: None,
        }
    }
}

impl std::fmt::Debug for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSpec")
            .field("alias", &self.alias)
            .field("estimate_bytes", &self.estimate_bytes)
            .field("keep_alive", &self.keep_alive)
            .field("pinned", &self.pinned)
            .field("llama_version", &self.llama_version)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The keep-alive of [`ModelSpec::new`].
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(300);

/// Longest alias.
pub const MAX_ALIAS_LEN: usize = 128;

/// Checks an alias: 1 to [`MAX_ALIAS_LEN`] printable ASCII characters without spaces,
/// so it fits a query string, a header and a log line as it is.
pub(crate) fn check_alias(alias: &str) -> Result<(), &'static str> {
    if alias.is_empty() {
        Err("it is empty")
    } else if alias.len() > MAX_ALIAS_LEN {
        Err("it is longer than 128 characters")
    } else if !alias.bytes().all(|b| b.is_ascii_graphic()) {
        Err("only printable ASCII without spaces is allowed")
    } else {
        Ok(())
    }
}
