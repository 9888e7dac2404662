//! Cache garbage collection: what interrupted or finished work leaves behind under the
//! cache root, removed without ever touching anything in use.
//!
//! | kind       | where                                                      | removed when                         |
//! |------------|------------------------------------------------------------|--------------------------------------|
//! | `partial`  | `*.part`, `*.part.meta` in `downloads/`, `models/downloads/`, `models/blobs/` | older than the age limit, its download's lock free |
//! | `download` | finished archives and files in `downloads/`, leftovers in `models/downloads/` | older than the age limit, its lock free |
//! | `scratch`  | `.tmp-*`, `.pip-*`, `.listing-*`, toolchain `.*.scratch` and `tools/*.tmp` dirs, `models/refs/.tmp*` files | older than the age limit, the locks of its directory free |
//! | `link`     | `models/by-name/<key>` whose ref is gone                   | older than the age limit, the reference's lock free |
//! | `source`   | `sources/<key>` no toolchain entry records as its `source_dir` | older than the age limit, no toolchain work running |
//! | `lock`     | `*.lock` under the cache                                   | nobody holds it                      |
//! | `probe`    | `probes/*.json` about a file that is gone or changed since (never read again), `probes/.tmp-*` | older than the age limit |
//!
//! Blobs, refs, toolchain entries and tools are never collected (`lmcpp model rm` and
//! `lmcpp toolchain remove` are the explicit ways). Each removal takes the lock that guards
//! the thing (without waiting: a held lock means "in use, keep"), deletes while holding it,
//! and lock files are unlinked while held, which waiters detect and re-create. Ages are
//! the newest modification time inside a path, so a scratch dir that is still being
//! written is young.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cache::{CacheLayout, dir_size, probe_is_current, remove_all};
use crate::error::{Error, Result};
use crate::lock::{LockGuard, current_holder, lock_exclusive};
use crate::progress::no_progress;

/// What [`collect`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// Only files and directories not modified for this long are collected (locks are
    /// collected at any age when nobody holds them).
    pub min_age: Duration,
    /// Report what would be removed without removing anything.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(24 * 3600),
            dry_run: false,
        }
    }
}

/// What kind of leftover an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GcKind {
    /// A `.part` file (or its `.part.meta` sidecar) of an abandoned download.
    Partial,
    /// A finished download (archive) kept for reuse.
    Download,
    /// An extracted llama.cpp source tree no toolchain entry refers to.
    Source,
    /// A scratch directory of interrupted work.
    Scratch,
    /// A lock file nobody holds.
    Lock,
    /// A readable `models/by-name/<key>` link whose reference was removed.
    Link,
    /// A record under `probes/` about a file that is gone or has changed since it was
    /// written (it can never be read again).
    Probe,
    /// A server log whose server is no longer running (collected by callers that know the
    /// server registry; this crate does not).
    Log,
    /// The saved KV caches of a multi-model proxy that is no longer running
    /// (`<cache root>/kv/<proxy id>`; collected by callers that know the registry).
    KvCache,
}

impl std::fmt::Display for GcKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Partial => "partial",
            Self::Download => "download",
            Self::Source => "source",
            Self::Scratch => "scratch",
            Self::Lock => "lock",
            Self::Link => "link",
            Self::Log => "log",
            Self::KvCache => "kv-cache",
            Self::Probe => "probe",
        })
    }
}

/// One path that was (or would be) removed, or kept because it is in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GcItem {
    /// What it is.
    pub kind: GcKind,
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes (the sum of the regular files below a directory).
    pub bytes: u64,
}

impl GcItem {
    /// An item of `kind` at `path` whose size is measured now.
    pub fn new(kind: GcKind, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            kind,
            bytes: dir_size(&path),
            path,
        }
    }
}

/// The outcome of [`collect`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GcReport {
    /// Whether this was a dry run (then `removed` lists what would be removed).
    pub dry_run: bool,
    /// What was removed.
    pub removed: Vec<GcItem>,
    /// Old enough, but kept because something holds its lock.
    pub in_use: Vec<GcItem>,
    /// Bytes freed (or that would be freed).
    pub freed: u64,
}

