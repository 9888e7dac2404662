//! Prerequisites (from `cargo xtask prepare`) and launch helpers for the end-to-end tests.

use std::path::{Path, PathBuf};

use lmcpp_server::{LaunchOptions, Server, TransportChoice};
use lmcpp_types::ServerArgs;
use serde::Deserialize;

/// `target/lmcpp-test/paths.json`, written by `cargo xtask prepare`.
#[derive(Debug, Deserialize)]
pub(crate) struct Paths {
    pub(crate) llama_server: PathBuf,
    pub(crate) demo_model: PathBuf,
}

/// Reads the prerequisites, failing with the command that creates them.
pub(crate) fn paths() -> Paths {
    let file = std::env::var_os("LMCPP_TEST_PATHS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/lmcpp-test/paths.json")
        });
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run `cargo xtask prepare` first to build llama-server \
             and generate the demo model",
            file.display()
        )
    });
    let paths: Paths = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{} is malformed ({e}); run `cargo xtask prepare`",
            file.display()
        )
    });
    for p in [&paths.llama_server, &paths.demo_model] {
        assert!(
            p.exists(),
            "{} (from {}) is missing; run `cargo xtask prepare`",
            p.display(),
            file.display()
        );
    }
    paths
}

/// Launch options for the demo model with a private runtime dir under `dir`.
pub(crate) fn options(dir: &Path, transport: TransportChoice) -> LaunchOptions {
    let paths = paths();
    let mut opts = LaunchOptions::new(paths.llama_server, paths.demo_model);
    opts.runtime_dir = Some(dir.join("run"));
    opts.socket_fallback_dir = Some(dir.join("s"));
    opts.transport = transport;
    opts.ready_timeout = std::time::Duration::from_secs(60);
    opts.args.ctx_size = Some(2048);
    opts.args.parallel = Some(4);
    opts.args.threads = Some(1);
    opts
}

/// Launches the demo model with the defaults of [`options`] changed by `configure`.
pub(crate) async fn launch(
    dir: &Path,
    transport: TransportChoice,
    configure: impl FnOnce(&mut ServerArgs),
) -> Server {
    let mut opts = options(dir, transport);
    configure(&mut opts.args);
    Server::launch(opts).await.expect("demo server launches")
}

/// Whether a process with this pid exists and is not a zombie.
pub(crate) fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes.
pub(crate) async fn eventually(
    timeout: std::time::Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
