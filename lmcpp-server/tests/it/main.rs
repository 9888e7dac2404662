//! Fast integration tests of lmcpp-server: no llama-server needed.
#![allow(clippy::unwrap_used)]

// The stand-in servers of these modules are shell scripts.
#[cfg(unix)]
mod api_key;
mod client;
#[cfg(unix)]
mod flags;
#[cfg(unix)]
mod launch;
mod limits;
mod parser_fuzz;
mod proxy;
#[cfg(unix)]
mod registry;
#[cfg(unix)]
mod rpc;
mod support;

/// Handles cross threads and tasks, and streams need no pinning.
#[test]
fn public_handles_are_send_sync_and_streams_unpin() {
    fn send_sync<T: Send + Sync>() {}
    fn send_unpin<T: Send + Unpin>() {}
    send_sync::<lmcpp_server::Server>();
    send_sync::<lmcpp_server::Client>();
    send_sync::<lmcpp_server::Registry>();
    send_sync::<lmcpp_server::Error>();
    send_unpin::<lmcpp_server::EventStream<serde_json::Value>>();
}
