//! Extraction of `.tar.gz`, `.tar` and `.zip` archives that cannot write, link or chmod
//! outside the destination.
//!
//! The archive is unpacked into `<dest>.extracting/x` next to the destination; when it has a
//! single top-level folder that folder is stripped, and the result is moved onto `dest` with
//! one rename. On any error the scratch dir is removed, so nothing half-done is left.
//!
//! The rules, each enforced against what is on disk rather than against an entry's text:
//! - Entry names are normalised (`./a//b/./c` is `a/b/c`); absolute names, `..` and a second
//!   entry for a path already extracted (in any spelling) are refused.
//! - Nothing is written through a link: every parent directory is checked with
//!   `symlink_metadata` (and created with `mkdir`, which never follows a link); files are
//!   created with `create_new` and `O_NOFOLLOW`; an existing path is never replaced.
//! - A symlink's target is resolved against the tree as extracted so far, following the links
//!   already there, so a chain of individually harmless links (`l1 -> .`, `l2 -> l1/..`) is
//!   caught. `..` may only step out of a directory that exists, so a link that is harmless
//!   now cannot turn into an escape when a later entry creates the missing part. After the
//!   last entry every link is resolved once more against the final root (the stripped top
//!   folder, if any).
//! - A hard link must name a regular file extracted earlier from the same archive.
//! - Modes come from the archive without set-uid, set-gid and sticky bits, and are applied to
//!   the handle of the file just created, never to a path.
//! - Total unpacked bytes, the number of entries and the compression ratio are capped
//!   ([`ExtractOptions`]); the tar reader's own header buffers are capped too.
//!
//! Prebuilt binaries use [`LinkPolicy::LibraryAliasesOnly`], which admits only shared-library
//! version aliases (`libggml.so -> libggml.so.0`) and refuses every other link.

pub(crate) mod error;

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use crate::cache::remove_all;
use crate::error::{IoContext, Result, join_error};

pub use error::Error;

/// Archive formats this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// gzip-compressed tar.
    TarGz,
    /// Uncompressed tar.
    Tar,
    /// Zip.
    Zip,
}

impl ArchiveKind {
    /// Guesses the format from a file name or URL.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name
            .split(['?', '#'])
            .next()
            .unwrap_or(name)
            .to_ascii_lowercase();
        if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if n.ends_with(".tar") {
            Some(Self::Tar)
        } else if n.ends_with(".zip") {
            Some(Self::Zip)
        } else {
            None
        }
    }
}

/// Which links an archive may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkPolicy {
    /// Symlinks and hard links whose targets resolve inside the destination (source trees).
    #[default]
    WithinRoot,
    /// Only symlinks that alias a shared library in the same directory, such as
    /// `libX.so -> libX.so.0`, `libX.so.0 -> libX.so.0.9.4` or
    /// `libX.dylib -> libX.0.dylib`; every other symlink and every hard link is refused
    /// (prebuilt binaries).
    LibraryAliasesOnly,
}

/// Limits and link policy for one extraction; [`Default`] suits llama.cpp source trees and
/// prebuilt archives (about 100 MB in 10k files, and 30–600 MB respectively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Which links are allowed.
    pub links: LinkPolicy,
    /// Most bytes the archive may unpack to (for tar, the whole decompressed stream).
    pub max_total_bytes: u64,
    /// Most entries (files, directories, links, ...) the archive may hold.
    pub max_entries: u64,
    /// Most unpacked bytes per byte of archive. The first [`RATIO_GRACE_BYTES`] are exempt,
    /// so small archives of very compressible files are not refused.
    pub max_ratio: u64,
}

/// Default [`ExtractOptions::max_total_bytes`]: 8 GiB.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 8 << 30;
/// Default [`ExtractOptions::max_entries`].
pub const DEFAULT_MAX_ENTRIES: u64 = 200_000;
/// Default [`ExtractOptions::max_ratio`].
pub const DEFAULT_MAX_RATIO: u64 = 200;
/// Unpacked bytes that [`ExtractOptions::max_ratio`] never refuses.
pub const RATIO_GRACE_BYTES: u64 = 1 << 20;

