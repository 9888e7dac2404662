//! The generated demo model in the real server: it tokenizes like the vocab's reference
//! tokenizer, completes deterministically at temperature 0, chats with its template,
//! embeds with mean pooling and answers reranking requests.

use std::path::Path;

use lmcpp_server::{Error, TransportChoice};
use lmcpp_test_support::PreparedPaths;
use lmcpp_types::common::TokenId;
use lmcpp_types::native::completion::CompletionRequest;
use lmcpp_types::native::rerank::RerankRequest;
use lmcpp_types::native::tokenize::TokenizeRequest;
use lmcpp_types::openai::chat::ChatCompletionRequest;
use lmcpp_types::openai::embeddings::{EmbeddingVector, OaiEmbeddingRequest};
use serde_json::json;

use crate::support::{launch, paths, req};

/// The token ids llama.cpp's own tokenizer test expects for `text`, from the
/// `<vocab>.inp` / `<vocab>.out` pair shipped next to the vocab file or in the source
/// tree's `models` dir.
fn reference_tokens(p: &PreparedPaths, text: &str) -> Vec<TokenId> {
    let name = p
        .vocab_gguf
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let candidates = [
        p.vocab_gguf.parent().map(Path::to_path_buf),
        p.source_dir.as_ref().map(|d| d.join("models")),
    ];
    let dir = candidates
        .into_iter()
        .flatten()
        .find(|d| d.join(format!("{name}.inp")).is_file())
        .unwrap_or_else(|| {
            panic!("no {name}.inp/.out next to the vocab file or in source_dir/models; run `cargo xtask prepare`")
        });
    let inp = std::fs::read_to_string(dir.join(format!("{name}.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap();
    let inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let outputs: Vec<&str> = out.lines().collect();
    let i = inputs
        .iter()
        .position(|s| *s == text)
        .unwrap_or_else(|| panic!("{text:?} is not in {name}.inp"));
    outputs[i]
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn demo_model_tokenizes_completes_chats_and_embeds() {
    let p = paths();
    let dir = tempfile::tempdir().unwrap();
    let server = launch(dir.path(), TransportChoice::Unix, |args| {
        args.embeddings = true;
        args.pooling = Some("mean".into());
    })
    .await;
    let client = server.client();

    // Tokenization matches llama.cpp's reference for this vocab.
    let tokens = client
        .tokenize(&TokenizeRequest::new("Hello world"))
        .await
        .unwrap();
    assert_eq!(tokens.ids(), reference_tokens(&p, "Hello world"));

    // Greedy completion is deterministic.
    let request: CompletionRequest = req(json!({
        "prompt": "Hello world",
        "n_predict": 8,
        "temperature": 0.0,
        "ignore_eos": true,
        "cache_prompt": false,
        "seed": 1,
    }));
    // A llama-server that cannot answer with text that is not valid UTF-8 (this model's
    // eighth token is a lone byte) refuses with a 500, which lmcpp must pass on typed, with
    // the server's words; determinism is then checked on the text before that token.
    let (request, n) = match client.completion(&request).await {
        Err(Error::Api {
            status: 500, error, ..
        }) if error.message.starts_with("Failed to parse input") => {
            crate::support::supports().lacks(
                "demo_model_tokenizes_completes_chats_and_embeds",
                "completions whose text is not valid UTF-8 (500 Failed to parse input)",
                "lmcpp returns Error::Api 500 with the server's message",
            );
            (request.clone().n_predict(7), 7)
        }
        other => {
            other.unwrap();
            (request, 8)
        }
    };
    let a = client.completion(&request).await.unwrap();
    let b = client.completion(&request).await.unwrap();
    assert_eq!(a.tokens_predicted, n, "{a:?}");
    assert_eq!(a.content, b.content);
    assert!(!a.content.is_empty());

    // The chat template makes chat completions work.
    let chat: ChatCompletionRequest = req(json!({
        "messages": [{ "role": "user", "content": "hi" }],
        "max_tokens": 4,
        "temperature": 0.0,
    }));
    let chat = client.chat_completions(&chat).await.unwrap();
    assert!(chat.text().is_some(), "{chat:?}");
    let props = client.props().await.unwrap();
    assert!(
        props.chat_template.contains("<|im_start|>"),
        "{}",
        props.chat_template
    );

    // Mean pooling gives one 64-wide embedding.
    let emb = client
        .embeddings(&OaiEmbeddingRequest::new("hello"))
        .await
        .unwrap();
    match &emb.data[0].embedding {
        EmbeddingVector::Float(v) => assert_eq!(v.len(), 64, "{emb:?}"),
        other => panic!("float embedding expected: {other:?}"),
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn demo_model_serves_reranking() {
    let dir = tempfile::tempdir().unwrap();
    // Rank pooling on a model without a classifier head: a current llama.cpp scores by the
    // last token's embedding (meaningless numbers, but a real `/reranking` round trip); one
    // of August 2025 aborts while building the pooling, which lmcpp must report as a typed
    // start-up failure with the server's own words.
    let mut opts = crate::support::options(dir.path(), TransportChoice::Unix);
    opts.args.reranking = true;
    let server = match lmcpp_server::Server::launch(opts).await {
        Ok(server) => server,
        Err(lmcpp_server::Error::Exited { log_tail, .. })
            if log_tail
                .iter()
                .any(|l| l.contains("build_pooling") || l.contains("abort")) =>
        {
            crate::support::supports().lacks(
                "demo_model_serves_reranking",
                "rank pooling for a model without a classifier head (it aborts)",
                "lmcpp reports Error::Exited with the abort in the log tail",
            );
            return;
        }
        Err(other) => panic!("the demo model with --reranking: {other}"),
    };
    let r = server
        .client()
        .rerank(&RerankRequest::new(
            "what is a llama",
            vec!["a llama".into(), "rust".into(), "hello".into()],
        ))
        .await
        .unwrap();
    let mut indexes: Vec<i64> = r
        .results
        .iter()
        .map(|x| {
            assert!(x.relevance_score.is_some(), "{x:?}");
            x.index
        })
        .collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [0, 1, 2], "{r:?}");
    server.stop().await.unwrap();
}
