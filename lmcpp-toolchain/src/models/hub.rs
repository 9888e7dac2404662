//! The Hugging Face hub cache, shared with llama.cpp (`-hf`), `huggingface_hub` and every
//! other tool that reads it: where it is, and its per-repository layout.
//!
//! ```text
//! <hub>/models--<owner>--<name>/blobs/<sha256>              the files, named by content
//! <hub>/models--<owner>--<name>/snapshots/<commit>/<path>   relative symlinks to the blobs
//! <hub>/models--<owner>--<name>/refs/<revision>             the commit a branch or tag named
//! ```
//!
//! Only LFS files (whose blob name is their SHA-256) are written here by lmcpp. A blob
//! appears by rename once verified (the downloader's `.part` protocol), and only then is its
//! snapshot link created, also by rename, so no reader ever follows a link to a partial file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cache::atomic_write;
use crate::digest::Sha256;
use crate::error::{Error, IoContext, Result};

use super::hf::TreeEntry;

/// The hub cache directory: `explicit`, else the first of `LLAMA_CACHE`, `HF_HUB_CACHE`,
/// `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
/// `~/.cache/huggingface/hub` (llama.cpp's lookup order). `None` when none is set and
/// there is no home directory.
pub fn resolve_hub_cache(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    hub_cache_from(|name| std::env::var_os(name))
}

/// [`resolve_hub_cache`] over any environment (unit tests pass a table).
pub(crate) fn hub_cache_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    for name in ["LLAMA_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"] {
        if let Some(p) = var(name) {
            return Some(p);
        }
    }
    if let Some(p) = var("HF_HOME") {
        return Some(p.join("hub"));
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        return Some(p.join("huggingface").join("hub"));
    }
    var("HOME").map(|h| h.join(".cache").join("huggingface").join("hub"))
}

/// Whether `revision` is a full commit id (the hub's snapshot folders are named so).
pub(crate) fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One repository's folder in the hub cache.
#[derive(Debug, Clone)]
pub(crate) struct HubRepo {
    dir: PathBuf,
}

impl HubRepo {
    /// `<hub>/models--<owner>--<name>` for `repo` = `owner/name` (validated by the parser).
    pub(crate) fn new(hub: &Path, repo: &str) -> Self {
        Self {
            dir: hub.join(format!("models--{}", repo.replace('/', "--"))),
        }
    }

    /// A repository folder recorded earlier.
    pub(crate) fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn blob(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs").join(sha256)
    }

    fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// Where `file` (a path inside the repository) appears in the snapshot of `commit`.
    pub(crate) fn snapshot_file(&self, commit: &str, file: &str) -> PathBuf {
        let mut p = self.snapshot_dir(commit);
        p.extend(file.split('/'));
        p
    }

    /// The lock the Python client takes while it downloads blob `sha256`
    /// (`<hub>/.locks/models--<owner>--<name>/<sha256>.lock`); both take it with `flock`, so
    /// lmcpp and `huggingface_hub` never fetch the same blob at once.
    pub(crate) fn download_lock(&self, sha256: &str) -> PathBuf {
        let hub = self.dir.parent().unwrap_or(&self.dir);
        let name = self.dir.file_name().unwrap_or_default();
        hub.join(".locks").join(name).join(format!("{sha256}.lock"))
    }

    fn ref_file(&self, revision: &str) -> PathBuf {
        let mut p = self.dir.join("refs");
        p.extend(revision.split('/'));
        p
    }