/// Largest tar header block sequence (long names, pax extensions) read for one entry.
const MAX_HEADER_BYTES: u64 = 1 << 20;
/// Longest symlink target read from a zip entry.
const MAX_LINK_TARGET: u64 = 4096;
/// Links followed while resolving one target, as the kernel's own limit.
const MAX_LINK_HOPS: u32 = 40;

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            links: LinkPolicy::WithinRoot,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_ratio: DEFAULT_MAX_RATIO,
        }
    }
}

impl ExtractOptions {
    /// The defaults with [`LinkPolicy::LibraryAliasesOnly`], for prebuilt binaries.
    pub fn prebuilt() -> Self {
        Self {
            links: LinkPolicy::LibraryAliasesOnly,
            ..Self::default()
        }
    }
}

/// Extracts `archive` into `dest` (which must not exist yet) with the default
/// [`ExtractOptions`], off the async runtime.
pub async fn extract(archive: &Path, dest: &Path, kind: ArchiveKind) -> Result<()> {
    extract_with(archive, dest, kind, &ExtractOptions::default()).await
}

/// Blocking form of [`extract`].
pub fn extract_blocking(archive: &Path, dest: &Path, kind: ArchiveKind) -> Result<()> {
    extract_with_blocking(archive, dest, kind, &ExtractOptions::default())
}

/// Extracts `archive` into `dest` (which must not exist yet) with `options`, off the async
/// runtime.
pub async fn extract_with(
    archive: &Path,
    dest: &Path,
    kind: ArchiveKind,
    options: &ExtractOptions,
) -> Result<()> {
    let archive = archive.to_path_buf();
    let dest = dest.to_path_buf();
    let options = options.clone();
    tokio::task::spawn_blocking(move || extract_with_blocking(&archive, &dest, kind, &options))
        .await
        .map_err(join_error)?
}

/// Blocking form of [`extract_with`].
pub fn extract_with_blocking(
    archive: &Path,
    dest: &Path,
    kind: ArchiveKind,
    options: &ExtractOptions,
) -> Result<()> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).ctx("create directory", parent)?;
    // The scratch dir is named after `dest` so whoever owns `dest` (and its lock) owns it.
    let mut scratch = dest.as_os_str().to_owned();
    scratch.push(".extracting");
    let scratch = PathBuf::from(scratch);
    remove_all(&scratch)?;
    let root = scratch.join("x");
    std::fs::create_dir_all(&root).ctx("create directory", &root)?;
    let result = unpack_into(archive, &root, dest, kind, options);
    let _ = remove_all(&scratch);
    result
}

/// Checks that `dir` is a folder (not a link) and that every symlink below it resolves
/// inside it, following links on disk.
///
/// [`extract_with`] does this for the tree it publishes; call it again when only a
/// sub-folder of an extracted tree is kept (the sdist's `vendor/llama.cpp`), since a link
/// that pointed elsewhere in the archive may point outside the sub-folder, and the
/// sub-folder itself may be a link. `archive` only names the source in the error.
pub fn verify_links(archive: &Path, dir: &Path) -> Result<()> {
    if !std::fs::symlink_metadata(dir).ctx("inspect", dir)?.is_dir() {
        return Err(Error::Unsafe {
            archive: archive.to_path_buf(),
            entry: dir.display().to_string(),
            reason: "is a link or a file where a folder is expected".to_owned(),
        }
        .into());
    }
    let mut stack = vec![(dir.to_path_buf(), Vec::<OsString>::new())];
    while let Some((abs, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&abs).ctx("read directory", &abs)? {
            let entry = entry.ctx("read directory", &abs)?;
            let kind = entry.file_type().ctx("inspect", entry.path())?;
            let mut child = rel.clone();
            child.push(entry.file_name());
            if kind.is_dir() {
                stack.push((entry.path(), child));
            } else if kind.is_symlink() {
                let target = std::fs::read_link(entry.path()).ctx("read link", entry.path())?;
                let mut hops = 0;
                if let Err(reason) = resolve(dir, rel.clone(), &target, &mut hops) {
                    return Err(Error::Unsafe {
                        archive: archive.to_path_buf(),
                        entry: join_display(&child),
                        reason: reason.to_owned(),
                    }
                    .into());
                }
            }
        }
    }
    Ok(())
}

