//! Prerequisites (from `cargo xtask prepare`) and launch helpers for the end-to-end tests.

use std::path::Path;

use lmcpp_server::{LaunchOptions, Server, TransportChoice};
use lmcpp_test_support::PreparedPaths;
pub(crate) use lmcpp_test_support::{eventually, running};
use lmcpp_types::ServerArgs;
use lmcpp_types::args::help::BinaryFlags;
use serde::de::DeserializeOwned;

/// Reads the prerequisites, failing with the command that creates them.
pub(crate) fn paths() -> PreparedPaths {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    PreparedPaths::load(root).unwrap_or_else(|e| panic!("{e}"))
}

/// A typed request from its JSON, as the server's docs write it.
pub(crate) fn req<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("request JSON matches the typed request")
}

/// Whether the server under test is the pinned llama.cpp (the second end-to-end pass runs
/// an older one, which lacks some endpoints and flags).
pub(crate) fn pinned() -> bool {
    paths().pinned
}

/// The flags of the binary under test, from the `--help` the toolchain captured.
pub(crate) fn flags(paths: &PreparedPaths) -> Option<BinaryFlags> {
    let help = std::fs::read_to_string(paths.help.as_ref()?).ok()?;
    Some(BinaryFlags::from_help(&help, paths.llama_version.clone()))
}

/// Launch options for the demo model with a private runtime dir under `dir`, rendered for
/// the binary under test.
pub(crate) fn options(dir: &Path, transport: TransportChoice) -> LaunchOptions {
    let paths = paths();
    let mut opts = LaunchOptions::new(&paths.llama_server, &paths.demo_model);
    opts.flags = flags(&paths);
    opts.runtime_dir = Some(dir.join("run"));
    opts.socket_fallback_dir = Some(dir.join("s"));
    opts.transport = transport;
    opts.ready_timeout = std::time::Duration::from_secs(60);
    // `/slots` is opt-in in older llama.cpp (501 without `--slots`).
    opts.args.slots = Some(true);
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

/// On the pinned version `result` must succeed; on an older one that lacks `path`, it must
/// be the typed "unsupported" error naming it. Returns the value when there is one.
pub(crate) fn ok_or_unsupported<T: std::fmt::Debug>(
    result: lmcpp_server::Result<T>,
    path: &str,
) -> Option<T> {
    if pinned() {
        return Some(result.unwrap_or_else(|e| panic!("{path}: {e}")));
    }
    match result {
        Err(lmcpp_server::Error::Unsupported {
            path: p,
            status: 404,
            ..
        }) if p == path => None,
        other => panic!(
            "llama.cpp {} lacks {path}; expected Unsupported, got {other:?}",
            paths().llama_version
        ),
    }
}
