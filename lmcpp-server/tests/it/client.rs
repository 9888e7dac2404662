//! The client against the loopback mock, over TCP and a Unix socket.

use std::{sync::atomic::Ordering, time::Duration};

use futures_util::StreamExt;
use http::Method;
use lmcpp_server::{Client, Error};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::{self, BARRIER, BIG};

#[derive(Debug, Deserialize, PartialEq)]
struct Chunk {
    content: String,
}

#[tokio::test]
async fn error_body_is_typed_and_the_connection_stays_usable() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        let err = client.get::<Value>("/err").await.unwrap_err();
        let Error::Api {
            status,
            path,
            error,
        } = err
        else {
            panic!("expected an API error, got {err:?}");
        };
        assert_eq!((status, path.as_str()), (400, "/err"));
        assert_eq!(error.message, "bad things");
        assert_eq!(error.code, 400);
        // The next request reuses the same keep-alive connection.
        let ok: Value = client.get("/health").await.unwrap();
        assert_eq!(ok, json!({"status": "ok"}));
        assert_eq!(mock.stats.connections.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn non_json_error_bodies_keep_their_text() {
    for mock in support::both().await {
        let err = Client::new(mock.endpoint.clone())
            .get::<Value>("/plain-err")
            .await
            .unwrap_err();
        match err {
            Error::Api { status, error, .. } => {
                assert_eq!(status, 502);
                assert_eq!(error.message, "upstream down");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn large_bodies_are_not_truncated() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        let big: String = client.get("/big").await.unwrap();
        assert_eq!(big.len(), BIG);
        let payload = json!({"text": "y".repeat(BIG)});
        let echoed = client
            .raw_json(Method::POST, "/echo", Some(&payload))
            .await
            .unwrap();
        assert_eq!(echoed, payload);
    }
}

#[tokio::test]
async fn many_requests_run_concurrently_on_one_client() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        // The mock answers only when BARRIER requests wait at once: a client that
        // serialised requests would never get an answer.
        let calls = (0..BARRIER).map(|_| {
            let client = client.clone();
            async move { client.get::<bool>("/barrier").await }
        });
        let results = tokio::time::timeout(
            Duration::from_secs(20),
            futures_util::future::join_all(calls),
        )
        .await
        .expect("requests were serialised");
        assert!(results.into_iter().all(|r| r.unwrap()));
    }
}

#[tokio::test]
async fn connections_go_back_to_the_pool_but_streamed_ones_do_not() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        let calls = (0..BARRIER).map(|_| {
            let client = client.clone();
            async move { client.get::<bool>("/barrier").await }
        });
        let results = tokio::time::timeout(
            Duration::from_secs(20),
            futures_util::future::join_all(calls),
        )
        .await
        .expect("requests were serialised");
        assert!(results.into_iter().all(|r| r.unwrap()));
        assert_eq!(mock.stats.connections.load(Ordering::SeqCst), BARRIER);
        // Every one of those connections is idle now, so neither sequential nor
        // concurrent requests need a new one.
        for _ in 0..3 {
            let _: Value = client.get("/health").await.unwrap();
        }
        let calls = (0..4).map(|_| {
            let client = client.clone();
            async move { client.get::<Value>("/health").await }
        });
        for r in futures_util::future::join_all(calls).await {
            r.unwrap();
        }
        assert_eq!(mock.stats.connections.load(Ordering::SeqCst), BARRIER);
        // A streamed response asks for the close, so its connection is not pooled, and
        // the request after it does not trip over the closed connection.
        let client = Client::new(mock.endpoint.clone());
        let stream = client.stream::<_, Chunk>("/sse", &json!({})).await.unwrap();
        assert_eq!(stream.count().await, 3);
        assert_eq!(mock.stats.connections.load(Ordering::SeqCst), BARRIER + 1);
        let _: Value = client.get("/health").await.unwrap();
        let _: Value = client.get("/health").await.unwrap();
        assert_eq!(mock.stats.connections.load(Ordering::SeqCst), BARRIER + 2);
    }
}

