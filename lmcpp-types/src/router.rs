//! Router mode (server started without a model): `GET /models`, `POST /models/load`,
//! `POST /models/unload`, `POST /models` (download), `DELETE /models`, `GET /models/sse`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::Extra;
use crate::macros::open_enum;

open_enum! {
    /// Lifecycle state of a routed model.
    pub enum ModelState {
        /// Not running.
        Unloaded = "unloaded",
        /// Being started.
        Loading = "loading",
        /// Ready.
        Loaded = "loaded",
        /// Unloaded on idle, wakes on the next request.
        Sleeping = "sleeping",
        /// Files being downloaded.
        Downloading = "downloading",
    }
}

/// `status` of a routed model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ModelStatus {
    /// State.
    pub value: ModelState,
    /// Command line of the model instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// The last start failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
    /// Exit code of the failed instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Download progress per URL (`{"done", "total"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One model known to the router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct RouterModel {
    /// Model name (use it as `model` in requests).
    pub id: String,
    /// Path of the GGUF file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ModelStatus>,
    /// `{"input_modalities", "output_modalities"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Value>,
    /// Fields this version does not model (`object`, `owned_by`, `created`, `in_cache`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `GET /models` in router mode.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct RouterModelList {
    /// The models.
    #[serde(default)]
    pub data: Vec<RouterModel>,
    /// Fields this version does not model (`object`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Request body of `POST /models/load`, `POST /models/unload` and `POST /models`
/// (download).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ModelRequest {
    /// Model name.
    pub model: String,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ModelRequest {
    /// A request naming `model`.
    pub fn new(model: impl Into<String>) -> Self {
        ModelRequest {
            model: model.into(),
            extra: Extra::new(),
        }
    }
}

/// Request body of `POST /models/load`.
pub type LoadModelRequest = ModelRequest;
/// Request body of `POST /models/unload`.
pub type UnloadModelRequest = ModelRequest;
/// Response of the load, unload, download and delete actions: `{"success": true}`.
pub type ModelActionResponse = crate::props::SuccessResponse;

/// One event of `GET /models/sse`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ModelsEvent {
    /// Model name (`*` for `models_reload`).
    #[serde(default)]
    pub model: String,
    /// `model_status`, `download_progress`, `model_remove`, `models_reload`, ...
    #[serde(default)]
    pub event: String,
    /// Event data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
