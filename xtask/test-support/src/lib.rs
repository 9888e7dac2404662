//! Test plumbing shared by the workspace's test binaries, benchmarks and `cargo xtask`, kept
//! out of every library's public API (`publish = false`; only dev-dependencies name it).
//!
//! - [`PreparedPaths`]: the record of what `cargo xtask prepare` made (a `llama-server` from
//!   the toolchain's cache, the demo model), one definition for the writer and every reader.
//! - [`running`] and [`eventually`]: whether a process lives, and polling a condition with a
//!   deadline (state observed, never a sleep as synchronisation).

mod prepared;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use prepared::{Error, PATHS_ENV, PreparedPaths};

/// The workspace root (this crate lives in `xtask/test-support`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// Reads the prerequisites of the workspace (`$LMCPP_TEST_PATHS`, else the default
/// record), panicking with the command that creates them: a missing record fails the
/// test, it never skips it.
pub fn prepared() -> PreparedPaths {
    PreparedPaths::load(&workspace_root()).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether a process with this pid exists and is not a zombie.
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes; whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{manifest}");
    }

    #[test]
    fn this_process_runs_and_a_reaped_child_does_not() {
        assert!(running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!running(pid));
    }

    #[tokio::test]
    async fn eventually_reports_both_outcomes() {
        assert!(eventually(Duration::from_millis(50), || true).await);
        assert!(!eventually(Duration::from_millis(20), || false).await);
    }
}
