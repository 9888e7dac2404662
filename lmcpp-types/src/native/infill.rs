//! `POST /infill`: fill-in-the-middle code completion.

use serde::{Deserialize, Serialize};

use crate::common::Extra;
use crate::native::completion::SamplingParams;

/// A file of extra context for infilling.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct InfillChunk {
    /// File name shown to the model.
    pub filename: String,
    /// File contents.
    pub text: String,
}

/// Request body of `POST /infill`. The response is a
/// [`CompletionResponse`](crate::native::completion::CompletionResponse) (or
/// [`CompletionChunk`](crate::native::completion::CompletionChunk)s when streaming).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct InfillRequest {
    /// Code before the cursor.
    pub input_prefix: String,
    /// Code after the cursor.
    pub input_suffix: String,
    /// Extra context files, inserted before the FIM prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_extra: Vec<InfillChunk>,
    /// Text added after the FIM middle token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// All `/completion` options.
    #[serde(flatten)]
    pub params: SamplingParams,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl InfillRequest {
    /// Infills between `prefix` and `suffix`.
    pub fn new(prefix: impl Into<String>, suffix: impl Into<String>) -> Self {
        InfillRequest {
            input_prefix: prefix.into(),
            input_suffix: suffix.into(),
            ..Default::default()
        }
    }
}
