//! Building blocks shared by several endpoints: prompts, stop strings, token
//! probabilities, timings, usage and LoRA scales.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A token id of the loaded model's vocabulary.
pub type TokenId = i32;

/// Unknown fields of a response (or extra fields of a request), kept verbatim.
pub type Extra = Map<String, Value>;

/// One element of a mixed prompt: a token id or a piece of text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum PromptItem {
    /// A raw token id.
    Token(TokenId),
    /// Text that the server tokenizes.
    Text(String),
}

/// A prompt object that may carry multimodal data (`/completion`, `/embedding`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct MultimodalPrompt {
    /// The prompt text, with one media marker per entry of `multimodal_data`.
    pub prompt_string: String,
    /// Base64-encoded images or audio, substituted for the media markers in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multimodal_data: Vec<String>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A single prompt, or several prompts in one request.
///
/// The server distinguishes the array forms by content: an array of integers is one
/// tokenized prompt; an array mixing integers and strings is one mixed prompt; any other
/// array is a list of prompts. Decoding follows the same rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Prompt {
    /// A plain string.
    Text(String),
    /// A sequence of token ids.
    Tokens(Vec<TokenId>),
    /// Token ids and strings mixed in one prompt.
    Mixed(Vec<PromptItem>),
    /// A prompt object with optional multimodal data.
    Multimodal(MultimodalPrompt),
    /// Several prompts; the response is then an array.
    Many(Vec<Prompt>),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Text(String::new())
    }
}

impl From<&str> for Prompt {
    fn from(s: &str) -> Self {
        Prompt::Text(s.to_owned())
    }
}

impl From<String> for Prompt {
    fn from(s: String) -> Self {
        Prompt::Text(s)
    }
}

impl From<Vec<TokenId>> for Prompt {
    fn from(t: Vec<TokenId>) -> Self {
        Prompt::Tokens(t)
    }
}

impl Prompt {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::String(s) => Ok(Prompt::Text(s)),
            Value::Object(_) => serde_json::from_value(v)
                .map(Prompt::Multimodal)
                .map_err(|e| e.to_string()),
            Value::Array(items) => {
                let is_int = |v: &Value| v.is_i64() || v.is_u64();
                if items.iter().all(is_int) {
                    return serde_json::from_value(Value::Array(items))
                        .map(Prompt::Tokens)
                        .map_err(|e| e.to_string());
                }
                let mixed = items.iter().any(is_int)
                    && items.iter().any(Value::is_string)
                    && items.iter().all(|v| is_int(v) || v.is_string());
                if mixed {
                    return serde_json::from_value(Value::Array(items))
                        .map(Prompt::Mixed)
                        .map_err(|e| e.to_string());
                }
                items
                    .into_iter()
                    .map(Prompt::from_value)
                    .collect::<Result<Vec<_>, _>>()
                    .map(Prompt::Many)
            }
            other => Err(format!(
                "a prompt must be a string, an array or an object, found {other}"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Prompt::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A string or a list of strings (`stop`, `input`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

impl From<&str> for OneOrMany {
    fn from(s: &str) -> Self {
        OneOrMany::One(s.to_owned())
    }
}

impl From<Vec<String>> for OneOrMany {
    fn from(v: Vec<String>) -> Self {
        OneOrMany::Many(v)
    }
}

/// Stop strings: a single string or a list.
pub type Stop = OneOrMany;

/// One candidate token and its (log-)probability.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TopTokenProb {
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<TokenId>,
    /// Token text, cut to valid UTF-8.
    #[serde(default)]
    pub token: String,
    /// Raw bytes of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// Natural-log probability (absent when `post_sampling_probs` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f64>,
    /// Probability in `0..=1` (only when `post_sampling_probs` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prob: Option<f64>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The sampled token with its probability and the top candidates.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TokenProb {
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<TokenId>,
    /// Token text, cut to valid UTF-8.
    #[serde(default)]
    pub token: String,
    /// Raw bytes of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// Natural-log probability (absent when `post_sampling_probs` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f64>,
    /// Probability in `0..=1` (only when `post_sampling_probs` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prob: Option<f64>,
    /// Top candidates by log-probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<Vec<TopTokenProb>>,
    /// Top candidates by probability (when `post_sampling_probs` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_probs: Option<Vec<TopTokenProb>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// OpenAI-style `logprobs` object: `{"content": [...]}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Logprobs {
    /// One entry per generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<TokenProb>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Prompt-processing and generation timings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Timings {
    /// Prompt tokens reused from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_n: Option<i64>,
    /// Prompt tokens processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_n: Option<i64>,
    /// Prompt processing time in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_ms: Option<f64>,
    /// Milliseconds per prompt token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_per_token_ms: Option<f64>,
    /// Prompt tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_per_second: Option<f64>,
    /// Tokens generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_n: Option<i64>,
    /// Generation time in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_ms: Option<f64>,
    /// Milliseconds per generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_per_token_ms: Option<f64>,
    /// Generated tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_per_second: Option<f64>,
    /// Fields this version does not model (speculative-decoding counters, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Prompt-processing progress sent in stream mode when `return_progress` is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PromptProgress {
    /// Prompt tokens in total.
    #[serde(default)]
    pub total: i64,
    /// Prompt tokens served from the cache.
    #[serde(default)]
    pub cache: i64,
    /// Prompt tokens processed so far.
    #[serde(default)]
    pub processed: i64,
    /// Milliseconds since prompt processing started.
    #[serde(default)]
    pub time_ms: f64,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// OpenAI-style token usage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Usage {
    /// Generated tokens.
    #[serde(default)]
    pub completion_tokens: i64,
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: i64,
    /// Sum of both.
    #[serde(default)]
    pub total_tokens: i64,
    /// Details about the prompt tokens (`cached_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Details of the prompt tokens of a request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the cache.
    #[serde(default)]
    pub cached_tokens: i64,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A LoRA adapter id with the scale to apply (per request or globally).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct LoraScale {
    /// Adapter id as listed by `GET /lora-adapters`.
    pub id: i64,
    /// Scale; `0.0` disables the adapter.
    pub scale: f64,
}

/// A logit bias entry as the server accepts it: `[token_or_text, bias_or_false]`,
/// or the OpenAI object form `{"<token id or text>": bias}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum LogitBias {
    /// `[[15043, 1.0], ["Hello", false]]`.
    Pairs(Vec<(PromptItem, BiasValue)>),
    /// `{"15043": 1.0}`.
    Map(std::collections::BTreeMap<String, BiasValue>),
}

/// The bias of one logit-bias entry; `false` bans the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum BiasValue {
    /// Added to the logit.
    Bias(f64),
    /// `false` means the token is never produced.
    Ban(bool),
}
