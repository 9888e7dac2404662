//! `POST /embedding` and `POST /embeddings`: the native (non-OpenAI) embeddings API.
//! Both routes share one handler; the response is an array with one item per input.

use serde::{Deserialize, Serialize};

use crate::common::{Extra, Prompt};

/// Request body of `POST /embedding` / `POST /embeddings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct EmbeddingRequest {
    /// Input(s) to embed; same shapes as a completion prompt.
    pub content: Prompt,
    /// Normalisation of pooled embeddings: -1 none, 0 max-abs, 1 taxicab, 2 L2 (default),
    /// >2 p-norm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embd_normalize: Option<i32>,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl EmbeddingRequest {
    /// Embeds `content` with the server's defaults.
    pub fn new(content: impl Into<Prompt>) -> Self {
        EmbeddingRequest {
            content: content.into(),
            ..Default::default()
        }
    }
}

/// One item of the native embeddings response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct EmbeddingItem {
    /// Index of the input.
    #[serde(default)]
    pub index: i64,
    /// One row per token with `--pooling none`, else a single pooled row.
    #[serde(default)]
    pub embedding: Vec<Vec<f64>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `POST /embedding` / `POST /embeddings`.
pub type EmbeddingResponse = Vec<EmbeddingItem>;
