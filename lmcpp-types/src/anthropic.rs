//! `POST /v1/messages` (Anthropic Messages API; converted to a chat completion by the
//! server) and `POST /v1/messages/count_tokens`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::Extra;
use crate::macros::open_enum;

/// A content block of a message (request or response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image (`source`: `{"type":"base64","media_type","data"}` or `{"type":"url","url"}`).
    Image {
        /// Image source.
        source: Value,
    },
    /// A tool call by the assistant.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments.
        #[serde(default)]
        input: Value,
    },
    /// A tool result sent by the user.
    ToolResult {
        /// The call this answers.
        tool_use_id: String,
        /// Result: a string or content blocks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Value>,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// Model reasoning.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Signature (empty for local models).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A block type this version does not model.
    #[serde(untagged)]
    Other(Value),
}

/// Message content: a string or blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlock>),
}

/// One message of the conversation (`user` or `assistant`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// Content.
    pub content: MessageContent,
}

impl Message {
    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Message {
            role: "user".to_owned(),
            content: MessageContent::Text(text.into()),
        }
    }

    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Message {
            role: "assistant".to_owned(),
            content: MessageContent::Text(text.into()),
        }
    }
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct AnthropicTool {
    /// Tool name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the input.
    #[serde(default)]
    pub input_schema: Value,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Request body of `POST /v1/messages` and `POST /v1/messages/count_tokens`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct MessagesRequest {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Maximum tokens to generate (server default 4096; not needed for count_tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i32>,
    /// System prompt: a string or text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<MessageContent>,
    /// Temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Stream events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Tools (need `--jinja`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<AnthropicTool>>,
    /// `{"type":"auto"|"any"|"tool","name"?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Extended thinking options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl MessagesRequest {
    /// A request for `messages` with `max_tokens`.
    pub fn new(model: impl Into<String>, messages: Vec<Message>, max_tokens: i32) -> Self {
        MessagesRequest {
            model: model.into(),
            messages,
            max_tokens: Some(max_tokens),
            ..Default::default()
        }
    }
}

open_enum! {
    /// Why the message ended.
    pub enum StopReason {
        /// Natural end.
        EndTurn = "end_turn",
        /// `max_tokens` reached.
        MaxTokens = "max_tokens",
        /// A stop sequence matched.
        StopSequence = "stop_sequence",
        /// The model called tools.
        ToolUse = "tool_use",
    }
}

/// Usage of a message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct AnthropicUsage {
    /// Prompt tokens not served from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    /// Generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    /// Prompt tokens served from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<i64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct MessagesResponse {
    /// Message id.
    #[serde(default)]
    pub id: String,
    /// `message`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `assistant`.
    #[serde(default)]
    pub role: String,
    /// Content blocks.
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Why the message ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// The stop sequence that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequence: Option<String>,
    /// Usage.
    #[serde(default)]
    pub usage: AnthropicUsage,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `data:` payload of a streamed `/v1/messages` (the SSE `event:` repeats `type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessagesStreamEvent {
    /// Start of the message (content empty).
    MessageStart {
        /// The message so far.
        message: MessagesResponse,
    },
    /// A content block starts.
    ContentBlockStart {
        /// Block index.
        index: i64,
        /// The block (empty text/thinking, or tool_use with id and name).
        content_block: ContentBlock,
    },
    /// An increment of a block (`text_delta`, `thinking_delta`, `input_json_delta`,
    /// `signature_delta`).
    ContentBlockDelta {
        /// Block index.
        index: i64,
        /// The increment.
        delta: Value,
    },
    /// A block ends.
    ContentBlockStop {
        /// Block index.
        index: i64,
    },
    /// Final stop reason and usage.
    MessageDelta {
        /// `{"stop_reason", "stop_sequence"}`.
        delta: Value,
        /// `{"output_tokens"}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<AnthropicUsage>,
    },
    /// End of the message.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// An error during streaming.
    Error {
        /// The error object.
        error: Value,
    },
    /// An event this version does not model.
    #[serde(untagged)]
    Other(Value),
}

/// Response of `POST /v1/messages/count_tokens`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct CountTokensResponse {
    /// Prompt tokens the request would use.
    #[serde(default)]
    pub input_tokens: i64,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
