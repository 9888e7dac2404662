//! Where a model comes from: a local path, a URL, or a Hugging Face repository file.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The default Hugging Face revision.
pub const DEFAULT_REVISION: &str = "main";

/// A model reference as a user types it.
///
/// Parsing rules, in order:
/// - `http://`, `https://`, `file://` → [`ModelSource::Url`].
/// - `hf://owner/repo…` or `hf:owner/repo…` → [`ModelSource::HuggingFace`].
/// - anything starting with `/`, `.` or `~`, or ending in `.gguf` without a `:` → a local
///   path (write `./owner/repo` for a relative path that looks like a repository).
/// - `owner/repo[:file.gguf|:QUANT][@revision]` → [`ModelSource::HuggingFace`] (the
///   `@revision` may also come before the `:`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelSource {
    /// A GGUF file on disk; used in place, never copied.
    Local(PathBuf),
    /// A file behind a URL, downloaded into the store.
    Url(String),
    /// A file in a Hugging Face model repository.
    HuggingFace(HfSource),
}

/// A file in a Hugging Face repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HfSource {
    /// `owner/repo`.
    pub repo: String,
    /// Which file.
    pub selector: HfSelector,
    /// Branch, tag or commit (default `main`).
    pub revision: String,
}

/// How the file in a Hugging Face repository is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HfSelector {
    /// The only GGUF in the repository, else its `Q4_K_M` file.
    Default,
    /// A file path inside the repository (ends in `.gguf`).
    File(String),
    /// A quantisation tag such as `Q4_K_M`, matched against the GGUF file names.
    Quant(String),
}

impl HfSource {
    /// A source for `repo` (`owner/name`) with the default selector and revision.
    pub fn new(repo: &str) -> Result<Self> {
        let input = repo;
        validate_repo(input, repo)?;
        Ok(Self {
            repo: repo.to_owned(),
            selector: HfSelector::Default,
            revision: DEFAULT_REVISION.to_owned(),
        })
    }
}

impl fmt::Display for HfSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repo)?;
        match &self.selector {
            HfSelector::Default => {}
            HfSelector::File(file) => write!(f, ":{file}")?,
            HfSelector::Quant(q) => write!(f, ":{q}")?,
        }
        if self.revision != DEFAULT_REVISION {
            write!(f, "@{}", self.revision)?;
        }
        Ok(())
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Url(u) => f.write_str(u),
            Self::HuggingFace(hf) => write!(f, "hf://{hf}"),
        }
    }
}

impl FromStr for ModelSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ModelSource::parse(s)
    }
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    crate::models::error::Error::InvalidSource {
        input: input.to_owned(),
        reason: reason.into(),
    }
    .into()
}

impl ModelSource {
    /// Parses a model reference (see the type's documentation for the rules).
    pub fn parse(input: &str) -> Result<Self> {
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid(input, "it is empty"));
        }
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            if s.len() <= lower.find("://").map_or(0, |i| i + 3) {
                return Err(invalid(input, "the URL has no host"));
            }
            return Ok(Self::Url(s.to_owned()));
        }
        if lower.starts_with("file://") {
            return Ok(Self::Url(s.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("hf://").or_else(|| s.strip_prefix("hf:")) {
            return parse_hf(input, rest).map(Self::HuggingFace);
        }
        if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') || s.contains('\\') {
            return Ok(Self::Local(PathBuf::from(s)));
        }
        if lower.ends_with(".gguf") && !s.contains(':') {
            return Ok(Self::Local(PathBuf::from(s)));
        }
        if s.contains('/') {
            return parse_hf(input, s).map(Self::HuggingFace);
        }
        Err(invalid(
            input,
            "expected a path to a .gguf file, an http(s) URL, or a Hugging Face repository as owner/repo[:file|:quant][@revision]",
        ))
    }

    /// The name a server should give this model (`--alias`, the id clients select it by):
    /// `owner/repo[:selector][@revision]` as given for Hugging Face, the file stem for a
    /// path or URL (`models/qwen-q4.gguf` → `qwen-q4`).
    pub fn alias(&self) -> String {
        let stem = |name: &str| -> String {
            let name = name.rsplit(['/', '\\']).next().unwrap_or(name);
            let lower = name.to_ascii_lowercase();
            let stem = if lower.ends_with(".gguf") {
                &name[..name.len() - 5]
            } else {
                name
            };
            if stem.is_empty() {
                "model".to_owned()
            } else {
                stem.to_owned()
            }
        };
        match self {
            Self::Local(p) => stem(&p.to_string_lossy()),
            Self::Url(u) => {
                stem(&crate::download::url_file_name(u).unwrap_or_else(|| "model".to_owned()))
            }
            Self::HuggingFace(hf) => hf.to_string(),
        }
    }

    /// A stable, readable, file-name-safe key for the cache refs of this source.
    pub fn cache_key(&self) -> String {
        let (kind, text) = match self {
            Self::Local(p) => ("local", p.display().to_string()),
            Self::Url(u) => ("url", u.clone()),
            Self::HuggingFace(hf) => (
                "hf",
                format!(
                    "{}:{}@{}",
                    hf.repo,
                    match &hf.selector {
                        HfSelector::Default => "",
                        HfSelector::File(f) => f,
                        HfSelector::Quant(q) => q,
                    },
                    hf.revision
                ),
            ),
        };
        let hash = crate::fingerprint::Fingerprint::new("lmcpp model source v1")
            .field("kind", kind)
            .field("text", &text)
            .finish();
        let mut readable: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // Keep file names short; the hash keeps them unique.
        if readable.len() > 80 {
            readable = readable
                .chars()
                .rev()
                .take(80)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
        }
        format!("{kind}-{readable}-{}", &hash[..12.min(hash.len())])
    }
}

