//! The llama-server toolchain: from a [`ToolchainRequest`] to an installed `llama-server`
//! (and `rpc-server`) in a fingerprinted cache entry, from a prebuilt release or a source
//! build.
//!
//! The request and its versions (`request`, `versions`) say what is wanted; `plan` and
//! `release` map it to asset names and CMake arguments offline and against a release
//! listing; `source` fetches archives and source trees; `cmake` finds or bootstraps cmake
//! and runs the build; `target` says what a cross build takes and how its binaries run here; `recipe` is the state machine that drives one entry from request to
//! published `bin/`; `manage` lists, validates and removes entries; `build_script` runs the
//! same recipe from a downstream crate's `build.rs`. `backend` detects and checks compute
//! backends.

pub mod backend;
pub mod build_script;
pub(crate) mod cmake;
pub(crate) mod manage;
pub mod plan;
pub(crate) mod recipe;
pub(crate) mod release;
pub(crate) mod request;
pub(crate) mod source;
pub(crate) mod target;
pub mod versions;

pub use manage::{EntryInfo, RequestStatus};
pub use recipe::{
    BuildDriver, EntryState, EntryStatus, Installed, Toolchain, read_state, run_binary,
};
pub use request::{
    DEFAULT_GITHUB_API, DEFAULT_GITHUB_REPO, Features, Mode, Origin, PINNED_COMMIT,
    PINNED_PYPI_SHA256, PINNED_PYPI_VERSION, Source, ToolchainRequest, VERSION_ENV,
};
pub use target::Target;
pub use versions::{LlamaVersion, PypiPin};
