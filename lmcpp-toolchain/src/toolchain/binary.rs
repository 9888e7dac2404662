//! The one bounded runner of a toolchain's binaries (`--version`, `--help`), natively or
//! under the runner a target needs, and the file names of its executables.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::toolchain::request::ToolchainRequest;
use crate::toolchain::target::Runner;

/// Longest a published binary may take to answer `--version`.
pub(super) const VERSION_TIMEOUT: Duration = Duration::from_secs(60);

/// The file name of executable `name` built for `request`'s target.
pub(super) fn exe_name(request: &ToolchainRequest, name: &str) -> String {
    crate::toolchain::plan::exe(&request.target_or_host().os, name)
}

/// [`run_binary`] for a binary built for a target `runner` runs (directly, or under Wine);
/// `Ok(None)` when this machine cannot run it at all.
pub(crate) async fn run_binary_with(
    runner: &Runner,
    binary: &Path,
    arg: &str,
) -> Result<Option<String>> {
    match runner.command(binary) {
        Some(cmd) => run_command(cmd, binary, arg).await.map(Some),
        None => Ok(None),
    }
}

/// Runs a `llama-server` (published, about to be, or any given by path) with one argument
/// (`--version`, `--help`), bounded in time, and returns stdout and stderr together; a
/// failure carries the tail of that output.
pub async fn run_binary(binary: &Path, arg: &str) -> Result<String> {
    run_command(tokio::process::Command::new(binary), binary, arg).await
}

/// Runs `cmd` (which runs `binary`) with `arg`; see [`run_binary`].
async fn run_command(mut cmd: tokio::process::Command, binary: &Path, arg: &str) -> Result<String> {
    let command = format!("{} {arg}", binary.display());
    let run = cmd
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(VERSION_TIMEOUT, run)
        .await
        .map_err(|_| Error::CommandFailed {
            command: command.clone(),
            status: format!("timed out after {VERSION_TIMEOUT:?}"),
            log: None,
            tail: String::new(),
        })?
        .map_err(|source| Error::Spawn {
            program: binary.display().to_string(),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let tail = text.lines().rev().take(20).collect::<Vec<_>>();
        return Err(Error::CommandFailed {
            command,
            status: out.status.to_string(),
            log: None,
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(text)
}