fn parse_hf(input: &str, s: &str) -> Result<HfSource> {
    // Split `repo`, then `:selector` and `@revision` in either order.
    let repo_end = s.find([':', '@']).unwrap_or(s.len());
    let repo = &s[..repo_end];
    validate_repo(input, repo)?;
    let mut rest = &s[repo_end..];
    let mut selector = None;
    let mut revision = None;
    while let Some(c) = rest.chars().next() {
        let body = &rest[1..];
        let (value, next) = match c {
            ':' => {
                let end = body.find('@').unwrap_or(body.len());
                (&body[..end], &body[end..])
            }
            _ => {
                let end = body.find(':').unwrap_or(body.len());
                (&body[..end], &body[end..])
            }
        };
        let slot = if c == ':' {
            &mut selector
        } else {
            &mut revision
        };
        if slot.is_some() {
            return Err(invalid(input, format!("'{c}' appears twice")));
        }
        if value.is_empty() {
            return Err(invalid(input, format!("nothing follows '{c}'")));
        }
        *slot = Some(value);
        rest = next;
    }

    let selector = match selector {
        None => HfSelector::Default,
        Some(sel) if sel.to_ascii_lowercase().ends_with(".gguf") => {
            if sel.starts_with('/') || sel.split('/').any(|seg| seg.is_empty() || seg == "..") {
                return Err(invalid(
                    input,
                    format!("file {sel:?} is not a relative path inside the repository"),
                ));
            }
            HfSelector::File(sel.to_owned())
        }
        Some(q) => {
            if !q
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    input,
                    format!(
                        "{q:?} is neither a .gguf file name nor a quantisation tag like Q4_K_M"
                    ),
                ));
            }
            HfSelector::Quant(q.to_owned())
        }
    };
    let revision = match revision {
        None => DEFAULT_REVISION.to_owned(),
        Some(r) => {
            if r.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@')
                || r.split('/').any(|seg| seg == "..")
            {
                return Err(invalid(
                    input,
                    format!("revision {r:?} is not a branch, tag or commit"),
                ));
            }
            r.to_owned()
        }
    };
    Ok(HfSource {
        repo: repo.to_owned(),
        selector,
        revision,
    })
}

