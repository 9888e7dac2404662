//! What can go wrong fetching a file; wrapped by the crate's [`crate::Error`].

use std::path::PathBuf;

use lmcpp_types::{Class, Classify};

/// A download that cannot be sent, is refused, is cut short or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL could not be parsed or uses an unsupported scheme.
    #[error("invalid url {url}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },

    /// The server answered with a status that is not success.
    #[error("http status {status} from {url}{}", hint_for_status(*status))]
    HttpStatus {
        /// The URL that answered (after redirects).
        url: String,
        /// The HTTP status code.
        status: u16,
    },

    /// The request could not be sent or the response body could not be read.
    #[error("request to {url} failed: {message}; check the network and retry")]
    Http {
        /// The URL requested.
        url: String,
        /// What failed, without any request headers.
        message: String,
    },

    /// The host could not be reached at all (e.g. its name does not resolve); not retried.
    #[error("cannot reach {url}: {message}; check the network or use another source")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// What failed.
        message: String,
    },

    /// A server sent more redirects than allowed.
    #[error("too many redirects (more than {limit}) starting at {url}")]
    TooManyRedirects {
        /// The URL first requested.
        url: String,
        /// The redirect limit.
        limit: usize,
    },

    /// A downloaded file did not have the expected SHA-256 digest.
    #[error(
        "checksum mismatch for {url}: expected sha256 {expected}, found {found}; the partial file {} was deleted, retry or check the expected digest",
        path.display()
    )]
    ChecksumMismatch {
        /// The URL downloaded.
        url: String,
        /// The destination that was not written.
        path: PathBuf,
        /// The expected digest (lower-case hex).
        expected: String,
        /// The digest of the bytes received (lower-case hex).
        found: String,
    },

    /// The body ended before `Content-Length` bytes arrived.
    #[error(
        "download of {url} was cut short at {received} of {expected} bytes; run again to resume from {}",
        path.display()
    )]
    Truncated {
        /// The URL downloaded.
        url: String,
        /// The partial file kept for resuming.
        path: PathBuf,
        /// Bytes present in the partial file.
        received: u64,
        /// Bytes expected in total.
        expected: u64,
    },

    /// A redirect would have downgraded an `https` transfer to plain `http`.
    #[error(
        "refusing the redirect from {from} to {to}: it leaves https for plain http; use an https mirror or download the file yourself"
    )]
    InsecureRedirect {
        /// The `https` URL that redirected.
        from: String,
        /// The `http` URL it pointed at.
        to: String,
    },

    /// A model download is not a GGUF file (often an HTML error page or a login form).
    #[error(
        "{url} is not a GGUF model (it starts with \"{}\", not \"GGUF\"); nothing was stored, check the model reference or whether the file needs a token",
        found.escape_ascii()
    )]
    NotGguf {
        /// The URL downloaded.
        url: String,
        /// The first (up to four) bytes received.
        found: Vec<u8>,
    },

    /// A download could not be shown to be complete: no digest, no `Content-Length`, and
    /// the content does not verify on its own.
    #[error(
        "cannot verify the download of {url}: {reason}; nothing was stored, pass the expected sha256 or retry"
    )]
    Unverifiable {
        /// The URL downloaded.
        url: String,
        /// Why the received bytes could not be trusted.
        reason: String,
    },
}

fn hint_for_status(status: u16) -> &'static str {
    match status {
        401 | 403 => "; check the access token",
        404 => "; check the version, tag or file name",
        429 => "; rate limited, retry later",
        500..=599 => "; the server failed, retry later",
        _ => "",
    }
}

impl Classify for Error {
    /// Every variant's class, in one match without a catch-all (see [`crate::Error`]).
    fn class(&self) -> Class {
        match self {
            Self::InvalidUrl { .. } | Self::NotGguf { .. } => Class::UserError,
            // Network hiccups and cut-short bodies; a rate limit or a failing server.
            Self::Http { .. } | Self::Truncated { .. } => Class::Transient,
            Self::HttpStatus { status, .. } if *status == 429 || *status >= 500 => Class::Transient,
            Self::HttpStatus { .. }
            | Self::Unreachable { .. }
            | Self::TooManyRedirects { .. }
            | Self::ChecksumMismatch { .. }
            | Self::InsecureRedirect { .. }
            | Self::Unverifiable { .. } => Class::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One example of every variant with its class; `ordinal` has no catch-all, so a new
    /// variant does not compile until it is numbered, and then fails until it has an example.
    fn table() -> Vec<(Error, Class)> {
        use Class::{Failure, Transient, UserError};
        let path = PathBuf::from("/x");
        let url = || "https://127.0.0.1/x.gguf".to_owned();
        vec![
            (
                Error::InvalidUrl {
                    url: url(),
                    reason: "x".into(),
                },
                UserError,
            ),
            (
                Error::HttpStatus {
                    url: url(),
                    status: 404,
                },
                Failure,
            ),
            (
                Error::HttpStatus {
                    url: url(),
                    status: 429,
                },
                Transient,
            ),
            (
                Error::HttpStatus {
                    url: url(),
                    status: 500,
                },
                Transient,
            ),
            (
                Error::HttpStatus {
                    url: url(),
                    status: 503,
                },
                Transient,
            ),
            (
                Error::Http {
                    url: url(),
                    message: "reset".into(),
                },
                Transient,
            ),
            (
                Error::Unreachable {
                    url: url(),
                    message: "no such host".into(),
                },
                Failure,
            ),
            (
                Error::TooManyRedirects {
                    url: url(),
                    limit: 10,
                },
                Failure,
            ),
            (
                Error::ChecksumMismatch {
                    url: url(),
                    path: path.clone(),
                    expected: "a".into(),
                    found: "b".into(),
                },
                Failure,
            ),
            (
                Error::Truncated {
                    url: url(),
                    path: path.clone(),
                    received: 1,
                    expected: 2,
                },
                Transient,
            ),
            (
                Error::InsecureRedirect {
                    from: url(),
                    to: "http://127.0.0.1/x".into(),
                },
                Failure,
            ),
            (
                Error::NotGguf {
                    url: url(),
                    found: b"<htm".to_vec(),
                },
                UserError,
            ),
            (
                Error::Unverifiable {
                    url: url(),
                    reason: "x".into(),
                },
                Failure,
            ),
        ]
    }

    fn ordinal(e: &Error) -> usize {
        match e {
            Error::InvalidUrl { .. } => 0,
            Error::HttpStatus { .. } => 1,
            Error::Http { .. } => 2,
            Error::Unreachable { .. } => 3,
            Error::TooManyRedirects { .. } => 4,
            Error::ChecksumMismatch { .. } => 5,
            Error::Truncated { .. } => 6,
            Error::InsecureRedirect { .. } => 7,
            Error::NotGguf { .. } => 8,
            Error::Unverifiable { .. } => 9,
        }
    }

    #[test]
    fn every_variant_is_classified_as_the_table_says() {
        lmcpp_test_support::check_class_table(&table(), ordinal, 10);
    }
}
