//! llama.cpp versions: the committed table of known releases, how a version string is read,
//! and what a built or installed binary says about itself (`llama-server --version`).
//!
//! llama.cpp tags a release (`b<N>`, where N is the build number) for almost every commit on
//! its main branch. The table ties a release tag to its commit, to the `llama-cpp-python`
//! sdist that vendors it and to known digests, so a request can name any of them and still
//! map to the same cache entry. Versions not in the table work too; they just carry fewer
//! pins (a tag without a known commit, a sdist without a known digest).

use std::collections::BTreeMap;

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// Which llama.cpp to get. Read one from a string with [`parse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlamaVersion {
    /// Git commit (short or full); empty when only the sdist version is known.
    pub commit: String,
    /// Release tag (e.g. `b7100`) of that commit, needed for prebuilt assets.
    pub tag: Option<String>,
    /// Build number, passed to CMake so `llama-server --version` reports it.
    #[serde(default)]
    pub build_number: Option<u32>,
    /// The `llama-cpp-python` sdist that vendors this commit, if any.
    pub pypi: Option<PypiPin>,
    /// Known SHA-256 digests of release assets, by asset file name.
    pub asset_sha256: BTreeMap<String, String>,
    /// Known SHA-256 of the source archive of `tag` (or `commit`).
    pub source_sha256: Option<String>,
}

/// A `llama-cpp-python` sdist version and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PypiPin {
    /// Package version, e.g. `0.3.36`.
    pub version: String,
    /// Expected SHA-256 of the sdist.
    pub sha256: Option<String>,
}

impl LlamaVersion {
    /// The pinned version (release `b11312`), with its tag, sdist and digests.
    pub fn pinned() -> Self {
        pinned().to_version()
    }

    /// A release tag with no other pins (the build number is the tag's number).
    pub fn tag(tag: impl Into<String>) -> Self {
        let tag = tag.into();
        Self {
            commit: tag.clone(),
            build_number: tag.strip_prefix('b').and_then(|n| n.parse().ok()),
            tag: Some(tag),
            pypi: None,
            asset_sha256: BTreeMap::new(),
            source_sha256: None,
        }
    }

    /// Short human-readable label (`b7100`, the commit, or `pypi:0.3.16`).
    pub fn label(&self) -> String {
        match (&self.tag, &self.pypi) {
            (Some(t), _) => t.clone(),
            (None, _) if !self.commit.is_empty() => self.commit.chars().take(7).collect(),
            (None, Some(p)) => format!("pypi:{}", p.version),
            (None, None) => "unknown".to_owned(),
        }
    }

    /// What identifies this llama.cpp tree in cache keys: the commit when known (a tag, a
    /// commit and a sdist of the same commit are one version), else the tag or sdist.
    pub fn identity(&self) -> String {
        if is_hex_commit(&self.commit) {
            return format!("commit:{}", self.commit.to_ascii_lowercase());
        }
        match (&self.tag, &self.pypi) {
            (Some(t), _) => format!("tag:{t}"),
            (None, Some(p)) => format!("pypi:{}", p.version),
            (None, None) => format!("other:{}", self.commit),
        }
    }

    /// CMake arguments that make a source build report this version in `--version`.
    pub fn build_info_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(n) = self.build_number {
            args.push(format!("-DLLAMA_BUILD_NUMBER={n}"));
        }
        if is_hex_commit(&self.commit) {
            let short: String = self.commit.chars().take(8).collect();
            args.push(format!("-DLLAMA_BUILD_COMMIT={short}"));
        }
        args
    }
}

impl Default for LlamaVersion {
    fn default() -> Self {
        Self::pinned()
    }
}

/// One llama.cpp version this crate knows facts about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownVersion {
    /// Release tag (`b11312`), when the commit has one that we know.
    pub tag: Option<&'static str>,
    /// Build number (the number in the tag).
    pub build_number: Option<u32>,
    /// Full 40-hex commit.
    pub commit: &'static str,
    /// Commit date (ISO 8601 day).
    pub date: &'static str,
    /// `llama-cpp-python` sdist version that vendors this commit, with the sdist's SHA-256.
    pub pypi: Option<(&'static str, &'static str)>,
    /// SHA-256 of the release's source archive (`archive/<commit>.tar.gz`), as reported.
    pub source_sha256: Option<&'static str>,
    /// Known SHA-256 of release assets, by file name. The release listing is authoritative;
    /// these are used when it lists no digest.
    pub asset_sha256: &'static [(&'static str, &'static str)],
}

