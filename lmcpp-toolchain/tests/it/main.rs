//! Fast integration tests of lmcpp-toolchain against a real loopback HTTP server.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod archive;
mod archive_escape;
mod archive_props;
mod download;
mod fixtures;
mod gc;
mod gguf;
mod gguf_fuzz;
mod hub_cache;
mod prebuilt;
mod procs;
mod recipe;
mod server;
mod store;
mod tls;
