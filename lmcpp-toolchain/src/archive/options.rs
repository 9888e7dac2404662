//! What an extraction is asked for: the archive's format ([`ArchiveKind`]), which links it
//! may hold ([`LinkPolicy`]) and its caps ([`ExtractOptions`]).

/// Archive formats this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// gzip-compressed tar.
    TarGz,
    /// Uncompressed tar.
    Tar,
    /// Zip.
    Zip,
}

impl ArchiveKind {
    /// Guesses the format from a file name or URL.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name
            .split(['?', '#'])
            .next()
            .unwrap_or(name)
            .to_ascii_lowercase();
        if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if n.ends_with(".tar") {
            Some(Self::Tar)
        } else if n.ends_with(".zip") {
            Some(Self::Zip)
        } else {
            None
        }
    }
}

/// Which links an archive may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkPolicy {
    /// Symlinks and hard links whose targets resolve inside the destination (source trees).
    #[default]
    WithinRoot,
    /// Only symlinks that alias a shared library in the same directory, such as
    /// `libX.so -> libX.so.0`, `libX.so.0 -> libX.so.0.9.4` or
    /// `libX.dylib -> libX.0.dylib`; every other symlink and every hard link is refused
    /// (prebuilt binaries).
    LibraryAliasesOnly,
}

/// Limits and link policy for one extraction; [`Default`] suits llama.cpp source trees and
/// prebuilt archives (about 100 MB in 10k files, and 30–600 MB respectively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Which links are allowed.
    pub links: LinkPolicy,
    /// Most bytes the archive may unpack to (for tar, the whole decompressed stream).
    pub max_total_bytes: u64,
    /// Most entries (files, directories, links, ...) the archive may hold.
    pub max_entries: u64,
    /// Most unpacked bytes per byte of archive. The first [`RATIO_GRACE_BYTES`] are exempt,
    /// so small archives of very compressible files are not refused.
    pub max_ratio: u64,
}

/// Default [`ExtractOptions::max_total_bytes`]: 8 GiB.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 8 << 30;

/// Default [`ExtractOptions::max_entries`].
pub const DEFAULT_MAX_ENTRIES: u64 = 200_000;

/// Default [`ExtractOptions::max_ratio`].
pub const DEFAULT_MAX_RATIO: u64 = 200;

/// Unpacked bytes that [`ExtractOptions::max_ratio`] never refuses.
pub const RATIO_GRACE_BYTES: u64 = 1 << 20;

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            links: LinkPolicy::WithinRoot,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_ratio: DEFAULT_MAX_RATIO,
        }
    }
}

impl ExtractOptions {
    /// The defaults with [`LinkPolicy::LibraryAliasesOnly`], for prebuilt binaries.
    pub fn prebuilt() -> Self {
        Self {
            links: LinkPolicy::LibraryAliasesOnly,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kinds_from_names() {
        let cases = [
            ("a.tar.gz", Some(ArchiveKind::TarGz)),
            ("a.TGZ", Some(ArchiveKind::TarGz)),
            ("https://x/a.zip?sig=1", Some(ArchiveKind::Zip)),
            ("a.tar", Some(ArchiveKind::Tar)),
            ("a.gguf", None),
        ];
        for (n, k) in cases {
            assert_eq!(ArchiveKind::from_name(n), k, "{n}");
        }
    }
}
