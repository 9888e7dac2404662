//! Typed request and response schemas for every `llama-server` endpoint, and `ServerArgs`.
//!
//! Plain data with serde derives (and JSON Schema derives behind the default-on
//! `schemars` feature); no I/O, no async runtime.
//!
//! # Layout
//!
//! | module | endpoints |
//! | ------ | --------- |
//! | [`error`] | the error body `{"error": {"code", "message", "type"}}` of every endpoint |
//! | [`health`] | `GET /health` |
//! | [`native::completion`] | `POST /completion`: request, response, stream chunk |
//! | [`native::tokenize`] | `POST /tokenize` (incl. `with_pieces`), `POST /detokenize` |
//! | [`native::template`] | `POST /apply-template` |
//! | [`native::embedding`] | `POST /embedding`, `POST /embeddings` |
//! | [`native::rerank`] | `POST /reranking` (`/rerank`, `/v1/rerank`) |
//! | [`native::infill`] | `POST /infill` |
//! | [`props`] | `GET /props`, `POST /props` |
//! | [`slots`] | `GET /slots`, `POST /slots/{id}?action=save\|restore\|erase` |
//! | [`lora`] | `GET /lora-adapters`, `POST /lora-adapters` |
//! | [`metrics`] | `GET /metrics` (Prometheus text parsed into samples) |
//! | [`openai::models`] | `GET /v1/models` |
//! | [`openai::completions`] | `POST /v1/completions` (+ stream chunk) |
//! | [`openai::chat`] | `POST /v1/chat/completions` (+ stream chunk, control, input_tokens) |
//! | [`openai::embeddings`] | `POST /v1/embeddings` |
//! | [`responses`] | `POST /v1/responses` (+ stream events, input_tokens) |
//! | [`anthropic`] | `POST /v1/messages` (+ stream events), `POST /v1/messages/count_tokens` |
//! | [`router`] | router mode: `GET /models`, `POST /models/load`, `POST /models/unload`, `/models/sse` |
//! | [`args`] | `ServerArgs`: every `llama-server` flag, rendered to argv |
//! | [`class`] | `Class` and `Classify`: what an error means, shared by every lmcpp error |
//! | [`percent`] | percent-decoding of query values and paths |
//! | [`sse`] | the incremental Server-Sent Events parser the client streams with |
//! | [`schema`] | JSON Schemas of the request/response types (feature `schemars`) |
//!
//! # Conventions
//!
//! * Optional request fields are `Option` and omitted when `None`, so the server's
//!   defaults apply; `Some(false)` / `Some(-1)` are sent as given.
//! * Every response struct keeps fields this version does not know in a flattened
//!   `extra` map; every request struct sends its `extra` map as additional fields.
//! * String enums the server may extend decode unknown values into `Unknown(String)`;
//!   tagged unions keep unknown variants as `Other(serde_json::Value)`.

mod macros;

pub mod anthropic;
pub mod args;
pub mod class;
pub mod common;
pub mod error;
pub mod health;
pub mod lora;
pub mod metrics;
pub mod native;
pub mod openai;
pub mod percent;
pub mod props;
pub mod responses;
pub mod router;
#[cfg(feature = "schemars")]
pub mod schema;
pub mod slots;
pub mod sse;

pub use args::ServerArgs;
pub use class::{Class, Classify};
pub use error::{ErrorBody, ServerError};

/// Errors of this crate: invalid `ServerArgs` and unparsable metrics text.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Two flags that cannot be used together were both set.
    ConflictingFlags {
        /// The first flag, e.g. `--embeddings`.
        first: String,
        /// The second flag, e.g. `--reranking`.
        second: String,
        /// Why they conflict.
        reason: String,
    },
    /// A flag has a value the server would reject.
    InvalidValue {
        /// The flag.
        flag: String,
        /// The value given.
        value: String,
        /// What is expected.
        expected: String,
    },
    /// A secret flag was passed through `extra`, which would put it on the command line.
    SecretOnArgv {
        /// The flag, e.g. `--api-key`.
        flag: String,
        /// The `ServerArgs` field to use instead.
        field: String,
    },
    /// A flag (or its value) that the `llama-server` binary in use does not accept.
    UnsupportedFlag {
        /// The flag as rendered, e.g. `--flash-attn`.
        flag: String,
        /// Its value, when it has one.
        value: Option<String>,
        /// The llama.cpp version of the binary.
        version: String,
        /// What the binary accepts instead.
        reason: String,
    },
    /// A `/metrics` body line could not be parsed.
    MetricsParse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The error of [`ServerArgs::to_argv`].
pub type ArgsError = Error;

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::ConflictingFlags {
                first,
                second,
                reason,
            } => write!(
                f,
                "`{first}` cannot be combined with `{second}`: {reason}; remove one of them"
            ),
            Error::InvalidValue {
                flag,
                value,
                expected,
            } => write!(
                f,
                "invalid value `{value}` for `{flag}`: expected {expected}"
            ),
            Error::SecretOnArgv { flag, field } => write!(
                f,
                "`{flag}` must not be passed on the command line where other users can read \
                 it; set `ServerArgs::{field}` instead, which is passed through the environment"
            ),
            Error::UnsupportedFlag {
                flag,
                value,
                version,
                reason,
            } => {
                let shown = value
                    .as_deref()
                    .map_or_else(|| format!("`{flag}`"), |v| format!("`{flag} {v}`"));
                write!(
                    f,
                    "llama-server {version} does not accept {shown}: {reason}; leave the flag out or use a llama.cpp version that has it"
                )
            }
            Error::MetricsParse { line, reason } => {
                write!(f, "cannot parse metrics line {line}: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {}
