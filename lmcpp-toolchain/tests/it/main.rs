//! Fast integration tests of lmcpp-toolchain against a real loopback HTTP server.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod download;
mod server;
mod gguf;
mod store;
