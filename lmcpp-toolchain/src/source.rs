//! Obtaining llama.cpp: prebuilt archives into a scratch dir, and source trees into the
//! shared `sources/` cache (each tree extracted once, published with one rename).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::archive::{ArchiveKind, extract};
use crate::cache::{CacheLayout, remove_all};
use crate::cmake::run_logged;
use crate::download::{DownloadSpec, Downloaded, Downloader, sha256_file};
use crate::error::{Error, IoContext, Result};
use crate::fingerprint::Fingerprint;
use crate::lock::lock_exclusive;
use crate::progress::{ProgressEvent, SharedProgress};

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

/// Downloads and extracts prebuilt archives; returns the directory (inside `scratch`)
/// holding `llama-server` and, for CUDA, the runtime libraries merged next to it.
pub(crate) async fn install_prebuilt(
    ctx: &Ctx<'_>,
    archives: &[(String, Option<String>)],
    scratch: &Path,
    server_exe: &str,
) -> Result<PathBuf> {
    let mut main_dir: Option<PathBuf> = None;
    for (i, (url, sha)) in archives.iter().enumerate() {
        let kind = ArchiveKind::from_name(url).ok_or_else(|| Error::InvalidRequest {
            reason: format!("cannot tell the archive format of {url} (want .tar.gz, .tar or .zip)"),
        })?;
        let file = download_archive(ctx, url, sha.as_deref()).await?.path;
        ctx.progress.event(ProgressEvent::Stage {
            name: format!("extracting {}", file_name_of(url)),
        });
        let out = scratch.join(format!("prebuilt-{i}"));
        remove_all(&out)?;
        extract(&file, &out, kind).await?;
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
    let checked = check_tree(&tree);
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
                return Err(Error::ChecksumMismatch {
                    url: format!("pip download llama-cpp-python=={version}"),
                    path: file,
                    expected: want.to_owned(),
                    found,
                });
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
    fn server_dir_is_found_below_top() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("build/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("llama-server"), "x").unwrap();
        assert_eq!(find_server_dir(d.path(), "llama-server").unwrap(), bin);
        assert!(find_server_dir(d.path(), "nope").is_none());
    }
}
