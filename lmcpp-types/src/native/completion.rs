//! `POST /completion` (alias `/completions`): the native, non-OpenAI completion API,
//! its final response and its streaming chunks.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{
    Extra, LogitBias, LoraScale, Prompt, PromptProgress, Stop, Timings, TokenId, TokenProb,
};
use crate::macros::open_enum;

/// Sampling and generation options shared by `/completion`, `/infill` and (as llama.cpp
/// extensions) the OpenAI-compatible endpoints. Every field is optional so the
/// server's defaults apply unless set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct SamplingParams {
    /// Sampling temperature (default 0.8); `<= 0` samples greedily.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Dynamic temperature range (default 0, disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynatemp_range: Option<f64>,
    /// Dynamic temperature exponent (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynatemp_exponent: Option<f64>,
    /// Keep the K most probable tokens (default 40).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    /// Nucleus sampling threshold (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Minimum probability relative to the best token (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    /// Top-n-sigma sampling (default -1, disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_n_sigma: Option<f64>,
    /// Tokens to predict; `-1` is unlimited, `0` only evaluates the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_predict: Option<i32>,
    /// Minimum line indentation of the output, in spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_indent: Option<i32>,
    /// Prompt tokens kept on context overflow; `-1` keeps all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_keep: Option<i32>,
    /// Tokens after `n_keep` that may be discarded on context shift (0 = half).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_discard: Option<i32>,
    /// Completions to generate per prompt (alias `n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_cmpl: Option<i32>,
    /// Minimum chunk size for KV-shift cache reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_cache_reuse: Option<i32>,
    /// Stream partial results as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stop strings, not included in the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Locally typical sampling (default 1, disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typical_p: Option<f64>,
    /// Repetition penalty (default 1.0 in this version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f64>,
    /// Window for the repetition penalty (default 64, 0 disables, -1 = context size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_last_n: Option<i32>,
    /// Presence penalty (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// DRY multiplier (default 0, disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_multiplier: Option<f64>,
    /// DRY base (default 1.75).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_base: Option<f64>,
    /// DRY allowed length (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_allowed_length: Option<i32>,
    /// DRY window (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_penalty_last_n: Option<i32>,
    /// DRY sequence breakers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_sequence_breakers: Option<Vec<String>>,
    /// XTC probability (default 0, disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xtc_probability: Option<f64>,
    /// XTC threshold (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xtc_threshold: Option<f64>,
    /// Mirostat mode: 0 off, 1 Mirostat, 2 Mirostat 2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirostat: Option<i32>,
    /// Mirostat target entropy (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirostat_tau: Option<f64>,
    /// Mirostat learning rate (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirostat_eta: Option<f64>,
    /// Adaptive-p target probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_target: Option<f64>,
    /// Adaptive-p decay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_decay: Option<f64>,
    /// GBNF grammar constraining the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<String>,
    /// JSON schema constraining the output (converted to a grammar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
    /// RNG seed; `-1` picks a random one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Ignore end-of-stream and keep generating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// Logit biases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<LogitBias>,
    /// Return the top N token probabilities per generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_probs: Option<i32>,
    /// Samplers keep at least this many candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_keep: Option<i32>,
    /// Time limit of the generation phase in milliseconds (0 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_max_predict_ms: Option<i64>,
    /// Slot to run on; `-1` picks an idle one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_slot: Option<i32>,
    /// Reuse the KV cache of a previous request (server default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_prompt: Option<bool>,
    /// Return generated token ids in `tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_tokens: Option<bool>,
    /// Sampler order, e.g. `["dry", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samplers: Option<Vec<String>>,
    /// Include timings in every streamed chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings_per_token: Option<bool>,
    /// Stream prompt-processing progress (`prompt_progress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_progress: Option<bool>,
    /// Seconds between SSE comment pings while the stream is silent; `-1` disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_ping_interval: Option<i32>,
    /// Report probabilities after the sampler chain instead of log-probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_sampling_probs: Option<bool>,
    /// Only return these response fields (`a/b` unnests `b` out of `a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_fields: Option<Vec<String>>,
    /// Per-request LoRA scales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<Vec<LoraScale>>,
    /// Include a `__verbose` debug object in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbose: Option<bool>,
}

