//! What can go wrong reading or writing a GGUF file; wrapped by the crate's [`crate::Error`].

use std::path::PathBuf;

use lmcpp_types::{Class, Classify};

/// A GGUF file that cannot be read (not GGUF, truncated, corrupt) or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A path given as a GGUF file names something else (a directory, a FIFO, a device):
    /// refused before it is opened, since opening a FIFO blocks until a writer comes.
    #[error(
        "{} is not a regular file (it is {kind}); give the path of a .gguf model file",
        path.display()
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO", ...).
        kind: &'static str,
    },

    /// A file that should be GGUF does not start with the `GGUF` magic.
    #[error(
        "{} is not a GGUF file (it starts with \"{}\", not \"GGUF\"); check that the path points at a .gguf model",
        path.display(),
        found.escape_ascii()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes found.
        found: [u8; 4],
    },

    /// A GGUF file has a version this reader does not understand.
    #[error(
        "{} has unsupported GGUF version {version} (supported: 2 and 3); convert it with a current llama.cpp",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },

    /// A GGUF file ends before the data its header declares.
    #[error(
        "{} is truncated: {what} at byte {offset} needs {needed} bytes but only {available} remain; the download is incomplete, pull it again",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the read started.
        offset: u64,
        /// What was being read ("metadata key", a key name, "tensor offset", ...).
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },

    /// A GGUF count or length is beyond any sane limit (a corrupt or hostile file).
    #[error(
        "{} is corrupt: {what} at byte {offset} is {value}, above the limit of {limit}",
        path.display()
    )]
    Implausible {
        /// The file.
        path: PathBuf,
        /// Where the count or length was read.
        offset: u64,
        /// What the number counts.
        what: String,
        /// The number found.
        value: u64,
        /// The largest value accepted.
        limit: u64,
    },

    /// A GGUF file is structurally invalid (unknown type, bad alignment, duplicate key, ...).
    #[error("{} is not a valid GGUF file: {reason} (at byte {offset})", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A tensor's data would extend past the end of a GGUF file.
    #[error(
        "{} is truncated: tensor '{tensor}' ends at byte {end} but the file has {file_size} bytes; pull it again",
        path.display()
    )]
    TensorOutOfBounds {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Where its data would end.
        end: u64,
        /// The file size.
        file_size: u64,
    },

    /// A GGUF file could not be built because its contents are inconsistent.
    #[error("cannot write GGUF: {reason}")]
    Write {
        /// What is wrong.
        reason: String,
    },
}

impl Classify for Error {
    /// Every variant's class, in one match without a catch-all (see [`crate::Error`]).
    fn class(&self) -> Class {
        match self {
            // A file that cannot be read as GGUF is the input's fault, wherever it came
            // from: the remedy is another file (or pulling it again), never a retry.
            Self::NotAFile { .. }
            | Self::BadMagic { .. }
            | Self::UnsupportedVersion { .. }
            | Self::Truncated { .. }
            | Self::Implausible { .. }
            | Self::Invalid { .. }
            | Self::TensorOutOfBounds { .. } => Class::UserError,
            Self::Write { .. } => Class::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One example of every variant with its class; `ordinal` has no catch-all, so a new
    /// variant does not compile until it is numbered, and then fails until it has an example.
    fn table() -> Vec<(Error, Class)> {
        use Class::{Failure, UserError};
        let path = PathBuf::from("/x");
        vec![
            (
                Error::NotAFile {
                    path: path.clone(),
                    kind: "a FIFO",
                },
                UserError,
            ),
            (
                Error::BadMagic {
                    path: path.clone(),
                    found: *b"PK\x03\x04",
                },
                UserError,
            ),
            (
                Error::UnsupportedVersion {
                    path: path.clone(),
                    version: 1,
                },
                UserError,
            ),
            (
                Error::Truncated {
                    path: path.clone(),
                    offset: 0,
                    what: "x".into(),
                    needed: 2,
                    available: 1,
                },
                UserError,
            ),
            (
                Error::Implausible {
                    path: path.clone(),
                    offset: 0,
                    what: "x".into(),
                    value: 2,
                    limit: 1,
                },
                UserError,
            ),
            (
                Error::Invalid {
                    path: path.clone(),
                    offset: 0,
                    reason: "x".into(),
                },
                UserError,
            ),
            (
                Error::TensorOutOfBounds {
                    path: path.clone(),
                    tensor: "t".into(),
                    end: 2,
                    file_size: 1,
                },
                UserError,
            ),
            (Error::Write { reason: "x".into() }, Failure),
        ]
    }

    fn ordinal(e: &Error) -> usize {
        match e {
            Error::BadMagic { .. } => 0,
            Error::UnsupportedVersion { .. } => 1,
            Error::Truncated { .. } => 2,
            Error::Implausible { .. } => 3,
            Error::Invalid { .. } => 4,
            Error::TensorOutOfBounds { .. } => 5,
            Error::Write { .. } => 6,
            Error::NotAFile { .. } => 7,
        }
    }

    #[test]
    fn every_variant_is_classified_as_the_table_says() {
        lmcpp_test_support::check_class_table(&table(), ordinal, 8);
    }
}
