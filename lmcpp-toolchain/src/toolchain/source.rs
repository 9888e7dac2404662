//! Obtaining llama.cpp: prebuilt archives into a scratch dir, and source trees into the
//! shared `sources/` cache (each tree extracted once, published with one rename).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::archive::{ArchiveKind, ExtractOptions, extract, extract_with};
use crate::cache::{CacheLayout, remove_all};
use crate::download::{DownloadSpec, Downloaded, Downloader, sha256_file};
use crate::error::{Error, IoContext, Result};
use crate::fingerprint::Fingerprint;
use crate::lock::lock_exclusive;
use crate::progress::{ProgressEvent, SharedProgress};
use crate::toolchain::cmake::run_logged;

/// What the source functions need from the recipe.
pub(crate) struct Ctx<'a> {
    pub(crate) layout: &'a CacheLayout,
    pub(crate) downloader: &'a Downloader,
    pub(crate) lock_timeout: Duration,
    pub(crate) progress: &'a SharedProgress,
}

/// File name part of a URL or path (without query).
fn file_name_of(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let name = no_query
        .trim_end_matches('/')
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("download");
    if name.is_empty() {
        "download".into()
    } else {
        name.to_owned()
    }
}

/// Downloads `url` into `downloads/` under a name unique to the URL; the result carries
/// the SHA-256 computed while streaming.
pub(crate) async fn download_archive(
    ctx: &Ctx<'_>,
    url: &str,
    sha256: Option<&str>,
) -> Result<Downloaded> {
    let key = Fingerprint::new("lmcpp/download/v1")
        .field("url", url)
        .finish();
    let dest = ctx
        .layout
        .downloads()
        .join(format!("{key}-{}", file_name_of(url)));
    ctx.progress.event(ProgressEvent::Stage {
        name: format!("downloading {url}"),
    });
    let mut spec = DownloadSpec::new(url, &dest);
    spec.expected_sha256 = sha256.map(str::to_owned);
    ctx.downloader.fetch(&spec, ctx.progress).await
}

/// Finds the directory holding `llama-server` inside an extracted prebuilt archive.
pub(crate) fn find_server_dir(root: &Path, exe: &str) -> Option<PathBuf> {
    fn walk(dir: &Path, exe: &str, depth: usize) -> Option<PathBuf> {
        if dir.join(exe).is_file() {
            return Some(dir.to_path_buf());
        }
        if depth == 0 {
            return None;
        }
        let mut subdirs: Vec<_> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        subdirs.sort();
        subdirs.into_iter().find_map(|d| walk(&d, exe, depth - 1))
    }
    walk(root, exe, 4)
}

/// Fetches and parses a release listing (`<api>/releases/tags/<tag>` or `…/latest`).
/// `GITHUB_TOKEN`, when set, is sent as a header (never logged), which lifts the API's
/// rate limit for anonymous callers.
pub(crate) async fn release_listing(
    ctx: &Ctx<'_>,
    url: &str,
) -> Result<crate::toolchain::release::ReleaseListing> {
    let dir = tempfile::Builder::new()
        .prefix(".listing-")
        .tempdir_in(ctx.layout.downloads())
        .or_else(|_| tempfile::tempdir())
        .ctx("create directory", ctx.layout.downloads())?;
    let dest = dir.path().join("release.json");
    let mut spec = DownloadSpec::new(url, &dest)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28");
    if let Ok(token) = std::env::var("GITHUB_TOKEN")
        && !token.trim().is_empty()
    {
        spec = spec.header("Authorization", format!("Bearer {}", token.trim()));
    }
    ctx.downloader
        .fetch(&spec, &crate::progress::no_progress())
        .await?;
    let bytes = std::fs::read(&dest).ctx("read", &dest)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::InvalidRequest {
        reason: format!("the release listing at {url} is not a release: {e}"),
    })
}

/// One archive of a prebuilt install: URL, expected SHA-256, expected size.
pub(crate) type PrebuiltArchive = (String, Option<String>, Option<u64>);