    /// The commit `revision` stands for: itself when it is a commit id, else what
    /// `refs/<revision>` records (`None` when nothing does).
    pub(crate) fn commit_of(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_ascii_lowercase());
        }
        let text = std::fs::read_to_string(self.ref_file(revision)).ok()?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_ascii_lowercase())
    }

    /// Records that `revision` points at `commit` (nothing to record for a commit id).
    pub(crate) fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if is_commit(revision) {
            return Ok(());
        }
        // Written without a newline, as the Python client writes it.
        atomic_write(&self.ref_file(revision), commit.as_bytes())
    }

    /// Publishes `file` of `commit` as a relative symlink to blob `sha256`, replacing
    /// whatever was there by one rename.
    pub(crate) fn link(&self, commit: &str, file: &str, sha256: &str) -> Result<PathBuf> {
        let link = self.snapshot_file(commit, file);
        let dir = link.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        // `snapshots/<commit>/a/b.gguf` → `../../../blobs/<sha>`: one `..` per folder.
        let depth = 2 + file.split('/').count() - 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(sha256);
        #[cfg(unix)]
        {
            let tmp = dir.join(format!(".lmcpp-link-{}-{sha256}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&target, &tmp).ctx("create symlink", &tmp)?;
            std::fs::rename(&tmp, &link).ctx("rename into", &link)?;
        }
        #[cfg(not(unix))]
        {
            // Without symlinks (Windows without developer mode) the Python client puts a
            // copy in the snapshot. A hard link is that copy without the second disk
            // space; where one cannot be made (another volume), a copy. Either goes through
            // a temporary name, so the snapshot never holds a partial file.
            let tmp = dir.join(format!(".lmcpp-copy-{}-{sha256}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            let blob = self.blob(sha256);
            if std::fs::hard_link(&blob, &tmp).is_err() {
                std::fs::copy(&blob, &tmp).ctx("copy into", &tmp)?;
            }
            std::fs::rename(&tmp, &link).ctx("rename into", &link)?;
        }
        crate::cache::sync_dir(&dir);
        Ok(link)
    }

    /// Removes `file`'s snapshot entry of `commit` (a missing one is fine).
    pub(crate) fn unlink(&self, commit: &str, file: &str) -> Result<()> {
        let link = self.snapshot_file(commit, file);
        match std::fs::remove_file(&link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &link, e)),
        }
    }

    /// The GGUF files present in the snapshot of `commit`, as listing entries. The digest
    /// is the blob's name where the entry is a link to a blob; broken links are skipped.
    pub(crate) fn scan(&self, commit: &str) -> Vec<TreeEntry> {
        let root = self.snapshot_dir(commit);
        let mut out = Vec::new();
        let mut stack = vec![(root.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(read) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in read.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    // Repositories are shallow; the bound keeps a link loop harmless.
                    if depth < 8 {
                        stack.push((path, depth + 1));
                    }
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&root) else {
                    continue;
                };
                let Some(rel) = rel.to_str().map(|s| s.replace('\\', "/")) else {
                    continue;
                };
                if !rel.to_ascii_lowercase().ends_with(".gguf") {
                    continue;
                }
                let sha256 = std::fs::read_link(&path)
                    .ok()
                    .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .and_then(|n| Sha256::parse(&n).ok())
                    .map(String::from);
                out.push(TreeEntry::file(rel, Some(meta.len()), sha256));
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn lookup_order_is_llama_cpp_s() {
        let all = [
            ("LLAMA_CACHE", "/l"),
            ("HF_HUB_CACHE", "/h"),
            ("HUGGINGFACE_HUB_CACHE", "/hh"),
            ("HF_HOME", "/home-hf"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/u"),
        ];
        let expected = [
            "/l",
            "/h",
            "/hh",
            "/home-hf/hub",
            "/xdg/huggingface/hub",
            "/u/.cache/huggingface/hub",
        ];
        // Each row drops the variables before it: the first one set wins.
        for (i, want) in expected.iter().enumerate() {
            let env = &all[i..];
            let got = hub_cache_from(|n| {
                env.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| OsString::from(v))
            });
            assert_eq!(got, Some(PathBuf::from(want)), "row {i}");
        }
        // Empty values count as unset.
        let got = hub_cache_from(|n| Some(OsString::from(if n == "HOME" { "/u" } else { "" })));
        assert_eq!(got, Some(PathBuf::from("/u/.cache/huggingface/hub")));
        assert_eq!(hub_cache_from(|_| None), None);
        assert_eq!(
            resolve_hub_cache(Some(Path::new("/x"))),
            Some(PathBuf::from("/x"))
        );
    }

    #[test]
    fn layout_links_refs_and_scan() {
        let dir = tempfile::tempdir().unwrap();
        let repo = HubRepo::new(dir.path(), "o/r");
        assert_eq!(repo.dir(), dir.path().join("models--o--r"));
        assert_eq!(
            repo.download_lock("ab"),
            dir.path().join(".locks/models--o--r/ab.lock")
        );
        let sha = "ab".repeat(32);
        let commit = "c".repeat(40);
        std::fs::create_dir_all(repo.blob(&sha).parent().unwrap()).unwrap();
        std::fs::write(repo.blob(&sha), b"GGUFxx").unwrap();
        let link = repo.link(&commit, "sub/m.gguf", &sha).unwrap();
        // A relative link to the blob; a copy of it where there are no links (Windows).
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../../../blobs").join(&sha)
        );
        assert_eq!(std::fs::read(&link).unwrap(), b"GGUFxx");
        repo.link(&commit, "top.gguf", &sha).unwrap();
        assert_eq!(repo.commit_of("main"), None);
        repo.write_ref("main", &commit).unwrap();
        repo.write_ref("refs/pr/1", &commit).unwrap();
        assert_eq!(repo.commit_of("main").as_deref(), Some(commit.as_str()));
        assert_eq!(
            std::fs::read_to_string(repo.dir().join("refs/refs/pr/1")).unwrap(),
            commit
        );
        assert_eq!(repo.commit_of(&commit).as_deref(), Some(commit.as_str()));
        let found = repo.scan(&commit);
        let names: Vec<_> = found.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["sub/m.gguf", "top.gguf"]);
        // The digest is the link's target; a copy does not say it.
        #[cfg(unix)]
        assert!(
            found
                .iter()
                .all(|e| e.sha256().as_deref() == Some(sha.as_str()))
        );
        // No temporary link is left next to the published ones.
        let left: Vec<_> = std::fs::read_dir(repo.snapshot_dir(&commit))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        repo.unlink(&commit, "top.gguf").unwrap();
        repo.unlink(&commit, "top.gguf").unwrap();
        assert_eq!(repo.scan(&commit).len(), 1);
    }
}
