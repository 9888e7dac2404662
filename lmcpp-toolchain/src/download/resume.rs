//! Resume state of one download: the `<dest>.part` file, its `<dest>.part.meta` sidecar,
//! and the rules that decide whether the bytes already on disk may be continued.
//!
//! A part is continued when something will vouch for the spliced file:
//! - a known digest: the whole file is hashed (the kept bytes first, then the new ones)
//!   and only a match is published, so a plain `Range` request is enough; a strong ETag,
//!   when there is one, is still sent as `If-Range` so the server can say "changed";
//! - otherwise a strong ETag of the same URL, sent as `If-Range`; the server answers `206`
//!   only while the resource is unchanged.
//!
//! Without either, the part is discarded and the transfer starts over.

use std::path::{Path, PathBuf};

use http::StatusCode;
use http::header::{HeaderMap, HeaderName, IF_RANGE, RANGE};
use serde::{Deserialize, Serialize};

use super::http::{content_range_start, header_etag};
use crate::error::{IoContext, Result};

/// The sidecar describing a `.part` file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct PartMeta {
    url: String,
    etag: Option<String>,
    /// The digest the part was fetched for (absent in sidecars of older versions).
    #[serde(default)]
    sha256: Option<String>,
}

/// `<path><suffix>`, e.g. `model.gguf.part`.
pub(crate) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// What is on disk for a destination, and whether it may be continued.
#[derive(Debug)]
pub(super) struct Resume {
    pub(super) part: PathBuf,
    pub(super) meta_path: PathBuf,
    /// Bytes of the part that will be continued (0: start over).
    pub(super) offset: u64,
    /// The strong validator to send as `If-Range`, when there is one for this URL.
    etag: Option<String>,
    /// The final digest check validates whatever is spliced.
    digest_known: bool,
}

impl Resume {
    /// Reads the part and its sidecar for `dest`.
    pub(super) fn load(dest: &Path, url: &str, expected: Option<&str>) -> Self {
        let part = suffixed(dest, ".part");
        let meta_path = suffixed(dest, ".part.meta");
        let len = std::fs::metadata(&part).map_or(0, |m| m.len());
        let meta = read_meta(&meta_path);
        let same_url = meta.as_ref().is_some_and(|m| m.url == url);
        let etag = meta
            .as_ref()
            .filter(|_| same_url)
            .and_then(|m| m.etag.clone());
        let resumable = match expected {
            // The part was fetched for this digest (from any URL), or for this URL under a
            // strong validator; either way the final hash decides.
            Some(exp) => {
                meta.as_ref()
                    .is_some_and(|m| m.sha256.as_deref() == Some(exp))
                    || etag.is_some()
            }
            None => etag.is_some(),
        };
        Self {
            part,
            meta_path,
            offset: if resumable { len } else { 0 },
            etag,
            digest_known: expected.is_some(),
        }
    }

    /// `Range` (and `If-Range`) for continuing the part; empty when starting over.
    pub(super) fn request_headers(&self) -> Vec<(HeaderName, String)> {
        let mut h = Vec::new();
        if self.offset > 0 {
            h.push((RANGE, format!("bytes={}-", self.offset)));
            if let Some(etag) = &self.etag {
                h.push((IF_RANGE, format!("\"{etag}\"")));
            }
        }
        h
    }

    /// Where the body of a success response starts in the file: the offset for a `206`
    /// that continues the part, 0 for a `200`; `None` for a `206` that does not fit (a
    /// range we did not ask for, or of another representation), after which the caller
    /// starts over.
    pub(super) fn start_for(&self, status: StatusCode, headers: &HeaderMap) -> Option<u64> {
        if status != StatusCode::PARTIAL_CONTENT {
            return Some(0);
        }
        if self.offset == 0 || content_range_start(headers) != Some(self.offset) {
            return None;
        }
        let same_representation = match (&self.etag, header_etag(headers)) {
            (Some(ours), Some(theirs)) => *ours == theirs,
            // Without a validator on one side only the digest can tell; it will.
            _ => self.digest_known,
        };
        same_representation.then_some(self.offset)
    }

    /// Records what the part is being fetched from and for, before any body byte lands.
    pub(super) fn write_meta(
        &self,
        url: &str,
        etag: Option<String>,
        expected: Option<&str>,
    ) -> Result<()> {
        let meta = PartMeta {
            url: url.to_owned(),
            etag,
            sha256: expected.map(str::to_owned),
        };
        let json = serde_json::to_vec(&meta).unwrap_or_default();
        std::fs::write(&self.meta_path, json).ctx("write", &self.meta_path)
    }

