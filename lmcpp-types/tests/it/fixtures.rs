//! Every recorded response of the real llama-server (`cargo xtask fixtures`) decodes into
//! its typed response and re-encodes without losing anything; SSE bodies split into
//! `data:` payloads that decode as chunks.

use std::collections::BTreeSet;
use std::path::PathBuf;

use lmcpp_types::anthropic::{ContentBlock, MessagesResponse, MessagesStreamEvent};
use lmcpp_types::error::{ErrorBody, ErrorType};
use lmcpp_types::metrics::{MetricKind, Metrics};
use lmcpp_types::native::completion::{CompletionChunk, CompletionResponse, StopType};
use lmcpp_types::native::tokenize::{Piece, TokenizeResponse, TokenizedToken};
use lmcpp_types::openai::chat::{ChatCompletionChunk, ChatCompletionResponse, FinishReason};
use lmcpp_types::openai::embeddings::{EmbeddingVector, OaiEmbeddingResponse};
use lmcpp_types::router::{ModelState, RouterModelList};
use lmcpp_types::sse::parse_sse;
use lmcpp_types::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn index() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("index.json")).expect("fixtures/index.json");
    serde_json::from_str(&text).expect("index is JSON")
}

fn body(name: &str) -> String {
    let entry = index()
        .into_iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no fixture named {name}"));
    let file = entry["file"].as_str().expect("file");
    std::fs::read_to_string(dir().join(file)).expect("fixture file")
}

/// Numbers compare by value (the server writes `1` where a type holds `1.0`) and a
/// `null` field equals an absent one.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        other => other.clone(),
    }
}

fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => first_difference(&format!("{path}.{k}"), p, q),
                (p, q) => Some(format!("{path}.{k}: {p:?} vs {q:?}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(&format!("{path}[{i}]"), p, q)),
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(raw: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(raw.clone()).map_err(|e| format!("decode: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("encode: {e}"))?;
    match first_difference("$", &normalize(raw), &normalize(&back)) {
        None => Ok(()),
        Some(d) => Err(format!("re-encoding lost or changed {d}")),
    }
}

fn check(ty: &str, raw: &Value) -> Result<(), String> {
    use lmcpp_types::{anthropic as an, native as na, openai as oa};
    match ty {
        "ErrorBody" => roundtrip::<ErrorBody>(raw),
        "HealthResponse" => roundtrip::<health::HealthResponse>(raw),
        "Props" => roundtrip::<props::Props>(raw),
        "SuccessResponse" => roundtrip::<props::SuccessResponse>(raw),
        "ModelList" => roundtrip::<oa::models::ModelList>(raw),
        "TokenizeResponse" => roundtrip::<na::tokenize::TokenizeResponse>(raw),
        "DetokenizeResponse" => roundtrip::<na::tokenize::DetokenizeResponse>(raw),
        "ApplyTemplateResponse" => roundtrip::<na::template::ApplyTemplateResponse>(raw),
        "CompletionResponse" => roundtrip::<CompletionResponse>(raw),
        "CompletionResponseList" => roundtrip::<Vec<CompletionResponse>>(raw),
        "CompletionChunk" => roundtrip::<CompletionChunk>(raw),
        "OaiCompletionResponse" | "OaiCompletionChunk" => {
            roundtrip::<oa::completions::OaiCompletionResponse>(raw)
        }
        "ChatCompletionResponse" => roundtrip::<ChatCompletionResponse>(raw),
        "ChatCompletionChunk" => roundtrip::<ChatCompletionChunk>(raw),
        "InputTokensResponse" => roundtrip::<oa::chat::InputTokensResponse>(raw),
        "ChatControlResponse" => roundtrip::<oa::chat::ChatControlResponse>(raw),
        "ResponsesResponse" => roundtrip::<responses::ResponsesResponse>(raw),
        "ResponsesStreamEvent" => roundtrip::<responses::ResponsesStreamEvent>(raw),
        "MessagesResponse" => roundtrip::<MessagesResponse>(raw),
        "MessagesStreamEvent" => roundtrip::<MessagesStreamEvent>(raw),
        "CountTokensResponse" => roundtrip::<an::CountTokensResponse>(raw),
        "SlotsResponse" => roundtrip::<slots::SlotsResponse>(raw),
        "SlotSaveResponse" => roundtrip::<slots::SlotSaveResponse>(raw),
        "SlotRestoreResponse" => roundtrip::<slots::SlotRestoreResponse>(raw),
        "SlotEraseResponse" => roundtrip::<slots::SlotEraseResponse>(raw),
        "LoraAdaptersResponse" => roundtrip::<lora::LoraAdaptersResponse>(raw),
        "EmbeddingResponse" => roundtrip::<na::embedding::EmbeddingResponse>(raw),
        "OaiEmbeddingResponse" => roundtrip::<OaiEmbeddingResponse>(raw),
        "RouterModelList" => roundtrip::<RouterModelList>(raw),
        other => Err(format!("no typed response registered for `{other}`")),
    }
}

#[test]
fn every_fixture_round_trips_through_its_type() {
    let mut failures = Vec::new();
    let mut payloads = 0;
    for e in index() {
        let name = e["name"].as_str().expect("name");
        let ty = e["type"].as_str().expect("type");
        let text = std::fs::read_to_string(dir().join(e["file"].as_str().expect("file")))
            .expect("fixture file");
        match e["format"].as_str().expect("format") {
            "json" => {
                let raw: Value = serde_json::from_str(&text).expect("fixture is JSON");
                payloads += 1;
                if let Err(err) = check(ty, &raw) {
                    failures.push(format!("{name}: {err}"));
                }
            }
            "sse" => {
                let events = parse_sse(&text);
                assert!(events.len() > 1, "{name}: only {} events", events.len());
                for (i, ev) in events.iter().enumerate() {
                    if ev.is_done() {
                        assert_eq!(i, events.len() - 1, "{name}: [DONE] before the end");
                        continue;
                    }
                    let raw: Value = serde_json::from_str(&ev.data).expect("SSE data is JSON");
                    let ty = if ev.event.as_deref() == Some("error") {
                        "ErrorBody"
                    } else {
                        ty
                    };
                    payloads += 1;
                    if let Err(err) = check(ty, &raw) {
                        failures.push(format!("{name} event {i}: {err}"));
                    }
                }
            }
            "text" => {
                let m = Metrics::parse(&text).map_err(|e| format!("{name}: {e}"));
                if let Err(err) = m {
                    failures.push(err);
                }
            }
            other => failures.push(format!("{name}: unknown format {other}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(payloads > 80, "only {payloads} payloads checked");
}

#[test]
fn fixtures_cover_every_endpoint() {
    let recorded: BTreeSet<String> = index()
        .iter()
        .map(|e| {
            let p = e["path"].as_str().expect("path");
            p.split('?').next().unwrap_or(p).to_owned()
        })
        .collect();
    let endpoints = [
        "/health",
        "/props",
        "/completion",
        "/tokenize",
        "/detokenize",
        "/apply-template",
        "/embedding",
        "/embeddings",
        "/reranking",
        "/infill",
        "/slots",
        "/slots/0",
        "/metrics",
        "/lora-adapters",
        "/v1/models",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/models",
        "/models/load",
        "/models/unload",
    ];
    let missing: Vec<&str> = endpoints
        .iter()
        .copied()
        .filter(|e| !recorded.contains(*e))
        .collect();
    assert!(
        missing.is_empty(),
        "endpoints without a fixture: {missing:?}"
    );
}

#[test]
fn typed_values_of_native_fixtures() {
    let tok: TokenizeResponse = serde_json::from_str(&body("tokenize_bytes")).expect("tokenize");
    assert!(
        tok.tokens.iter().any(
            |t| matches!(t, TokenizedToken::WithPiece(p) if matches!(p.piece, Piece::Bytes(_)))
        ),
        "{tok:?}"
    );
    let tok: TokenizeResponse = serde_json::from_str(&body("tokenize")).expect("tokenize");
    assert_eq!(tok.ids(), [1, 15043, 3186]);

    let c: CompletionResponse = serde_json::from_str(&body("completion")).expect("completion");
    assert_eq!(c.stop_type, Some(StopType::Limit));
    assert_eq!(c.tokens.len(), 8);
    assert_eq!(c.tokens_predicted, 8);
    assert!(c.timings.and_then(|t| t.predicted_n).is_some());

    let c: CompletionResponse =
        serde_json::from_str(&body("completion_post_sampling_probs")).expect("completion");
    let probs = c.completion_probabilities.expect("probs");
    assert!(probs[0].prob.is_some() && probs[0].top_probs.is_some() && probs[0].logprob.is_none());

    let chunks: Vec<CompletionChunk> = parse_sse(&body("completion_stream"))
        .iter()
        .map(|e| e.json().expect("chunk"))
        .collect();
    assert!(
        chunks
            .last()
            .is_some_and(|c| c.stop && c.stop_type.is_some())
    );
    assert!(chunks.iter().any(|c| c.prompt_progress.is_some()));
}

#[test]
fn typed_values_of_openai_fixtures() {
    let chat: ChatCompletionResponse = serde_json::from_str(&body("chat_logprobs")).expect("chat");
    assert_eq!(chat.choices[0].finish_reason, Some(FinishReason::Length));
    assert!(
        chat.choices[0]
            .logprobs
            .as_ref()
            .and_then(|l| l.content.as_ref())
            .is_some_and(|c| !c.is_empty())
    );
    assert!(chat.text().is_some());

    let events = parse_sse(&body("chat_stream"));
    assert!(events.last().is_some_and(|e| e.is_done()));
    let usage_chunk: ChatCompletionChunk = events[events.len() - 2].json().expect("usage chunk");
    assert!(usage_chunk.usage.is_some_and(|u| u.total_tokens > 0));

    let e: OaiEmbeddingResponse =
        serde_json::from_str(&body("v1_embeddings_base64")).expect("embeddings");
    assert!(matches!(e.data[0].embedding, EmbeddingVector::Base64(_)));
    let e: OaiEmbeddingResponse = serde_json::from_str(&body("v1_embeddings")).expect("embeddings");
    assert!(matches!(&e.data[0].embedding, EmbeddingVector::Float(v) if v.len() == 64));
}

#[test]
fn typed_values_of_responses_and_messages_fixtures() {
    let m: MessagesResponse = serde_json::from_str(&body("messages")).expect("messages");
    assert!(matches!(m.content[0], ContentBlock::Text { .. }));
    let evs: Vec<MessagesStreamEvent> = parse_sse(&body("messages_stream"))
        .iter()
        .map(|e| e.json().expect("event"))
        .collect();
    assert!(matches!(
        evs.first(),
        Some(MessagesStreamEvent::MessageStart { .. })
    ));
    assert!(matches!(evs.last(), Some(MessagesStreamEvent::MessageStop)));

    let r: responses::ResponsesResponse =
        serde_json::from_str(&body("responses")).expect("responses");
    assert!(!r.output_text().is_empty());
    assert!(
        r.output
            .iter()
            .any(|o| matches!(o, responses::OutputItem::Message { .. })),
        "{r:?}"
    );
}

#[test]
fn typed_values_of_error_router_and_metrics_fixtures() {
    let err: ErrorBody = serde_json::from_str(&body("error_context_exceeded")).expect("error");
    assert_eq!(err.error.kind, ErrorType::ExceedContextSize);
    let err: ErrorBody = serde_json::from_str(&body("error_not_found")).expect("error");
    assert_eq!((err.error.code, err.error.kind), (404, ErrorType::NotFound));
    let err: ErrorBody = serde_json::from_str(&body("error_rerank_disabled")).expect("error");
    assert_eq!(err.error.kind, ErrorType::NotSupported);

    let models: RouterModelList = serde_json::from_str(&body("router_models")).expect("router");
    assert_eq!(
        models.data[0].status.as_ref().map(|s| &s.value),
        Some(&ModelState::Unloaded)
    );
    let models: RouterModelList =
        serde_json::from_str(&body("router_models_loaded")).expect("router");
    assert_eq!(
        models.data[0].status.as_ref().map(|s| &s.value),
        Some(&ModelState::Loaded)
    );

    let metrics = Metrics::parse(&body("metrics")).expect("metrics");
    let llama = metrics.llama();
    assert!(
        llama.prompt_tokens_total.is_some_and(|v| v > 0.0),
        "{llama:?}"
    );
    assert!(llama.tokens_predicted_total.is_some_and(|v| v > 0.0));
    assert!(
        metrics
            .families
            .iter()
            .any(|f| f.kind == Some(MetricKind::Counter))
    );
}

fn request_type(path: &str) -> Option<&'static str> {
    // Erase takes no body.
    if path.ends_with("action=erase") {
        return None;
    }
    Some(match path.split('?').next().unwrap_or(path) {
        "/completion" => "CompletionRequest",
        "/infill" => "InfillRequest",
        "/tokenize" => "TokenizeRequest",
        "/detokenize" => "DetokenizeRequest",
        "/apply-template" | "/v1/chat/completions" | "/v1/chat/completions/input_tokens" => {
            "ChatCompletionRequest"
        }
        "/v1/chat/completions/control" => "ChatControlRequest",
        "/embedding" | "/embeddings" => "EmbeddingRequest",
        "/v1/embeddings" => "OaiEmbeddingRequest",
        "/v1/completions" => "OaiCompletionRequest",
        "/v1/responses" | "/v1/responses/input_tokens" => "ResponsesRequest",
        "/v1/messages" | "/v1/messages/count_tokens" => "MessagesRequest",
        "/reranking" => "RerankRequest",
        "/slots/0" | "/slots/99" => "SlotFileRequest",
        "/lora-adapters" => "LoraAdaptersRequest",
        "/props" => "PropsUpdate",
        "/models/load" | "/models/unload" => "ModelRequest",
        _ => return None,
    })
}

fn check_request(ty: &str, raw: &Value) -> Result<(), String> {
    use lmcpp_types::{anthropic as an, native as na, openai as oa};
    match ty {
        "CompletionRequest" => roundtrip::<na::completion::CompletionRequest>(raw),
        "InfillRequest" => roundtrip::<na::infill::InfillRequest>(raw),
        "TokenizeRequest" => roundtrip::<na::tokenize::TokenizeRequest>(raw),
        "DetokenizeRequest" => roundtrip::<na::tokenize::DetokenizeRequest>(raw),
        "ChatCompletionRequest" => roundtrip::<oa::chat::ChatCompletionRequest>(raw),
        "ChatControlRequest" => roundtrip::<oa::chat::ChatControlRequest>(raw),
        "EmbeddingRequest" => roundtrip::<na::embedding::EmbeddingRequest>(raw),
        "OaiEmbeddingRequest" => roundtrip::<oa::embeddings::OaiEmbeddingRequest>(raw),
        "OaiCompletionRequest" => roundtrip::<oa::completions::OaiCompletionRequest>(raw),
        "ResponsesRequest" => roundtrip::<responses::ResponsesRequest>(raw),
        "MessagesRequest" => roundtrip::<an::MessagesRequest>(raw),
        "RerankRequest" => roundtrip::<na::rerank::RerankRequest>(raw),
        "SlotFileRequest" => roundtrip::<slots::SlotFileRequest>(raw),
        "LoraAdaptersRequest" => roundtrip::<lora::LoraAdaptersRequest>(raw),
        "PropsUpdate" => roundtrip::<props::PropsUpdate>(raw),
        "ModelRequest" => roundtrip::<router::ModelRequest>(raw),
        other => Err(format!("no request type `{other}`")),
    }
}

/// The requests the server accepted while recording decode into the typed requests and
/// re-encode to the same JSON, so a client built on these types can send them.
#[test]
fn recorded_requests_round_trip_through_request_types() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for e in index() {
        let name = e["name"].as_str().expect("name");
        let path = e["path"].as_str().expect("path");
        let accepted = e["status"].as_u64().is_some_and(|s| s < 400);
        let (Some(ty), Some(raw), true) = (
            request_type(path),
            e.get("request").filter(|r| !r.is_null()),
            accepted,
        ) else {
            continue;
        };
        checked += 1;
        if let Err(err) = check_request(ty, raw) {
            failures.push(format!("{name} ({ty}): {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 40, "only {checked} requests checked");
}