impl GcReport {
    /// Adds an item to `removed` and its size to `freed`.
    pub fn push_removed(&mut self, item: GcItem) {
        self.freed += item.bytes;
        self.removed.push(item);
    }
}

/// A candidate: a path, its kind, and the lock files that guard it.
#[derive(Debug)]
struct Candidate {
    kind: GcKind,
    path: PathBuf,
    guards: Vec<PathBuf>,
}

/// Removes (or with `dry_run` lists) the leftovers under the cache root of `layout`.
pub async fn collect(layout: &CacheLayout, opts: &GcOptions) -> Result<GcReport> {
    let now = SystemTime::now();
    let old = |p: &Path| {
        newest_mtime(p).is_none_or(|t| now.duration_since(t).unwrap_or_default() >= opts.min_age)
    };
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..GcReport::default()
    };
    let mut lock_dirs = Vec::new();
    let mut candidates = Vec::new();
    let models = layout.models();
    for (dir, downloads) in [
        (layout.downloads(), true),
        (models.join("downloads"), true),
        (models.join("blobs"), false),
    ] {
        transfer_dir(&dir, downloads, &mut candidates, &mut lock_dirs)?;
    }
    sources(layout, &mut candidates)?;
    toolchain_scratch(&layout.toolchains(), &mut candidates)?;
    tool_scratch(&layout.tools(), &mut candidates)?;
    store_leftovers(&models, &mut candidates)?;
    stale_probes(&layout.probes(), &mut candidates)?;
    lock_dirs.extend([
        layout.sources(),
        layout.toolchains(),
        layout.tools(),
        models.join("locks"),
    ]);

    candidates.retain(|c| old(&c.path));
    for c in candidates {
        remove_guarded(c, opts.dry_run, &mut report).await?;
    }
    for dir in lock_dirs {
        for lock in entries(&dir)?
            .into_iter()
            .filter(|p| has_suffix(p, ".lock") && p.is_file())
        {
            remove_lock(&lock, opts.dry_run, &mut report).await;
        }
    }
    Ok(report)
}

/// Removes one candidate while holding its guards; a held guard keeps it.
async fn remove_guarded(c: Candidate, dry_run: bool, report: &mut GcReport) -> Result<()> {
    let item = GcItem::new(c.kind, &c.path);
    if dry_run {
        if c.guards.iter().any(|g| current_holder(g).is_some()) {
            report.in_use.push(item);
        } else {
            report.push_removed(item);
        }
        return Ok(());
    }
    // (guard, whether this call created its file)
    let mut held: Vec<(LockGuard, bool)> = Vec::new();
    let mut guards = c.guards;
    guards.sort();
    guards.dedup();
    for g in &guards {
        let created = !g.exists();
        match try_lock(g).await {
            Some(guard) => held.push((guard, created)),
            None => {
                report.in_use.push(item);
                return Ok(());
            }
        }
    }
    remove_all(&c.path)?;
    report.push_removed(item);
    for (guard, created) in held {
        // A lock file that only exists because we took it goes again, still held.
        if created {
            guard.unlink();
        }
    }
    Ok(())
}

/// Unlinks a lock file nobody holds.
async fn remove_lock(lock: &Path, dry_run: bool, report: &mut GcReport) {
    let item = GcItem::new(GcKind::Lock, lock);
    if dry_run {
        if current_holder(lock).is_some() {
            report.in_use.push(item);
        } else {
            report.push_removed(item);
        }
        return;
    }
    match try_lock(lock).await {
        Some(guard) => {
            guard.unlink();
            report.push_removed(item);
        }
        None => report.in_use.push(item),
    }
}

/// Takes a lock without waiting; `None` when someone holds it (or it cannot be taken).
async fn try_lock(path: &Path) -> Option<LockGuard> {
    match lock_exclusive(path, Duration::ZERO, &no_progress()).await {
        Ok(g) => Some(g),
        Err(Error::LockTimeout { .. }) => None,
        Err(e) => {
            tracing::debug!("gc: cannot take {}: {e}", path.display());
            None
        }
    }
}

