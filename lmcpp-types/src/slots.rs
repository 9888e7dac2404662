//! `GET /slots` and `POST /slots/{id}?action=save|restore|erase`.

use serde::{Deserialize, Serialize};

use crate::common::Extra;
use crate::macros::open_enum;
use crate::native::completion::GenerationSettings;

/// Generation state of a slot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct NextToken {
    /// More tokens will come.
    #[serde(default)]
    pub has_next_token: bool,
    /// A newline was generated.
    #[serde(default)]
    pub has_new_line: bool,
    /// Tokens left (`-1` unlimited).
    #[serde(default)]
    pub n_remain: i64,
    /// Tokens generated.
    #[serde(default)]
    pub n_decoded: i64,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `next_token`: an object in older versions, a list in this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum NextTokens {
    /// One state per sequence.
    Many(Vec<NextToken>),
    /// A single state.
    One(NextToken),
}

/// One slot of `GET /slots`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Slot {
    /// Slot id.
    #[serde(default)]
    pub id: i64,
    /// Current or last task id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_task: Option<i64>,
    /// Slot context size.
    #[serde(default)]
    pub n_ctx: i64,
    /// Whether speculative decoding is possible.
    #[serde(default)]
    pub speculative: bool,
    /// Whether the slot is busy.
    #[serde(default)]
    pub is_processing: bool,
    /// Prompt tokens of the current/last task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_prompt_tokens: Option<i64>,
    /// Prompt tokens processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_prompt_tokens_processed: Option<i64>,
    /// Prompt tokens served from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_prompt_tokens_cache: Option<i64>,
    /// Parameters of the current/last task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<GenerationSettings>,
    /// Generation state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<NextTokens>,
    /// The prompt text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Text generated so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `GET /slots`.
pub type SlotsResponse = Vec<Slot>;

open_enum! {
    /// The `action` query parameter of `POST /slots/{id}`.
    pub enum SlotAction {
        /// Save the slot's prompt cache to a file in `--slot-save-path`.
        Save = "save",
        /// Restore the slot's prompt cache from a file.
        Restore = "restore",
        /// Erase the slot's prompt cache.
        Erase = "erase",
    }
}

/// Request body of the save and restore actions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct SlotFileRequest {
    /// File name inside `--slot-save-path` (no directories).
    pub filename: String,
}

/// Timings of a save or restore.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct SlotTimings {
    /// Milliseconds spent saving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_ms: Option<f64>,
    /// Milliseconds spent restoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_ms: Option<f64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `?action=save`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct SlotSaveResponse {
    /// Slot id.
    #[serde(default)]
    pub id_slot: i64,
    /// File written.
    #[serde(default)]
    pub filename: String,
    /// Tokens saved.
    #[serde(default)]
    pub n_saved: i64,
    /// Bytes written.
    #[serde(default)]
    pub n_written: i64,
    /// Timings.
    #[serde(default)]
    pub timings: SlotTimings,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `?action=restore`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct SlotRestoreResponse {
    /// Slot id.
    #[serde(default)]
    pub id_slot: i64,
    /// File read.
    #[serde(default)]
    pub filename: String,
    /// Tokens restored.
    #[serde(default)]
    pub n_restored: i64,
    /// Bytes read.
    #[serde(default)]
    pub n_read: i64,
    /// Timings.
    #[serde(default)]
    pub timings: SlotTimings,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `?action=erase`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct SlotEraseResponse {
    /// Slot id.
    #[serde(default)]
    pub id_slot: i64,
    /// Tokens erased.
    #[serde(default)]
    pub n_erased: i64,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
