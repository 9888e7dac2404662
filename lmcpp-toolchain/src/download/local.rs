//! Local "downloads": `file://` URLs and plain paths, copied (hashed, checked, published)
//! the same way as remote files.

use std::path::{Path, PathBuf};

use super::resume::suffixed;
use super::sink::{copy_hashing, file_head};
use super::spec::{Content, DownloadSpec, Downloaded};
use crate::error::{IoContext, Result, join_error};
use crate::progress::{ProgressEvent, SharedProgress};
use lmcpp_types::percent::decode_lossy as percent_decode;

/// Maps `file://` URLs and plain paths to a local path; `None` for http(s).
pub(super) fn local_source(url: &str) -> Result<Option<PathBuf>> {
    if let Some(rest) = url.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        // `file://C:\m.gguf`, as Windows users write it, names the drive too.
        if cfg!(windows) && starts_with_drive(path) {
            return Ok(Some(PathBuf::from(percent_decode(path))));
        }
        if !path.starts_with('/') {
            return Err(crate::download::error::Error::InvalidUrl {
                url: url.to_owned(),
                reason: "file urls must be absolute (file:///path)".into(),
            }
            .into());
        }
        return Ok(Some(PathBuf::from(file_url_path(&percent_decode(path)))));
    }
    if url.contains("://") {
        return Ok(None);
    }
    Ok(Some(PathBuf::from(url)))
}

/// The path a `file://` URL's (decoded) path names: itself, except that on Windows the
/// slash before a drive letter is the URL's own (`file:///C:/m.gguf` is `C:/m.gguf`).
fn file_url_path(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if cfg!(windows) && starts_with_drive(rest) {
        rest
    } else {
        path
    }
}

/// Whether a path starts with a drive letter and its colon (`C:`).
fn starts_with_drive(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Copies a local file to `spec.dest` through a `.part`, checking content and digest.
pub(super) async fn copy_local(
    src: &Path,
    spec: &DownloadSpec,
    expected: Option<&str>,
    progress: &SharedProgress,
) -> Result<Downloaded> {
    let src = src.to_path_buf();
    let dest = spec.dest.clone();
    let content = spec.content;
    let url = spec.url.clone();
    let expected = expected.map(str::to_owned);
    let progress = progress.clone();
    tokio::task::spawn_blocking(move || {
        let part = suffixed(&dest, ".part");
        let written = copy_hashing(&src, &part, |done, total| {
            progress.event(ProgressEvent::Bytes { done, total });
        })?;
        if content == Content::Gguf {
            let head = file_head(&part)?;
            if head != crate::gguf::GGUF_MAGIC {
                let _ = std::fs::remove_file(&part);
                return Err(crate::download::error::Error::NotGguf { url, found: head }.into());
            }
        }
        if let Some(exp) = expected
            && exp != written.sha256
        {
            let _ = std::fs::remove_file(&part);
            return Err(crate::download::error::Error::ChecksumMismatch {
                url,
                path: dest,
                expected: exp,
                found: written.sha256,
            }
            .into());
        }
        std::fs::rename(&part, &dest).ctx("rename into", &dest)?;
        Ok(Downloaded {
            path: dest,
            sha256: written.sha256,
            size: written.len,
            bytes_transferred: 0,
            etag: None,
            final_url: url,
        })
    })
    .await
    .map_err(join_error)?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn local_sources() {
        assert_eq!(
            local_source("file:///tmp/a%20b").unwrap(),
            Some(PathBuf::from("/tmp/a b"))
        );
        assert_eq!(local_source("/x/y").unwrap(), Some(PathBuf::from("/x/y")));
        assert_eq!(local_source("https://h/x").unwrap(), None);
        assert!(local_source("file://rel").is_err());
        let drive = local_source("file:///C:/m%20x.gguf").unwrap();
        let bare = local_source("file://C:\\m%20x.gguf");
        if cfg!(windows) {
            assert_eq!(drive, Some(PathBuf::from("C:/m x.gguf")));
            assert_eq!(bare.unwrap(), Some(PathBuf::from("C:\\m x.gguf")));
        } else {
            assert_eq!(drive, Some(PathBuf::from("/C:/m x.gguf")));
            assert!(bare.is_err(), "a drive means nothing outside Windows");
        }
    }
}