#[tokio::test]
async fn bad_paths_are_transport_errors_not_panics() {
    let mock = support::tcp().await;
    let client = Client::new(mock.endpoint.clone());
    for path in ["health", "/a b", ""] {
        match client.get::<Value>(path).await {
            Err(Error::Transport {
                path: p, message, ..
            }) => {
                assert_eq!(p, path);
                assert!(message.contains("invalid request path"), "{message}");
            }
            other => panic!("{path:?}: {other:?}"),
        }
    }
    let _: Value = client.get("/health").await.unwrap();
}

#[tokio::test]
async fn timeouts_are_per_request() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        assert_eq!(
            client.timeout(),
            Some(lmcpp_server::DEFAULT_REQUEST_TIMEOUT)
        );
        // A lone /barrier request never completes, so only the timeout can end it.
        let short = client.with_timeout(Some(Duration::from_millis(100)));
        match short.get::<bool>("/barrier").await {
            Err(Error::Timeout { timeout, path, .. }) => {
                assert_eq!(timeout, Duration::from_millis(100));
                assert_eq!(path, "/barrier");
            }
            other => panic!("{other:?}"),
        }
        let _: Value = client.get("/health").await.unwrap();
    }
}

#[tokio::test]
async fn api_key_is_sent_as_bearer() {
    let mock = support::tcp().await;
    let client = Client::builder(mock.endpoint.clone())
        .api_key("s3cret")
        .build();
    let _: Value = client.get("/health").await.unwrap();
    assert_eq!(
        mock.stats.last_auth.lock().unwrap().as_deref(),
        Some("Bearer s3cret")
    );
}

#[tokio::test]
async fn stream_yields_typed_chunks_until_done() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        let stream = client
            .stream::<_, Chunk>("/sse", &json!({"prompt": "x"}))
            .await
            .unwrap();
        let chunks: Vec<String> = stream.map(|c| c.unwrap().content).collect().await;
        // Pieces split mid-line, CRLF, comments and everything after [DONE] is ignored.
        assert_eq!(chunks, ["a", "b", "c"]);
    }
}

#[tokio::test]
async fn stream_reports_a_mid_stream_error_and_ends() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        let mut stream = client
            .stream::<_, Chunk>("/sse-error", &json!({}))
            .await
            .unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().content, "a");
        match stream.next().await {
            Some(Err(Error::Api { status, error, .. })) => {
                assert_eq!(status, 200);
                assert_eq!(error.message, "slot died");
            }
            other => panic!("{other:?}"),
        }
        assert!(stream.next().await.is_none());
    }
}

#[tokio::test]
async fn stream_error_status_is_an_api_error() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        match client.stream::<_, Chunk>("/err", &json!({})).await {
            Err(Error::Api { status: 400, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn dropping_a_stream_closes_its_connection() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        let mut stream = client
            .stream::<_, Chunk>("/sse-hold", &json!({}))
            .await
            .unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().content, "a");
        drop(stream);
        let closed = tokio::time::timeout(
            Duration::from_secs(5),
            mock.stats.stream_closed.lock().await.recv(),
        )
        .await;
        assert!(
            matches!(closed, Ok(Some(()))),
            "server did not see the disconnect"
        );
    }
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(lmcpp_server::Endpoint::unix(dir.path().join("none.sock")));
    match client.get::<Value>("/health").await {
        Err(Error::Transport { path, .. }) => assert_eq!(path, "/health"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_endpoint_the_server_lacks_is_a_typed_unsupported_error_naming_it() {
    for mock in support::both().await {
        let client = Client::new(mock.endpoint.clone());
        // The mock answers unknown routes like llama-server: 404 "File Not Found".
        match client.get::<Value>("/v1/responses?x=1").await.unwrap_err() {
            Error::Unsupported { path, status, .. } => {
                assert_eq!((path.as_str(), status), ("/v1/responses", 404));
            }
            other => panic!("{other:?}"),
        }
        // A 404 that is about something else stays an API error.
        match client.get::<Value>("/err").await.unwrap_err() {
            Error::Api { status: 400, .. } => {}
            other => panic!("{other:?}"),
        }
    }
}
