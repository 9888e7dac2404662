//! Every typed endpoint against the real server, over a Unix socket and over HTTP.

use lmcpp_server::{Client, Error, HttpPort, TransportChoice};
use lmcpp_types::{
    anthropic::MessagesRequest,
    native::{
        completion::CompletionRequest,
        embedding::EmbeddingRequest,
        infill::InfillRequest,
        rerank::RerankRequest,
        template::ApplyTemplateRequest,
        tokenize::{DetokenizeRequest, TokenizeRequest},
    },
    openai::{
        chat::{ChatCompletionRequest, ChatControlRequest},
        completions::OaiCompletionRequest,
        embeddings::OaiEmbeddingRequest,
    },
    props::PropsUpdate,
    responses::ResponsesRequest,
    slots::SlotFileRequest,
};
use serde_json::json;

use crate::support::{has_route, launch, ok_or_unsupported, req};

fn transports() -> [TransportChoice; 2] {
    [TransportChoice::Unix, TransportChoice::Http(HttpPort::Auto)]
}

fn chat() -> ChatCompletionRequest {
    req(json!({
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 4, "temperature": 0.0, "seed": 1
    }))
}

async fn generation_endpoints(client: &Client, slot_dir: &std::path::Path) {
    let health = client.health().await.unwrap();
    assert_eq!(health.status.as_str(), "ok");

    let props = client.props().await.unwrap();
    assert!(props.default_generation_settings.is_some());
    let update: PropsUpdate = req(json!({}));
    client.set_props(&update).await.unwrap();

    let tokens = client
        .tokenize(&TokenizeRequest::new("hello world"))
        .await
        .unwrap();
    assert!(!tokens.ids().is_empty());
    let text = client
        .detokenize(&DetokenizeRequest::new(tokens.ids()))
        .await
        .unwrap();
    assert!(text.content.contains("hello world"), "{text:?}");

    let completion = client
        .completion(&req::<CompletionRequest>(json!({
            "prompt": "Once upon", "n_predict": 4, "temperature": 0.0
        })))
        .await
        .unwrap();
    assert!(!completion.content.is_empty());

    let template = client
        .apply_template(&req::<ApplyTemplateRequest>(json!({
            "messages": [{"role": "user", "content": "hi"}]
        })))
        .await
        .unwrap();
    assert!(template.prompt.contains("hi"));

    let slots = client.slots().await.unwrap();
    assert_eq!(slots.len(), 4);
    let file: SlotFileRequest = req(json!({"filename": "slot0.bin"}));
    client.slot_save(0, &file).await.unwrap();
    assert!(slot_dir.join("slot0.bin").exists());
    client.slot_restore(0, &file).await.unwrap();
    client.slot_erase(0).await.unwrap();

    let metrics = client.metrics().await.unwrap();
    assert!(metrics.llama().tokens_predicted_total.unwrap_or(0.0) >= 4.0);

    assert!(client.lora_adapters().await.unwrap().is_empty());
    client.set_lora_adapters(&Vec::new()).await.unwrap();

    let models = client.models().await.unwrap();
    assert_eq!(models.data.len(), 1);

    let oai = client
        .completions(&req::<OaiCompletionRequest>(json!({
            "prompt": "Once upon", "max_tokens": 4, "temperature": 0.0
        })))
        .await
        .unwrap();
    assert_eq!(oai.choices.len(), 1);

    let chat_res = client.chat_completions(&chat()).await.unwrap();
    assert!(chat_res.text().is_some());
    newer_endpoints(client).await;
    refused_endpoints(client).await;
}

