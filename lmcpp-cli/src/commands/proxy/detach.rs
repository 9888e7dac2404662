//! `lmcpp serve --detach` with many models: this command run again in the background under
//! a chosen id, its output in the proxy's log, returning once the proxy's record is there.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::record::{ShownProxy, fresh_id, proxy_models};
use crate::commands::ctx::Ctx;

/// How long a detached `lmcpp serve` may take to write its proxy's record.
const DETACH_TIMEOUT: Duration = Duration::from_secs(60);

/// `--detach`: runs this `lmcpp serve` again in the background under a chosen id, with its
/// output in the proxy's log, and returns when the proxy's record is there (or the
/// background process failed, with its log's last lines).
pub(super) async fn detach(ctx: &Ctx, budget: u64, api_key: Option<&str>) -> Result<ExitCode> {
    let registry = ctx.registry();
    registry.ensure_dir()?;
    let id = fresh_id();
    let log_path = registry.dir().join(format!("{id}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create the log {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the lmcpp binary to run again")?;
    // The same command line without --detach (and before any `--`, where llama-server's
    // arguments begin), plus the id the record will carry.
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    let mut passthrough = false;
    for a in std::env::args_os().skip(1) {
        if a == "--" {
            passthrough = true;
        }
        if passthrough || a != "--detach" {
            argv.push(a);
        }
    }
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.splice(at..at, ["--proxy-id".into(), id.clone().into()]);
    let mut command = tokio::process::Command::new(exe);
    command
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot share the log file")?)
        .stderr(log);
    // Its own process group: the terminal's Ctrl-C and hang-up are not for it (on Windows
    // a group of its own and no console: CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS).
    #[cfg(unix)]
    command.process_group(0);
    #[cfg(windows)]
    command.creation_flags(0x0000_0200 | 0x0000_0008);
    let mut child = command
        .spawn()
        .context("cannot start lmcpp in the background")?;
    let deadline = Instant::now() + DETACH_TIMEOUT;
    let record = loop {
        if let Ok(record) = registry.get(&id) {
            break record;
        }
        if let Some(status) = child.try_wait()? {
            let tail = lmcpp::server::Registry::new(registry.dir())
                .log_tail(&id, 20)
                .unwrap_or_default();
            let tail = if tail.is_empty() {
                std::fs::read_to_string(&log_path).unwrap_or_default()
            } else {
                tail.join("\n")
            };
            anyhow::bail!("the background lmcpp serve exited ({status}); its output:\n{tail}");
        }
        if Instant::now() > deadline {
            let _ = child.start_kill();
            anyhow::bail!(
                "the background lmcpp serve wrote no record within {}s; see {}",
                DETACH_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        // The child writes its record once its endpoint is bound; polling the registry
        // needs no channel to a process that must outlive us.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let shown = ShownProxy {
        record: &record,
        memory_budget: budget,
        models: proxy_models(&record, api_key)
            .await
            .map_err(|e| anyhow::anyhow!("the background proxy {} gives {e}", record.id))?,
    };
    ctx.output(&shown, || {
        println!("{} {}", record.id, record.endpoint);
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