    /// Deletes the part and its sidecar.
    pub(super) fn discard(&self) {
        let _ = std::fs::remove_file(&self.part);
        let _ = std::fs::remove_file(&self.meta_path);
    }
}

fn read_meta(path: &Path) -> Option<PartMeta> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http::header::{CONTENT_RANGE, ETAG, HeaderValue};

    use super::*;

    fn setup(meta: Option<PartMeta>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(suffixed(&dest, ".part"), vec![1u8; 100]).unwrap();
        if let Some(m) = meta {
            std::fs::write(
                suffixed(&dest, ".part.meta"),
                serde_json::to_vec(&m).unwrap(),
            )
            .unwrap();
        }
        (dir, dest)
    }

    fn meta(url: &str, etag: Option<&str>, sha: Option<&str>) -> PartMeta {
        PartMeta {
            url: url.into(),
            etag: etag.map(Into::into),
            sha256: sha.map(Into::into),
        }
    }

    #[test]
    fn what_may_be_continued() {
        let sha = "ab".repeat(32);
        let other = "cd".repeat(32);
        // (sidecar, url asked, expected digest) -> (offset, sends If-Range)
        let cases = [
            (None, "u", Some(sha.as_str()), (0, false)),
            (Some(meta("u", None, None)), "u", None, (0, false)),
            (Some(meta("u", Some("e"), None)), "u", None, (100, true)),
            (Some(meta("v", Some("e"), None)), "u", None, (0, false)),
            (
                Some(meta("u", None, Some(&sha))),
                "u",
                Some(sha.as_str()),
                (100, false),
            ),
            (
                Some(meta("v", Some("e"), Some(&sha))),
                "u",
                Some(sha.as_str()),
                (100, false),
            ),
            (
                Some(meta("u", None, Some(&other))),
                "u",
                Some(sha.as_str()),
                (0, false),
            ),
            (
                Some(meta("u", Some("e"), None)),
                "u",
                Some(sha.as_str()),
                (100, true),
            ),
        ];
        for (i, (m, url, exp, (offset, if_range))) in cases.into_iter().enumerate() {
            let (_dir, dest) = setup(m);
            let r = Resume::load(&dest, url, exp);
            assert_eq!(r.offset, offset, "case {i}");
            let h = r.request_headers();
            assert_eq!(h.iter().any(|(k, _)| *k == IF_RANGE), if_range, "case {i}");
            assert_eq!(h.iter().any(|(k, _)| *k == RANGE), offset > 0, "case {i}");
        }
    }

    #[test]
    fn which_partial_responses_continue_the_part() {
        let sha = "ab".repeat(32);
        let headers = |range: &str, etag: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_RANGE, HeaderValue::from_str(range).unwrap());
            if let Some(e) = etag {
                h.insert(ETAG, HeaderValue::from_str(&format!("\"{e}\"")).unwrap());
            }
            h
        };
        let (_d, dest) = setup(Some(meta("u", Some("e"), None)));
        let r = Resume::load(&dest, "u", None);
        assert_eq!(r.start_for(StatusCode::OK, &HeaderMap::new()), Some(0));
        let ok = headers("bytes 100-199/200", Some("e"));
        assert_eq!(r.start_for(StatusCode::PARTIAL_CONTENT, &ok), Some(100));
        let other_etag = headers("bytes 100-199/200", Some("x"));
        assert_eq!(r.start_for(StatusCode::PARTIAL_CONTENT, &other_etag), None);
        let no_etag = headers("bytes 100-199/200", None);
        assert_eq!(r.start_for(StatusCode::PARTIAL_CONTENT, &no_etag), None);
        let wrong_start = headers("bytes 0-199/200", Some("e"));
        assert_eq!(r.start_for(StatusCode::PARTIAL_CONTENT, &wrong_start), None);

        let (_d, dest) = setup(Some(meta("u", None, Some(&sha))));
        let r = Resume::load(&dest, "u", Some(&sha));
        assert_eq!(
            r.start_for(StatusCode::PARTIAL_CONTENT, &no_etag),
            Some(100)
        );
        assert_eq!(r.start_for(StatusCode::PARTIAL_CONTENT, &ok), Some(100));
        assert_eq!(r.start_for(StatusCode::PARTIAL_CONTENT, &wrong_start), None);
    }
}
