//! JSON Schemas of the request and response types, for `cargo xtask schemas` and the
//! CLI's `lmcpp schema [TYPE]`.

use schemars::JsonSchema;
use serde_json::Value;

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// `(name, JSON Schema)` of every request and response type, sorted by name. The name is
/// the file stem used under `lmcpp-types/schemas/`.
pub fn all() -> Vec<(&'static str, Value)> {
    use crate::*;
    let mut v: Vec<(&'static str, Value)> = vec![
        ("ErrorBody", schema::<error::ErrorBody>()),
        ("HealthResponse", schema::<health::HealthResponse>()),
        (
            "CompletionRequest",
            schema::<native::completion::CompletionRequest>(),
        ),
        (
            "CompletionResponse",
            schema::<native::completion::CompletionResponse>(),
        ),
        (
            "CompletionChunk",
            schema::<native::completion::CompletionChunk>(),
        ),
        (
            "TokenizeRequest",
            schema::<native::tokenize::TokenizeRequest>(),
        ),
        (
            "TokenizeResponse",
            schema::<native::tokenize::TokenizeResponse>(),
        ),
        (
            "DetokenizeRequest",
            schema::<native::tokenize::DetokenizeRequest>(),
        ),
        (
            "DetokenizeResponse",
            schema::<native::tokenize::DetokenizeResponse>(),
        ),
        (
            "ApplyTemplateResponse",
            schema::<native::template::ApplyTemplateResponse>(),
        ),
        (
            "EmbeddingRequest",
            schema::<native::embedding::EmbeddingRequest>(),
        ),
        (
            "EmbeddingResponse",
            schema::<native::embedding::EmbeddingResponse>(),
        ),
        ("RerankRequest", schema::<native::rerank::RerankRequest>()),
        ("RerankResponse", schema::<native::rerank::RerankResponse>()),
        ("InfillRequest", schema::<native::infill::InfillRequest>()),
        ("Props", schema::<props::Props>()),
        ("PropsUpdate", schema::<props::PropsUpdate>()),
        ("SuccessResponse", schema::<props::SuccessResponse>()),
        ("SlotsResponse", schema::<slots::SlotsResponse>()),
        ("SlotFileRequest", schema::<slots::SlotFileRequest>()),
        ("SlotSaveResponse", schema::<slots::SlotSaveResponse>()),
        (
            "SlotRestoreResponse",
            schema::<slots::SlotRestoreResponse>(),
        ),
        ("SlotEraseResponse", schema::<slots::SlotEraseResponse>()),
        (
            "LoraAdaptersResponse",
            schema::<lora::LoraAdaptersResponse>(),
        ),
        ("LoraAdaptersRequest", schema::<lora::LoraAdaptersRequest>()),
        ("ModelList", schema::<openai::models::ModelList>()),
        (
            "OaiCompletionRequest",
            schema::<openai::completions::OaiCompletionRequest>(),
        ),
        (
            "OaiCompletionResponse",
            schema::<openai::completions::OaiCompletionResponse>(),
        ),
        (
            "ChatCompletionRequest",
            schema::<openai::chat::ChatCompletionRequest>(),
        ),
        (
            "ChatCompletionResponse",
            schema::<openai::chat::ChatCompletionResponse>(),
        ),
        (
            "ChatCompletionChunk",
            schema::<openai::chat::ChatCompletionChunk>(),
        ),
        (
            "ChatControlRequest",
            schema::<openai::chat::ChatControlRequest>(),
        ),
        (
            "ChatControlResponse",
            schema::<openai::chat::ChatControlResponse>(),
        ),
        (
            "InputTokensResponse",
            schema::<openai::chat::InputTokensResponse>(),
        ),
        (
            "OaiEmbeddingRequest",
            schema::<openai::embeddings::OaiEmbeddingRequest>(),
        ),
        (
            "OaiEmbeddingResponse",
            schema::<openai::embeddings::OaiEmbeddingResponse>(),
        ),
        ("ResponsesRequest", schema::<responses::ResponsesRequest>()),
        (
            "ResponsesResponse",
            schema::<responses::ResponsesResponse>(),
        ),
        (
            "ResponsesStreamEvent",
            schema::<responses::ResponsesStreamEvent>(),
        ),
        ("MessagesRequest", schema::<anthropic::MessagesRequest>()),
        ("MessagesResponse", schema::<anthropic::MessagesResponse>()),
        (
            "MessagesStreamEvent",
            schema::<anthropic::MessagesStreamEvent>(),
        ),
        (
            "CountTokensResponse",
            schema::<anthropic::CountTokensResponse>(),
        ),
        ("RouterModelList", schema::<router::RouterModelList>()),
        ("ModelRequest", schema::<router::ModelRequest>()),
        ("ModelsEvent", schema::<router::ModelsEvent>()),
    ];
    v.sort_by_key(|(n, _)| *n);
    v
}

/// The schema of one type by name (case-insensitive).
pub fn get(name: &str) -> Option<Value> {
    all()
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, s)| s)
}
