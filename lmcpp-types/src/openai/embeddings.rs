//! `POST /v1/embeddings`: the OpenAI-compatible embeddings API (needs pooling other
//! than `none`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{Extra, Prompt};

/// Request body of `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct OaiEmbeddingRequest {
    /// Model name (required in router mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Input(s): string, strings, tokens, or multimodal `{"content": [parts]}` objects.
    pub input: Prompt,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl OaiEmbeddingRequest {
    /// Embeds `input` with the server's defaults.
    pub fn new(input: impl Into<Prompt>) -> Self {
        OaiEmbeddingRequest {
            input: input.into(),
            ..Default::default()
        }
    }
}

/// An embedding vector: floats, or base64 of little-endian `f32` with
/// `encoding_format: "base64"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// Float components.
    Float(Vec<f64>),
    /// Base64 of packed `f32`.
    Base64(String),
    /// A shape this version does not model.
    Other(Value),
}

/// One embedding of the response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct OaiEmbedding {
    /// Index of the input.
    #[serde(default)]
    pub index: i64,
    /// `embedding`.
    #[serde(default)]
    pub object: String,
    /// The vector.
    pub embedding: EmbeddingVector,
    /// `base64` when base64 was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Token usage of embedding and rerank requests.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct EmbeddingUsage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: i64,
    /// Same as `prompt_tokens`.
    #[serde(default)]
    pub total_tokens: i64,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct OaiEmbeddingResponse {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// `list`.
    #[serde(default)]
    pub object: String,
    /// Usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<EmbeddingUsage>,
    /// One embedding per input.
    #[serde(default)]
    pub data: Vec<OaiEmbedding>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
