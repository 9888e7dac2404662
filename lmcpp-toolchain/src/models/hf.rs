//! Hugging Face specifics: endpoint, access token, repository listing and file choice.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::Sha256;
use crate::error::{Error, Result};

use super::source::{HfSelector, HfSource};

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

/// Git LFS pointer details; `oid` is the SHA-256 of the file.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LfsInfo {
    pub(crate) oid: String,
}

/// The file to download, with its SHA-256 when the listing gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chosen {
    pub(crate) path: String,
    pub(crate) sha256: Option<String>,
    pub(crate) size: Option<u64>,
}

/// Whether `tag` appears in `name` as a whole word (`Q4_K` does not match `Q4_K_M`).
fn has_tag(name: &str, tag: &str) -> bool {
    let name = name.to_ascii_uppercase();
    let tag = tag.to_ascii_uppercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    name.match_indices(&tag).any(|(i, _)| {
        !word(name[..i].chars().next_back()) && !word(name[i + tag.len()..].chars().next())
    })
}

/// Picks the file for `src` from a parsed tree listing.
pub(crate) fn choose(src: &HfSource, entries: &[TreeEntry]) -> Result<Chosen> {
    let ggufs: Vec<&TreeEntry> = entries
        .iter()
        .filter(|e| e.kind != "directory" && e.path.to_ascii_lowercase().ends_with(".gguf"))
        // Multimodal projectors are companions of a model, never the model itself.
        .filter(|e| {
            !e.path
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
                .starts_with("mmproj")
        })
        .collect();
    let available = || ggufs.iter().map(|e| e.path.clone()).collect::<Vec<_>>();
    let no_match = |what: String| Error::NoMatchingModelFile {
        repo: src.repo.clone(),
        revision: src.revision.clone(),
        wanted: what,
        available: available(),
    };
    let matches: Vec<&TreeEntry> = match &src.selector {
        HfSelector::File(f) => ggufs.iter().copied().filter(|e| &e.path == f).collect(),
        HfSelector::Quant(q) => ggufs
            .iter()
            .copied()
            .filter(|e| has_tag(&e.path, q))
            .collect(),
        HfSelector::Default if ggufs.len() == 1 => ggufs.clone(),
        HfSelector::Default => ggufs
            .iter()
            .copied()
            .filter(|e| has_tag(&e.path, "Q4_K_M"))
            .collect(),
    };
    let wanted = || match &src.selector {
        HfSelector::File(f) => format!("file {f}"),
        HfSelector::Quant(q) => format!("quantisation {q}"),
        HfSelector::Default => "a single GGUF file or a Q4_K_M file".to_owned(),
    };
    let entry = match matches.as_slice() {
        [one] => *one,
        [] => return Err(no_match(wanted())),
        many => {
            return Err(no_match(format!(
                "{} (ambiguous: {}; name the file with :<file>.gguf)",
                wanted(),
                many.iter()
                    .map(|e| e.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    Ok(Chosen {
        path: entry.path.clone(),
        sha256: entry
            .lfs
            .as_ref()
            .and_then(|l| Sha256::parse(&l.oid).ok())
            .map(String::from),
        size: entry.size,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entries(names: &[&str]) -> Vec<TreeEntry> {
        names
            .iter()
            .map(|n| TreeEntry {
                kind: "file".into(),
                path: (*n).into(),
                size: Some(1),
                lfs: None,
            })
            .collect()
    }

    fn src(selector: HfSelector) -> HfSource {
        HfSource {
            repo: "o/r".into(),
            selector,
            revision: "main".into(),
        }
    }

    #[test]
    fn chooses_by_quant_file_or_default() {
        let list = entries(&[
            "README.md",
            "m-Q4_K_M.gguf",
            "m-Q4_K_S.gguf",
            "m.Q8_0.gguf",
            "mmproj-m-f16.gguf",
            "sub/m-IQ2_XS.gguf",
        ]);
        let pick = |sel| choose(&src(sel), &list).map(|c| c.path);
        assert_eq!(
            pick(HfSelector::Quant("q4_k_m".into())).unwrap(),
            "m-Q4_K_M.gguf"
        );
        assert_eq!(
            pick(HfSelector::Quant("Q8_0".into())).unwrap(),
            "m.Q8_0.gguf"
        );
        assert_eq!(
            pick(HfSelector::Quant("IQ2_XS".into())).unwrap(),
            "sub/m-IQ2_XS.gguf"
        );
        assert_eq!(pick(HfSelector::Default).unwrap(), "m-Q4_K_M.gguf");
        assert_eq!(
            pick(HfSelector::File("m.Q8_0.gguf".into())).unwrap(),
            "m.Q8_0.gguf"
        );
        // `Q4_K` is a prefix of two names but a whole word in neither.
        match pick(HfSelector::Quant("Q4_K".into())) {
            Err(Error::NoMatchingModelFile { available, .. }) => {
                assert_eq!(available.len(), 4, "mmproj is not offered: {available:?}");
            }
            other => panic!("{other:?}"),
        }
        let one = entries(&["only.gguf", "mmproj.gguf"]);
        assert_eq!(
            choose(&src(HfSelector::Default), &one).unwrap().path,
            "only.gguf"
        );
    }

    #[test]
    fn ambiguous_quant_is_an_error_naming_the_candidates() {
        let list = entries(&["a-Q4_0.gguf", "b-Q4_0.gguf"]);
        let err = choose(&src(HfSelector::Quant("Q4_0".into())), &list).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("a-Q4_0.gguf") && msg.contains("ambiguous"),
            "{msg}"
        );
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
