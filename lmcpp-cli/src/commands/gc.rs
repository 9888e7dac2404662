//! `lmcpp gc`: removes what interrupted or finished work left in the cache (through
//! `lmcpp_toolchain::gc`) and the logs of servers that no longer run from the runtime
//! directory (asking the server registry which are live). Nothing locked or in use is
//! removed; `--dry-run` only lists.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use lmcpp::server::Entry;
use lmcpp::toolchain::CacheLayout;
use lmcpp::toolchain::gc::{GcItem, GcKind, GcOptions, GcReport, collect};

use super::ctx::{Ctx, human_size};
use crate::cli::GcArgs;

/// `lmcpp gc [--dry-run] [--older-than HOURS]`.
pub(crate) async fn gc(ctx: &Ctx, args: GcArgs) -> Result<ExitCode> {
    let opts = GcOptions {
        min_age: Duration::from_secs(args.older_than.saturating_mul(3600)),
        dry_run: args.dry_run,
    };
    let layout = CacheLayout::resolve(ctx.home.as_deref())?;
    let mut report = collect(&layout, &opts)
        .await
        .with_context(|| format!("collecting garbage in {}", layout.root().display()))?;
    server_logs(ctx, &opts, &mut report)?;
    ctx.output(&report, || {
        let verb = if report.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for item in &report.removed {
            println!(
                "{verb} {:<8} {}",
                item.kind.to_string(),
                item.path.display()
            );
        }
        for item in &report.in_use {
            println!(
                "in use   {:<8} {}",
                item.kind.to_string(),
                item.path.display()
            );
        }
        println!(
            "{verb} {} item(s), {} freed; {} in use kept",
            report.removed.len(),
            human_size(report.freed),
            report.in_use.len()
        );
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Logs in the runtime dir whose server the registry does not list as running and that
/// were not written to for `min_age`.
fn server_logs(ctx: &Ctx, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
    let registry = ctx.registry();
    let mut live_ids = HashSet::new();
    let mut live_logs: HashSet<PathBuf> = HashSet::new();
    for entry in registry.list()? {
        match entry {
            Entry::Live(r) | Entry::Unverifiable(r) => {
                live_ids.insert(r.id.clone());
                live_logs.insert(r.log_path.clone());
            }
            _ => {}
        }
    }
    let dir = registry.dir();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let now = SystemTime::now();
    let mut logs: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log") && p.is_file())
        .collect();
    logs.sort();
    for log in logs {
        let id = log
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let old = std::fs::metadata(&log)
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= opts.min_age);
        if !old {
            continue;
        }
        let item = GcItem::new(GcKind::Log, &log);
        if live_ids.contains(&id) || live_logs.contains(&log) {
            report.in_use.push(item);
            continue;
        }
        if !opts.dry_run {
            match std::fs::remove_file(&log) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("removing {}", log.display())),
            }
        }
        report.push_removed(item);
    }
    Ok(())
}
