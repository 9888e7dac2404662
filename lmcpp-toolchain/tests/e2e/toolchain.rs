//! The real thing: the default request (pinned llama.cpp, CPU, RPC on) through the default
//! cache root, which `cargo xtask prepare` populates (the first build takes ~10 minutes and
//! is cached; later runs return at once). Then `llama-server --version` from the published
//! path.

use std::process::Command;
use std::sync::{Arc, Mutex};

use lmcpp_toolchain::{ProgressEvent, SharedProgress, Toolchain, ToolchainRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_request_is_ensured_and_the_published_server_runs() {
    let tc = Toolchain::new(None).expect("cache root (set LMCPP_HOME if there is no home)");
    let req = ToolchainRequest::default();
    let stages = Arc::new(Mutex::new(Vec::new()));
    let s = stages.clone();
    let progress: SharedProgress = Arc::new(move |e: ProgressEvent| {
        if let ProgressEvent::Stage { name } = e {
            s.lock().unwrap().push(name);
        }
    });
    let installed = tc.ensure(&req, &progress).await.unwrap_or_else(|e| {
        panic!("ensure failed: {e}\n(run `cargo xtask prepare` to build the toolchain with progress output)")
    });
    assert!(installed.llama_server.starts_with(tc.layout().root()));
    assert!(installed.entry_dir.join("state.json").is_file());

    let out = Command::new(&installed.llama_server)
        .arg("--version")
        .output()
        .expect("run llama-server --version");
    assert!(out.status.success(), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("version"), "{text}");

    // RPC is on by default, so one build provides both servers.
    let rpc = installed.rpc_server.as_ref().expect("rpc-server published");
    assert!(rpc.is_file());
    if let Some(src) = &installed.source_dir {
        assert!(src.join("models/ggml-vocab-llama-spm.gguf").is_file());
    }

    // A second call is a cache hit with identical paths and no new stages.
    let before = stages.lock().unwrap().len();
    let again = tc.ensure(&req, &progress).await.unwrap();
    assert_eq!(again, installed);
    assert_eq!(stages.lock().unwrap().len(), before);
    assert_eq!(tc.validate(&req).await.unwrap(), installed);
}
