//! The one error type of this crate.

use std::{io, path::PathBuf, process::ExitStatus, time::Duration};

use lmcpp_types::{Class, Classify};

/// Everything that can go wrong while launching, supervising or talking to a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `llama-server` binary does not exist.
    #[error("llama-server binary {path} does not exist; install or build it first")]
    BinaryNotFound {
        /// The path that was given.
        path: PathBuf,
    },
    /// The binary exists but is not an executable regular file.
    #[error("{path} is not an executable file; check the path and its permissions")]
    BinaryNotExecutable {
        /// The path that was given.
        path: PathBuf,
    },
    /// The model file does not exist.
    #[error("model file {path} does not exist; fetch the model first")]
    ModelNotFound {
        /// The path that was given.
        path: PathBuf,
    },
    /// The model file does not start with the GGUF magic.
    #[error(
        "model file {path} is not a GGUF file (starts with {found:?}, expected \"GGUF\"); pass a .gguf model"
    )]
    ModelNotGguf {
        /// The path that was given.
        path: PathBuf,
        /// The first bytes of the file, escaped.
        found: String,
    },
    /// The typed server arguments could not be turned into a command line.
    #[error("invalid server arguments: {source}")]
    InvalidArgs {
        /// What is wrong with them.
        #[source]
        source: lmcpp_types::ArgsError,
    },
    /// An argument or environment variable sets something the launcher owns (where the
    /// server listens, the model, the API key, the log file).
    #[error("`{flag}` is set by lmcpp and cannot be passed through; set {setting} instead")]
    LauncherOwned {
        /// The flag or variable as given (`--host`, `-m`, `LLAMA_ARG_PORT`, ...).
        flag: String,
        /// The lmcpp setting that controls it.
        setting: &'static str,
    },
    /// The per-user runtime directory could not be created or is not private.
    #[error("runtime directory {path} is unusable: {reason}; set another runtime dir")]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "cannot write".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The operating system refused to start the process.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The requested TCP port is held by another process.
    #[error(
        "port {port} on {host} is already in use; pick another port or let lmcpp choose a free one"
    )]
    PortInUse {
        /// The host the server was to bind.
        host: String,
        /// The port.
        port: u16,
    },
    /// The server exited before it became ready.
    #[error("llama-server exited during start-up ({status}); see {log_path}; last log lines:\n{}", log_tail.join("\n"))]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its log.
        log_tail: Vec<String>,
        /// The full log.
        log_path: PathBuf,
    },
    /// The server did not become ready within the start-up timeout.
    #[error("llama-server did not become ready within {timeout:?} (last /health: {}); raise the ready timeout or see {log_path}", last_health.as_deref().unwrap_or("no answer"))]
    ReadyTimeout {
        /// The timeout that elapsed.
        timeout: Duration,
        /// The last `/health` observation.
        last_health: Option<String>,
        /// The server's log.
        log_path: PathBuf,
    },
    /// No verified server with this id is registered.
    #[error("no running server with id {id}; run `lmcpp ps` to list servers")]
    UnknownServer {
        /// The id that was asked for.
        id: String,
    },
    /// An id given by a user is not a well-formed server id.
    #[error("`{id}` is not a server id: {reason}; run `lmcpp ps` to list servers")]
    InvalidId {
        /// The id as given (escaped, shortened).
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The recorded pid is alive but this platform cannot confirm it is the server.
    #[error(
        "cannot verify that process {pid} is still server {id} on this platform; stop it by hand if it is"
    )]
    Unverifiable {
        /// The id that was asked for.
        id: String,
        /// The recorded pid.
        pid: u32,
    },
    /// The process did not exit after SIGKILL within the bound.
    #[error("process {pid} did not exit after SIGKILL")]
    StopTimeout {
        /// Its pid.
        pid: u32,
    },
    /// The request could not be sent or the response could not be read.
    #[error("request {method} {path} failed: {message}; is the server still running?")]
    Transport {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// What went wrong, with its causes.
        message: String,
    },
    /// No connection to the server could be opened within the connect timeout.
    #[error(
        "cannot connect to {endpoint} within {timeout:?}; is the server running and accepting connections?"
    )]
    ConnectTimeout {
        /// Where the client tried to connect.
        endpoint: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// A stream sent nothing (not even a ping) for the stream idle timeout.
    #[error(
        "the stream of {path} sent nothing for {timeout:?}; the server may be stuck (for very long prompts, raise the stream idle timeout)"
    )]
    StreamStalled {
        /// Request path.
        path: String,
        /// The idle timeout.
        timeout: Duration,
    },
    /// A response body or a streamed event exceeded the client's size cap.
    #[error(
        "the {what} of {path} exceeds the client's limit of {limit} bytes; the server may be broken, or raise the limit"
    )]
    TooLarge {
        /// Request path.
        path: String,
        /// `response body` or `event`.
        what: &'static str,
        /// The cap in bytes.
        limit: usize,
    },
    /// The request did not complete within its timeout.
    #[error("request {method} {path} timed out after {timeout:?}; raise the request timeout")]
    Timeout {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The server answered with an error, either as a non-2xx status or as an error
    /// event inside a stream (then `status` is the stream's 200).
    #[error("server answered {status} to {path}: {}", error.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// Request path.
        path: String,
        /// The decoded `{"error":{...}}` body.
        error: crate::ApiError,
    },
    /// An API key was set, but the started server answered a request without it; it was
    /// stopped rather than left open.
    #[error(
        "llama-server answered a request without the API key (http {status}), so it was stopped; this llama.cpp version may not read the key the way it was passed; see {log_path}"
    )]
    ApiKeyNotEnforced {
        /// What the unauthenticated request got.
        status: u16,
        /// The server's log.
        log_path: PathBuf,
    },
    /// The server does not have this endpoint (404 for the route: an older llama.cpp) or
    /// was started without what it needs (501, e.g. `--embeddings`, `--slots`).
    #[error(
        "this llama-server does not support {path} (http {status}: {message}); it may be an older llama.cpp or need a start-up option"
    )]
    Unsupported {
        /// The endpoint.
        path: String,
        /// 404 or 501.
        status: u16,
        /// What the server said.
        message: String,
    },
    /// The server's response could not be decoded into the expected type.
    #[error("cannot decode the answer to {path}: {source}; body starts with {snippet:?}")]
    Decode {
        /// Request path.
        path: String,
        /// The first bytes of the body.
        snippet: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An `rpc-server` worker named in `--rpc` did not accept a TCP connection; nothing
    /// was spawned.
    #[error(
        "rpc worker {addr} is unreachable ({reason}); start it there (`lmcpp rpc-worker --bind {addr}`) or fix the --rpc list"
    )]
    RpcWorkerUnreachable {
        /// The worker address as given (`host:port`).
        addr: String,
        /// Why it could not be reached.
        reason: String,
    },
    /// An `--rpc` entry is not a `host:port` address (see [`crate::parse_rpc_address`]).
    /// Nothing was spawned or contacted.
    #[error(
        "--rpc entry `{addr}` is not a worker address: {reason}; write host:port (an IPv6 address in brackets, [::1]:50052), entries separated by commas"
    )]
    RpcAddressInvalid {
        /// The entry as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `rpc-server` worker named in `--rpc` accepted a connection but did not answer the
    /// ggml RPC handshake: it is serving another llama-server (a worker serves one at a
    /// time), or it is not an `rpc-server`. Nothing was spawned.
    #[error(
        "rpc worker {addr} accepted a connection but did not answer within {timeout:?}; it serves one llama-server at a time, so stop the server using it (or start another worker), or check that {addr} is an rpc-server"
    )]
    RpcWorkerBusy {
        /// The worker address as given (`host:port`).
        addr: String,
        /// How long the handshake was given.
        timeout: Duration,
    },
    /// llama-server aborted because it lost the connection to one of its `rpc-server`
    /// workers (ggml RPC has no reconnect: the server must be restarted).
    #[error(
        "llama-server lost its rpc worker connection (workers: {}) and exited ({status}); restart the worker, then the server; see {log_path}",
        workers.join(", ")
    )]
    RpcWorkerLost {
        /// The workers the server was using.
        workers: Vec<String>,
        /// The server's exit status.
        status: ExitStatus,
        /// The server's log from the abort line on (at most 20 lines).
        log_tail: Vec<String>,
        /// The server's log.
        log_path: PathBuf,
    },
    /// An `rpc-server` worker exited before it accepted connections.
    #[error("rpc-server exited during start-up ({status}); see {log_path}; last log lines:\n{}", log_tail.join("\n"))]
    RpcWorkerExited {
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its log.
        log_tail: Vec<String>,
        /// The full log.
        log_path: PathBuf,
    },
    /// An `rpc-server` worker did not accept connections within the start-up timeout.
    #[error(
        "rpc-server did not accept connections on {addr} within {timeout:?}; raise the ready timeout or see {log_path}"
    )]
    RpcWorkerReadyTimeout {
        /// The address it should listen on.
        addr: String,
        /// The timeout that elapsed.
        timeout: Duration,
        /// Its log.
        log_path: PathBuf,
    },
    /// The proxy cannot start with these models or options (none given, an alias given
    /// twice or malformed, a model whose estimate alone exceeds the memory budget, an id
    /// in use).
    #[error("cannot start the proxy: {reason}; fix the model list or the proxy options")]
    ProxyConfig {
        /// What is wrong.
        reason: String,
    },
    /// A Unix socket was asked for on a platform without them (Windows).
    #[error(
        "unix sockets are not available on this platform; use http on loopback (the default here, guarded by a generated api key)"
    )]
    UnixSocketsUnavailable,
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl Classify for Error {
    /// Every variant's class, in one match without a catch-all, so a new variant does not
    /// compile until someone decides what it means. The caller's input: a missing or
    /// non-GGUF model, a binary that is not executable, malformed arguments or ids, an
    /// unknown server, a request the server refused with a 4xx other than 408 and 429.
    /// Transient: the connection dropped or could not be opened in time, the server was
    /// busy or loading (408, 429, 503), or an rpc worker was serving another server.
    fn class(&self) -> Class {
        match self {
            Self::BinaryNotFound { .. }
            | Self::BinaryNotExecutable { .. }
            | Self::ModelNotFound { .. }
            | Self::ModelNotGguf { .. }
            | Self::InvalidArgs { .. }
            | Self::InvalidId { .. }
            | Self::LauncherOwned { .. }
            | Self::UnknownServer { .. }
            | Self::ProxyConfig { .. }
            | Self::RpcAddressInvalid { .. }
            | Self::UnixSocketsUnavailable => Class::UserError,
            // A dropped connection, a server not accepting yet, a busy or loading server
            // (429, 503), a worker serving another llama-server: the next try may work.
            Self::Transport { .. } | Self::ConnectTimeout { .. } | Self::RpcWorkerBusy { .. } => {
                Class::Transient
            }
            Self::Api {
                status: 408 | 429 | 503,
                ..
            } => Class::Transient,
            // The server refused the request as it was asked: a prompt over the context, a
            // parameter it rejects, a model a proxy does not serve, a wrong API key.
            Self::Api { status, .. } if (400..500).contains(status) => Class::UserError,
            Self::Api { .. }
            | Self::RuntimeDir { .. }
            | Self::Io { .. }
            | Self::Spawn { .. }
            | Self::PortInUse { .. }
            | Self::Exited { .. }
            | Self::ReadyTimeout { .. }
            | Self::Unverifiable { .. }
            | Self::StopTimeout { .. }
            | Self::StreamStalled { .. }
            | Self::TooLarge { .. }
            | Self::Timeout { .. }
            | Self::ApiKeyNotEnforced { .. }
            | Self::Unsupported { .. }
            | Self::Decode { .. }
            | Self::RpcWorkerUnreachable { .. }
            | Self::RpcWorkerLost { .. }
            | Self::RpcWorkerExited { .. }
            | Self::RpcWorkerReadyTimeout { .. } => Class::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    use std::os::unix::process::ExitStatusExt;
    #[cfg(windows)]
    use std::os::windows::process::ExitStatusExt;

    use super::*;

    /// One example of every variant, with the class it must have. `ordinal` has no
    /// catch-all, so a new variant does not compile until it gets one, and then this test
    /// fails until the table has an example of it.
    fn table() -> Vec<(Error, Class)> {
        use Class::{Failure, Transient, UserError};
        let path = PathBuf::from("/x");
        let status = ExitStatus::from_raw(256);
        let d = Duration::from_secs(1);
        let api = |status: u16| Error::Api {
            status,
            path: "/completion".into(),
            error: serde_json::from_str(r#"{"code":500,"message":"m","type":"server_error"}"#)
                .expect("a server error body"),
        };
        let io = || io::Error::other("x");
        vec![
            (Error::BinaryNotFound { path: path.clone() }, UserError),
            (Error::BinaryNotExecutable { path: path.clone() }, UserError),
            (Error::ModelNotFound { path: path.clone() }, UserError),
            (
                Error::ModelNotGguf {
                    path: path.clone(),
                    found: "PK".into(),
                },
                UserError,
            ),
            (
                Error::InvalidArgs {
                    source: lmcpp_types::ArgsError::MetricsParse {
                        line: 1,
                        reason: "x".into(),
                    },
                },
                UserError,
            ),
            (
                Error::LauncherOwned {
                    flag: "--host".into(),
                    setting: "the transport",
                },
                UserError,
            ),
            (
                Error::RuntimeDir {
                    path: path.clone(),
                    reason: "x".into(),
                },
                Failure,
            ),
            (Error::io("cannot write", &path, io()), Failure),
            (
                Error::Spawn {
                    binary: path.clone(),
                    source: io(),
                },
                Failure,
            ),
            (
                Error::PortInUse {
                    host: "127.0.0.1".into(),
                    port: 1,
                },
                Failure,
            ),
            (
                Error::Exited {
                    status,
                    log_tail: vec![],
                    log_path: path.clone(),
                },
                Failure,
            ),
            (
                Error::ReadyTimeout {
                    timeout: d,
                    last_health: None,
                    log_path: path.clone(),
                },
                Failure,
            ),
            (Error::UnknownServer { id: "a".into() }, UserError),
            (
                Error::InvalidId {
                    id: "..".into(),
                    reason: "x",
                },
                UserError,
            ),
            (
                Error::Unverifiable {
                    id: "a".into(),
                    pid: 1,
                },
                Failure,
            ),
            (Error::StopTimeout { pid: 1 }, Failure),
            (
                Error::Transport {
                    method: "GET".into(),
                    path: "/health".into(),
                    message: "reset".into(),
                },
                Transient,
            ),
            (
                Error::ConnectTimeout {
                    endpoint: "unix:/x.sock".into(),
                    timeout: d,
                },
                Transient,
            ),
            (
                Error::StreamStalled {
                    path: "/completion".into(),
                    timeout: d,
                },
                Failure,
            ),
            (
                Error::TooLarge {
                    path: "/completion".into(),
                    what: "event",
                    limit: 1,
                },
                Failure,
            ),
            (
                Error::Timeout {
                    method: "POST".into(),
                    path: "/completion".into(),
                    timeout: d,
                },
                Failure,
            ),
            (api(200), Failure),
            (api(400), UserError),
            (api(401), UserError),
            (api(404), UserError),
            (api(408), Transient),
            (api(429), Transient),
            (api(500), Failure),
            (api(503), Transient),
            (
                Error::ApiKeyNotEnforced {
                    status: 200,
                    log_path: path.clone(),
                },
                Failure,
            ),
            (
                Error::Unsupported {
                    path: "/slots".into(),
                    status: 501,
                    message: "x".into(),
                },
                Failure,
            ),
            (
                Error::Decode {
                    path: "/props".into(),
                    snippet: "x".into(),
                    source: serde_json::from_str::<u8>("x").expect_err("not a number"),
                },
                Failure,
            ),
            (
                Error::RpcWorkerUnreachable {
                    addr: "127.0.0.1:1".into(),
                    reason: "refused".into(),
                },
                Failure,
            ),
            (
                Error::RpcWorkerBusy {
                    addr: "127.0.0.1:1".into(),
                    timeout: d,
                },
                Transient,
            ),
            (
                Error::RpcWorkerLost {
                    workers: vec![],
                    status,
                    log_tail: vec![],
                    log_path: path.clone(),
                },
                Failure,
            ),
            (
                Error::RpcWorkerExited {
                    status,
                    log_tail: vec![],
                    log_path: path.clone(),
                },
                Failure,
            ),
            (
                Error::RpcWorkerReadyTimeout {
                    addr: "127.0.0.1:1".into(),
                    timeout: d,
                    log_path: path,
                },
                Failure,
            ),
            (
                Error::ProxyConfig {
                    reason: "no models".into(),
                },
                UserError,
            ),
            (Error::UnixSocketsUnavailable, UserError),
            (
                Error::RpcAddressInvalid {
                    addr: "x".into(),
                    reason: "no port".into(),
                },
                UserError,
            ),
        ]
    }

    /// Numbers the variants (not their classes); see [`table`].
    fn ordinal(e: &Error) -> usize {
        match e {
            Error::BinaryNotFound { .. } => 0,
            Error::BinaryNotExecutable { .. } => 1,
            Error::ModelNotFound { .. } => 2,
            Error::ModelNotGguf { .. } => 3,
            Error::InvalidArgs { .. } => 4,
            Error::LauncherOwned { .. } => 5,
            Error::RuntimeDir { .. } => 6,
            Error::Io { .. } => 7,
            Error::Spawn { .. } => 8,
            Error::PortInUse { .. } => 9,
            Error::Exited { .. } => 10,
            Error::ReadyTimeout { .. } => 11,
            Error::UnknownServer { .. } => 12,
            Error::InvalidId { .. } => 13,
            Error::Unverifiable { .. } => 14,
            Error::StopTimeout { .. } => 15,
            Error::Transport { .. } => 16,
            Error::ConnectTimeout { .. } => 17,
            Error::StreamStalled { .. } => 18,
            Error::TooLarge { .. } => 19,
            Error::Timeout { .. } => 20,
            Error::Api { .. } => 21,
            Error::ApiKeyNotEnforced { .. } => 22,
            Error::Unsupported { .. } => 23,
            Error::Decode { .. } => 24,
            Error::RpcWorkerUnreachable { .. } => 25,
            Error::RpcWorkerBusy { .. } => 26,
            Error::RpcWorkerLost { .. } => 27,
            Error::RpcWorkerExited { .. } => 28,
            Error::RpcWorkerReadyTimeout { .. } => 29,
            Error::ProxyConfig { .. } => 30,
            Error::UnixSocketsUnavailable => 31,
            Error::RpcAddressInvalid { .. } => 32,
        }
    }

    /// How many arms `ordinal` has.
    const VARIANTS: usize = 33;

    #[test]
    fn every_variant_is_classified_as_the_table_says() {
        lmcpp_test_support::check_class_table(&table(), ordinal, VARIANTS);
    }
}