/// Downloads and extracts prebuilt archives; returns the directory (inside `scratch`)
/// holding `llama-server` and, for CUDA, the runtime libraries merged next to it.
pub(crate) async fn install_prebuilt(
    ctx: &Ctx<'_>,
    archives: &[PrebuiltArchive],
    scratch: &Path,
    server_exe: &str,
) -> Result<PathBuf> {
    let mut main_dir: Option<PathBuf> = None;
    for (i, (url, sha, size)) in archives.iter().enumerate() {
        let kind = ArchiveKind::from_name(url).ok_or_else(|| Error::InvalidRequest {
            reason: format!("cannot tell the archive format of {url} (want .tar.gz, .tar or .zip)"),
        })?;
        if sha.is_none() {
            ctx.progress.event(ProgressEvent::Note {
                message: format!(
                    "{} has no published sha256; its integrity rests on the transport alone",
                    file_name_of(url)
                ),
            });
        }
        let got = download_archive(ctx, url, sha.as_deref()).await?;
        if let Some(want) = size
            && *want > 0
            && got.size != *want
        {
            let _ = std::fs::remove_file(&got.path);
            return Err(Error::NoPrebuilt {
                reason: format!(
                    "{url} is {} bytes, but the release listing says {want}",
                    got.size
                ),
            });
        }
        let file = got.path;
        ctx.progress.event(ProgressEvent::Stage {
            name: format!("extracting {}", file_name_of(url)),
        });
        let out = scratch.join(format!("prebuilt-{i}"));
        remove_all(&out)?;
        // Prebuilt archives may hold library aliases (`libX.so.0 -> libX.so.0.1`), no
        // other links.
        extract_with(&file, &out, kind, &ExtractOptions::prebuilt()).await?;
        match &main_dir {
            None => {
                let dir =
                    find_server_dir(&out, server_exe).ok_or_else(|| Error::ArtefactMissing {
                        path: out.join(server_exe),
                        stage: format!("extracting {url}"),
                    })?;
                main_dir = Some(dir);
            }
            Some(dir) => merge_files(&out, dir)?,
        }
    }
    main_dir.ok_or_else(|| Error::InvalidRequest {
        reason: "no prebuilt archive to install".into(),
    })
}

/// Moves every regular file under `from` (flattened) into `to`; used for `cudart-` archives.
fn merge_files(from: &Path, to: &Path) -> Result<()> {
    for e in std::fs::read_dir(from)
        .ctx("read directory", from)?
        .flatten()
    {
        let p = e.path();
        let t = e.file_type().ctx("inspect", &p)?;
        if t.is_dir() {
            merge_files(&p, to)?;
        } else if t.is_file() || t.is_symlink() {
            let dest = to.join(e.file_name());
            std::fs::rename(&p, &dest).ctx("move into", &dest)?;
        }
    }
    Ok(())
}

/// Checks that `dir` looks like a llama.cpp source tree with the server.
pub(crate) fn check_tree(dir: &Path) -> Result<()> {
    for needed in ["CMakeLists.txt", "tools/server"] {
        if !dir.join(needed).exists() {
            return Err(Error::ArtefactMissing {
                path: dir.join(needed),
                stage: "checking the llama.cpp source tree".into(),
            });
        }
    }
    Ok(())
}

/// The CMake target that builds the RPC server in `tree` (`ggml-rpc-server` in current
/// llama.cpp, `rpc-server` before), found in its CMake files; `None` when it has none.
pub(crate) fn rpc_target(tree: &Path) -> Option<String> {
    let known = [
        "tools/rpc/CMakeLists.txt",
        "examples/rpc/CMakeLists.txt",
        "ggml/src/ggml-rpc/CMakeLists.txt",
        "CMakeLists.txt",
    ];
    let found = known.iter().find_map(|rel| {
        let text = std::fs::read_to_string(tree.join(rel)).ok()?;
        find_rpc_target(&text)
    });
    // Elsewhere in a tree laid out differently: any CMakeLists.txt below tools/ or
    // examples/ (two levels; llama.cpp keeps one folder per tool).
    found.or_else(|| {
        ["tools", "examples"].iter().find_map(|top| {
            let mut dirs: Vec<_> = std::fs::read_dir(tree.join(top))
                .ok()?
                .flatten()
                .map(|e| e.path().join("CMakeLists.txt"))
                .collect();
            dirs.sort();
            dirs.iter()
                .find_map(|f| find_rpc_target(&std::fs::read_to_string(f).ok()?))
        })
    })
}

/// Finds `set(TARGET <x>rpc-server)` or `add_executable(<x>rpc-server ...)` in CMake text.
fn find_rpc_target(cmake: &str) -> Option<String> {
    cmake.lines().find_map(|line| {
        let l = line.trim();
        let rest = l
            .strip_prefix("set(TARGET")
            .or_else(|| l.strip_prefix("add_executable("))?;
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .collect();
        name.ends_with("rpc-server").then_some(name)
    })
}

