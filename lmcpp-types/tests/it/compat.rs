//! Forward compatibility: unknown fields and enum values decode; request unions encode
//! as the server expects.

use lmcpp_types::common::{Prompt, PromptItem};
use lmcpp_types::error::{ErrorBody, ErrorType};
use lmcpp_types::native::completion::{CompletionRequest, CompletionResponse, StopType};
use lmcpp_types::openai::chat::{
    ChatCompletionChunk, ChatCompletionRequest, ChatMessage, ContentPart, FinishReason,
    ResponseFormat, Role,
};
use serde_json::json;

#[test]
fn unknown_fields_and_enum_values_decode_and_survive() {
    let raw = json!({
        "content": "hi", "stop": true, "stop_type": "cosmic_ray",
        "brand_new_field": {"nested": [1, 2]}, "tokens": []
    });
    let r: CompletionResponse = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(r.stop_type, Some(StopType::Unknown("cosmic_ray".into())));
    assert_eq!(r.extra["brand_new_field"], json!({"nested": [1, 2]}));
    let back = serde_json::to_value(&r).unwrap();
    assert_eq!(back["brand_new_field"], raw["brand_new_field"]);
    assert_eq!(back["stop_type"], "cosmic_ray");

    let chunk: ChatCompletionChunk = serde_json::from_value(json!({
        "id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"role": "oracle", "content": "a", "mood": 1},
                     "finish_reason": "tired"}]
    }))
    .unwrap();
    let c = &chunk.choices[0];
    assert_eq!(c.delta.role, Some(Role::Unknown("oracle".into())));
    assert_eq!(c.finish_reason, Some(FinishReason::Unknown("tired".into())));
    assert_eq!(c.delta.extra["mood"], 1);
}

#[test]
fn error_body_decodes_to_typed_error() {
    let body = br#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#;
    let e = ErrorBody::parse(body).expect("error body");
    assert_eq!(e.error.code, 503);
    assert_eq!(e.error.kind, ErrorType::Unavailable);
    assert_eq!(e.error.message, "Loading model");
    let odd = ErrorBody::parse(
        br#"{"error":{"code":418,"message":"x","type":"teapot_error","n_ctx":4}}"#,
    )
    .expect("unknown type still decodes");
    assert_eq!(odd.error.kind, ErrorType::Unknown("teapot_error".into()));
    assert_eq!(odd.error.extra["n_ctx"], 4);
    assert!(ErrorBody::parse(b"{\"status\":\"ok\"}").is_none());
}

#[test]
fn prompt_union_follows_the_server_rules() {
    let cases = [
        (json!("s"), Prompt::Text("s".into())),
        (json!([1, 2]), Prompt::Tokens(vec![1, 2])),
        (
            json!([1, "a", 2]),
            Prompt::Mixed(vec![
                PromptItem::Token(1),
                PromptItem::Text("a".into()),
                PromptItem::Token(2),
            ]),
        ),
        (
            json!(["a", "b"]),
            Prompt::Many(vec![Prompt::Text("a".into()), Prompt::Text("b".into())]),
        ),
        (
            json!([[1, 2], "b", {"prompt_string": "p"}]),
            Prompt::Many(vec![
                Prompt::Tokens(vec![1, 2]),
                Prompt::Text("b".into()),
                Prompt::Multimodal(lmcpp_types::common::MultimodalPrompt {
                    prompt_string: "p".into(),
                    ..Default::default()
                }),
            ]),
        ),
    ];
    for (raw, want) in cases {
        let got: Prompt = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(got, want, "decoding {raw}");
        assert_eq!(serde_json::to_value(&got).unwrap(), raw, "encoding {raw}");
    }
    assert!(serde_json::from_value::<Prompt>(json!(3)).is_err());
}

#[test]
fn unset_options_are_omitted_and_false_or_negative_values_are_sent() {
    let mut req = CompletionRequest::new("hi").n_predict(-1);
    req.params.cache_prompt = Some(false);
    let v = serde_json::to_value(&req).unwrap();
    assert_eq!(
        v,
        json!({"prompt": "hi", "n_predict": -1, "cache_prompt": false})
    );
}

