//! End-to-end tests of lmcpp-toolchain with a real llama.cpp build (see `cargo xtask prepare`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod build;
mod models;
mod toolchain;