/// The identity of a local source directory: a hash over the names, sizes and modification
/// times of its files (hidden entries and top-level `build*` directories left out), so an
/// edited tree is a new version while reading it stays cheap (no file is read).
pub(crate) fn dir_identity(dir: &Path) -> Result<String> {
    let root = std::fs::canonicalize(dir).ctx("resolve", dir)?;
    check_tree(&root)?;
    let mut files = Vec::new();
    walk_meta(&root, &root, &mut files, 0)?;
    files.sort();
    Ok(format!(
        "dir:{}",
        Fingerprint::new("lmcpp/source-dir/v1")
            .list("files", &files)
            .finish()
    ))
}

fn walk_meta(root: &Path, dir: &Path, out: &mut Vec<String>, depth: usize) -> Result<()> {
    if depth > 32 {
        return Ok(());
    }
    for e in std::fs::read_dir(dir).ctx("read directory", dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let top_build = depth == 0 && name.starts_with("build");
        if name.starts_with('.') || top_build {
            continue;
        }
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            walk_meta(root, &p, out, depth + 1)?;
            continue;
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        out.push(format!("{rel}\0{}\0{mtime}", meta.len()));
    }
    Ok(())
}

/// Extracts `archive` into `sources/<key>` once; `subdir` selects a folder inside it
/// (`vendor/llama.cpp` for the sdist). Concurrent callers wait for the first.
pub(crate) async fn publish_source(
    ctx: &Ctx<'_>,
    archive: &Path,
    key: &str,
    subdir: Option<&str>,
) -> Result<PathBuf> {
    let sources = ctx.layout.sources();
    std::fs::create_dir_all(&sources).ctx("create directory", &sources)?;
    let dest = sources.join(key);
    if check_tree(&dest).is_ok() {
        return Ok(dest);
    }
    let _lock = lock_exclusive(
        &sources.join(format!("{key}.lock")),
        ctx.lock_timeout,
        ctx.progress,
    )
    .await?;
    if check_tree(&dest).is_ok() {
        return Ok(dest);
    }
    let kind = ArchiveKind::from_name(&archive.to_string_lossy()).ok_or_else(|| {
        Error::InvalidRequest {
            reason: format!("cannot tell the archive format of {}", archive.display()),
        }
    })?;
    ctx.progress.event(ProgressEvent::Stage {
        name: format!("extracting {}", archive.display()),
    });
    let tmp = sources.join(format!(".tmp-{key}"));
    remove_all(&tmp)?;
    extract(archive, &tmp, kind).await?;
    let tree = match subdir {
        Some(s) => tmp.join(s),
        None => tmp.clone(),
    };
    // The kept sub-folder is the new root: links that pointed elsewhere in the archive
    // (or a sub-folder that is itself a link) must not lead outside it once moved.
    let checked = check_tree(&tree).and_then(|()| crate::archive::verify_links(archive, &tree));
    if let Err(e) = checked {
        let _ = remove_all(&tmp);
        return Err(e);
    }
    remove_all(&dest)?;
    std::fs::rename(&tree, &dest).ctx("rename into", &dest)?;
    remove_all(&tmp)?;
    ctx.progress.event(ProgressEvent::Done);
    Ok(dest)
}

/// Fetches the `llama-cpp-python` sdist with pip (or finds it in `downloads/pypi`),
/// verifies its digest and publishes its `vendor/llama.cpp`.
pub(crate) async fn pypi_sdist(
    ctx: &Ctx<'_>,
    python: &str,
    version: &str,
    sha256: Option<&str>,
) -> Result<PathBuf> {
    let key = Fingerprint::new("lmcpp/source/v1")
        .field("kind", "pypi-sdist")
        .field("version", version)
        .opt_field("sha256", sha256)
        .finish();
    let dest = ctx.layout.sources().join(&key);
    if check_tree(&dest).is_ok() {
        return Ok(dest);
    }
    let dir = ctx.layout.downloads().join("pypi");
    std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
    let file = dir.join(format!("llama_cpp_python-{version}.tar.gz"));
    let _lock = lock_exclusive(
        &dir.join(format!("llama_cpp_python-{version}.lock")),
        ctx.lock_timeout,
        ctx.progress,
    )
    .await?;
    let have = match (file.is_file(), sha256) {
        (true, Some(want)) => sha256_file(&file).await?.0 == want,
        (true, None) => true,
        (false, _) => false,
    };
    if !have {
        ctx.progress.event(ProgressEvent::Stage {
            name: format!("pip download llama-cpp-python=={version}"),
        });
        let tmp = dir.join(format!(".pip-{version}"));
        remove_all(&tmp)?;
        std::fs::create_dir_all(&tmp).ctx("create directory", &tmp)?;
        let mut cmd = Command::new(python);
        cmd.args([
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--no-input",
            "--no-deps",
            "--no-binary",
            "llama-cpp-python",
            &format!("llama-cpp-python=={version}"),
            "-d",
        ])
        .arg(&tmp);
        run_logged(cmd, &tmp, &dir.join("pip.log"), ctx.progress).await?;
        let got = std::fs::read_dir(&tmp)
            .ctx("read directory", &tmp)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .ok_or_else(|| Error::ArtefactMissing {
                path: tmp.join(format!("llama_cpp_python-{version}.tar.gz")),
                stage: "pip download".into(),
            })?;
        if let Some(want) = sha256 {
            let (found, _) = sha256_file(&got).await?;
            if found != want {
                let _ = remove_all(&tmp);
                return Err(crate::download::error::Error::ChecksumMismatch {
                    url: format!("pip download llama-cpp-python=={version}"),
                    path: file,
                    expected: want.to_owned(),
                    found,
                }
                .into());
            }
        }
        std::fs::rename(&got, &file).ctx("rename into", &file)?;
        remove_all(&tmp)?;
    }
    publish_source(ctx, &file, &key, Some("vendor/llama.cpp")).await
}

