//! End-to-end tests of lmcpp-types against the real `llama-server` (see the README for
//! `cargo xtask prepare`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
