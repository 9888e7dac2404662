//! Streaming, concurrency and error recovery against the real server.

use std::time::Duration;

use futures_util::StreamExt;
use lmcpp_server::{Error, HttpPort, TransportChoice};
use lmcpp_types::{
    native::completion::CompletionRequest,
    openai::{chat::ChatCompletionRequest, completions::OaiCompletionRequest},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::support::launch;

fn req<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("request JSON matches the typed request")
}

#[tokio::test]
async fn streamed_completion_and_chat_concatenate_to_the_plain_result() {
    for transport in [TransportChoice::Unix, TransportChoice::Http(HttpPort::Auto)] {
        let dir = tempfile::tempdir().unwrap();
        let server = launch(dir.path(), transport, |_| {}).await;
        let client = server.client();

        let completion: CompletionRequest = req(json!({
            "prompt": "The quick brown fox", "n_predict": 24, "temperature": 0.0,
            "seed": 42, "ignore_eos": true, "timings_per_token": true
        }));
        let plain = client.completion(&completion).await.unwrap();
        let chunks: Vec<_> = client
            .completion_stream(&completion)
            .await
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        // One chunk per token, each sent when its token was generated: the first one
        // left the server when one token of 24 existed.
        assert!(chunks.len() >= 24, "{} chunks", chunks.len());
        assert!(!chunks[0].stop && chunks.last().unwrap().stop);
        let predicted = |c: &lmcpp_types::native::completion::CompletionChunk| {
            c.timings.as_ref().and_then(|t| t.predicted_n)
        };
        assert_eq!(predicted(&chunks[0]), Some(1));
        assert_eq!(predicted(chunks.last().unwrap()), Some(24));
        let streamed: String = chunks.iter().map(|c| c.content.as_str()).collect();
        assert_eq!(streamed, plain.content);

        let chat: ChatCompletionRequest = req(json!({
            "messages": [{"role": "user", "content": "Tell me a story"}],
            "max_tokens": 24, "temperature": 0.0, "seed": 42
        }));
        let plain = client.chat_completions(&chat).await.unwrap();
        let chunks: Vec<_> = client
            .chat_completions_stream(&chat)
            .await
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        let streamed: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.content.as_deref())
            .collect();
        assert_eq!(streamed, plain.text().unwrap_or_default());

        let oai: OaiCompletionRequest = req(json!({
            "prompt": "Once", "max_tokens": 8, "temperature": 0.0, "seed": 42
        }));
        let plain = client.completions(&oai).await.unwrap();
        let streamed: String = client
            .completions_stream(&oai)
            .await
            .unwrap()
            .map(|c| {
                c.unwrap()
                    .choices
                    .first()
                    .map(|c| c.text.clone())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(streamed, plain.choices[0].text);
        server.stop().await.unwrap();
    }
}

/// `--threads-http` among the raw arguments is not counted by lmcpp: the cap then comes
/// from the `http threads: N` a server logs (an older llama.cpp does), and a server that
/// logs no such line gets none.
#[tokio::test]
async fn threads_set_in_raw_arguments_are_read_from_the_log_of_an_older_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = launch(dir.path(), TransportChoice::Unix, |a| {
        a.extra = vec!["--threads-http".into(), "3".into()];
    })
    .await;
    // The server is ready, so its listening line is in the log if it writes one.
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    let expected = if log.contains("http threads: 3") {
        Some(2)
    } else {
        assert!(!log.contains("http threads:"), "{log}");
        crate::support::supports().lacks(
            "threads_set_in_raw_arguments_are_read_from_the_log_of_an_older_server",
            "an `http threads: N` log line",
            "lmcpp sets no connection cap",
        );
        None
    };
    assert_eq!(server.max_connections(), expected);
    server.stop().await.unwrap();
}

/// `logit_bias` that bans the byte tokens of the demo model's vocabulary (the LLaMA
/// SentencePiece one: `<0x00>` to `<0xFF>` are ids 3 to 258).
fn byte_tokens_banned() -> serde_json::Value {
    (3..=258).map(|id| json!([id, false])).collect()
}