fn unpack_into(
    archive: &Path,
    root: &Path,
    dest: &Path,
    kind: ArchiveKind,
    options: &ExtractOptions,
) -> Result<()> {
    let archive_len = std::fs::metadata(archive).ctx("inspect", archive)?.len();
    let mut x = Extractor::new(archive, root, options, archive_len);
    match kind {
        ArchiveKind::TarGz => {
            let f = File::open(archive).ctx("open", archive)?;
            x.unpack_tar(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))?;
        }
        ArchiveKind::Tar => {
            let f = File::open(archive).ctx("open", archive)?;
            x.unpack_tar(std::io::BufReader::new(f))?;
        }
        ArchiveKind::Zip => x.unpack_zip()?,
    }
    let top = single_top_dir(root)?;
    let from = top.as_deref().unwrap_or(root);
    // Stripping the top folder moves the root one level down: a link that resolved to the
    // old root (`top/l -> ..`) would point outside, so the final root is checked again.
    verify_links(archive, from)?;
    std::fs::rename(from, dest).ctx("rename into", dest)?;
    Ok(())
}

fn single_top_dir(root: &Path) -> Result<Option<PathBuf>> {
    let entries: Vec<_> = std::fs::read_dir(root)
        .ctx("read directory", root)?
        .collect::<std::io::Result<_>>()
        .ctx("read directory", root)?;
    if let [only] = entries.as_slice()
        && only.file_type().ctx("inspect", only.path())?.is_dir()
    {
        return Ok(Some(only.path()));
    }
    Ok(None)
}

/// Checks an entry name and returns it as a relative path made of normal components
/// (`./a//b/./c` becomes `a/b/c`).
fn safe_relative(name: &str, path: &Path) -> std::result::Result<PathBuf, &'static str> {
    if name.starts_with('/') || name.starts_with('\\') || name.contains(":\\") {
        return Err("has an absolute path");
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path"),
        }
    }
    Ok(out)
}

/// Where resolving a link target ended.
#[derive(Debug, PartialEq, Eq)]
struct Walk {
    /// Components below the root.
    at: Vec<OsString>,
    /// Whether some component does not exist (yet), so the rest was taken as written.
    missing: bool,
}

/// Resolves `target` as seen from the directory `from` (components below `root`, all real
/// directories), following the links on disk below `root`. Fails when the target is
/// absolute, steps above `root`, uses `..` after a component that does not exist (a later
/// entry could make that component a link), or follows more than [`MAX_LINK_HOPS`] links.
fn resolve(
    root: &Path,
    from: Vec<OsString>,
    target: &Path,
    hops: &mut u32,
) -> std::result::Result<Walk, &'static str> {
    if target.as_os_str().is_empty() {
        return Err("is a link with an empty target");
    }
    let mut at = from;
    let mut missing = false;
    for c in target.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err("is a link to an absolute path");
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if missing {
                    return Err("is a link that uses `..` after a path that does not exist");
                }
                if at.pop().is_none() {
                    return Err("is a link that resolves outside the destination");
                }
            }
            Component::Normal(n) => {
                at.push(n.to_owned());
                if missing {
                    continue;
                }
                let here = at.iter().fold(root.to_path_buf(), |p, c| p.join(c));
                match std::fs::symlink_metadata(&here) {
                    Ok(m) if m.file_type().is_symlink() => {
                        *hops += 1;
                        if *hops > MAX_LINK_HOPS {
                            return Err("is a link in a loop or a chain of more than 40 links");
                        }
                        let next = std::fs::read_link(&here)
                            .map_err(|_| "is a link through a link that cannot be read")?;
                        at.pop();
                        let walk = resolve(root, at, &next, hops)?;
                        at = walk.at;
                        missing = walk.missing;
                    }
                    Ok(m) if m.is_dir() => {}
                    // Below a regular file nothing resolves, and nothing can be created later.
                    Ok(_) => missing = true,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        ) =>
                    {
                        missing = true;
                    }
                    Err(_) => return Err("is a link whose target cannot be inspected"),
                }
            }
        }
    }
    Ok(Walk { at, missing })
}

