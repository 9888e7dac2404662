//! The extraction entry points: unpack into a scratch folder next to the destination, strip
//! a single top-level folder, check the links once more, and publish with one rename.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::extractor::Extractor;
use super::guards::verify_links;
use super::options::{ArchiveKind, ExtractOptions};
use crate::cache::remove_all;
use crate::error::{IoContext, Result, join_error};

/// Extracts `archive` into `dest` (which must not exist yet) with the default
/// [`ExtractOptions`], off the async runtime.
pub async fn extract(archive: &Path, dest: &Path, kind: ArchiveKind) -> Result<()> {
    extract_with(archive, dest, kind, &ExtractOptions::default()).await
}

/// Blocking form of [`extract`].
pub fn extract_blocking(archive: &Path, dest: &Path, kind: ArchiveKind) -> Result<()> {
    extract_with_blocking(archive, dest, kind, &ExtractOptions::default())
}

/// Extracts `archive` into `dest` (which must not exist yet) with `options`, off the async
/// runtime.
pub async fn extract_with(
    archive: &Path,
    dest: &Path,
    kind: ArchiveKind,
    options: &ExtractOptions,
) -> Result<()> {
    let archive = archive.to_path_buf();
    let dest = dest.to_path_buf();
    let options = options.clone();
    tokio::task::spawn_blocking(move || extract_with_blocking(&archive, &dest, kind, &options))
        .await
        .map_err(join_error)?
}

/// Blocking form of [`extract_with`].
pub fn extract_with_blocking(
    archive: &Path,
    dest: &Path,
    kind: ArchiveKind,
    options: &ExtractOptions,
) -> Result<()> {
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
    let result = unpack_into(archive, &root, dest, kind, options);
    let _ = remove_all(&scratch);
    result
}

/// Unpacks `archive` into `root`, then moves it (or its single top-level folder) onto
/// `dest`.
fn unpack_into(
    archive: &Path,
    root: &Path,
    dest: &Path,
    kind: ArchiveKind,
    options: &ExtractOptions,
) -> Result<()> {
    let archive_len = std::fs::metadata(archive).ctx("inspect", archive)?.len();
    let mut x = Extractor::new(archive, root, options, archive_len);
    match kind {
        ArchiveKind::TarGz => {
            let f = File::open(archive).ctx("open", archive)?;
            x.unpack_tar(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))?;
        }
        ArchiveKind::Tar => {
            let f = File::open(archive).ctx("open", archive)?;
            x.unpack_tar(std::io::BufReader::new(f))?;
        }
        ArchiveKind::Zip => x.unpack_zip()?,
    }
    let top = single_top_dir(root)?;
    let from = top.as_deref().unwrap_or(root);
    // Stripping the top folder moves the root one level down: a link that resolved to the
    // old root (`top/l -> ..`) would point outside, so the final root is checked again.
    verify_links(archive, from)?;
    std::fs::rename(from, dest).ctx("rename into", dest)?;
    Ok(())
}

/// The only entry of `root`, when it is a folder.
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
