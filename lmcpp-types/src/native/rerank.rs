//! `POST /reranking` (aliases `/rerank`, `/v1/rerank`, `/v1/reranking`): score documents
//! against a query. Needs a reranker model and `--embeddings --pooling rank`.

use serde::{Deserialize, Serialize};

use crate::common::Extra;
use crate::openai::embeddings::EmbeddingUsage;

/// Request body of `POST /reranking`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct RerankRequest {
    /// Model name (router mode; echoed back otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The query.
    pub query: String,
    /// Documents to rank (`texts` is the TEI-style alias).
    #[serde(default)]
    pub documents: Vec<String>,
    /// Return only the best N results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_n: Option<u32>,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl RerankRequest {
    /// Ranks `documents` against `query`.
    pub fn new(query: impl Into<String>, documents: Vec<String>) -> Self {
        RerankRequest {
            query: query.into(),
            documents,
            ..Default::default()
        }
    }
}

/// One ranked document.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct RerankResult {
    /// Index into `documents`.
    #[serde(default)]
    pub index: i64,
    /// Relevance score (higher is better).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevance_score: Option<f64>,
    /// Score in the TEI-style response (`texts` requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Document text (TEI-style with `return_text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `POST /reranking`, sorted by score.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct RerankResponse {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Always `list`.
    #[serde(default)]
    pub object: String,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<EmbeddingUsage>,
    /// Ranked documents.
    #[serde(default)]
    pub results: Vec<RerankResult>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