/// The versions this crate was tested against, newest first. The first is the default.
pub const KNOWN_VERSIONS: &[KnownVersion] = &[
    KnownVersion {
        tag: Some("b11312"),
        build_number: Some(11312),
        commit: "0c1e57098bba43ac29e6e3b677cdceebdd22334f",
        date: "2026-10-01",
        pypi: Some((
            "0.3.36",
            "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
        )),
        source_sha256: Some("6a85ec945b57789c875e1af90e66109fbf136a3c79802d5ca0333b043e10407f"),
        asset_sha256: &[(
            "llama-b11312-bin-ubuntu-vulkan-x64.tar.gz",
            "81b207361c95483e861763944cd371f916964a9d5626d649919690e6860e744a",
        )],
    },
    KnownVersion {
        // The release tag of this commit is not recorded here; it is served from the sdist.
        tag: None,
        build_number: None,
        commit: "4227c9be4268ac844921b90f31595f81236bd317",
        date: "2025-08-14",
        pypi: Some((
            "0.3.16",
            "34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6",
        )),
        source_sha256: None,
        asset_sha256: &[],
    },
];

/// The default version (the first of [`KNOWN_VERSIONS`]).
pub fn pinned() -> &'static KnownVersion {
    &KNOWN_VERSIONS[0]
}

impl KnownVersion {
    /// The request form of this version, with every pin the table has.
    pub fn to_version(&self) -> LlamaVersion {
        LlamaVersion {
            commit: self.commit.to_owned(),
            tag: self.tag.map(str::to_owned),
            build_number: self.build_number,
            pypi: self.pypi.map(|(version, sha)| PypiPin {
                version: version.to_owned(),
                sha256: Some(sha.to_owned()),
            }),
            asset_sha256: self
                .asset_sha256
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            source_sha256: self.source_sha256.map(str::to_owned),
        }
    }
}

/// Finds a known version by tag, commit (7 or more hex digits) or sdist version.
pub fn lookup(
    tag: Option<&str>,
    commit: Option<&str>,
    pypi: Option<&str>,
) -> Option<&'static KnownVersion> {
    KNOWN_VERSIONS.iter().find(|k| {
        tag.is_some_and(|t| k.tag == Some(t))
            || commit.is_some_and(|c| c.len() >= 7 && k.commit.starts_with(c))
            || pypi.is_some_and(|p| k.pypi.is_some_and(|(v, _)| v == p))
    })
}