/// `.part` files, finished downloads (when `downloads`) and scratch dirs of one download
/// directory (and its plain subdirectories, such as `downloads/pypi`).
fn transfer_dir(
    dir: &Path,
    downloads: bool,
    out: &mut Vec<Candidate>,
    lock_dirs: &mut Vec<PathBuf>,
) -> Result<()> {
    let paths = entries(dir)?;
    if paths.is_empty() {
        return Ok(());
    }
    lock_dirs.push(dir.to_path_buf());
    let locks: Vec<PathBuf> = paths
        .iter()
        .filter(|p| has_suffix(p, ".lock"))
        .cloned()
        .collect();
    for p in paths {
        let name = file_name(&p);
        let is_dir = p.symlink_metadata().is_ok_and(|m| m.is_dir());
        if name.ends_with(".lock") {
            continue;
        }
        if is_dir && name.starts_with('.') {
            // Whose scratch it is cannot be told from every name: any held lock of the
            // directory keeps it.
            out.push(Candidate {
                kind: GcKind::Scratch,
                path: p,
                guards: locks.clone(),
            });
        } else if is_dir {
            if downloads {
                transfer_dir(&p, downloads, out, lock_dirs)?;
            }
        } else if let Some(base) = name
            .strip_suffix(".part.meta")
            .or_else(|| name.strip_suffix(".part"))
        {
            let mut guards = prefix_locks(&locks, &name);
            guards.push(dir.join(format!("{base}.lock")));
            out.push(Candidate {
                kind: GcKind::Partial,
                path: p,
                guards,
            });
        } else if downloads {
            let mut guards = prefix_locks(&locks, &name);
            guards.push(dir.join(format!("{name}.lock")));
            out.push(Candidate {
                kind: GcKind::Download,
                path: p,
                guards,
            });
        }
    }
    Ok(())
}

/// Source trees no toolchain entry refers to, and extraction scratch dirs.
fn sources(layout: &CacheLayout, out: &mut Vec<Candidate>) -> Result<()> {
    let dir = layout.sources();
    let paths = entries(&dir)?;
    if paths.is_empty() {
        return Ok(());
    }
    let used = used_sources(&layout.toolchains())?;
    // A build records its source tree only when it finishes: while any toolchain work runs,
    // an unreferenced tree may be the one it is building from.
    let entry_locks: Vec<PathBuf> = entries(&layout.toolchains())?
        .into_iter()
        .filter(|p| has_suffix(p, ".lock"))
        .collect();
    for p in paths {
        let name = file_name(&p);
        if name.ends_with(".lock") || !p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            continue;
        }
        if let Some(key) = name.strip_prefix(".tmp-") {
            out.push(Candidate {
                kind: GcKind::Scratch,
                guards: vec![dir.join(format!("{key}.lock"))],
                path: p,
            });
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        let canonical = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if used.contains(&canonical) {
            continue;
        }
        let mut guards = entry_locks.clone();
        guards.push(dir.join(format!("{name}.lock")));
        out.push(Candidate {
            kind: GcKind::Source,
            path: p,
            guards,
        });
    }
    Ok(())
}

