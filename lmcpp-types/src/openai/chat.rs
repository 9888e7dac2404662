//! `POST /v1/chat/completions` (alias `/chat/completions`): messages of every role,
//! multimodal content parts, tools and tool calls, `response_format`, logprobs; the
//! response and the streaming chunk.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{Extra, Logprobs, Stop, Timings, Usage};
use crate::macros::open_enum;
use crate::native::completion::SamplingParams;

open_enum! {
    /// The author of a chat message.
    pub enum Role {
        /// System instructions.
        System = "system",
        /// Developer instructions (newer name of `system`).
        Developer = "developer",
        /// The user.
        User = "user",
        /// The model.
        Assistant = "assistant",
        /// A tool result.
        Tool = "tool",
        /// A function result (legacy OpenAI role).
        Function = "function",
    }
}

/// An image reference: a remote URL, a `data:` URI with base64, or `file://` (with
/// `--media-path`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ImageUrl {
    /// URL, data URI or file URI.
    pub url: String,
    /// Detail hint (`auto`, `low`, `high`); ignored by llama.cpp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Audio or video input given inline (`data`, base64) or by `url`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct MediaInput {
    /// Base64-encoded media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Remote URL or `file://` path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Format hint (`wav`, `mp3`); llama.cpp detects the format itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// One part of a multimodal message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    ImageUrl {
        /// The image reference.
        image_url: ImageUrl,
    },
    /// Audio.
    InputAudio {
        /// The audio.
        input_audio: MediaInput,
    },
    /// Video.
    InputVideo {
        /// The video.
        input_video: MediaInput,
    },
    /// A part type this version does not model, kept verbatim.
    #[serde(untagged)]
    Other(Value),
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image part from a URL or data URI.
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: url.into(),
                detail: None,
            },
        }
    }
}

/// The content of a message: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Multimodal parts.
    Parts(Vec<ContentPart>),
}

impl From<&str> for MessageContent {
    fn from(s: &str) -> Self {
        MessageContent::Text(s.to_owned())
    }
}

impl From<String> for MessageContent {
    fn from(s: String) -> Self {
        MessageContent::Text(s)
    }
}

impl From<Vec<ContentPart>> for MessageContent {
    fn from(p: Vec<ContentPart>) -> Self {
        MessageContent::Parts(p)
    }
}

