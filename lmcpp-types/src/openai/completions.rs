//! `POST /v1/completions`: the OpenAI-compatible text completion API.

use serde::{Deserialize, Serialize};

use crate::common::{Extra, Logprobs, Prompt, Timings, Usage};
use crate::native::completion::SamplingParams;
use crate::openai::chat::{FinishReason, StreamOptions};

/// Request body of `POST /v1/completions`. llama.cpp options go in `params`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct OaiCompletionRequest {
    /// Model name (required in router mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The prompt (same shapes as `/completion`).
    pub prompt: Prompt,
    /// Maximum tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i32>,
    /// Number of completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i32>,
    /// Number of top log-probabilities per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<i32>,
    /// Echo the prompt in the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Stream options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Sampling and llama.cpp options (flattened).
    #[serde(flatten)]
    pub params: SamplingParams,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl OaiCompletionRequest {
    /// A request for `prompt` with the server's defaults.
    pub fn new(prompt: impl Into<Prompt>) -> Self {
        OaiCompletionRequest {
            prompt: prompt.into(),
            ..Default::default()
        }
    }
}

/// One choice of a text completion (response or stream chunk).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct OaiCompletionChoice {
    /// Generated text (the increment in a stream chunk).
    #[serde(default)]
    pub text: String,
    /// Choice index.
    #[serde(default)]
    pub index: i64,
    /// Log-probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Logprobs>,
    /// Why generation finished (`null` until the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `POST /v1/completions`, and each `data:` payload when streaming
/// (the stream ends with `data: [DONE]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct OaiCompletionResponse {
    /// Completion id.
    #[serde(default)]
    pub id: String,
    /// `text_completion`.
    #[serde(default)]
    pub object: String,
    /// Unix time.
    #[serde(default)]
    pub created: i64,
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Choices.
    #[serde(default)]
    pub choices: Vec<OaiCompletionChoice>,
    /// Usage (final response or chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Build identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// llama.cpp timings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `data:` payload of a streamed `POST /v1/completions`; same shape as the response.
pub type OaiCompletionChunk = OaiCompletionResponse;