/// Every `source_dir` recorded in a toolchain entry's `state.json`, canonicalized.
///
/// Read as plain JSON so that any state file version that names its source counts.
fn used_sources(toolchains: &Path) -> Result<Vec<PathBuf>> {
    let mut used = Vec::new();
    for entry in entries(toolchains)? {
        let Ok(bytes) = std::fs::read(entry.join("state.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        if let Some(s) = v.get("source_dir").and_then(|s| s.as_str()) {
            let p = PathBuf::from(s);
            used.push(std::fs::canonicalize(&p).unwrap_or(p));
        }
    }
    Ok(used)
}

/// Scratch dirs of toolchain runs that died (`.<fingerprint>.<pid>.scratch`).
fn toolchain_scratch(toolchains: &Path, out: &mut Vec<Candidate>) -> Result<()> {
    for p in entries(toolchains)? {
        let name = file_name(&p);
        let Some(fp) = name
            .strip_prefix('.')
            .filter(|_| name.ends_with(".scratch"))
            .and_then(|rest| rest.split('.').next())
        else {
            continue;
        };
        out.push(Candidate {
            kind: GcKind::Scratch,
            guards: vec![toolchains.join(format!("{fp}.lock"))],
            path: p,
        });
    }
    Ok(())
}

/// Scratch dirs of tool bootstraps that died (`tools/<name>.tmp`, guarded by `<name>.lock`).
fn tool_scratch(tools: &Path, out: &mut Vec<Candidate>) -> Result<()> {
    for p in entries(tools)? {
        let name = file_name(&p);
        if let Some(stem) = name.strip_suffix(".tmp")
            && p.symlink_metadata().is_ok_and(|m| m.is_dir())
        {
            out.push(Candidate {
                kind: GcKind::Scratch,
                guards: vec![tools.join(format!("{stem}.lock"))],
                path: p,
            });
        }
    }
    Ok(())
}

/// Records under `probes/` that can never be read again (about a file that is gone or
/// changed since, or unreadable), and temporary files of record writes that died. No lock
/// guards them: a record is written by one rename and a reader that misses one asks again.
fn stale_probes(probes: &Path, out: &mut Vec<Candidate>) -> Result<()> {
    for p in entries(probes)? {
        let kind = if file_name(&p).starts_with(".tmp-") {
            GcKind::Scratch
        } else if has_suffix(&p, ".json") && p.is_file() && !probe_is_current(&p) {
            GcKind::Probe
        } else {
            continue;
        };
        out.push(Candidate {
            kind,
            path: p,
            guards: Vec::new(),
        });
    }
    Ok(())
}

/// The model store's by-name links whose ref is gone, and temporary files of ref writes
/// that died between write and rename.
fn store_leftovers(models: &Path, out: &mut Vec<Candidate>) -> Result<()> {
    let refs = models.join("refs");
    for p in entries(&models.join("by-name"))? {
        let key = file_name(&p);
        if key.starts_with('.') || refs.join(format!("{key}.json")).exists() {
            continue;
        }
        out.push(Candidate {
            kind: GcKind::Link,
            guards: vec![models.join("locks").join(format!("{key}.lock"))],
            path: p,
        });
    }
    for p in entries(&refs)? {
        // A ref is written to a temporary file and renamed within one call, under the
        // reference's lock; an old one is a leftover of a process that died in between.
        if file_name(&p).starts_with(".tmp") {
            out.push(Candidate {
                kind: GcKind::Scratch,
                guards: Vec::new(),
                path: p,
            });
        }
    }
    Ok(())
}

/// Lock files of `locks` whose stem starts `name` (`x.tar.gz.lock` guards `x.tar.gz.part`,
/// `llama_cpp_python-0.3.36.lock` guards `llama_cpp_python-0.3.36.tar.gz`).
fn prefix_locks(locks: &[PathBuf], name: &str) -> Vec<PathBuf> {
    locks
        .iter()
        .filter(|l| {
            file_name(l)
                .strip_suffix(".lock")
                .is_some_and(|stem| !stem.is_empty() && name.starts_with(stem))
        })
        .cloned()
        .collect()
}

/// The entries of `dir`, sorted; none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut out: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn has_suffix(p: &Path, suffix: &str) -> bool {
    file_name(p).ends_with(suffix)
}

/// The newest modification time of `path` and everything below it. Links are neither
/// followed nor counted: creating one already changed its directory's time.
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.is_symlink() {
        return None;
    }
    let own = meta.modified().ok();
    if !meta.is_dir() {
        return own;
    }
    let inner = std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|e| newest_mtime(&e.path()))
        .max();
    own.max(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_guard_the_files_they_prefix() {
        let locks = [
            PathBuf::from("/d/abc.tar.gz.lock"),
            PathBuf::from("/d/llama_cpp_python-0.3.36.lock"),
            PathBuf::from("/d/.lock"),
        ];
        assert_eq!(
            prefix_locks(&locks, "abc.tar.gz.part"),
            [PathBuf::from("/d/abc.tar.gz.lock")]
        );
        assert_eq!(
            prefix_locks(&locks, "llama_cpp_python-0.3.36.tar.gz"),
            [PathBuf::from("/d/llama_cpp_python-0.3.36.lock")]
        );
        assert!(prefix_locks(&locks, "other.part").is_empty());
    }
}
