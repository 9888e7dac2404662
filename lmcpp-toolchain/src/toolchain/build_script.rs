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

use std::path::Path;

use crate::cache::CacheLayout;
use crate::error::{Error, Result};
use crate::progress::no_progress;
use crate::toolchain::cmake::{Cmake, find_or_bootstrap, launcher_args};
use crate::toolchain::plan::Plan;
use crate::toolchain::recipe::{BuildDriver, DEFAULT_LOCK_TIMEOUT, Installed, Toolchain};
use crate::toolchain::request::ToolchainRequest;

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

/// Splits `-DKEY=VALUE` arguments into defines; everything else stays a plain argument.
pub(crate) fn split_defines(args: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let mut defines = Vec::new();
    let mut other = Vec::new();
    for a in args {
        match a.strip_prefix("-D").and_then(|d| d.split_once('=')) {
            Some((k, v)) => {
                // `-DNAME:TYPE=VALUE` keeps only the name; the cmake crate passes it untyped.
                let k = k.split(':').next().unwrap_or(k);
                defines.push((k.to_owned(), v.to_owned()));
            }
            None => other.push(a.clone()),
        }
    }
    (defines, other)
}

/// Builds the plan's targets from `source` with the `cmake` crate into `out/build`.
///
/// Needs the environment cargo gives build scripts (`TARGET`, `HOST`, `OPT_LEVEL`, ...).
pub(crate) fn build_with_cmake_crate(
    cmake: &Cmake,
    source: &Path,
    out: &Path,
    plan: &Plan,
) -> Result<()> {
    let mut args = plan.cmake_args.clone();
    args.extend(launcher_args());
    let (defines, other) = split_defines(&args);
    for target in &plan.build_targets {
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut cfg = cmake::Config::new(source);
            cfg.out_dir(out).profile("Release").build_target(target);
            for (k, v) in &defines {
                cfg.define(k, v);
            }
            for a in &other {
                cfg.configure_arg(a);
            }
            cfg.build()
        }));
        if let Err(panic) = built {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the cmake crate panicked".to_owned());
            return Err(Error::CommandFailed {
                command: format!(
                    "{} (via the cmake crate) --target {target}",
                    cmake.path.display()
                ),
                status: "failed".into(),
                log: None,
                tail: message,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defines_are_split_from_other_arguments() {
        let args = [
            "-DGGML_RPC=ON".to_owned(),
            "-DCMAKE_BUILD_TYPE:STRING=Release".to_owned(),
            "-G".to_owned(),
            "Ninja".to_owned(),
        ];
        let (d, o) = split_defines(&args);
        assert_eq!(
            d,
            [
                ("GGML_RPC".to_owned(), "ON".to_owned()),
                ("CMAKE_BUILD_TYPE".to_owned(), "Release".to_owned())
            ]
        );
        assert_eq!(o, ["-G", "Ninja"]);
    }
}
