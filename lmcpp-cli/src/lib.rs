//! The lmcpp facade: re-exports the three library crates and a small high-level API.
//!
//! Depend on this one crate to get everything:
//!
//! ```no_run
//! # async fn demo() -> Result<(), lmcpp::Error> {
//! use lmcpp::types::native::completion::CompletionRequest;
//!
//! // Ensures llama-server (installed or built, cached), the model, and a supervised server
//! // on a private Unix socket; the server stops when `running` is dropped.
//! let running = lmcpp::Lmcpp::builder().model("demo").start().await?;
//! let answer = running
//!     .client()
//!     .completion(&CompletionRequest::new("Once upon a time").n_predict(16))
//!     .await?;
//! println!("{}", answer.content);
//! # Ok(())
//! # }
//! ```
//!
//! The modules [`types`], [`toolchain`] and [`server`] are the underlying crates
//! (`lmcpp-types`, `lmcpp-toolchain`, `lmcpp-server`) for everything the builder does not
//! cover.

#[cfg(feature = "blocking")]
pub mod blocking;
mod facade;
mod model_ref;
mod proxy;

pub use facade::{
    Error, Lmcpp, LmcppBuilder, ModelResolution, Resolved, Running, demo_model, ensure_demo_model,
    resolve_model,
};
pub use lmcpp_server as server;
pub use lmcpp_toolchain as toolchain;
pub use lmcpp_types as types;
pub use lmcpp_types::{Class, Classify};
pub use model_ref::{DEFAULT_MODEL, DEMO_MODEL, ModelRef};
pub use proxy::{
    LineSink, ModelEstimate, PreparedProxy, ProxyBuilder, ProxyModel, estimate_options,
};

/// The README's Rust examples, compiled as doc tests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The pages of `docs/`, one item each, so that their Rust examples are compiled as doc
/// tests like the README's (`tests/it/docs.rs` checks that every page is listed here).
#[cfg(doctest)]
pub mod docs {
    #[doc = include_str!("../../docs/benchmarks.md")]
    pub struct Benchmarks;
    #[doc = include_str!("../../docs/development.md")]
    pub struct Development;
    #[doc = include_str!("../../docs/environment.md")]
    pub struct Environment;
    #[doc = include_str!("../../docs/library.md")]
    pub struct Library;
    #[doc = include_str!("../../docs/models.md")]
    pub struct Models;
    #[doc = include_str!("../../docs/platforms.md")]
    pub struct Platforms;
    #[doc = include_str!("../../docs/rpc.md")]
    pub struct Rpc;
    #[doc = include_str!("../../docs/security.md")]
    pub struct Security;
    #[doc = include_str!("../../docs/serving.md")]
    pub struct Serving;
    #[doc = include_str!("../../docs/testing.md")]
    pub struct Testing;
    #[doc = include_str!("../../docs/toolchain.md")]
    pub struct Toolchain;
    #[doc = include_str!("../../docs/troubleshooting.md")]
    pub struct Troubleshooting;
}
