//! `GET /props` (server properties) and `POST /props` (change them; needs `--props`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::Extra;
use crate::native::completion::GenerationSettings;

/// `default_generation_settings` of `/props`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct DefaultGenerationSettings {
    /// Default sampling parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<GenerationSettings>,
    /// Context size of one slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_ctx: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Input modalities of the loaded model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Modalities {
    /// Accepts images.
    #[serde(default)]
    pub vision: bool,
    /// Accepts audio.
    #[serde(default)]
    pub audio: bool,
    /// Accepts video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<bool>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `GET /props`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Props {
    /// Defaults applied to `/completion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_generation_settings: Option<DefaultGenerationSettings>,
    /// Number of slots (`--parallel`).
    #[serde(default)]
    pub total_slots: i64,
    /// Model alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_alias: Option<String>,
    /// Model file type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_ftype: Option<String>,
    /// Model path (`-m`).
    #[serde(default)]
    pub model_path: String,
    /// Supported input modalities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<Modalities>,
    /// Marker that stands for one media item in a multimodal prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_marker: Option<String>,
    /// Whether `/slots` is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_slots: Option<bool>,
    /// Whether `POST /props` is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_props: Option<bool>,
    /// Whether `/metrics` is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_metrics: Option<bool>,
    /// The chat template source.
    #[serde(default)]
    pub chat_template: String,
    /// The tool-use chat template (with `--jinja`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_tool_use: Option<String>,
    /// Capabilities of the chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_caps: Option<Value>,
    /// BOS token text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token: Option<String>,
    /// EOS token text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token: Option<String>,
    /// Build identifier (`b<number>-<commit>`).
    #[serde(default)]
    pub build_info: String,
    /// Whether the server sleeps (model unloaded on idle).
    #[serde(default)]
    pub is_sleeping: bool,
    /// Fields this version does not model (`ui`, `ui_settings`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Request body of `POST /props`. This version accepts no documented fields, so the
/// body is an open map.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PropsUpdate {
    /// Properties to change.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `POST /props` and other endpoints answering `{"success": true}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct SuccessResponse {
    /// Whether the change was applied.
    #[serde(default)]
    pub success: bool,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
