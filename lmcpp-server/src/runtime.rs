//! The per-user runtime directory, server ids and Unix socket paths.

use std::{
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::error::{Error, Result};

/// Longest socket path we hand to the server. Linux allows 107 bytes in `sun_path` and
/// macOS 103; staying well below both leaves room for the NUL and for surprises.
pub const MAX_SOCKET_PATH: usize = 100;

/// The default runtime directory: `$XDG_RUNTIME_DIR` when that variable holds an absolute
/// path, else `/tmp`. lmcpp never changes it; its files go into the private subdirectory
/// [`private_dir_name`] it makes there (see [`crate::Registry::new`]).
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => PathBuf::from("/tmp"),
    }
}

/// The name of lmcpp's private subdirectory of a runtime dir: `lmcpp-<uid>`, so users
/// sharing one runtime dir (such as `/tmp`) never share a subdirectory.
pub fn private_dir_name() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    format!("lmcpp-{uid}")
}

/// `/tmp/lmcpp-<uid>`: where short socket paths go when the runtime dir's are too long.
pub(crate) fn private_tmp_dir() -> PathBuf {
    Path::new("/tmp").join(private_dir_name())
}

/// Creates `dir` (mode 0700, and any missing parents likewise) if needed and checks that it
/// is a real directory owned by us that nobody else can enter, so other users can neither
/// read our state nor plant sockets. Only pass directories lmcpp owns: one that is open to
/// others is made private (never a runtime dir a user gave, only lmcpp's subdirectory).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    let unusable = |reason: String| Error::RuntimeDir {
        path: dir.to_owned(),
        reason,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| unusable(format!("cannot create it: {e}")))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| unusable(e.to_string()))?;
    if !meta.is_dir() {
        return Err(unusable("it is not a directory (maybe a symlink)".into()));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        return Err(unusable(format!(
            "it is owned by uid {} and not by us ({uid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| unusable(format!("cannot make it private: {e}")))?;
    }
    Ok(())
}

/// Longest id accepted from a user (generated ids have 12 characters).
pub const MAX_ID_LEN: usize = 64;

/// Checks an id that came from a user before it becomes part of a path: 1 to
/// [`MAX_ID_LEN`] ASCII letters, digits, `-` and `_`, not starting with `-`. So no id can
/// name a parent directory, a separator, a hidden or temporary file, or anything with
/// a NUL byte.
pub fn validate_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_ID_LEN {
        Some("it is longer than 64 characters")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Some("only letters, digits, `-` and `_` are allowed")
    } else if id.starts_with('-') {
        Some("it starts with `-`")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidId {
            id: shown_id(id),
            reason,
        }),
    }
}

/// A rejected id as it is shown in an error: escaped, and cut after 80 characters.
fn shown_id(id: &str) -> String {
    let mut shown: String = id.escape_debug().take(80).collect();
    if id.escape_debug().nth(80).is_some() {
        shown.push('…');
    }
    shown
}

/// A fresh server id: 12 hex digits, unique per process and very likely across processes
/// (the caller still creates its files with `create_new`).
pub(crate) fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut input = Vec::with_capacity(40);
    input.extend_from_slice(&std::process::id().to_le_bytes());
    input.extend_from_slice(&nanos.to_le_bytes());
    input.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    format!("{:012x}", fnv1a(&input) & 0xffff_ffff_ffff)
}

/// The socket path for server `id`: `<runtime_dir>/<id>.sock`, or, when that would exceed
/// [`MAX_SOCKET_PATH`], `<fallback_dir>/<hash>.sock` with a 16-digit hash of the long path.
pub fn socket_path(runtime_dir: &Path, id: &str, fallback_dir: &Path) -> PathBuf {
    let natural = runtime_dir.join(format!("{id}.sock"));
    if natural.as_os_str().len() <= MAX_SOCKET_PATH {
        return natural;
    }
    let hash = fnv1a(natural.as_os_str().as_encoded_bytes());
    fallback_dir.join(format!("{hash:016x}.sock"))
}

/// 64-bit FNV-1a; enough for short unique names (not a security boundary: the files live
/// in private directories and are created exclusively).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths_are_kept() {
        let p = socket_path(Path::new("/run/user/1000/lmcpp"), "abc", Path::new("/f"));
        assert_eq!(p, Path::new("/run/user/1000/lmcpp/abc.sock"));
    }

    #[test]
    fn long_paths_fall_back_to_a_hash() {
        let long = PathBuf::from(format!("/{}", "d".repeat(120)));
        let a = socket_path(&long, "abc", Path::new("/tmp/x"));
        let b = socket_path(&long, "abd", Path::new("/tmp/x"));
        assert!(a.starts_with("/tmp/x"));
        assert!(a.as_os_str().len() <= MAX_SOCKET_PATH);
        assert_ne!(a, b);
    }

    #[test]
    fn id_table() {
        for (id, ok) in [
            ("0123456789ab", true),
            ("my-server_2", true),
            (&"a".repeat(MAX_ID_LEN), true),
            (&"a".repeat(MAX_ID_LEN + 1), false),
            ("", false),
            ("..", false),
            ("../x", false),
            ("a/b", false),
            ("/etc/passwd", false),
            (".hidden", false),
            ("-rf", false),
            ("a\0b", false),
            ("a b", false),
            ("é", false),
        ] {
            assert_eq!(validate_id(id).is_ok(), ok, "{id:?}");
        }
        assert!(validate_id(&new_id()).is_ok());
    }

    #[test]
    fn ids_are_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 12));
    }
}
