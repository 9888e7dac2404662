//! `GET /lora-adapters` and `POST /lora-adapters`.

use serde::{Deserialize, Serialize};

use crate::common::{Extra, LoraScale, TokenId};

/// One loaded adapter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct LoraAdapter {
    /// Adapter id.
    #[serde(default)]
    pub id: i64,
    /// Adapter file.
    #[serde(default)]
    pub path: String,
    /// Current global scale.
    #[serde(default)]
    pub scale: f64,
    /// Task name from the adapter's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_name: Option<String>,
    /// Prompt prefix from the adapter's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_prefix: Option<String>,
    /// aLoRA invocation string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alora_invocation_string: Option<String>,
    /// aLoRA invocation tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alora_invocation_tokens: Option<Vec<TokenId>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `GET /lora-adapters`.
pub type LoraAdaptersResponse = Vec<LoraAdapter>;

/// Request body of `POST /lora-adapters`: global scales; adapters not listed get 0.
pub type LoraAdaptersRequest = Vec<LoraScale>;