/// Splits a shared-library file name into stem, suffix and version numbers:
/// `libX.so.1.2` is `("libX", "so", ["1", "2"])`, `libX.1.2.dylib` is
/// `("libX", "dylib", ["1", "2"])`.
fn library_version(name: &str) -> Option<(&str, &'static str, Vec<&str>)> {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (stem, suffix, versions) = if let Some(rest) = name.strip_suffix(".dylib") {
        let mut parts: Vec<&str> = rest.split('.').collect();
        let mut versions = Vec::new();
        while parts.len() > 1 && parts.last().is_some_and(|p| numeric(p)) {
            versions.extend(parts.pop());
        }
        versions.reverse();
        (&rest[..parts.join(".").len()], "dylib", versions)
    } else {
        let parts: Vec<&str> = name.split('.').collect();
        let so = parts
            .iter()
            .rposition(|p| *p == "so")
            .filter(|&i| i > 0 && parts[i + 1..].iter().all(|p| numeric(p)))?;
        let stem_len = parts[..so].join(".").len();
        (&name[..stem_len], "so", parts[so + 1..].to_vec())
    };
    (stem.len() > "lib".len() && stem.starts_with("lib")).then_some((stem, suffix, versions))
}

/// Whether a symlink named `link` pointing at `target` is a library alias in one directory:
/// same stem and suffix, and the link's version is a proper prefix of the target's.
fn is_library_alias(link: &OsStr, target: &Path) -> bool {
    let mut comps = target.components();
    let (Some(Component::Normal(t)), None) = (comps.next(), comps.next()) else {
        return false;
    };
    let (Some(link), Some(t)) = (link.to_str(), t.to_str()) else {
        return false;
    };
    match (library_version(link), library_version(t)) {
        (Some((ls, lx, lv)), Some((ts, tx, tv))) => {
            ls == ts && lx == tx && lv.len() < tv.len() && tv.starts_with(&lv)
        }
        _ => false,
    }
}

fn join_display(parts: &[OsString]) -> String {
    parts
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Why the byte meter stopped the input.
#[derive(Debug, Clone, Copy)]
enum Trip {
    Bytes,
    Header,
}

/// Counts unpacked bytes against the size and ratio limit, and (while a window is open) the
/// bytes the tar reader consumes for one entry's headers.
#[derive(Debug)]
struct Meter {
    used: Cell<u64>,
    limit: u64,
    window: Cell<Option<u64>>,
    tripped: Cell<Option<Trip>>,
}

impl Meter {
    fn charge(&self, n: u64) -> std::result::Result<(), Trip> {
        let used = self.used.get().saturating_add(n);
        self.used.set(used);
        let trip = if used > self.limit {
            Some(Trip::Bytes)
        } else if self
            .window
            .get()
            .is_some_and(|start| used - start > MAX_HEADER_BYTES)
        {
            Some(Trip::Header)
        } else {
            None
        };
        match trip {
            Some(t) => {
                self.tripped.set(Some(t));
                Err(t)
            }
            None => Ok(()),
        }
    }
}

/// The decompressed tar stream, metered.
struct Metered<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter
            .charge(n as u64)
            .map_err(|_| std::io::Error::other("extraction limit reached"))?;
        Ok(n)
    }
}

/// The state of one extraction: limits, and what has been created below `root`.
struct Extractor<'a> {
    archive: &'a Path,
    root: &'a Path,
    options: &'a ExtractOptions,
    archive_len: u64,
    meter: Rc<Meter>,
    ratio_bound: bool,
    entries: u64,
    /// Normalised paths of the entries extracted so far.
    seen: HashSet<PathBuf>,
    /// Real directories known to exist (created or checked), never links.
    dirs: HashSet<PathBuf>,
    /// Regular files created by this extraction: the only valid hard-link targets.
    files: HashSet<PathBuf>,
}

