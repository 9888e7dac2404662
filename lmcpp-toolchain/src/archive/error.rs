//! What can go wrong extracting an archive; wrapped by the crate's [`crate::Error`].

use std::path::PathBuf;

use lmcpp_types::{Class, Classify};

/// An archive that cannot be read, or that is unsafe or too large to extract.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An archive contains an entry that would escape the destination or is otherwise unsafe.
    #[error("refusing to extract {}: entry {entry:?} {reason}", archive.display())]
    Unsafe {
        /// The archive file.
        archive: PathBuf,
        /// The offending entry name.
        entry: String,
        /// Why it is unsafe.
        reason: String,
    },

    /// An archive could not be read.
    #[error("cannot read archive {}: {message}", path.display())]
    Read {
        /// The archive file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// An archive expands beyond an extraction limit (a decompression bomb or the wrong file).
    #[error(
        "refusing to extract {}: its {what} reached {found}, above the limit of {limit}; the archive is corrupt or hostile (if it is genuine, raise ExtractOptions::{option})",
        archive.display()
    )]
    TooLarge {
        /// The archive file.
        archive: PathBuf,
        /// What was measured ("unpacked size in bytes", "entry count", "compression ratio").
        what: &'static str,
        /// The value reached when extraction stopped.
        found: u64,
        /// The limit.
        limit: u64,
        /// The `ExtractOptions` field that sets the limit.
        option: &'static str,
    },
}

impl Classify for Error {
    /// Every variant's class, in one match without a catch-all (see [`crate::Error`]).
    fn class(&self) -> Class {
        match self {
            Self::Unsafe { .. } | Self::Read { .. } | Self::TooLarge { .. } => Class::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One example of every variant with its class; `ordinal` has no catch-all, so a new
    /// variant does not compile until it is numbered, and then fails until it has an example.
    fn table() -> Vec<(Error, Class)> {
        use Class::Failure;
        let path = PathBuf::from("/x");
        vec![
            (
                Error::Unsafe {
                    archive: path.clone(),
                    entry: "../x".into(),
                    reason: "escapes".into(),
                },
                Failure,
            ),
            (
                Error::Read {
                    path: path.clone(),
                    message: "x".into(),
                },
                Failure,
            ),
            (
                Error::TooLarge {
                    archive: path.clone(),
                    what: "entry count",
                    found: 2,
                    limit: 1,
                    option: "max_entries",
                },
                Failure,
            ),
        ]
    }

    fn ordinal(e: &Error) -> usize {
        match e {
            Error::Unsafe { .. } => 0,
            Error::Read { .. } => 1,
            Error::TooLarge { .. } => 2,
        }
    }

    #[test]
    fn every_variant_is_classified_as_the_table_says() {
        lmcpp_test_support::check_class_table(&table(), ordinal, 3);
    }
}
