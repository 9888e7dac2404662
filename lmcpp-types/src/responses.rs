//! `POST /v1/responses` (OpenAI Responses API; converted to a chat completion by the
//! server) and `POST /v1/responses/input_tokens`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::Extra;
use crate::macros::open_enum;
use crate::native::completion::SamplingParams;

/// `input`: a string or a list of input items (messages, function call outputs, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum ResponsesInput {
    /// A single user message.
    Text(String),
    /// Input items, each `{"type": "message" | "function_call" | "function_call_output" | ...}`
    /// or `{"role", "content"}`.
    Items(Vec<Value>),
}

impl Default for ResponsesInput {
    fn default() -> Self {
        ResponsesInput::Text(String::new())
    }
}

/// Request body of `POST /v1/responses`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ResponsesRequest {
    /// Model name (required in router mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The input.
    pub input: ResponsesInput,
    /// System instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Maximum tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<i32>,
    /// Tools (`{"type":"function","name",...}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// Tool selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Reasoning options (`{"effort": ...}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Sampling and llama.cpp options (flattened).
    #[serde(flatten)]
    pub params: SamplingParams,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ResponsesRequest {
    /// A request with a single text input.
    pub fn new(input: impl Into<String>) -> Self {
        ResponsesRequest {
            input: ResponsesInput::Text(input.into()),
            ..Default::default()
        }
    }
}

open_enum! {
    /// Status of a response or output item.
    pub enum ResponseStatus {
        /// Finished.
        Completed = "completed",
        /// Running.
        InProgress = "in_progress",
        /// Failed.
        Failed = "failed",
        /// Stopped early.
        Incomplete = "incomplete",
    }
}

/// A content part of an output message (`output_text`, `reasoning_text`, ...).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct OutputContent {
    /// Part type.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Fields this version does not model (`annotations`, `logprobs`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One item of `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// An assistant message.
    Message {
        /// Item id.
        #[serde(default)]
        id: String,
        /// `assistant`.
        #[serde(default)]
        role: String,
        /// Status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<ResponseStatus>,
        /// Content parts.
        #[serde(default)]
        content: Vec<OutputContent>,
    },
    /// Reasoning text.
    Reasoning {
        /// Item id.
        #[serde(default)]
        id: String,
        /// Reasoning parts.
        #[serde(default)]
        content: Vec<OutputContent>,
        /// Summary parts.
        #[serde(default)]
        summary: Vec<Value>,
        /// Status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<ResponseStatus>,
        /// Encrypted content (empty for local models).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
    },
    /// A function call.
    FunctionCall {
        /// Item id.
        #[serde(default)]
        id: String,
        /// Call id for the `function_call_output` item.
        #[serde(default)]
        call_id: String,
        /// Function name.
        #[serde(default)]
        name: String,
        /// Arguments as a JSON string.
        #[serde(default)]
        arguments: String,
        /// Status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<ResponseStatus>,
    },
    /// An item type this version does not model.
    #[serde(untagged)]
    Other(Value),
}

/// Usage of a response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ResponsesUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: i64,
    /// Generated tokens.
    #[serde(default)]
    pub output_tokens: i64,
    /// Sum.
    #[serde(default)]
    pub total_tokens: i64,
    /// `{"cached_tokens": n}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_details: Option<Value>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `POST /v1/responses`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ResponsesResponse {
    /// Response id (`resp_...`).
    #[serde(default)]
    pub id: String,
    /// `response`.
    #[serde(default)]
    pub object: String,
    /// Unix time (absent in some stream events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    /// Unix time of completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    /// Status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
    /// Model name (absent in the `response.created` event).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Output items (absent in the `response.created` event).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<OutputItem>,
    /// Usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResponsesUsage>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ResponsesResponse {
    /// Concatenated `output_text` of all message items.
    pub fn output_text(&self) -> String {
        let mut out = String::new();
        for item in &self.output {
            if let OutputItem::Message { content, .. } = item {
                for part in content {
                    if part.kind == "output_text" {
                        out.push_str(part.text.as_deref().unwrap_or_default());
                    }
                }
            }
        }
        out
    }
}

/// One `data:` payload of a streamed `/v1/responses` (the SSE `event:` repeats `type`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ResponsesStreamEvent {
    /// Event type, e.g. `response.output_text.delta`, `response.completed`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Text increment (`*.delta` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<String>,
    /// Item the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// Output item (`response.output_item.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<OutputItem>,
    /// The response (`response.created`, `response.completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponsesResponse>,
    /// Fields this version does not model (`output_index`, `part`, `text`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}
