//! The lmcpp facade: re-exports the three library crates and a small high-level API.

pub use lmcpp_server as server;
pub use lmcpp_toolchain as toolchain;
pub use lmcpp_types as types;