impl<'a> Extractor<'a> {
    fn new(
        archive: &'a Path,
        root: &'a Path,
        options: &'a ExtractOptions,
        archive_len: u64,
    ) -> Self {
        let by_ratio = archive_len
            .saturating_mul(options.max_ratio)
            .max(RATIO_GRACE_BYTES);
        let limit = by_ratio.min(options.max_total_bytes);
        Self {
            archive,
            root,
            options,
            archive_len,
            meter: Rc::new(Meter {
                used: Cell::new(0),
                limit,
                window: Cell::new(None),
                tripped: Cell::new(None),
            }),
            ratio_bound: by_ratio < options.max_total_bytes,
            entries: 0,
            seen: HashSet::new(),
            dirs: HashSet::new(),
            files: HashSet::new(),
        }
    }

    fn refuse(&self, name: &str, reason: impl Into<String>) -> crate::Error {
        Error::Unsafe {
            archive: self.archive.to_path_buf(),
            entry: name.to_owned(),
            reason: reason.into(),
        }
        .into()
    }

    fn corrupt(&self, message: impl Into<String>) -> crate::Error {
        Error::Read {
            path: self.archive.to_path_buf(),
            message: message.into(),
        }
        .into()
    }

    fn limit_error(&self, trip: Trip) -> crate::Error {
        let used = self.meter.used.get();
        match trip {
            Trip::Header => self.corrupt(format!(
                "an entry header (long name or pax extension) is larger than {MAX_HEADER_BYTES} bytes"
            )),
            Trip::Bytes if self.ratio_bound => Error::TooLarge {
                archive: self.archive.to_path_buf(),
                what: "compression ratio",
                found: used.div_ceil(self.archive_len.max(1)),
                limit: self.options.max_ratio,
                option: "max_ratio",
            }.into(),
            Trip::Bytes => Error::TooLarge {
                archive: self.archive.to_path_buf(),
                what: "unpacked size in bytes",
                found: used,
                limit: self.options.max_total_bytes,
                option: "max_total_bytes",
            }.into(),
        }
    }

    /// Maps a reader error, preferring the limit that made the metered reader fail.
    fn read_error(&self, e: impl std::fmt::Display) -> crate::Error {
        match self.meter.tripped.get() {
            Some(t) => self.limit_error(t),
            None => self.corrupt(e.to_string()),
        }
    }

    fn count_entries(&mut self, n: u64) -> Result<()> {
        self.entries = self.entries.saturating_add(n);
        if self.entries > self.options.max_entries {
            return Err(Error::TooLarge {
                archive: self.archive.to_path_buf(),
                what: "entry count",
                found: self.entries,
                limit: self.options.max_entries,
                option: "max_entries",
            }
            .into());
        }
        Ok(())
    }

    /// Normalises an entry's name and claims its path; `None` for the root itself.
    fn claim(&mut self, name: &str, path: &Path) -> Result<Option<PathBuf>> {
        let rel = safe_relative(name, path).map_err(|r| self.refuse(name, r))?;
        if rel.as_os_str().is_empty() {
            return Ok(None);
        }
        if !self.seen.insert(rel.clone()) {
            return Err(self.refuse(
                name,
                format!(
                    "names {} a second time (the same path in another spelling)",
                    rel.display()
                ),
            ));
        }
        Ok(Some(rel))
    }

