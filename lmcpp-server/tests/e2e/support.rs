//! Prerequisites (from `cargo xtask prepare`) and launch helpers for the end-to-end tests.

use std::path::Path;
use std::sync::OnceLock;

use lmcpp_server::{Client, LaunchOptions, Server, TransportChoice};
use lmcpp_test_support::{PreparedPaths, Supports};
pub(crate) use lmcpp_test_support::{eventually, running};
use lmcpp_types::ServerArgs;
use lmcpp_types::args::help::BinaryFlags;
use serde::de::DeserializeOwned;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// Reads the prerequisites, failing with the command that creates them.
pub(crate) fn paths() -> PreparedPaths {
    PreparedPaths::load(root()).unwrap_or_else(|e| panic!("{e}"))
}

/// What the `llama-server` under test says it supports (read once per test binary).
pub(crate) fn supports() -> &'static Supports {
    static SUPPORTS: OnceLock<Supports> = OnceLock::new();
    SUPPORTS.get_or_init(|| paths().supports(root()))
}

/// Whether the server has the route `path` (a `POST` of `{}`, or a `GET`): anything but
/// its unknown-route answer means it does. The probe goes through the raw client, so the
/// typed error classification under test does not decide it.
pub(crate) async fn has_route(client: &Client, method: http::Method, path: &str) -> bool {
    let body = (method == http::Method::POST).then(|| bytes::Bytes::from_static(b"{}"));
    let raw = client
        .raw(method, path, body)
        .await
        .unwrap_or_else(|e| panic!("probing {path}: {e}"));
    !lmcpp_test_support::is_unknown_route(raw.status.as_u16(), &raw.body)
}

/// A typed request from its JSON, as the server's docs write it.
pub(crate) fn req<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("request JSON matches the typed request")
}

/// The flags of the binary of `paths`, from the `--help` the toolchain captured (or its
/// own `--help` when the record has none).
pub(crate) fn flags(paths: &PreparedPaths) -> Option<BinaryFlags> {
    let flags = paths.supports(root()).flags().clone();
    (!flags.is_empty()).then_some(flags)
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

/// The typed call `result` to `path` must succeed where the server has the route
/// (`present`, from [`has_route`]) and be the typed "unsupported" error naming it where it
/// has not, which `test` then reports. Returns the value when there is one.
pub(crate) fn ok_or_unsupported<T: std::fmt::Debug>(
    test: &str,
    present: bool,
    result: lmcpp_server::Result<T>,
    path: &str,
) -> Option<T> {
    if present {
        return Some(result.unwrap_or_else(|e| panic!("{path}: {e}")));
    }
    match result {
        Err(lmcpp_server::Error::Unsupported {
            path: p,
            status: 404,
            ..
        }) if p == path => {
            supports().lacks(test, path, "lmcpp returns Error::Unsupported naming it");
            None
        }
        other => panic!("this llama-server lacks {path}; expected Unsupported, got {other:?}"),
    }
}
