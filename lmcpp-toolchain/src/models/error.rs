//! What can go wrong resolving, finding or picking a model; wrapped by the crate's [`crate::Error`].

use std::path::PathBuf;

use lmcpp_types::{Class, Classify};

/// A model reference that cannot be parsed, found, picked or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model reference could not be parsed.
    #[error(
        "invalid model {input:?}: {reason}; use a path to a .gguf file, an http(s) URL, or owner/repo[:file.gguf|:QUANT][@revision]"
    )]
    InvalidSource {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A local model file does not exist.
    #[error("model file {} does not exist; check the path", path.display())]
    FileMissing {
        /// The path given.
        path: PathBuf,
    },

    /// Cache-only mode was asked for a model that is not in the store.
    #[error(
        "model {source_ref} is not in the model cache at {}; pull it once with network access (without cache-only/offline mode)",
        root.display()
    )]
    NotCached {
        /// The model reference.
        source_ref: String,
        /// The store's directory.
        root: PathBuf,
    },

    /// No file (or more than one) in a Hugging Face repository matches the request.
    #[error(
        "no single GGUF file in {repo}@{revision} matches {wanted}; available: {}",
        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
    )]
    NoMatchingFile {
        /// `owner/repo`.
        repo: String,
        /// The revision listed.
        revision: String,
        /// What was asked for.
        wanted: String,
        /// The GGUF files the repository has.
        available: Vec<String>,
    },

    /// A split GGUF model (`…-00001-of-0000N.gguf`) is missing some of its parts.
    #[error(
        "split model {model} in {repo} is incomplete: {} missing; name another file or quantisation",
        missing.join(", ")
    )]
    SplitIncomplete {
        /// `owner/repo`.
        repo: String,
        /// The model's first part (or the name shared by its parts).
        model: String,
        /// The parts that are not there.
        missing: Vec<String>,
    },

    /// The hub named neither a SHA-256 digest nor a commit for a file of a model with
    /// several files, so it cannot be verified and placed in the Hugging Face cache.
    #[error(
        "the hub gave no sha256 digest or commit for {url}; only single-file models can be pulled without them (leave out the projector with --no-mmproj, name one file, or pass its sha256)"
    )]
    HubFileUnverifiable {
        /// The resolve URL asked.
        url: String,
    },

    /// No cached model matches what the user named.
    #[error(
        "no cached model matches {query:?} in {}; see `lmcpp model list` for the sources and sha256 digests",
        root.display()
    )]
    Unknown {
        /// What was asked for (a source or a sha256 prefix).
        query: String,
        /// The store's directory.
        root: PathBuf,
    },

    /// A sha256 prefix names more than one cached model.
    #[error(
        "sha256 prefix {prefix} matches {} cached models ({}); give more digits",
        matches.len(),
        matches.join(", ")
    )]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// The full digests it matches.
        matches: Vec<String>,
    },
}

impl Classify for Error {
    /// Every variant's class, in one match without a catch-all (see [`crate::Error`]).
    fn class(&self) -> Class {
        match self {
            Self::InvalidSource { .. }
            | Self::FileMissing { .. }
            | Self::Unknown { .. }
            | Self::Ambiguous { .. } => Class::UserError,
            Self::NotCached { .. }
            | Self::NoMatchingFile { .. }
            | Self::SplitIncomplete { .. }
            | Self::HubFileUnverifiable { .. } => Class::Failure,
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
        let url = || "https://127.0.0.1/x.gguf".to_owned();
        vec![
            (
                Error::InvalidSource {
                    input: "x".into(),
                    reason: "x".into(),
                },
                UserError,
            ),
            (Error::FileMissing { path: path.clone() }, UserError),
            (
                Error::NotCached {
                    source_ref: "x".into(),
                    root: path.clone(),
                },
                Failure,
            ),
            (
                Error::NoMatchingFile {
                    repo: "o/r".into(),
                    revision: "main".into(),
                    wanted: "Q4_K_M".into(),
                    available: vec![],
                },
                Failure,
            ),
            (
                Error::SplitIncomplete {
                    repo: "o/r".into(),
                    model: "m".into(),
                    missing: vec![],
                },
                Failure,
            ),
            (Error::HubFileUnverifiable { url: url() }, Failure),
            (
                Error::Unknown {
                    query: "x".into(),
                    root: path.clone(),
                },
                UserError,
            ),
            (
                Error::Ambiguous {
                    prefix: "ab".into(),
                    matches: vec![],
                },
                UserError,
            ),
        ]
    }

    fn ordinal(e: &Error) -> usize {
        match e {
            Error::InvalidSource { .. } => 0,
            Error::FileMissing { .. } => 1,
            Error::NotCached { .. } => 2,
            Error::NoMatchingFile { .. } => 3,
            Error::SplitIncomplete { .. } => 4,
            Error::HubFileUnverifiable { .. } => 5,
            Error::Unknown { .. } => 6,
            Error::Ambiguous { .. } => 7,
        }
    }

    #[test]
    fn every_variant_is_classified_as_the_table_says() {
        lmcpp_test_support::check_class_table(&table(), ordinal, 8);
    }
}
