//! The blocking API against the real llama-server: no async runtime in the caller.

use lmcpp::types::native::completion::CompletionRequest;
use lmcpp::types::native::tokenize::TokenizeRequest;
use lmcpp::types::openai::chat::{ChatCompletionRequest, ChatMessage};

#[test]
fn the_same_builder_starts_a_server_that_blocking_clients_and_streams_use() {
    let paths = crate::paths();
    let dir = tempfile::tempdir().unwrap();
    let running = lmcpp::Lmcpp::builder()
        .home(dir.path().join("home"))
        .runtime_dir(dir.path().join("run"))
        .llama_server(&paths.llama_server)
        .model(paths.demo_model.to_string_lossy())
        .alias("blocking-demo")
        .start_blocking()
        .unwrap_or_else(|e| panic!("{e}"));
    let client = running.client();

    let tokens = client
        .tokenize(&TokenizeRequest::new("Hello world"))
        .unwrap();
    assert!(!tokens.tokens.is_empty());
    let models = client.models().unwrap();
    assert_eq!(models.data[0].id, "blocking-demo");

    // A streamed chat is an iterator whose chunks add up to text.
    let request = ChatCompletionRequest::new(vec![ChatMessage::user("Hi")]).max_tokens(8);
    let mut text = String::new();
    let mut chunks = 0;
    for chunk in client.chat_completions_stream(&request).unwrap() {
        chunks += 1;
        for choice in chunk.unwrap().choices {
            text.push_str(&choice.delta.content.unwrap_or_default());
        }
    }
    assert!(chunks > 1 && !text.is_empty(), "{chunks} chunks, {text:?}");

    // Streamed and plain completions agree (greedy, same seed).
    let mut req = CompletionRequest::new("Once upon a time").n_predict(6);
    req.params.temperature = Some(0.0);
    let plain = client.completion(&req).unwrap().content;
    let streamed: String = client
        .completion_stream(&req)
        .unwrap()
        .map(|c| c.unwrap().content)
        .collect();
    assert_eq!(plain, streamed);
    // Anything else through block_on.
    let props = client.block_on(|c| c.props()).unwrap();
    assert!(props.total_slots >= 1);

    let pid = running.inner().server.pid();
    running.stop().unwrap();
    assert!(!crate::pid_alive(u64::from(pid)));
}
