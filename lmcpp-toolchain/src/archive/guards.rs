//! The rules an entry must pass, checked against what is on disk: names normalised or
//! refused, link targets resolved through the links already extracted, library aliases
//! recognised, and a finished tree's links verified.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use super::error::Error;
use crate::error::{IoContext, Result};

/// Links followed while resolving one target, as the kernel's own limit.
const MAX_LINK_HOPS: u32 = 40;

/// Checks that `dir` is a folder (not a link) and that every symlink below it resolves
/// inside it, following links on disk.
///
/// [`extract_with`](super::extract_with) does this for the tree it publishes; call it again when only a
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

/// Checks an entry name and returns it as a relative path made of normal components
/// (`./a//b/./c` becomes `a/b/c`).
pub(super) fn safe_relative(name: &str, path: &Path) -> std::result::Result<PathBuf, &'static str> {
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
pub(super) struct Walk {
    /// Components below the root.
    pub(super) at: Vec<OsString>,
    /// Whether some component does not exist (yet), so the rest was taken as written.
    pub(super) missing: bool,
}

/// Resolves `target` as seen from the directory `from` (components below `root`, all real
/// directories), following the links on disk below `root`. Fails when the target is
/// absolute, steps above `root`, uses `..` after a component that does not exist (a later
/// entry could make that component a link), or follows more than [`MAX_LINK_HOPS`] links.
pub(super) fn resolve(
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
pub(super) fn is_library_alias(link: &OsStr, target: &Path) -> bool {
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

/// Path components joined with `/`, for messages.
fn join_display(parts: &[OsString]) -> String {
    parts
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