fn validate_repo(input: &str, repo: &str) -> Result<()> {
    let mut parts = repo.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(
            input,
            format!("repository {repo:?} must be owner/name"),
        ));
    };
    for part in [owner, name] {
        let ok = !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(invalid(
                input,
                format!(
                    "repository {repo:?} must be owner/name using letters, digits, '-', '_' and '.'"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hf(repo: &str, selector: HfSelector, revision: &str) -> ModelSource {
        ModelSource::HuggingFace(HfSource {
            repo: repo.into(),
            selector,
            revision: revision.into(),
        })
    }

    #[test]
    fn parses_the_documented_forms() {
        use HfSelector::*;
        let cases: Vec<(&str, ModelSource)> = vec![
            (
                "/abs/model.gguf",
                ModelSource::Local("/abs/model.gguf".into()),
            ),
            ("./owner/repo", ModelSource::Local("./owner/repo".into())),
            ("models/x.gguf", ModelSource::Local("models/x.gguf".into())),
            ("~/m.gguf", ModelSource::Local("~/m.gguf".into())),
            (
                "https://h/x.gguf",
                ModelSource::Url("https://h/x.gguf".into()),
            ),
            ("HTTP://h/x", ModelSource::Url("HTTP://h/x".into())),
            (
                "file:///tmp/x.gguf",
                ModelSource::Url("file:///tmp/x.gguf".into()),
            ),
            ("o/r", hf("o/r", Default, "main")),
            ("hf://o/r", hf("o/r", Default, "main")),
            ("hf:o/r:Q4_K_M", hf("o/r", Quant("Q4_K_M".into()), "main")),
            ("o/r:q8_0", hf("o/r", Quant("q8_0".into()), "main")),
            (
                "o/r:sub/m.Q4.gguf",
                hf("o/r", File("sub/m.Q4.gguf".into()), "main"),
            ),
            ("o/r:m.gguf@v1.0", hf("o/r", File("m.gguf".into()), "v1.0")),
            (
                "o/r@refs/pr/3:Q2_K",
                hf("o/r", Quant("Q2_K".into()), "refs/pr/3"),
            ),
            ("o.x/r-1_2@abc123", hf("o.x/r-1_2", Default, "abc123")),
        ];
        for (input, expected) in cases {
            assert_eq!(ModelSource::parse(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn rejects_malformed_references_with_a_reason() {
        for input in [
            "",
            "   ",
            "justaname",
            "o/r/extra",
            "o/",
            "o/r:",
            "o/r@",
            "o/r:Q4:Q5",
            "o/r@a@b",
            "o/r:../x.gguf",
            "o/r:/x.gguf",
            "o/r:Q4 K",
            "o/r@bad rev",
            "own er/r",
            "hf://justone",
            "https://",
        ] {
            match ModelSource::parse(input) {
                Err(crate::Error::Model(crate::models::error::Error::InvalidSource {
                    reason,
                    ..
                })) => assert!(!reason.is_empty()),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "hf://o/r",
            "hf://o/r:Q4_K_M",
            "hf://o/r:m.gguf@v2",
            "https://h/x.gguf",
        ] {
            let parsed = ModelSource::parse(input).unwrap();
            assert_eq!(parsed.to_string(), input);
            assert_eq!(ModelSource::parse(&parsed.to_string()).unwrap(), parsed);
        }
    }

    #[test]
    fn aliases_are_the_reference_as_given_or_the_file_stem() {
        let table = [
            ("owner/repo:Q4_K_M", "owner/repo:Q4_K_M"),
            ("hf://owner/repo", "owner/repo"),
            ("o/r:m.gguf@v2", "o/r:m.gguf@v2"),
            ("./models/qwen-q4.GGUF", "qwen-q4"),
            ("/m/x.y.gguf", "x.y"),
            ("https://h/a/b/tiny.gguf?download=1", "tiny"),
            ("https://h/", "model"),
            ("/m/.gguf", "model"),
        ];
        for (input, want) in table {
            assert_eq!(ModelSource::parse(input).unwrap().alias(), want, "{input}");
        }
    }

    #[test]
    fn cache_keys_are_safe_and_distinct() {
        let a = ModelSource::parse("o/r:Q4_K_M").unwrap().cache_key();
        let b = ModelSource::parse("o/r:Q4_K_M@dev").unwrap().cache_key();
        let c = ModelSource::parse("o/r:Q4_K_M").unwrap().cache_key();
        assert_ne!(a, b);
        assert_eq!(a, c);
        assert!(a.starts_with("hf-o_r_Q4_K_M_main-"), "{a}");
        let long = ModelSource::parse(&format!("https://h/{}", "x/".repeat(200))).unwrap();
        let key = long.cache_key();
        assert!(key.len() < 120 && !key.contains('/'), "{key}");
    }
}
