//! Cache root resolution, the directory layout under it, and small atomic file helpers.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Environment variable that overrides the cache root.
pub const HOME_ENV: &str = "LMCPP_HOME";

/// Resolves the cache root: `explicit` → `$LMCPP_HOME` → the platform data dir (`…/lmcpp`).
///
/// The directory is not created here; use [`CacheLayout::create`] for that.
pub fn resolve_cache_root(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(v) = std::env::var_os(HOME_ENV)
        && !v.is_empty()
    {
        return Ok(PathBuf::from(v));
    }
    directories::ProjectDirs::from("", "", "lmcpp")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or(Error::NoCacheRoot)
}

/// The directory layout under a cache root.
///
/// ```text
/// <root>/toolchains/<fingerprint>/   one entry per toolchain request (bin/, state.json, build.log)
/// <root>/sources/                    extracted llama.cpp source trees, published atomically
/// <root>/downloads/                  archives and their `.part` files
/// <root>/tools/                      bootstrapped tools (cmake)
/// <root>/models/                     the model store
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLayout {
    root: PathBuf,
}

impl CacheLayout {
    /// A layout rooted at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Resolves the root like [`resolve_cache_root`].
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        resolve_cache_root(explicit).map(Self::new)
    }

    /// Creates the root and its standard subdirectories.
    pub fn create(&self) -> Result<()> {
        for d in [
            self.toolchains(),
            self.sources(),
            self.downloads(),
            self.tools(),
            self.models(),
        ] {
            std::fs::create_dir_all(&d).ctx("create directory", &d)?;
        }
        Ok(())
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/toolchains`.
    pub fn toolchains(&self) -> PathBuf {
        self.root.join("toolchains")
    }

    /// `<root>/toolchains/<fingerprint>`.
    pub fn toolchain_entry(&self, fingerprint: &str) -> PathBuf {
        self.toolchains().join(fingerprint)
    }

    /// `<root>/sources`.
    pub fn sources(&self) -> PathBuf {
        self.root.join("sources")
    }

    /// `<root>/downloads`.
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// `<root>/tools`.
    pub fn tools(&self) -> PathBuf {
        self.root.join("tools")
    }

    /// `<root>/models`.
    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }
}

/// Writes `bytes` to `path` atomically: a temporary sibling is written, fsynced and renamed.
///
/// Readers see either the old content or the new content, never a mix.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).ctx("create directory", dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .ctx("create temporary file in", dir)?;
    tmp.write_all(bytes)
        .ctx("write", tmp.path().to_path_buf())?;
    tmp.as_file().sync_all().ctx("sync", path)?;
    tmp.persist(path)
        .map_err(|e| Error::io("rename into", path, e.error))?;
    sync_dir(dir);
    Ok(())
}

/// Fsyncs a directory so a rename inside it survives a crash. Best effort.
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Total size in bytes of the regular files under `path` (symlinks are not followed).
pub(crate) fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.flatten().map(|e| dir_size(&e.path())).sum()
}

/// Removes a file or directory tree; a missing path is not an error.
pub(crate) fn remove_all(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("inspect", path, e)),
        Ok(m) if m.is_dir() => match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove directory", path, e))
            }
            _ => Ok(()),
        },
        Ok(_) => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove file", path, e))
            }
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn explicit_root_wins() {
        let p = Path::new("/some/explicit");
        assert_eq!(resolve_cache_root(Some(p)).unwrap(), p);
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/state.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn layout_paths() {
        let l = CacheLayout::new("/r");
        assert_eq!(l.toolchain_entry("abc"), Path::new("/r/toolchains/abc"));
        assert_eq!(l.models(), Path::new("/r/models"));
        assert_eq!(l.tools(), Path::new("/r/tools"));
    }
}