#[tokio::test]
async fn sixteen_concurrent_completions_on_four_slots() {
    let dir = tempfile::tempdir().unwrap();
    let server = launch(dir.path(), TransportChoice::Unix, |_| {}).await;
    // lmcpp starts every server with `--threads-http max(parallel + 2, cores - 1)` and
    // its client holds one connection fewer, so a burst never waits behind a thread that
    // one of its own idle keep-alive connections holds (an older llama.cpp has only those
    // threads: 10 s for this burst before the cap; a newer one adds threads only when
    // none is idle as a connection arrives, which a burst outruns). Both versions log or
    // take the number, so both are capped.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = 6.max(cores.saturating_sub(1));
    assert_eq!(server.max_connections(), Some(threads - 1));
    assert!(
        server
            .record()
            .args
            .windows(2)
            .any(|w| w[0] == "--threads-http" && w[1] == threads.to_string()),
        "{:?}",
        server.record().args
    );
    let client = server.client();
    let calls = (0..16).map(|i| {
        let client = client.clone();
        async move {
            // The burst is the subject, not the text: the demo model's byte tokens are
            // banned, since a lone one is text that some llama-server versions cannot
            // answer (a 500, "Failed to parse input").
            let r: CompletionRequest = req(json!({
                "prompt": format!("Request number {i}"), "n_predict": 16, "ignore_eos": true,
                "logit_bias": byte_tokens_banned()
            }));
            client.completion(&r).await
        }
    });
    let results = futures_util::future::join_all(calls).await;
    for r in results {
        assert_eq!(r.unwrap().tokens_predicted, 16);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_error_answer_leaves_the_client_usable() {
    let dir = tempfile::tempdir().unwrap();
    let server = launch(dir.path(), TransportChoice::Http(HttpPort::Auto), |_| {}).await;
    let client = server.client();
    // A server without the route answers 404, an error answer too.
    let present =
        crate::support::has_route(&client, http::Method::POST, "/v1/chat/completions/control")
            .await;
    for _ in 0..3 {
        let bad = client
            .raw_json(
                http::Method::POST,
                "/v1/chat/completions/control",
                Some(&json!({})),
            )
            .await;
        let expected = if present {
            matches!(bad, Err(Error::Api { status: 400, .. }))
        } else {
            crate::support::supports().lacks(
                "an_error_answer_leaves_the_client_usable",
                "/v1/chat/completions/control",
                "its 404 is Error::Unsupported and the next request on the client succeeds",
            );
            matches!(bad, Err(Error::Unsupported { status: 404, .. }))
        };
        assert!(expected, "{bad:?}");
        let r: CompletionRequest = req(json!({"prompt": "hi", "n_predict": 2}));
        client.completion(&r).await.unwrap();
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let server = launch(dir.path(), TransportChoice::Unix, |args| {
        args.metrics = true;
        args.parallel = Some(1);
    })
    .await;
    let client = server.client();
    let long: CompletionRequest = req(json!({
        "prompt": "x", "n_predict": 1500, "ignore_eos": true
    }));
    let mut stream = client.completion_stream(&long).await.unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    // Once the slot is idle again, far fewer than the requested tokens were generated.
    let mut idle = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if client
            .slots()
            .await
            .unwrap()
            .iter()
            .all(|s| !s.is_processing)
        {
            idle = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(idle);
    let predicted = client
        .metrics()
        .await
        .unwrap()
        .llama()
        .tokens_predicted_total
        .unwrap_or(0.0);
    assert!(
        predicted < 1500.0,
        "generated {predicted} tokens after the drop"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn plain_requests_after_streams_reuse_no_dead_connection() {
    // llama-server closes the connection after a streamed response; a client that
    // pooled it would fail the next request about half of the time.
    let dir = tempfile::tempdir().unwrap();
    let server = launch(dir.path(), TransportChoice::Unix, |_| {}).await;
    let client = server.client();
    let r: CompletionRequest = req(json!({"prompt": "hi", "n_predict": 2}));
    for _ in 0..10 {
        let chunks: Vec<_> = client.completion_stream(&r).await.unwrap().collect().await;
        assert!(chunks.iter().all(Result::is_ok));
        client.completion(&r).await.unwrap();
    }
    server.stop().await.unwrap();
}
