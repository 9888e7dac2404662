//! The one SHA-256 digest type: 64 lower-case hex characters, checked once where text
//! from a user, a server or a file becomes a digest, and trusted everywhere after.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Error, Result};

/// A SHA-256 digest in lower-case hex.
///
/// [`Sha256::parse`] accepts any case, surrounding whitespace, quotes (as in an ETag) and a
/// `sha256:` prefix (as in a release listing), and nothing that is not 64 hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(String);

impl Sha256 {
    /// Parses a digest; see the type's documentation for what is accepted.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim().trim_matches('"');
        let t = t.strip_prefix("sha256:").unwrap_or(t);
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(t.to_ascii_lowercase()))
        } else {
            Err(Error::InvalidRequest {
                reason: format!("{text:?} is not a sha256 (64 hex characters)"),
            })
        }
    }

    /// Whether `text` parses as a digest.
    pub fn is_valid(text: &str) -> bool {
        Self::parse(text).is_ok()
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(sha2::Sha256::new_with_prefix(bytes))
    }

    /// The digest a hasher has computed.
    pub fn from_hasher(hasher: sha2::Sha256) -> Self {
        Self(hex::encode(hasher.finalize()))
    }

    /// The 64 lower-case hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the digest starts with `prefix` (any case).
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(&prefix.to_ascii_lowercase())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.0)
    }
}

impl FromStr for Sha256 {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Sha256 {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<Sha256> for String {
    fn from(d: Sha256) -> Self {
        d.0
    }
}

impl AsRef<str> for Sha256 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Sha256 {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Sha256 {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Sha256 {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepted_spellings_parse_to_lower_case() {
        let lower = "ab".repeat(32);
        for text in [
            lower.clone(),
            lower.to_uppercase(),
            format!("  {lower}\n"),
            format!("\"{lower}\""),
            format!("sha256:{lower}"),
        ] {
            assert_eq!(Sha256::parse(&text).unwrap().as_str(), lower, "{text:?}");
        }
        for bad in [
            "",
            "ab",
            &"ab".repeat(33),
            &"zz".repeat(32),
            &format!("md5:{lower}"),
        ] {
            assert!(Sha256::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Sha256::of(b"abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = Sha256::parse(&lower).unwrap();
        assert!(d.starts_with("ABAB"));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{lower}\""));
        assert!(serde_json::from_str::<Sha256>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn only_64_hex_digits_parse(s in "\\PC{0,80}") {
            let t = s.trim().trim_matches('"');
            let t = t.strip_prefix("sha256:").unwrap_or(t);
            let ok = t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit());
            prop_assert_eq!(Sha256::parse(&s).is_ok(), ok);
            if let Ok(d) = Sha256::parse(&s) {
                prop_assert_eq!(d.as_str().len(), 64);
                prop_assert!(d.as_str().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
        }
    }
}
