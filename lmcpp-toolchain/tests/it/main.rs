//! Fast integration tests of lmcpp-toolchain against a real loopback HTTP server.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod archive;
// Link chains, writes through links, set-id bits and hard-link counts: what these check
// exists only where extraction makes links and keeps Unix modes (Windows refuses links,
// which `archive` checks).
#[cfg(unix)]
mod archive_escape;
#[cfg(unix)]
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
