//! Build-script mode: get `llama-server` from a downstream crate's `build.rs`, the way
//! `-sys` crates build native code during `cargo build`.
//!
//! The same request, fingerprint, cache entry, lock and state file as the runtime path are
//! used, so a binary built here is found by [`crate::Toolchain::ensure`] later and vice
//! versa. Only the build step differs: the `cmake` crate drives CMake (it picks up cargo's
//! compiler, flags and `NUM_JOBS`), and its output lands in cargo's build-script log.
//!
//! In the downstream crate's `build.rs` (with `lmcpp-toolchain` as a build dependency):
//!
//! ```no_run
//! let request = lmcpp_toolchain::ToolchainRequest::default();
//! if let Err(e) = lmcpp_toolchain::build_script::ensure_for_build_script(&request) {
//!     panic!("llama-server: {e}");
//! }
//! ```
//!
//! and in its code: `let server = env!("LMCPP_LLAMA_SERVER");`.

use crate::cache::CacheLayout;
use crate::error::{Error, Result};
use crate::progress::no_progress;
use crate::toolchain::cmake::find_or_bootstrap;
use crate::toolchain::handle::{BuildDriver, DEFAULT_LOCK_TIMEOUT, Toolchain};
use crate::toolchain::request::ToolchainRequest;
use crate::toolchain::state::Installed;

/// Environment variable the installed `llama-server` path is exported as (`env!`-readable).
pub const SERVER_ENV: &str = "LMCPP_LLAMA_SERVER";
/// Environment variable the installed `rpc-server` path is exported as, when there is one.
pub const RPC_ENV: &str = "LMCPP_RPC_SERVER";

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Task {
            message: format!("cannot start a tokio runtime: {e}"),
        })
}

/// Ensures the toolchain for `request` from inside a build script and exports its paths
/// to the crate being built as `LMCPP_LLAMA_SERVER` / `LMCPP_RPC_SERVER`.
///
/// Uses the default cache root (`$LMCPP_HOME`, else the platform data dir). Must only be
/// called from a build script: it prints `cargo:` directives and may set `CMAKE` in the
/// build script's environment so the `cmake` crate finds a bootstrapped cmake.
#[allow(clippy::print_stdout)]
pub fn ensure_for_build_script(request: &ToolchainRequest) -> Result<Installed> {
    println!("cargo:rerun-if-env-changed={}", crate::cache::HOME_ENV);
    println!(
        "cargo:rerun-if-env-changed={}",
        crate::toolchain::request::VERSION_ENV
    );
    let tc = Toolchain::new(None)?.with_build_driver(BuildDriver::CmakeCrate);
    // A published entry needs neither cmake nor the network: answer from the cache first.
    let cached = runtime()?.block_on(tc.ensure_cached(request)).ok();
    let installed = match cached {
        Some(installed) => installed,
        None => {
            if std::env::var_os("CMAKE").is_none() && request.mode.allows_build() {
                let layout: CacheLayout = tc.layout().clone();
                let cmake = {
                    let rt = runtime()?;
                    rt.block_on(find_or_bootstrap(
                        &layout,
                        &request.python,
                        DEFAULT_LOCK_TIMEOUT,
                        &no_progress(),
                    ))?
                    // The runtime and its threads are gone when this block ends.
                };
                if crate::toolchain::backend::find_on_path("cmake").as_deref()
                    != Some(cmake.path.as_path())
                {
                    // SAFETY: build scripts run this on their only thread; the runtime above
                    // has been dropped, so no other thread of this process reads the
                    // environment concurrently.
                    unsafe { std::env::set_var("CMAKE", &cmake.path) };
                }
            }
            runtime()?.block_on(tc.ensure(request, &no_progress()))?
        }
    };
    println!(
        "cargo:rustc-env={SERVER_ENV}={}",
        installed.llama_server.display()
    );
    if let Some(rpc) = &installed.rpc_server {
        println!("cargo:rustc-env={RPC_ENV}={}", rpc.display());
    }
    Ok(installed)
}