/// The function a tool call invokes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct FunctionCall {
    /// Function name (absent in continuation deltas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Arguments as a JSON string (partial in deltas).
    #[serde(default)]
    pub arguments: String,
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ToolCall {
    /// Position of this call (stream deltas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<i64>,
    /// Call id, echoed back in the tool message's `tool_call_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Always `function`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The call.
    #[serde(default)]
    pub function: FunctionCall,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A chat message of any role.
///
/// ```
/// use lmcpp_types::openai::chat::ChatMessage;
/// let m = ChatMessage::user("hi");
/// assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"role":"user","content":"hi"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ChatMessage {
    /// Author.
    pub role: Role,
    /// Content; may be absent or null for an assistant message with tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Reasoning (thinking) text of an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a tool message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatMessage {
    /// A message of `role` with `content`.
    pub fn new(role: Role, content: impl Into<MessageContent>) -> Self {
        ChatMessage {
            role,
            content: Some(content.into()),
            name: None,
            reasoning_content: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Extra::new(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<MessageContent>) -> Self {
        Self::new(Role::System, content)
    }

    /// A developer message.
    pub fn developer(content: impl Into<MessageContent>) -> Self {
        Self::new(Role::Developer, content)
    }

    /// A user message (text or multimodal parts).
    pub fn user(content: impl Into<MessageContent>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<MessageContent>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// An assistant message that only calls tools.
    pub fn assistant_tool_calls(calls: Vec<ToolCall>) -> Self {
        ChatMessage {
            content: None,
            tool_calls: Some(calls),
            ..Self::new(Role::Assistant, "")
        }
    }

    /// The result of tool call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<MessageContent>) -> Self {
        ChatMessage {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }

    /// The text content, when it is a plain string.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Some(MessageContent::Text(s)) => Some(s),
            _ => None,
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct FunctionDef {
    /// Function name.
    pub name: String,
    /// What the function does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence (OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A tool definition (`{"type":"function","function":{...}}`). Needs `--jinja`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

impl Tool {
    /// A function tool.
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
    ) -> Self {
        Tool {
            kind: "function".to_owned(),
            function: FunctionDef {
                name: name.into(),
                description: Some(description.into()),
                parameters: Some(parameters),
                strict: None,
            },
        }
    }
}

open_enum! {
    /// The string forms of `tool_choice`.
    pub enum ToolChoiceMode {
        /// Never call tools.
        None = "none",
        /// The model decides.
        Auto = "auto",
        /// The model must call a tool.
        Required = "required",
    }
}

/// The function named by a `tool_choice` object.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ToolChoiceFunction {
    /// Function name.
    pub name: String,
}

/// `{"type":"function","function":{"name":...}}`: force one function.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct NamedToolChoice {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: ToolChoiceFunction,
}

/// `tool_choice`: a mode string or a named function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(ToolChoiceMode),
    /// A named function.
    Function(NamedToolChoice),
    /// A shape this version does not model.
    Other(Value),
}

impl ToolChoice {
    /// Forces the function `name`.
    pub fn function(name: impl Into<String>) -> Self {
        ToolChoice::Function(NamedToolChoice {
            kind: "function".to_owned(),
            function: ToolChoiceFunction { name: name.into() },
        })
    }
}

/// `response_format.json_schema` in the OpenAI shape.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct JsonSchemaFormat {
    /// Schema name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Strict mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `response_format`: constrain the output to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object, or one matching `schema` (llama.cpp extension).
    JsonObject {
        /// Optional schema (llama.cpp extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<Value>,
    },
    /// JSON matching a schema.
    JsonSchema {
        /// OpenAI shape: `{"name", "schema", "strict"}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json_schema: Option<JsonSchemaFormat>,
        /// llama.cpp shape: the schema directly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<Value>,
    },
    /// A format this version does not model.
    #[serde(untagged)]
    Other(Value),
}

