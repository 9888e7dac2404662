//! Hugging Face specifics: endpoint, access token, repository listing and file choice.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::Sha256;

use super::source::HfSource;

/// The public Hugging Face endpoint, used unless `HF_ENDPOINT` or an option says otherwise.
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";

/// A Hugging Face access token. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct HfToken(String);

impl HfToken {
    /// Wraps a token value (surrounding whitespace is removed).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().trim().to_owned())
    }

    /// The token from `HF_TOKEN`, else from the token file (`$HF_HOME/token`, default
    /// `~/.cache/huggingface/token`); `None` if neither exists.
    pub fn from_env() -> Option<Self> {
        if let Ok(v) = std::env::var("HF_TOKEN")
            && !v.trim().is_empty()
        {
            return Some(Self::new(v));
        }
        Self::from_file(&default_token_file()?)
    }

    /// The token stored in `path`, if the file exists and is not empty.
    pub fn from_file(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        let token = Self::new(text);
        (!token.0.is_empty()).then_some(token)
    }

    /// The `Authorization` header value. Only for building requests; never log it.
    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for HfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HfToken(<redacted>)")
    }
}

/// `$HF_HOME/token`, else `~/.cache/huggingface/token`, where Hugging Face tools keep it.
pub fn default_token_file() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(home).join("token"));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(".cache/huggingface/token"))
}

/// The endpoint: an explicit value, else `HF_ENDPOINT`, else [`DEFAULT_HF_ENDPOINT`].
pub fn resolve_endpoint(explicit: Option<&str>) -> String {
    let raw = explicit
        .map(str::to_owned)
        .or_else(|| {
            std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_owned());
    raw.trim().trim_end_matches('/').to_owned()
}

/// Percent-encodes a path segment (everything but unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes a path inside a repository, keeping its `/` separators.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// `<endpoint>/<repo>/resolve/<revision>/<file>`.
pub(crate) fn resolve_url(endpoint: &str, src: &HfSource, file: &str) -> String {
    format!(
        "{endpoint}/{}/resolve/{}/{}",
        src.repo,
        encode_segment(&src.revision),
        encode_path(file)
    )
}

/// `<endpoint>/api/models/<repo>/tree/<revision>?recursive=true`.
pub(crate) fn tree_url(endpoint: &str, src: &HfSource) -> String {
    format!(
        "{endpoint}/api/models/{}/tree/{}?recursive=true",
        src.repo,
        encode_segment(&src.revision)
    )
}

/// One entry of the repository tree listing.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TreeEntry {
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) size: Option<u64>,
    #[serde(default)]
    pub(crate) lfs: Option<LfsInfo>,
}

impl TreeEntry {
    /// A file entry (as a cache scan or a test builds them).
    pub(crate) fn file(path: String, size: Option<u64>, sha256: Option<String>) -> Self {
        Self {
            kind: "file".into(),
            path,
            size,
            lfs: sha256.map(|oid| LfsInfo { oid }),
        }
    }

    /// The file's SHA-256, when it is an LFS file with a well-formed digest.
    pub(crate) fn sha256(&self) -> Option<String> {
        self.lfs
            .as_ref()
            .and_then(|l| Sha256::parse(&l.oid).ok())
            .map(String::from)
    }
}

/// Git LFS pointer details; `oid` is the SHA-256 of the file.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LfsInfo {
    pub(crate) oid: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::models::HfSelector;

    fn src(selector: HfSelector) -> HfSource {
        HfSource {
            repo: "o/r".into(),
            selector,
            revision: "main".into(),
        }
    }

    #[test]
    fn urls_are_encoded() {
        let mut s = src(HfSelector::Default);
        s.revision = "refs/pr/1".into();
        assert_eq!(
            resolve_url("http://x", &s, "sub dir/m.gguf"),
            "http://x/o/r/resolve/refs%2Fpr%2F1/sub%20dir/m.gguf"
        );
        assert_eq!(
            tree_url("http://x", &s),
            "http://x/api/models/o/r/tree/refs%2Fpr%2F1?recursive=true"
        );
    }

    #[test]
    fn token_debug_is_redacted_and_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "hf_secret\n").unwrap();
        let t = HfToken::from_file(&path).unwrap();
        assert_eq!(t.bearer(), "Bearer hf_secret");
        assert!(!format!("{t:?}").contains("secret"));
        std::fs::write(&path, "  \n").unwrap();
        assert!(HfToken::from_file(&path).is_none());
        assert!(HfToken::from_file(&dir.path().join("missing")).is_none());
    }
}
