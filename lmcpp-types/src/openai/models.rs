//! `GET /v1/models` (alias `/models` outside router mode): the loaded model.

use serde::{Deserialize, Serialize};

use crate::common::Extra;

/// Model metadata reported by the server (`meta`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ModelMeta {
    /// Vocabulary type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_type: Option<i64>,
    /// Vocabulary size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_vocab: Option<i64>,
    /// Training context length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_ctx_train: Option<i64>,
    /// Embedding width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_embd: Option<i64>,
    /// Parameter count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_params: Option<i64>,
    /// File size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One model entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Model {
    /// Model id: the alias, else the model path.
    #[serde(default)]
    pub id: String,
    /// `model`.
    #[serde(default)]
    pub object: String,
    /// Unix time.
    #[serde(default)]
    pub created: i64,
    /// `llamacpp`.
    #[serde(default)]
    pub owned_by: String,
    /// Metadata; `null` while loading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<ModelMeta>,
    /// Fields this version does not model (`aliases`, `tags`, `status` in router mode ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ModelList {
    /// `list`.
    #[serde(default)]
    pub object: String,
    /// The models.
    #[serde(default)]
    pub data: Vec<Model>,
    /// Fields this version does not model (`models` in the Ollama-style shape, ...).
    #[serde(flatten)]
    pub extra: Extra,
}