impl ResponseFormat {
    /// `{"type":"json_schema","json_schema":{"name":name,"schema":schema}}`.
    pub fn json_schema(name: impl Into<String>, schema: Value) -> Self {
        ResponseFormat::JsonSchema {
            json_schema: Some(JsonSchemaFormat {
                name: Some(name.into()),
                schema: Some(schema),
                ..Default::default()
            }),
            schema: None,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct StreamOptions {
    /// Send a final chunk with `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// Request body of `POST /v1/chat/completions` (also `/apply-template`,
/// `/v1/chat/completions/input_tokens`).
///
/// llama.cpp sampling options (`mirostat`, `n_predict`, `cache_prompt`, ...) go in
/// `params`; they are flattened into the same JSON object.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ChatCompletionRequest {
    /// Model name (required in router mode, otherwise informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Maximum tokens to generate (OpenAI name; `n_predict` also works).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i32>,
    /// Newer OpenAI name of `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<i32>,
    /// Number of choices (only 1 is supported by most builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i32>,
    /// Return log-probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Number of top candidates per token with `logprobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i32>,
    /// Stream options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Tools the model may call (needs `--jinja`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Tool selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Allow several tool calls in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Parse tool calls out of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_tool_calls: Option<bool>,
    /// Output format constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Extra variables for the Jinja template (e.g. `{"enable_thinking": false}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    /// `none` disables reasoning; other values are passed to the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// How to parse reasoning (`none`, `auto`, `deepseek`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_format: Option<String>,
    /// Allow ending reasoning early through `/v1/chat/completions/control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_control: Option<bool>,
    /// Add the assistant generation prompt (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_generation_prompt: Option<bool>,
    /// Continue the last assistant message instead of starting a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_final_message: Option<bool>,
    /// Sampling and llama.cpp generation options (flattened).
    #[serde(flatten)]
    pub params: SamplingParams,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatCompletionRequest {
    /// A request for `messages` with every option at the server's default.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        ChatCompletionRequest {
            messages,
            ..Default::default()
        }
    }

    /// Sets `max_tokens`.
    pub fn max_tokens(mut self, n: i32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Sets `stream`.
    pub fn stream(mut self, stream: bool) -> Self {
        self.params.stream = Some(stream);
        self
    }

    /// Sets `stop`.
    pub fn stop(mut self, stop: impl Into<Stop>) -> Self {
        self.params.stop = Some(stop.into());
        self
    }
}

open_enum! {
    /// Why a choice finished.
    pub enum FinishReason {
        /// Natural end or stop string.
        Stop = "stop",
        /// Token limit reached.
        Length = "length",
        /// The model called tools.
        ToolCalls = "tool_calls",
        /// Content filtered (not produced by llama.cpp).
        ContentFilter = "content_filter",
        /// Legacy function call.
        FunctionCall = "function_call",
    }
}

/// One choice of a chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ChatChoice {
    /// Choice index.
    #[serde(default)]
    pub index: i64,
    /// The assistant message.
    pub message: ChatMessage,
    /// Why generation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Log-probabilities (with `logprobs: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Logprobs>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of `POST /v1/chat/completions` (non-streaming).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ChatCompletionResponse {
    /// Completion id (`chatcmpl-...`).
    #[serde(default)]
    pub id: String,
    /// `chat.completion`.
    #[serde(default)]
    pub object: String,
    /// Unix time.
    #[serde(default)]
    pub created: i64,
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// The choices.
    #[serde(default)]
    pub choices: Vec<ChatChoice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Build identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// llama.cpp timings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatCompletionResponse {
    /// Text of the first choice, if any.
    pub fn text(&self) -> Option<&str> {
        self.choices.first().and_then(|c| c.message.text())
    }
}

/// The incremental message of a stream chunk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ChatDelta {
    /// Set on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Next piece of text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Next piece of reasoning text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One choice of a stream chunk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ChatChunkChoice {
    /// Choice index.
    #[serde(default)]
    pub index: i64,
    /// The increment.
    #[serde(default)]
    pub delta: ChatDelta,
    /// Set on the last chunk of the choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Log-probabilities of this increment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Logprobs>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `data:` payload of a streamed `POST /v1/chat/completions`
/// (the stream ends with `data: [DONE]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ChatCompletionChunk {
    /// Completion id, the same in every chunk.
    #[serde(default)]
    pub id: String,
    /// `chat.completion.chunk`.
    #[serde(default)]
    pub object: String,
    /// Unix time.
    #[serde(default)]
    pub created: i64,
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Increments (empty in the usage-only chunk).
    #[serde(default)]
    pub choices: Vec<ChatChunkChoice>,
    /// Usage (final chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Build identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Timings (final chunk, or every chunk with `timings_per_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Fields this version does not model (`prompt_progress`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Request body of `POST /v1/chat/completions/control`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ChatControlRequest {
    /// Id of the running completion.
    pub id: String,
    /// The action; `reasoning_end` is the only one in this version.
    pub action: String,
    /// Model (router mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Response of `POST /v1/chat/completions/control`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ChatControlResponse {
    /// Whether the action applied.
    #[serde(default)]
    pub success: bool,
    /// Why not, when `success` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Response of the `input_tokens` counting endpoints
/// (`/v1/chat/completions/input_tokens`, `/v1/responses/input_tokens`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct InputTokensResponse {
    /// `response.input_tokens`.
    #[serde(default)]
    pub object: String,
    /// Prompt tokens the request would use.
    #[serde(default)]
    pub input_tokens: i64,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