/// Publishes a downloaded or local source archive under a key derived from its digest.
pub(crate) async fn source_archive(
    ctx: &Ctx<'_>,
    location: &str,
    sha256: Option<&str>,
) -> Result<PathBuf> {
    let Downloaded {
        path: file,
        sha256: digest,
        ..
    } = download_archive(ctx, location, sha256).await?;
    let key = Fingerprint::new("lmcpp/source/v1")
        .field("kind", "archive")
        .field("sha256", &digest)
        .finish();
    // The published tree must be named like an archive so the format can be detected.
    let named = if ArchiveKind::from_name(&file.to_string_lossy()).is_some() {
        file
    } else {
        return Err(Error::InvalidRequest {
            reason: format!("cannot tell the archive format of {location}"),
        });
    };
    publish_source(ctx, &named, &key, None).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_names_from_urls() {
        assert_eq!(file_name_of("https://h/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(file_name_of("/tmp/x.zip"), "x.zip");
        assert_eq!(file_name_of("https://h/"), "h");
    }

    #[test]
    fn rpc_targets_of_every_era_are_found() {
        assert_eq!(
            find_rpc_target("set(TARGET ggml-rpc-server)\nadd_executable(${TARGET} x.cpp)"),
            Some("ggml-rpc-server".into())
        );
        assert_eq!(
            find_rpc_target("set(TARGET rpc-server)\nadd_executable(${TARGET} rpc-server.cpp)"),
            Some("rpc-server".into())
        );
        assert_eq!(
            find_rpc_target("add_executable(rpc-server rpc-server.cpp)"),
            Some("rpc-server".into())
        );
        assert_eq!(find_rpc_target("set(TARGET llama-server)"), None);
        let d = tempfile::tempdir().unwrap();
        assert_eq!(rpc_target(d.path()), None);
        std::fs::create_dir_all(d.path().join("examples/rpc")).unwrap();
        std::fs::write(
            d.path().join("examples/rpc/CMakeLists.txt"),
            "set(TARGET rpc-server)",
        )
        .unwrap();
        assert_eq!(rpc_target(d.path()).as_deref(), Some("rpc-server"));
    }

    #[test]
    fn an_edited_tree_has_a_new_identity_and_build_dirs_do_not_count() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("tools/server")).unwrap();
        std::fs::write(d.path().join("CMakeLists.txt"), "a").unwrap();
        let first = dir_identity(d.path()).unwrap();
        std::fs::create_dir_all(d.path().join("build/bin")).unwrap();
        std::fs::write(d.path().join("build/bin/x"), "y").unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/HEAD"), "z").unwrap();
        assert_eq!(dir_identity(d.path()).unwrap(), first);
        std::fs::write(d.path().join("tools/server/server.cpp"), "int main(){}").unwrap();
        let second = dir_identity(d.path()).unwrap();
        assert_ne!(second, first);
        std::fs::write(
            d.path().join("tools/server/server.cpp"),
            "int main(){return 1;}",
        )
        .unwrap();
        assert_ne!(dir_identity(d.path()).unwrap(), second);
    }

    #[test]
    fn server_dir_is_found_below_top() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("build/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("llama-server"), "x").unwrap();
        assert_eq!(find_server_dir(d.path(), "llama-server").unwrap(), bin);
        assert!(find_server_dir(d.path(), "nope").is_none());
    }
}
