//! What a server answered, turned into results: the raw response, JSON decoding, error
//! bodies (typed, and kept short) and transport errors. Shared by plain requests
//! ([`crate::Client`]) and streams ([`crate::EventStream`]).

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use lmcpp_types::error::{ErrorBody, ErrorType};

use crate::{
    ApiError,
    error::{Error, Result},
    limits::{MAX_ERROR_TEXT, shorten},
};

/// A response whose status has not been judged: the escape hatch for callers that want
/// to see everything.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body: complete for a success; an error body longer than
    /// [`crate::ClientLimits::max_error_body`] is cut there (see `truncated`).
    pub body: Bytes,
    /// Whether `body` was cut at the error body cap.
    pub truncated: bool,
}

/// Checks the status and decodes a JSON body.
pub(crate) fn decode<T: DeserializeOwned>(path: &str, raw: &RawResponse) -> Result<T> {
    if !raw.status.is_success() {
        return Err(api_error_of(path, raw));
    }
    // An empty body decodes as `null`, so `()` and `Option<_>` work for bodiless answers.
    let body: &[u8] = if raw.body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        &raw.body
    };
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        path: path.to_owned(),
        snippet: snippet(&raw.body),
        source: e,
    })
}

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.into_owned()
}

/// Builds the error of a non-2xx [`RawResponse`].
pub(crate) fn api_error_of(path: &str, raw: &RawResponse) -> Error {
    api_error(path, raw.status.as_u16(), &raw.body, raw.truncated)
}

/// Builds [`Error::Api`] (or [`Error::Unsupported`]) from an error answer; a body that is
/// not the usual `{"error":{...}}` is kept as the message. The body may have been cut at
/// the error body cap (`truncated`); the message is kept to [`MAX_ERROR_TEXT`] bytes
/// either way, with a note saying what was left out.
pub(crate) fn api_error(path: &str, status: u16, body: &[u8], truncated: bool) -> Error {
    let mut error = ErrorBody::parse(body).map_or_else(
        || api_error_from_text(status, &String::from_utf8_lossy(body)),
        |b| b.error,
    );
    error.message = shorten(&error.message, MAX_ERROR_TEXT, truncated);
    // llama-server answers an unknown route with 404 "File Not Found" (an empty body in
    // some versions), and a feature it was not started with with 501.
    let unknown_route =
        status == 404 && (error.message == "File Not Found" || error.message.trim().is_empty());
    if status == 501 || unknown_route {
        let path = path.split('?').next().unwrap_or(path).to_owned();
        return Error::Unsupported {
            path,
            status,
            message: error.message,
        };
    }
    Error::Api {
        status,
        path: path.to_owned(),
        error,
    }
}

/// An error object for an answer that is not the usual `{"error":{...}}`: the text is the
/// message.
pub(crate) fn api_error_from_text(status: u16, text: &str) -> ApiError {
    ApiError {
        code: status,
        message: text.to_owned(),
        kind: ErrorType::Unknown(String::new()),
        extra: Default::default(),
    }
}

pub(crate) fn transport_error(method: &Method, path: &str, err: &dyn std::error::Error) -> Error {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    Error::Transport {
        method: method.to_string(),
        path: path.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn error_bodies_decode() {
        let e = api_error(
            "/completion",
            400,
            br#"{"error":{"code":400,"message":"bad","type":"invalid_request_error"}}"#,
            false,
        );
        match e {
            Error::Api { status, error, .. } => {
                assert_eq!(status, 400);
                assert_eq!(error.message, "bad");
            }
            other => panic!("{other:?}"),
        }
        match api_error("/x", 502, b"upstream down", false) {
            Error::Api { status, error, .. } => {
                assert_eq!(status, 502);
                assert_eq!(error.message, "upstream down");
            }
            other => panic!("{other:?}"),
        }
    }
}