    /// Makes `rel` a real directory: creates it without following links, or checks that
    /// what is there is a directory and not a link or a file.
    fn real_dir(&mut self, name: &str, rel: &Path) -> Result<()> {
        if self.dirs.contains(rel) {
            return Ok(());
        }
        let abs = self.root.join(rel);
        match std::fs::symlink_metadata(&abs) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // mkdir never follows a link in the last component, and fails if one appeared.
                std::fs::create_dir(&abs).ctx("create directory", &abs)?;
            }
            Err(e) => return Err(crate::Error::io("inspect", abs, e)),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(self.refuse(
                    name,
                    format!("would be written through the link {}", rel.display()),
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(self.refuse(
                    name,
                    format!("would be written below the file {}", rel.display()),
                ));
            }
        }
        self.dirs.insert(rel.to_path_buf());
        Ok(())
    }

    fn parents(&mut self, name: &str, rel: &Path) -> Result<()> {
        let mut prefix = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            prefix.push(c);
            self.real_dir(name, &prefix)?;
        }
        Ok(())
    }

    fn exists_error(&self, name: &str, rel: &Path, e: std::io::Error) -> crate::Error {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            self.refuse(
                name,
                format!(
                    "would replace {}, which an earlier entry created",
                    rel.display()
                ),
            )
        } else {
            crate::Error::io("create", self.root.join(rel), e)
        }
    }

    fn dir(&mut self, name: &str, rel: &Path) -> Result<()> {
        self.parents(name, rel)?;
        self.real_dir(name, rel)
    }

    /// Creates a regular file from `data`; `charge` counts its bytes (zip: tar counts its
    /// whole stream instead).
    fn file(
        &mut self,
        name: &str,
        rel: &Path,
        mode: u32,
        data: &mut dyn Read,
        charge: bool,
    ) -> Result<File> {
        self.parents(name, rel)?;
        let abs = self.root.join(rel);
        let mut out = create_new_nofollow(&abs).map_err(|e| self.exists_error(name, rel, e))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = data.read(&mut buf).map_err(|e| self.read_error(e))?;
            if n == 0 {
                break;
            }
            if charge && let Err(t) = self.meter.charge(n as u64) {
                return Err(self.limit_error(t));
            }
            out.write_all(&buf[..n]).ctx("write", &abs)?;
        }
        set_mode(&out, mode & 0o777).ctx("set permissions of", &abs)?;
        self.files.insert(rel.to_path_buf());
        Ok(out)
    }

    fn symlink(&mut self, name: &str, rel: &Path, target: &Path) -> Result<()> {
        self.parents(name, rel)?;
        if self.options.links == LinkPolicy::LibraryAliasesOnly
            && !rel
                .file_name()
                .is_some_and(|link| is_library_alias(link, target))
        {
            return Err(self.refuse(
                name,
                format!(
                    "is a link to {}; prebuilt archives may only hold library aliases such as libfoo.so -> libfoo.so.1",
                    target.display()
                ),
            ));
        }
        let from: Vec<OsString> = rel
            .parent()
            .map(|p| p.iter().map(OsStr::to_owned).collect())
            .unwrap_or_default();
        let mut hops = 0;
        resolve(self.root, from, target, &mut hops).map_err(|r| self.refuse(name, r))?;
        let abs = self.root.join(rel);
        make_symlink(target, &abs).map_err(|e| match e {
            Some(e) => self.exists_error(name, rel, e),
            None => self.refuse(
                name,
                "is a symbolic link, which this platform cannot extract",
            ),
        })
    }

    fn hard_link(
        &mut self,
        name: &str,
        rel: &Path,
        target_name: &str,
        target: &Path,
    ) -> Result<()> {
        if self.options.links == LinkPolicy::LibraryAliasesOnly {
            return Err(self.refuse(
                name,
                "is a hard link; prebuilt archives may only hold library aliases",
            ));
        }
        let t = safe_relative(target_name, target)
            .map_err(|r| self.refuse(name, format!("is a hard link whose target {r}")))?;
        if !self.files.contains(&t) {
            return Err(self.refuse(
                name,
                format!(
                    "is a hard link to {}, which is not a regular file extracted earlier",
                    t.display()
                ),
            ));
        }
        self.parents(name, rel)?;
        let abs = self.root.join(rel);
        // linkat without AT_SYMLINK_FOLLOW; the target is a file this extraction created.
        std::fs::hard_link(self.root.join(&t), &abs)
            .map_err(|e| self.exists_error(name, rel, e))?;
        self.files.insert(rel.to_path_buf());
        Ok(())
    }

    fn unpack_tar(&mut self, reader: impl Read) -> Result<()> {
        use tar::EntryType as T;
        let meter = self.meter.clone();
        let mut ar = tar::Archive::new(Metered {
            inner: reader,
            meter: meter.clone(),
        });
        let mut entries = ar.entries().map_err(|e| self.read_error(e))?;
        loop {
            // The tar reader buffers long names and pax extensions whole; the window caps
            // what it may read between two entries (our own reads drain each entry's data).
            meter.window.set(Some(meter.used.get()));
            let next = entries.next();
            meter.window.set(None);
            let Some(entry) = next else { break };
            let mut entry = entry.map_err(|e| self.read_error(e))?;
            self.count_entries(1)?;
            let kind = entry.header().entry_type();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let skip = !matches!(
                kind,
                T::Regular | T::Continuous | T::GNUSparse | T::Directory | T::Symlink | T::Link
            );
            // Devices, fifos, global headers and unknown kinds carry nothing we need.
            if !skip {
                let path = entry.path().map_err(|e| self.corrupt(e.to_string()))?;
                let Some(rel) = self.claim(&name, &path)? else {
                    drain(&mut entry).map_err(|e| self.read_error(e))?;
                    continue;
                };
                match kind {
                    T::Directory => self.dir(&name, &rel)?,
                    T::Symlink | T::Link => {
                        let raw = entry
                            .link_name_bytes()
                            .ok_or_else(|| self.refuse(&name, "is a link without a target"))?;
                        let target_name = String::from_utf8_lossy(&raw).into_owned();
                        let target = entry
                            .link_name()
                            .map_err(|e| self.corrupt(e.to_string()))?
                            .ok_or_else(|| self.refuse(&name, "is a link without a target"))?
                            .into_owned();
                        if kind == T::Symlink {
                            self.symlink(&name, &rel, &target)?;
                        } else {
                            self.hard_link(&name, &rel, &target_name, &target)?;
                        }
                    }
                    _ => {
                        let mode = entry.header().mode().unwrap_or(0o644);
                        let mtime = entry.header().mtime().ok();
                        let out = self.file(&name, &rel, mode, &mut entry, false)?;
                        if let Some(t) = mtime {
                            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
                            let _ = out.set_modified(t);
                        }
                    }
                }
            }
            drain(&mut entry).map_err(|e| self.read_error(e))?;
        }
        Ok(())
    }

    fn unpack_zip(&mut self) -> Result<()> {
        let f = File::open(self.archive).ctx("open", self.archive)?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
            .map_err(|e| self.corrupt(e.to_string()))?;
        self.count_entries(zip.len() as u64)?;
        // The reader keeps one entry per exact name; a second one would go unseen.
        if zip.has_duplicate_names() {
            return Err(self.refuse(
                "(central directory)",
                "names one path twice in the same spelling",
            ));
        }
        for i in 0..zip.len() {
            let mut file = zip.by_index(i).map_err(|e| self.corrupt(e.to_string()))?;
            let name = file
                .name()
                .map_err(|e| Error::Read {
                    path: self.archive.to_path_buf(),
                    message: e.to_string(),
                })?
                .into_owned();
            let Some(rel) = self.claim(&name, Path::new(&name))? else {
                continue;
            };
            if file.is_symlink() {
                let mut target = Vec::new();
                (&mut file)
                    .take(MAX_LINK_TARGET + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| self.read_error(e))?;
                if target.len() as u64 > MAX_LINK_TARGET {
                    return Err(
                        self.refuse(&name, "is a link with a target longer than 4096 bytes")
                    );
                }
                if let Err(t) = self.meter.charge(target.len() as u64) {
                    return Err(self.limit_error(t));
                }
                let target = String::from_utf8(target)
                    .map_err(|_| self.refuse(&name, "is a link whose target is not UTF-8"))?;
                self.symlink(&name, &rel, Path::new(&target))?;
            } else if file.is_dir() {
                self.dir(&name, &rel)?;
            } else {
                let mode = file.unix_mode().unwrap_or(0o644);
                self.file(&name, &rel, mode, &mut file, true)?;
            }
        }
        Ok(())
    }
}

