//! The server's error body `{"error": {"code", "message", "type"}}`, returned by every
//! endpoint on failure (and by `/health` while the model loads).

use serde::{Deserialize, Serialize};

use crate::common::Extra;
use crate::macros::open_enum;

open_enum! {
    /// The `type` of a server error.
    pub enum ErrorType {
        /// 400: the request is malformed or has invalid values.
        InvalidRequest = "invalid_request_error",
        /// 401: missing or wrong API key.
        Authentication = "authentication_error",
        /// 404: unknown route, slot or model.
        NotFound = "not_found_error",
        /// 500: the server failed internally.
        Server = "server_error",
        /// 403: the operation is not permitted.
        Permission = "permission_error",
        /// 501: the server was started without support for this operation.
        NotSupported = "not_supported_error",
        /// 503: the model is loading or no slot is available.
        Unavailable = "unavailable_error",
        /// 400: the prompt does not fit into the context.
        ExceedContextSize = "exceed_context_size_error",
    }
}

/// The inner error object of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ServerError {
    /// HTTP status code the server chose for this error.
    #[serde(default)]
    pub code: u16,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Error category.
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// Extra fields (e.g. `n_prompt_tokens` and `n_ctx` on context overflow).
    #[serde(flatten)]
    pub extra: Extra,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.kind, self.code, self.message)
    }
}

impl std::error::Error for ServerError {}

/// The complete error response body: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ServerError,
}

impl ErrorBody {
    /// Decodes an error body; `None` when `bytes` is not one.
    pub fn parse(bytes: &[u8]) -> Option<ErrorBody> {
        serde_json::from_slice(bytes).ok()
    }
}