/// Request body of `POST /completion`.
///
/// ```
/// use lmcpp_types::native::completion::CompletionRequest;
/// let mut req = CompletionRequest::new("Once upon a time");
/// req.params.n_predict = Some(-1);
/// req.params.cache_prompt = Some(false);
/// let json = serde_json::to_value(&req).unwrap();
/// assert_eq!(json["n_predict"], -1);
/// assert_eq!(json["cache_prompt"], false);
/// assert!(json.get("temperature").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct CompletionRequest {
    /// The prompt (string, tokens, mixed, multimodal object, or several prompts).
    pub prompt: Prompt,
    /// Sampling and generation options.
    #[serde(flatten)]
    pub params: SamplingParams,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl CompletionRequest {
    /// A request for `prompt` with every option at the server's default.
    pub fn new(prompt: impl Into<Prompt>) -> Self {
        CompletionRequest {
            prompt: prompt.into(),
            ..Default::default()
        }
    }

    /// Sets `n_predict` (`-1` is unlimited).
    pub fn n_predict(mut self, n: i32) -> Self {
        self.params.n_predict = Some(n);
        self
    }

    /// Sets `stream`.
    pub fn stream(mut self, stream: bool) -> Self {
        self.params.stream = Some(stream);
        self
    }
}

open_enum! {
    /// Why generation stopped (`stop_type`).
    pub enum StopType {
        /// Still generating.
        None = "none",
        /// The model produced end-of-stream.
        Eos = "eos",
        /// `n_predict` tokens were generated.
        Limit = "limit",
        /// A stop string was found.
        Word = "word",
    }
}

/// The generation settings a completion actually used (`generation_settings`), and the
/// `params` of a slot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct GenerationSettings {
    /// Tokens to predict (`-1` unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_predict: Option<i64>,
    /// RNG seed (`4294967295` means random).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Top-k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// Top-p.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Min-p.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    /// Stop strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Top-N probabilities returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_probs: Option<i64>,
    /// Whether the request streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Sampler order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samplers: Option<Vec<String>>,
    /// Chat format used to parse the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_format: Option<String>,
    /// All other settings (penalties, DRY, XTC, mirostat, speculative, lora, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Final response of `POST /completion` (non-streaming), one per prompt.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct CompletionResponse {
    /// Index of the prompt (and completion) this result belongs to.
    #[serde(default)]
    pub index: i64,
    /// Generated text, without the stop string.
    #[serde(default)]
    pub content: String,
    /// Generated token ids (with `return_tokens`).
    #[serde(default)]
    pub tokens: Vec<TokenId>,
    /// Slot that served the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_slot: Option<i64>,
    /// Always `true` for a final result.
    #[serde(default)]
    pub stop: bool,
    /// Model alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tokens generated.
    #[serde(default)]
    pub tokens_predicted: i64,
    /// Prompt tokens evaluated.
    #[serde(default)]
    pub tokens_evaluated: i64,
    /// The settings used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_settings: Option<GenerationSettings>,
    /// The processed prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Whether a newline was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_new_line: Option<bool>,
    /// Whether the context was exceeded.
    #[serde(default)]
    pub truncated: bool,
    /// Why generation stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_type: Option<StopType>,
    /// The stop string found, or empty.
    #[serde(default)]
    pub stopping_word: String,
    /// Prompt tokens reused from the cache.
    #[serde(default)]
    pub tokens_cached: i64,
    /// Timings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Token probabilities (with `n_probs > 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_probabilities: Option<Vec<TokenProb>>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `data:` payload of a streamed `POST /completion`. The last chunk has
/// `stop: true` and carries the final fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct CompletionChunk {
    /// Index of the prompt this chunk belongs to.
    #[serde(default)]
    pub index: i64,
    /// Next piece of text.
    #[serde(default)]
    pub content: String,
    /// Token ids of this piece.
    #[serde(default)]
    pub tokens: Vec<TokenId>,
    /// `true` on the last chunk.
    #[serde(default)]
    pub stop: bool,
    /// Slot that serves the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_slot: Option<i64>,
    /// Tokens generated so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_predicted: Option<i64>,
    /// Prompt tokens evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_evaluated: Option<i64>,
    /// Timings (last chunk, or every chunk with `timings_per_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Prompt progress (with `return_progress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_progress: Option<PromptProgress>,
    /// Probabilities of this token (with `n_probs > 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_probabilities: Option<Vec<TokenProb>>,
    /// Why generation stopped (last chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_type: Option<StopType>,
    /// The stop string found (last chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_word: Option<String>,
    /// Whether the context was exceeded (last chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// Settings used (last chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_settings: Option<GenerationSettings>,
    /// Model alias (last chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The processed prompt (last chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Prompt tokens reused from the cache (last chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_cached: Option<i64>,
    /// Whether a newline was generated (last chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_new_line: Option<bool>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
