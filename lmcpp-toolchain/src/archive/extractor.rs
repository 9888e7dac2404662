//! One extraction's state and its writes below the root: directories, files, symlinks and
//! hard links created without following a link or replacing a path, against the caps, with
//! typed refusals.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::error::Error;
use super::guards::{is_library_alias, resolve, safe_relative};
use super::meter::{MAX_HEADER_BYTES, Meter, Trip};
use super::options::{ExtractOptions, LinkPolicy, RATIO_GRACE_BYTES};
use crate::error::{IoContext, Result};

/// The state of one extraction: limits, and what has been created below `root`.
pub(super) struct Extractor<'a> {
    pub(super) archive: &'a Path,
    root: &'a Path,
    options: &'a ExtractOptions,
    archive_len: u64,
    pub(super) meter: Rc<Meter>,
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
    /// An extraction of `archive` (of `archive_len` bytes) into `root`.
    pub(super) fn new(
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
}

impl Extractor<'_> {
    /// The error refusing entry `name` as unsafe.
    pub(super) fn refuse(&self, name: &str, reason: impl Into<String>) -> crate::Error {
        Error::Unsafe {
            archive: self.archive.to_path_buf(),
            entry: name.to_owned(),
            reason: reason.into(),
        }
        .into()
    }

    /// The error for an archive that cannot be read as its format.
    pub(super) fn corrupt(&self, message: impl Into<String>) -> crate::Error {
        Error::Read {
            path: self.archive.to_path_buf(),
            message: message.into(),
        }
        .into()
    }

    /// The error for the cap the meter tripped.
    pub(super) fn limit_error(&self, trip: Trip) -> crate::Error {
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
    pub(super) fn read_error(&self, e: impl std::fmt::Display) -> crate::Error {
        match self.meter.tripped.get() {
            Some(t) => self.limit_error(t),
            None => self.corrupt(e.to_string()),
        }
    }

    /// Counts `n` more entries against the entry cap.
    pub(super) fn count_entries(&mut self, n: u64) -> Result<()> {
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
    pub(super) fn claim(&mut self, name: &str, path: &Path) -> Result<Option<PathBuf>> {
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

    /// Makes every parent of `rel` a real directory.
    fn parents(&mut self, name: &str, rel: &Path) -> Result<()> {
        let mut prefix = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            prefix.push(c);
            self.real_dir(name, &prefix)?;
        }
        Ok(())
    }

    /// The error for a path that could not be created (refused when it already exists).
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

    /// Creates directory entry `rel` (and its parents).
    pub(super) fn dir(&mut self, name: &str, rel: &Path) -> Result<()> {
        self.parents(name, rel)?;
        self.real_dir(name, rel)
    }

    /// Creates a regular file from `data`; `charge` counts its bytes (zip: tar counts its
    /// whole stream instead).
    pub(super) fn file(
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

    /// Creates symlink `rel` -> `target` once the link policy and the target's resolution
    /// allow it.
    pub(super) fn symlink(&mut self, name: &str, rel: &Path, target: &Path) -> Result<()> {
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

    /// Creates hard link `rel` to a regular file this extraction created.
    pub(super) fn hard_link(
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