fn drain(r: &mut impl Read) -> std::io::Result<u64> {
    std::io::copy(r, &mut std::io::sink())
}

/// Creates a new file that did not exist, never through a link in the last component.
fn create_new_nofollow(path: &Path) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    o.open(path)
}

/// Sets the permission bits of an open file (`fchmod`), so no path is ever followed.
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

/// `symlink(2)`, which never follows or replaces an existing path; `Err(None)` where the
/// platform has no symlinks for unprivileged users.
fn make_symlink(target: &Path, link: &Path) -> std::result::Result<(), Option<std::io::Error>> {
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(target, link).map_err(Some)
    }
    #[cfg(not(unix))]
    {
        let _ = (target, link);
        Err(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kinds_from_names() {
        let cases = [
            ("a.tar.gz", Some(ArchiveKind::TarGz)),
            ("a.TGZ", Some(ArchiveKind::TarGz)),
            ("https://x/a.zip?sig=1", Some(ArchiveKind::Zip)),
            ("a.tar", Some(ArchiveKind::Tar)),
            ("a.gguf", None),
        ];
        for (n, k) in cases {
            assert_eq!(ArchiveKind::from_name(n), k, "{n}");
        }
    }

    #[test]
    fn names_are_normalised_or_refused() {
        let cases: [(&str, Option<&str>); 8] = [
            ("/etc/passwd", None),
            ("x/../../y", None),
            ("x/../y", None),
            ("C:\\x", None),
            ("\\x", None),
            ("./x/y", Some("x/y")),
            ("a//b/./c/", Some("a/b/c")),
            ("./", Some("")),
        ];
        for (name, want) in cases {
            let got = safe_relative(name, Path::new(name)).ok();
            assert_eq!(got.as_deref(), want.map(Path::new), "{name}");
        }
    }

    #[test]
    fn library_aliases() {
        let cases = [
            ("libggml.so", "libggml.so.0", true),
            ("libggml.so.0", "libggml.so.0.9.4", true),
            ("libggml.so", "libggml.so.0.9.4", true),
            ("libggml-base.0.dylib", "libggml-base.0.9.4.dylib", true),
            ("libggml.dylib", "libggml.0.dylib", true),
            ("libcudart.so.12", "libcudart.so.12.4.127", true),
            ("libggml.so.0", "libggml.so", false),
            ("libggml.so.0", "libggml.so.0", false),
            ("libggml.so.1", "libggml.so.0.9", false),
            ("libggml.so", "libllama.so.0", false),
            ("libggml.so", "./libggml.so.0", false),
            ("libggml.so", "../lib/libggml.so.0", false),
            ("libggml.so", "/usr/lib/libggml.so.0", false),
            ("libggml.so", "libggml.dylib.0", false),
            ("libggml.so", "libggml.0.dylib", false),
            ("llama-server", "llama-server.0", false),
            ("lib.so", "lib.so.1", false),
            ("bin", "lib", false),
        ];
        for (link, target, ok) in cases {
            assert_eq!(
                is_library_alias(OsStr::new(link), Path::new(target)),
                ok,
                "{link} -> {target}"
            );
        }
    }

    // Only Unix extraction makes links (Windows refuses them), so only there are links on
    // disk to follow.
    #[cfg(unix)]
    #[test]
    fn resolution_follows_links_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink(".", root.join("l1")).unwrap();
        std::os::unix::fs::symlink("l1/..", root.join("l2")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("a/b/up")).unwrap();
        let r = |from: &[&str], t: &str| {
            let from = from.iter().map(OsString::from).collect();
            resolve(root, from, Path::new(t), &mut 0)
        };
        assert_eq!(
            r(&[], "a/b/up/a").unwrap(),
            Walk {
                at: vec!["a".into()],
                missing: false
            }
        );
        assert!(r(&[], "l2").is_err(), "l2 -> l1/.. is the root's parent");
        assert!(r(&[], "l1/l1/l1").is_ok());
        assert!(r(&["a"], "b/up/..").is_err());
        assert!(r(&[], "/etc").is_err());
        assert!(r(&[], "missing/..").is_err(), "`..` after a missing part");
        assert!(r(&["a"], "../missing/x").unwrap().missing);
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(r(&[], "loop").is_err());
    }
}
