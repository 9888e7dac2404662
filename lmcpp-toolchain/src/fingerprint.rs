//! Domain-separated, length-prefixed SHA-256 fingerprints for cache keys.
//!
//! Every field is written as `len(name) || name || len(value) || value` with 8-byte
//! little-endian lengths after a length-prefixed domain string, so no two different
//! sequences of fields can produce the same byte stream (and thus the same key).

use sha2::{Digest, Sha256};

/// Number of hex characters returned by [`Fingerprint::finish`].
pub(crate) const SHORT_LEN: usize = 16;

/// Builder for a cache key.
///
/// ```
/// use lmcpp_toolchain::Fingerprint;
/// let key = Fingerprint::new("lmcpp/toolchain/v1")
///     .field("version", "b1234")
///     .field("backend", "cpu")
///     .finish();
/// assert_eq!(key.len(), 16);
/// ```
#[derive(Debug, Clone)]
pub struct Fingerprint {
    hasher: Sha256,
}

impl Fingerprint {
    /// Starts a fingerprint in the given domain (e.g. `"lmcpp/toolchain/v1"`).
    pub fn new(domain: &str) -> Self {
        let mut hasher = Sha256::new();
        put(&mut hasher, b"lmcpp-fingerprint");
        put(&mut hasher, domain.as_bytes());
        Self { hasher }
    }

    /// Adds one named field.
    pub fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        put(&mut self.hasher, name.as_bytes());
        put(&mut self.hasher, value.as_ref());
        self
    }

    /// Adds a named list; the element count is part of the key.
    pub fn list<I, S>(mut self, name: &str, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let values: Vec<S> = values.into_iter().collect();
        put(&mut self.hasher, name.as_bytes());
        self.hasher.update((values.len() as u64).to_le_bytes());
        for v in &values {
            put(&mut self.hasher, v.as_ref());
        }
        self
    }

    /// Adds an optional field; `None` and `Some("")` give different keys.
    pub fn opt_field(self, name: &str, value: Option<impl AsRef<[u8]>>) -> Self {
        match value {
            Some(v) => self.field(name, [&[1u8][..], v.as_ref()].concat()),
            None => self.field(name, [0u8]),
        }
    }

    /// The first `SHORT_LEN` (16) hex characters of the digest (a directory-name-sized key).
    pub fn finish(self) -> String {
        let mut s = self.finish_full();
        s.truncate(SHORT_LEN);
        s
    }

    /// The full 64-character hex digest.
    pub fn finish_full(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_collide_across_boundaries() {
        let a = Fingerprint::new("d").field("ab", "c").finish_full();
        let b = Fingerprint::new("d").field("a", "bc").finish_full();
        assert_ne!(a, b);
        let c = Fingerprint::new("d").list("x", ["a", "b"]).finish_full();
        let d = Fingerprint::new("d").list("x", ["ab"]).finish_full();
        assert_ne!(c, d);
    }

    #[test]
    fn domain_separates() {
        let a = Fingerprint::new("d1").field("x", "1").finish();
        let b = Fingerprint::new("d2").field("x", "1").finish();
        assert_ne!(a, b);
        assert_eq!(a, Fingerprint::new("d1").field("x", "1").finish());
    }

    #[test]
    fn optional_none_differs_from_empty() {
        let a = Fingerprint::new("d").opt_field("x", None::<&str>).finish();
        let b = Fingerprint::new("d").opt_field("x", Some("")).finish();
        assert_ne!(a, b);
    }
}
