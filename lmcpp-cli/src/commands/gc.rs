//! `lmcpp gc`: removes what interrupted or finished work left in the cache (through
//! `lmcpp_toolchain::gc`) and the logs of servers that no longer run from the runtime
//! directory (asking the server registry which are live). Nothing locked or in use is
//! removed; `--dry-run` only lists.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
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
    let live = live_ids(ctx)?;
    server_logs(ctx, &opts, &live, &mut report)?;
    kv_caches(&layout, &opts, &live.0, &mut report)?;
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

/// The ids and logs of what the registry lists as running (or cannot tell).
fn live_ids(ctx: &Ctx) -> Result<(HashSet<String>, HashSet<PathBuf>)> {
    let mut ids = HashSet::new();
    let mut logs = HashSet::new();
    for entry in ctx.registry().list()? {
        if let Entry::Live(r) | Entry::Unverifiable(r) = entry {
            ids.insert(r.id.clone());
            logs.insert(r.log_path.clone());
        }
    }
    Ok((ids, logs))
}

/// The KV-cache folders of proxies the registry does not list as running (one killed
/// before it could remove its own), untouched for `min_age`.
fn kv_caches(
    layout: &CacheLayout,
    opts: &GcOptions,
    live_ids: &HashSet<String>,
    report: &mut GcReport,
) -> Result<()> {
    let dir = super::proxy::kv_dir(layout.root());
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let now = SystemTime::now();
    let mut folders: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        let newest = newest_change(&folder, 3);
        if now.duration_since(newest).unwrap_or_default() < opts.min_age {
            continue;
        }
        let id = folder.file_name().map(|n| n.to_string_lossy().into_owned());
        let item = GcItem::new(GcKind::KvCache, &folder);
        if id.is_some_and(|id| live_ids.contains(&id)) {
            report.in_use.push(item);
            continue;
        }
        if !opts.dry_run {
            std::fs::remove_dir_all(&folder)
                .with_context(|| format!("removing {}", folder.display()))?;
        }
        report.push_removed(item);
    }
    Ok(())
}

/// The latest modification time of `path` and what it holds, `depth` levels down.
fn newest_change(path: &Path, depth: usize) -> SystemTime {
    let own = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let Some(rd) = (depth > 0).then(|| std::fs::read_dir(path).ok()).flatten() else {
        return own;
    };
    rd.flatten()
        .map(|e| newest_change(&e.path(), depth - 1))
        .fold(own, std::cmp::max)
}

/// Logs in the runtime dir whose server the registry does not list as running and that
/// were not written to for `min_age`.
fn server_logs(
    ctx: &Ctx,
    opts: &GcOptions,
    (live_ids, live_logs): &(HashSet<String>, HashSet<PathBuf>),
    report: &mut GcReport,
) -> Result<()> {
    let registry = ctx.registry();
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