#[test]
fn chat_request_with_every_role_parts_tools_and_schema_encodes() {
    let mut req = ChatCompletionRequest::new(vec![
        ChatMessage::system("sys"),
        ChatMessage::developer("dev"),
        ChatMessage::user(vec![
            ContentPart::text("look"),
            ContentPart::image_url("data:image/png;base64,AA=="),
        ]),
        ChatMessage::assistant_tool_calls(vec![lmcpp_types::openai::chat::ToolCall {
            id: Some("c1".into()),
            kind: Some("function".into()),
            function: lmcpp_types::openai::chat::FunctionCall {
                name: Some("f".into()),
                arguments: "{}".into(),
            },
            ..Default::default()
        }]),
        ChatMessage::tool("c1", "42"),
    ])
    .max_tokens(8);
    req.response_format = Some(ResponseFormat::json_schema(
        "answer",
        json!({"type": "object"}),
    ));
    req.logprobs = Some(true);
    req.top_logprobs = Some(2);
    let v = serde_json::to_value(&req).unwrap();
    assert_eq!(
        v["messages"][2]["content"][1]["image_url"]["url"],
        "data:image/png;base64,AA=="
    );
    assert_eq!(v["messages"][3]["tool_calls"][0]["function"]["name"], "f");
    assert!(v["messages"][3].get("content").is_none());
    assert_eq!(v["messages"][4]["role"], "tool");
    assert_eq!(v["response_format"]["type"], "json_schema");
    assert_eq!(
        v["response_format"]["json_schema"]["schema"]["type"],
        "object"
    );
    let back: ChatCompletionRequest = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, req);

    let unknown: ContentPart =
        serde_json::from_value(json!({"type": "hologram", "data": 1})).unwrap();
    assert!(matches!(unknown, ContentPart::Other(_)));
}

#[test]
fn unknown_tagged_variants_are_kept_verbatim() {
    use lmcpp_types::anthropic::MessagesStreamEvent;
    use lmcpp_types::responses::OutputItem;
    let raw = json!({"type": "future_event", "payload": [1, 2, 3]});
    let ev: MessagesStreamEvent = serde_json::from_value(raw.clone()).unwrap();
    assert!(matches!(&ev, MessagesStreamEvent::Other(v) if *v == raw));
    assert_eq!(serde_json::to_value(&ev).unwrap(), raw);

    let item: OutputItem =
        serde_json::from_value(json!({"type": "web_search_call", "id": "x"})).unwrap();
    assert!(matches!(item, OutputItem::Other(_)));

    let rf: ResponseFormat =
        serde_json::from_value(json!({"type": "grammar", "grammar": "root ::= \"a\""})).unwrap();
    assert!(matches!(rf, ResponseFormat::Other(_)));
    let rf: ResponseFormat =
        serde_json::from_value(json!({"type": "json_object", "schema": {"type": "string"}}))
            .unwrap();
    assert!(matches!(rf, ResponseFormat::JsonObject { schema: Some(_) }));
}

#[test]
fn schemas_are_listed_by_name() {
    let all = lmcpp_types::schema::all();
    let names: std::collections::BTreeSet<&str> = all.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), all.len(), "duplicate schema names");
    for want in [
        "ChatCompletionRequest",
        "CompletionChunk",
        "ErrorBody",
        "Props",
        "MessagesRequest",
    ] {
        assert!(names.contains(want), "{want} missing");
    }
    let chat = lmcpp_types::schema::get("chatcompletionrequest").expect("case-insensitive lookup");
    assert_eq!(chat["title"], "ChatCompletionRequest");
    assert!(chat["properties"]["messages"].is_object(), "{chat}");
    assert!(lmcpp_types::schema::get("NoSuchType").is_none());
}

#[test]
fn tool_choice_forms() {
    use lmcpp_types::openai::chat::{ToolChoice, ToolChoiceMode};
    let auto: ToolChoice = serde_json::from_value(json!("auto")).unwrap();
    assert_eq!(auto, ToolChoice::Mode(ToolChoiceMode::Auto));
    let named = ToolChoice::function("get_weather");
    let v = serde_json::to_value(&named).unwrap();
    assert_eq!(
        v,
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(serde_json::from_value::<ToolChoice>(v).unwrap(), named);
    let future: ToolChoice = serde_json::from_value(json!("sometimes")).unwrap();
    assert_eq!(
        future,
        ToolChoice::Mode(ToolChoiceMode::Unknown("sometimes".into()))
    );
}
