//! The per-user runtime directory, server ids and Unix socket paths.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    error::{Error, Result},
    platform,
};

/// Longest socket path we hand to the server. Linux allows 107 bytes in `sun_path` and
/// macOS 103; staying well below both leaves room for the NUL and for surprises.
pub const MAX_SOCKET_PATH: usize = 100;

/// Creates `dir` if needed and makes sure it is private to the user (mode 0700 and owned
/// by us on Unix, an ACL for the user alone on Windows), so other users can neither read
/// our state nor plant sockets. Only pass directories lmcpp owns: one that is open to
/// others is made private (never a runtime dir a user gave, only lmcpp's subdirectory).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    platform::ensure_private_dir(dir).map_err(|reason| Error::RuntimeDir {
        path: dir.to_owned(),
        reason,
    })
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