/// Endpoints that not every llama.cpp has (the OpenAI input-token counts, `/v1/responses`,
/// the Anthropic messages): each answers where the server has the route and is a typed
/// "unsupported" error naming it where it has not.
async fn newer_endpoints(client: &Client) {
    const TEST: &str = "every_generation_endpoint_over_both_transports";
    let present = |path: &'static str| has_route(client, http::Method::POST, path);

    let path = "/v1/chat/completions/input_tokens";
    let counted = client.chat_input_tokens(&chat()).await;
    if let Some(c) = ok_or_unsupported(TEST, present(path).await, counted, path) {
        assert!(c.input_tokens > 0);
    }

    let responses: ResponsesRequest = req(json!({"input": "hi", "max_output_tokens": 3}));
    let path = "/v1/responses";
    let answer = client.responses(&responses).await;
    if let Some(res) = ok_or_unsupported(TEST, present(path).await, answer, path) {
        assert!(!res.output.is_empty());
    }
    let path = "/v1/responses/input_tokens";
    let counted = client.responses_input_tokens(&responses).await;
    if let Some(c) = ok_or_unsupported(TEST, present(path).await, counted, path) {
        assert!(c.input_tokens > 0);
    }

    let messages: MessagesRequest = req(json!({
        "model": "demo", "max_tokens": 3,
        "messages": [{"role": "user", "content": "hi"}]
    }));
    let path = "/v1/messages";
    let answer = client.messages(&messages).await;
    if let Some(msg) = ok_or_unsupported(TEST, present(path).await, answer, path) {
        assert!(!msg.content.is_empty());
    }
    let path = "/v1/messages/count_tokens";
    let counted = client.count_tokens(&messages).await;
    if let Some(c) = ok_or_unsupported(TEST, present(path).await, counted, path) {
        assert!(c.input_tokens > 0);
    }
}

/// Endpoints this model or server cannot serve: each answers with a typed error.
async fn refused_endpoints(client: &Client) {
    let infill: InfillRequest = req(json!({"input_prefix": "def f(", "input_suffix": "1"}));
    match client.infill(&infill).await {
        Err(Error::Unsupported {
            status: 501, path, ..
        }) => assert_eq!(path, "/infill"),
        other => panic!("{other:?}"),
    }
    let rerank: RerankRequest = req(json!({"query": "a", "documents": ["b", "c"]}));
    match client.rerank(&rerank).await {
        Err(Error::Unsupported {
            status: 501,
            message,
            ..
        }) => assert!(message.contains("--reranking"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Stopping an unknown generation: the server's refusal where it has the route, the
    // typed "unsupported" error where it has not.
    let control: ChatControlRequest = req(json!({"id": "chatcmpl-unknown", "action": "stop"}));
    let path = "/v1/chat/completions/control";
    let present = has_route(client, http::Method::POST, path).await;
    match client.chat_control(&control).await {
        Err(Error::Api {
            status: 400 | 404, ..
        }) if present => {}
        Err(Error::Unsupported {
            status: 404,
            path: p,
            ..
        }) if !present && p == path => crate::support::supports().lacks(
            "every_generation_endpoint_over_both_transports",
            path,
            "lmcpp returns Error::Unsupported naming it",
        ),
        other => panic!("{path} (route present: {present}): {other:?}"),
    }
    // Not in router mode: the router's load endpoint does not exist.
    let load = req(json!({"model": "x"}));
    match client.load_model(&load).await {
        Err(Error::Unsupported {
            status: 404, path, ..
        }) => assert_eq!(path, "/models/load"),
        other => panic!("{other:?}"),
    }
    assert!(!client.router_models().await.unwrap().data.is_empty());
}

#[tokio::test]
async fn every_generation_endpoint_over_both_transports() {
    for transport in transports() {
        let dir = tempfile::tempdir().unwrap();
        let slot_dir = dir.path().join("slots");
        std::fs::create_dir(&slot_dir).unwrap();
        let server = launch(dir.path(), transport, |args| {
            args.metrics = true;
            args.props = true;
            args.slot_save_path = Some(slot_dir.clone());
        })
        .await;
        generation_endpoints(&server.client(), &slot_dir).await;
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn embedding_endpoints_over_both_transports() {
    for transport in transports() {
        let dir = tempfile::tempdir().unwrap();
        let server = launch(dir.path(), transport, |args| {
            args.embeddings = true;
            args.pooling = Some("mean".into());
        })
        .await;
        let client = server.client();
        let native = client
            .embedding(&req::<EmbeddingRequest>(json!({"content": "hello"})))
            .await
            .unwrap();
        assert_eq!(native.len(), 1);
        assert_eq!(native[0].embedding[0].len(), 64);
        let oai = client
            .embeddings(&req::<OaiEmbeddingRequest>(json!({"input": ["a", "b"]})))
            .await
            .unwrap();
        assert_eq!(oai.data.len(), 2);
        server.stop().await.unwrap();
    }
}
