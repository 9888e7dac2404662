//! `POST /apply-template`: format chat messages with the model's template, no inference.

use serde::{Deserialize, Serialize};

use crate::common::Extra;
use crate::openai::chat::ChatCompletionRequest;

/// Request body of `POST /apply-template`: the same body as `/v1/chat/completions`
/// (only `messages` is required; `tools`, `chat_template_kwargs`, ... are honoured).
pub type ApplyTemplateRequest = ChatCompletionRequest;

/// Response of `POST /apply-template`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ApplyTemplateResponse {
    /// The formatted prompt, ready for `/completion`.
    #[serde(default)]
    pub prompt: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
