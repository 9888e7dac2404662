//! Safe extraction of `.tar.gz`, `.tar` and `.zip` archives.
//!
//! Every entry is checked before anything is written: absolute paths, `..` components,
//! links whose target leaves the destination, and entries that would be written through a
//! link extracted earlier are all rejected with [`Error::UnsafeArchive`]. Extraction
//! happens in `<dest>.extracting` next to the destination; when the archive has a single
//! top-level folder it is stripped, and the result is moved onto `dest` with one rename.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::cache::remove_all;
use crate::error::{Error, IoContext, Result, join_error};

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

/// Extracts `archive` into `dest` (which must not exist yet), off the async runtime.
pub async fn extract(archive: &Path, dest: &Path, kind: ArchiveKind) -> Result<()> {
    let archive = archive.to_path_buf();
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || extract_blocking(&archive, &dest, kind))
        .await
        .map_err(join_error)?
}

/// Blocking form of [`extract`].
pub fn extract_blocking(archive: &Path, dest: &Path, kind: ArchiveKind) -> Result<()> {
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
    let result = unpack_into(archive, &root, dest, kind);
    let _ = remove_all(&scratch);
    result
}

fn unpack_into(archive: &Path, root: &Path, dest: &Path, kind: ArchiveKind) -> Result<()> {
    match kind {
        ArchiveKind::TarGz => {
            let f = File::open(archive).ctx("open", archive)?;
            unpack_tar(archive, flate2::read::GzDecoder::new(f), root)?;
        }
        ArchiveKind::Tar => {
            let f = File::open(archive).ctx("open", archive)?;
            unpack_tar(archive, f, root)?;
        }
        ArchiveKind::Zip => unpack_zip(archive, root)?,
    }
    let top = single_top_dir(root)?;
    let from = top.as_deref().unwrap_or(root);
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

/// Checks an entry name and returns it as a relative path made of normal components.
fn safe_relative(archive: &Path, name: &str) -> Result<PathBuf> {
    let unsafe_entry = |reason: &str| Error::UnsafeArchive {
        archive: archive.to_path_buf(),
        entry: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.starts_with('/') || name.starts_with('\\') || name.contains(":\\") {
        return Err(unsafe_entry("has an absolute path"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry("contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry("has an absolute path"));
            }
        }
    }
    Ok(out)
}

/// Checks that a link at `entry` (relative) pointing at `target` stays inside the root.
fn check_link(archive: &Path, name: &str, entry: &Path, target: &Path, hard: bool) -> Result<()> {
    let escape = |reason: &str| Error::UnsafeArchive {
        archive: archive.to_path_buf(),
        entry: name.to_owned(),
        reason: reason.to_owned(),
    };
    if target.has_root()
        || target
            .components()
            .any(|c| matches!(c, Component::Prefix(_)))
    {
        return Err(escape("is a link to an absolute path"));
    }
    // Hard link targets are relative to the archive root, symlink targets to the link's dir.
    let mut depth: Vec<&std::ffi::OsStr> = if hard {
        Vec::new()
    } else {
        entry
            .parent()
            .map(|p| {
                p.components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for c in target.components() {
        match c {
            Component::Normal(n) => depth.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return Err(escape("is a link that escapes the destination"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(escape("is a link to an absolute path"));
            }
        }
    }
    Ok(())
}

/// Rejects entries that would be written below a link extracted earlier.
fn check_not_through_link(
    archive: &Path,
    name: &str,
    rel: &Path,
    links: &HashSet<PathBuf>,
) -> Result<()> {
    let mut prefix = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        prefix.push(c);
        if links.contains(&prefix) {
            return Err(Error::UnsafeArchive {
                archive: archive.to_path_buf(),
                entry: name.to_owned(),
                reason: "would be written through a link".to_owned(),
            });
        }
    }
    Ok(())
}

fn unpack_tar(archive: &Path, reader: impl Read, root: &Path) -> Result<()> {
    let bad = |e: std::io::Error| Error::Archive {
        path: archive.to_path_buf(),
        message: e.to_string(),
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    let mut links = HashSet::new();
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = safe_relative(archive, &name)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        check_not_through_link(archive, &name, &rel, &links)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(bad)?
                .ok_or_else(|| Error::UnsafeArchive {
                    archive: archive.to_path_buf(),
                    entry: name.clone(),
                    reason: "is a link without a target".into(),
                })?
                .into_owned();
            check_link(archive, &name, &rel, &target, kind.is_hard_link())?;
            if kind.is_symlink() {
                links.insert(rel.clone());
            }
        } else if !(kind.is_file() || kind.is_dir() || kind == tar::EntryType::Continuous) {
            // Devices, fifos and global/extension headers carry nothing we need.
            if matches!(
                kind,
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo
            ) {
                continue;
            }
        }
        let unpacked = entry.unpack_in(root).map_err(bad)?;
        if !unpacked {
            return Err(Error::UnsafeArchive {
                archive: archive.to_path_buf(),
                entry: name,
                reason: "was refused by the tar reader".into(),
            });
        }
    }
    Ok(())
}

fn unpack_zip(archive: &Path, root: &Path) -> Result<()> {
    let bad = |e: zip::result::ZipError| Error::Archive {
        path: archive.to_path_buf(),
        message: e.to_string(),
    };
    let f = File::open(archive).ctx("open", archive)?;
    let mut zip = zip::ZipArchive::new(f).map_err(bad)?;
    let mut links = HashSet::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).map_err(bad)?;
        let name = file.name().map_err(bad)?.into_owned();
        let rel = safe_relative(archive, &name)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        check_not_through_link(archive, &name, &rel, &links)?;
        let out = root.join(&rel);
        if file.is_dir() {
            std::fs::create_dir_all(&out).ctx("create directory", &out)?;
            continue;
        }
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).ctx("create directory", dir)?;
        }
        if file.is_symlink() {
            let mut target = String::new();
            file.read_to_string(&mut target)
                .ctx("read link target from", archive)?;
            let target = PathBuf::from(target);
            check_link(archive, &name, &rel, &target, false)?;
            links.insert(rel.clone());
            make_symlink(&target, &out)?;
            continue;
        }
        let mode = file.unix_mode();
        let mut w = File::create(&out).ctx("create", &out)?;
        std::io::copy(&mut file, &mut w).map_err(|e| Error::Archive {
            path: archive.to_path_buf(),
            message: format!("{name}: {e}"),
        })?;
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode & 0o777))
                .ctx("set permissions of", &out)?;
        }
        #[cfg(not(unix))]
        let _ = mode;
    }
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).ctx("create symlink", link)
}

#[cfg(not(unix))]
fn make_symlink(target: &Path, link: &Path) -> Result<()> {
    // Without symlink privileges, fall back to copying the target when it exists already.
    let resolved = link.parent().unwrap_or(Path::new(".")).join(target);
    std::fs::copy(&resolved, link)
        .map(|_| ())
        .ctx("copy link target to", link)
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
    fn names_and_links_are_checked() {
        let a = Path::new("a.tar");
        assert!(safe_relative(a, "/etc/passwd").is_err());
        assert!(safe_relative(a, "x/../../y").is_err());
        assert!(safe_relative(a, "C:\\x").is_err());
        assert_eq!(safe_relative(a, "./x/y").unwrap(), Path::new("x/y"));
        let e = Path::new("top/bin/link");
        assert!(check_link(a, "n", e, Path::new("../lib/x.so"), false).is_ok());
        assert!(check_link(a, "n", e, Path::new("../../../etc"), false).is_err());
        assert!(check_link(a, "n", e, Path::new("/etc/passwd"), false).is_err());
        assert!(check_link(a, "n", e, Path::new("top/bin/x"), true).is_ok());
        assert!(check_link(a, "n", e, Path::new("../x"), true).is_err());
    }
}
