//! The multi-model endpoint through the library (`Lmcpp::proxy`), as a Rust program uses
//! it: two models of the real llama-server, estimated from disk before anything listens,
//! each started at its first request, and nothing left running once it stops.

use lmcpp::types::native::tokenize::TokenizeRequest;
use lmcpp::{Lmcpp, ProxyModel};

use crate::{Env, pid_alive};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_behind_the_library_proxy_answer_and_stop_with_it() {
    let env = Env::new();
    let mut small = ProxyModel::new("small", env.model().parse().unwrap());
    small.args.ctx_size = Some(256);
    let mut large = ProxyModel::new("large", env.model().parse().unwrap());
    large.args.ctx_size = Some(1024);
    let mut options = lmcpp::server::ProxyOptions::new(4 << 30);
    options.runtime_dir = Some(env.dir.path().join("run"));
    let prepared = Lmcpp::proxy()
        .options(options)
        .home(env.dir.path().join("home"))
        .llama_server(&env.paths.llama_server)
        .model(small)
        .model(large)
        .prepare()
        .await
        .unwrap();
    // Both are on disk: estimated before the endpoint listens, the larger context larger.
    let estimates = prepared.estimates();
    assert_eq!(estimates.len(), 2);
    assert!(estimates.iter().all(|e| e.bytes > 0), "{estimates:?}");
    assert!(estimates[1].bytes > estimates[0].bytes, "{estimates:?}");
    let proxy = prepared.start().await.unwrap();
    let client = proxy.client();
    for alias in ["small", "large"] {
        let mut request = TokenizeRequest::new("Hello from two models");
        request.extra.insert("model".into(), alias.into());
        let tokens = client.tokenize(&request).await.unwrap();
        assert!(!tokens.tokens.is_empty(), "{alias}");
    }
    let pids: Vec<u32> = proxy.models().iter().filter_map(|m| m.pid).collect();
    assert_eq!(pids.len(), 2, "{:?}", proxy.models());
    proxy.stop().await.unwrap();
    for pid in pids {
        assert!(
            !pid_alive(u64::from(pid)),
            "model server {pid} outlived the proxy"
        );
    }
}
