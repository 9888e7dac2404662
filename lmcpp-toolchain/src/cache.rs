//! Cache root resolution, the directory layout under it, and small atomic file helpers.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fingerprint::Fingerprint;

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
/// <root>/probes/                      what was learned about a local file, by its identity
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

    /// `<root>/probes`: small records of what was learned about a local file (an archive's
    /// SHA-256, a binary's `--help`), each keyed by the file's [`FileIdentity`].
    pub fn probes(&self) -> PathBuf {
        self.root.join("probes")
    }

    /// What was recorded as `kind` about the file `id` (see [`CacheLayout::write_probe`]);
    /// `None` when nothing was, or when the record is for another file (unreadable or
    /// foreign records are ignored, never trusted).
    pub fn read_probe(&self, id: &FileIdentity, kind: ProbeKind) -> Option<String> {
        let bytes = std::fs::read(self.probe_path(id, kind)).ok()?;
        let record: ProbeRecord = serde_json::from_slice(&bytes).ok()?;
        (record.identity == *id && record.kind == kind.name()).then_some(record.value)
    }

    /// Records `value` as `kind` about the file `id`, atomically, under
    /// `<root>/probes/<identity key>.<kind>.json`.
    pub fn write_probe(&self, id: &FileIdentity, kind: ProbeKind, value: &str) -> Result<()> {
        let path = self.probe_path(id, kind);
        let record = ProbeRecord {
            identity: id.clone(),
            kind: kind.name().to_owned(),
            value: value.to_owned(),
        };
        let json = serde_json::to_vec(&record).map_err(|e| Error::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        atomic_write(&path, &json)
    }

    fn probe_path(&self, id: &FileIdentity, kind: ProbeKind) -> PathBuf {
        self.probes()
            .join(format!("{}.{}.json", id.key(), kind.name()))
    }
}

/// What a record under `<root>/probes/` holds about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeKind {
    /// The SHA-256 of a local archive (lower-case hex).
    ArchiveSha256,
    /// What a `llama-server` binary printed for `--help`.
    BinaryHelp,
    /// The version label of a `llama-server` binary (from `--version`).
    BinaryVersion,
}

impl ProbeKind {
    /// The name used in the record's file name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ArchiveSha256 => "sha256",
            Self::BinaryHelp => "help",
            Self::BinaryVersion => "version",
        }
    }
}

/// What identifies a file's content without reading it: where it really is (the canonical
/// path), its size, its modification time to the nanosecond, its inode and its device.
/// A file rewritten in place changes its modification time, one replaced by a rename
/// changes its inode, so a record keyed by this is not mistaken for another version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    /// The canonical path (symbolic links resolved).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time: seconds since the Unix epoch (negative before it).
    pub mtime_secs: i64,
    /// Modification time: the nanoseconds within that second.
    pub mtime_nanos: u32,
    /// Inode number (0 where the platform has none).
    pub inode: u64,
    /// Device number (0 where the platform has none).
    pub device: u64,
}

impl FileIdentity {
    /// The identity of the file at `path` (symbolic links followed).
    pub fn of(path: &Path) -> Result<Self> {
        let canonical = std::fs::canonicalize(path).ctx("resolve", path)?;
        let meta = std::fs::metadata(&canonical).ctx("inspect", &canonical)?;
        #[cfg(unix)]
        let (mtime_secs, mtime_nanos, inode, device) = {
            use std::os::unix::fs::MetadataExt;
            let nanos = u32::try_from(meta.mtime_nsec()).unwrap_or(0);
            (meta.mtime(), nanos, meta.ino(), meta.dev())
        };
        #[cfg(not(unix))]
        let (mtime_secs, mtime_nanos, inode, device) = {
            let since = meta
                .modified()
                .ctx("inspect", &canonical)?
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
            // The volume serial number and file index stand for device and inode, so a
            // file replaced through a rename with the same size and time is another file.
            #[cfg(windows)]
            let (inode, device) = std::fs::File::open(&canonical)
                .ok()
                .and_then(|f| crate::lock::windows_file_id(&f))
                .map_or((0, 0), |(volume, high, low)| {
                    ((u64::from(high) << 32) | u64::from(low), u64::from(volume))
                });
            #[cfg(not(windows))]
            let (inode, device) = (0, 0);
            (secs, since.subsec_nanos(), inode, device)
        };
        Ok(Self {
            path: canonical,
            size: meta.len(),
            mtime_secs,
            mtime_nanos,
            inode,
            device,
        })
    }

    /// The key records about this file are filed under (a full-length fingerprint).
    pub fn key(&self) -> String {
        Fingerprint::new("lmcpp/file-identity/v1")
            .field("path", self.path.as_os_str().as_encoded_bytes())
            .field("size", self.size.to_le_bytes())
            .field("mtime_secs", self.mtime_secs.to_le_bytes())
            .field("mtime_nanos", self.mtime_nanos.to_le_bytes())
            .field("inode", self.inode.to_le_bytes())
            .field("device", self.device.to_le_bytes())
            .finish_full()
    }
}

/// One file under `<root>/probes/`: the identity it is about (checked on read), and what
/// was recorded.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProbeRecord {
    identity: FileIdentity,
    kind: String,
    value: String,
}

/// Whether the record at `path` (under `probes/`) is about its file as the file is now; a
/// record that cannot be read, or names a file that is gone or changed, is stale.
pub(crate) fn probe_is_current(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ProbeRecord>(&bytes).ok())
        .is_some_and(|r| FileIdentity::of(&r.identity.path).is_ok_and(|now| now == r.identity))
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
    fn probes_are_read_back_only_for_the_same_file_identity() {
        let dir = tempfile::tempdir().unwrap();
        let layout = CacheLayout::new(dir.path().join("root"));
        let file = dir.path().join("f.bin");
        std::fs::write(&file, b"one").unwrap();
        let id = FileIdentity::of(&file).unwrap();
        assert_eq!(layout.read_probe(&id, ProbeKind::ArchiveSha256), None);
        layout
            .write_probe(&id, ProbeKind::ArchiveSha256, "abc")
            .unwrap();
        assert_eq!(
            layout.read_probe(&id, ProbeKind::ArchiveSha256).as_deref(),
            Some("abc")
        );
        assert_eq!(
            layout.read_probe(&id, ProbeKind::BinaryHelp),
            None,
            "kinds are apart"
        );

        // Same size, another modification time: another identity, nothing recorded for it.
        // (700 ns: Windows keeps file times in 100 ns units.)
        std::fs::write(&file, b"two").unwrap();
        let later = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::new(1_000_000, 700);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let id2 = FileIdentity::of(&file).unwrap();
        assert_eq!((id2.mtime_secs, id2.mtime_nanos), (1_000_000, 700));
        assert_ne!(id2.key(), id.key());
        assert_eq!(layout.read_probe(&id2, ProbeKind::ArchiveSha256), None);

        // A record whose identity does not match its name is not trusted.
        std::fs::copy(
            layout.probes().join(format!("{}.sha256.json", id.key())),
            layout.probes().join(format!("{}.sha256.json", id2.key())),
        )
        .unwrap();
        assert_eq!(layout.read_probe(&id2, ProbeKind::ArchiveSha256), None);
    }

    #[test]
    fn layout_paths() {
        let l = CacheLayout::new("/r");
        assert_eq!(l.toolchain_entry("abc"), Path::new("/r/toolchains/abc"));
        assert_eq!(l.models(), Path::new("/r/models"));
        assert_eq!(l.tools(), Path::new("/r/tools"));
    }
}