/// Whether `s` is a git commit as users write it: 7 to 40 hex digits.
pub(crate) fn is_hex_commit(s: &str) -> bool {
    (7..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_release_tag(s: &str) -> bool {
    s.len() > 1 && s.len() <= 10 && s.starts_with('b') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

fn is_pypi_version(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        && s.starts_with(|c: char| c.is_ascii_digit())
}

/// Reads a version as users write it: a release tag (`b11312`), a commit (7 to 40 hex
/// digits), `pypi:<version>` (the llama.cpp that `llama-cpp-python==<version>` vendors), or
/// `pinned`. `latest` needs the network; resolve it with
/// [`crate::Toolchain::latest_version`] first.
pub fn parse(s: &str) -> Result<LlamaVersion, Error> {
    let s = s.trim();
    let bad = |why: &str| Error::InvalidRequest {
        reason: format!(
            "llama.cpp version {s:?} {why}; use a release tag (b11312), a commit (7-40 hex digits), pypi:<llama-cpp-python version> or latest"
        ),
    };
    if s.is_empty() || s == "pinned" || s == "default" {
        return Ok(pinned().to_version());
    }
    if s == "latest" {
        return Err(bad("must be resolved through the release listing first"));
    }
    if let Some(v) = s.strip_prefix("pypi:") {
        if !is_pypi_version(v) {
            return Err(bad("is not a package version"));
        }
        if let Some(k) = lookup(None, None, Some(v)) {
            return Ok(k.to_version());
        }
        return Ok(LlamaVersion {
            commit: String::new(),
            tag: None,
            build_number: None,
            pypi: Some(PypiPin {
                version: v.to_owned(),
                sha256: None,
            }),
            asset_sha256: BTreeMap::new(),
            source_sha256: None,
        });
    }
    if is_release_tag(s) {
        if let Some(k) = lookup(Some(s), None, None) {
            return Ok(k.to_version());
        }
        return Ok(LlamaVersion::tag(s));
    }
    let lower = s.to_ascii_lowercase();
    if is_hex_commit(&lower) {
        if let Some(k) = lookup(None, Some(&lower), None) {
            return Ok(k.to_version());
        }
        return Ok(LlamaVersion {
            commit: lower,
            tag: None,
            build_number: None,
            pypi: None,
            asset_sha256: BTreeMap::new(),
            source_sha256: None,
        });
    }
    Err(bad("is not understood"))
}

/// What `llama-server --version` printed, parsed (`version: 11312 (0c1e5709)`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BinaryVersion {
    /// The build number (`11312`); source builds without git metadata report 0 or 1.
    pub build_number: u64,
    /// The commit it reports (short hex, or `unknown`).
    pub commit: String,
    /// The line as printed.
    pub line: String,
}

impl BinaryVersion {
    /// Parses the output of `--version` (stdout and stderr together; the line may be
    /// preceded by backend-loading chatter). Two shapes exist: `version: 11312 (0c1e5709)`
    /// (older) and `version: 0.5.0-dev (build 11312, commit 0c1e5709)` (newer).
    pub fn parse(output: &str) -> Option<Self> {
        output.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("version: ")?;
            let (head, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let inner = tail
                .trim()
                .strip_prefix('(')
                .and_then(|t| t.split(')').next())
                .unwrap_or("");
            let (build_number, commit) = match inner.strip_prefix("build ") {
                Some(fields) => {
                    let (n, c) = fields.split_once(',').unwrap_or((fields, ""));
                    let c = c.trim().strip_prefix("commit ").unwrap_or(c.trim());
                    (n.trim().parse().ok()?, c.to_owned())
                }
                None => (head.parse().ok()?, inner.to_owned()),
            };
            let commit = if commit.is_empty() {
                "unknown".to_owned()
            } else {
                commit
            };
            Some(Self {
                build_number,
                commit,
                line: line.trim().to_owned(),
            })
        })
    }

    /// A label for lists: `b11312 (0c1e5709)`, or the commit alone for untagged builds.
    pub fn label(&self) -> String {
        if self.build_number > 1 {
            format!("b{} ({})", self.build_number, self.commit)
        } else {
            self.commit.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_spelling_of_a_known_version_is_the_same_version() {
        let by_tag = parse("b11312").unwrap();
        for s in [
            "0c1e570",
            "0C1E57098",
            "0c1e57098bba43ac29e6e3b677cdceebdd22334f",
            "pypi:0.3.36",
            "pinned",
            "",
        ] {
            assert_eq!(parse(s).unwrap(), by_tag, "{s}");
        }
        assert_eq!(by_tag.build_number, Some(11312));
        assert!(by_tag.source_sha256.is_some());
        let old = parse("pypi:0.3.16").unwrap();
        assert!(old.commit.starts_with("4227c9b"));
        assert_eq!(parse("4227c9b").unwrap(), old);
    }

    #[test]
    fn unknown_versions_carry_what_was_given() {
        let t = parse("b7100").unwrap();
        assert_eq!(
            (t.tag.as_deref(), t.commit.as_str()),
            (Some("b7100"), "b7100")
        );
        let c = parse("ABCDEF1").unwrap();
        assert_eq!((c.tag, c.commit.as_str()), (None, "abcdef1"));
        let p = parse("pypi:0.3.20").unwrap();
        assert_eq!(p.pypi.unwrap().version, "0.3.20");
        assert!(p.commit.is_empty());
    }

    #[test]
    fn nonsense_and_latest_are_errors_that_say_what_to_write() {
        for s in [
            "latest",
            "v1.2",
            "b",
            "bxyz",
            "pypi:",
            "pypi:../x",
            "12345",
            "../x",
        ] {
            let e = parse(s).unwrap_err().to_string();
            assert!(e.contains("release tag"), "{s}: {e}");
        }
    }

    #[test]
    fn version_lines_of_every_era_parse() {
        let cases = [
            (
                "version: 11312 (0c1e5709)\nbuilt with cc",
                11312,
                "0c1e5709",
            ),
            ("load_backend: x\nversion: 1 (4227c9b)", 1, "4227c9b"),
            ("version: 0 (unknown)", 0, "unknown"),
            (
                "version: 0.5.0-dev (build 11312, commit 0c1e5709)\nbuilt with GNU 12.2.0",
                11312,
                "0c1e5709",
            ),
        ];
        for (out, n, c) in cases {
            let v = BinaryVersion::parse(out).unwrap();
            assert_eq!((v.build_number, v.commit.as_str()), (n, c), "{out}");
        }
        assert!(BinaryVersion::parse("usage: llama-server").is_none());
        assert_eq!(
            BinaryVersion::parse("version: 11312 (0c1e5709)")
                .unwrap()
                .label(),
            "b11312 (0c1e5709)"
        );
    }
}
