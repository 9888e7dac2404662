//! Fast integration tests of lmcpp-server: no llama-server needed.
#![allow(clippy::unwrap_used)]

mod client;
mod launch;
mod registry;
mod rpc;
mod support;
