//! End-to-end tests of lmcpp-server against the real llama-server and the demo model
//! (prerequisites from `cargo xtask prepare`).
#![allow(clippy::unwrap_used)]

mod args;
mod demo_model;
mod endpoints;
mod lifecycle;
mod proxy;
mod rpc;
mod streaming;
mod support;
