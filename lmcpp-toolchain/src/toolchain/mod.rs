//! The llama-server toolchain: from a [`ToolchainRequest`] to an installed `llama-server`
//! (and `rpc-server`) in a fingerprinted cache entry, from a prebuilt release or a source
//! build.
//!
//! The request and its versions (`request`, `versions`) say what is wanted; `plan` and
//! `release` map it to asset names and CMake arguments offline and against a release
//! listing; `source` fetches archives and source trees; `cmake` finds or bootstraps cmake
//! and runs the build; `target` says what a cross build takes and how its binaries run
//! here. [`Toolchain`] (`handle`) drives one entry from request to published `bin/`:
//! `entries` maps a request to its entries, `recipe` is the state machine (lock, re-check,
//! scratch, publish or record the failure), `run` tries an origin's sources, `prebuilt`
//! and `build` obtain the binaries, `publish` renames them into place, `state` is the
//! entry's `state.json`, and `binary` runs a binary once, bounded. `manage` lists,
//! validates and removes entries; `build_script` runs the same recipe from a downstream
//! crate's `build.rs`. `backend` detects and checks compute backends.

pub mod backend;
mod binary;
mod build;
pub mod build_script;
pub(crate) mod cmake;
mod entries;
mod handle;
pub(crate) mod manage;
pub mod plan;
mod prebuilt;
mod publish;
mod recipe;
pub(crate) mod release;
pub(crate) mod request;
mod run;
pub(crate) mod source;
mod state;
pub(crate) mod target;
pub mod versions;

pub use binary::run_binary;
pub use handle::{BuildDriver, Toolchain};
pub use manage::{EntryInfo, RequestStatus};
pub use request::{
    DEFAULT_GITHUB_API, DEFAULT_GITHUB_REPO, Features, Mode, Origin, PINNED_COMMIT,
    PINNED_PYPI_SHA256, PINNED_PYPI_VERSION, Source, ToolchainRequest, VERSION_ENV,
};
pub use state::{EntryState, EntryStatus, Installed, read_state};
pub use target::Target;
pub use versions::{LlamaVersion, PypiPin};
