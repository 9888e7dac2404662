//! How long the client waits and how much it buffers: every wait has a timeout and every
//! buffer a cap, with defaults that suit a local server, so a stuck or hostile server on
//! the other end of the socket can neither hang a caller nor exhaust its memory.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Default time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default timeout of a whole request, and of the response head of a stream: generous,
/// because a long generation legitimately takes minutes.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Default timeout of requests that never generate (`/props`, `/tokenize`, `/metrics`,
/// `/slots`, model lists, ...): a server that does not answer them quickly is stuck.
pub const DEFAULT_QUICK_TIMEOUT: Duration = Duration::from_secs(30);

/// Default longest silence inside a stream (servers send tokens or ping comments).
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Default cap of a successful response body.
pub const DEFAULT_MAX_BODY: usize = 256 * 1024 * 1024;

/// Default cap of one Server-Sent Event (or of the bytes buffered while waiting for one).
pub const DEFAULT_MAX_EVENT: usize = 16 * 1024 * 1024;

/// Default cap of an error body; longer ones are cut there, with a note.
pub const DEFAULT_MAX_ERROR_BODY: usize = 64 * 1024;

/// How much of an error message is kept (the rest is replaced by a note).
pub(crate) const MAX_ERROR_TEXT: usize = 4 * 1024;

/// The client's timeouts and size caps. See [`crate::ClientBuilder::limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientLimits {
    /// Time allowed to open a connection ([`crate::Error::ConnectTimeout`]).
    pub connect_timeout: Duration,
    /// Timeout of requests that never generate; the shorter of this and the request
    /// timeout applies to them.
    pub quick_timeout: Duration,
    /// Longest silence between two pieces of a stream ([`crate::Error::StreamStalled`]);
    /// `None` waits as long as the server keeps the connection open.
    pub stream_idle_timeout: Option<Duration>,
    /// Cap of a successful response body ([`crate::Error::TooLarge`]).
    pub max_body: usize,
    /// Cap of one Server-Sent Event ([`crate::Error::TooLarge`]).
    pub max_event: usize,
    /// Cap of an error body; a longer one is cut, and the error says so.
    pub max_error_body: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            quick_timeout: DEFAULT_QUICK_TIMEOUT,
            stream_idle_timeout: Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            max_body: DEFAULT_MAX_BODY,
            max_event: DEFAULT_MAX_EVENT,
            max_error_body: DEFAULT_MAX_ERROR_BODY,
        }
    }
}

/// Whether `method path` is a request that never generates, so it gets the quick timeout.
pub(crate) fn is_quick(method: &http::Method, path: &str) -> bool {
    let route = path.split('?').next().unwrap_or(path);
    let quick_get = [
        "/health",
        "/props",
        "/metrics",
        "/slots",
        "/v1/models",
        "/models",
        "/lora-adapters",
    ];
    let quick_post = ["/tokenize", "/detokenize", "/apply-template"];
    match *method {
        http::Method::GET => quick_get.contains(&route),
        http::Method::POST => quick_post.contains(&route),
        _ => false,
    }
}

/// A body read up to a cap.
pub(crate) struct CappedBody {
    pub(crate) bytes: Bytes,
    /// The body went on past the cap; `bytes` holds the first `cap` bytes and the rest
    /// was never read (so the connection must not be reused).
    pub(crate) truncated: bool,
}

/// Reads `body` until its end or until more than `cap` bytes arrived.
pub(crate) async fn read_capped(body: Incoming, cap: usize) -> Result<CappedBody, hyper::Error> {
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if buf.len() + data.len() > cap {
            let room = cap - buf.len();
            buf.extend_from_slice(&data[..room]);
            return Ok(CappedBody {
                bytes: buf.freeze(),
                truncated: true,
            });
        }
        buf.extend_from_slice(&data);
    }
    Ok(CappedBody {
        bytes: buf.freeze(),
        truncated: false,
    })
}

/// `text` cut to at most `max` bytes on a character boundary, with a note saying how much
/// was left out; `more` counts bytes known to be missing already (a cut body).
pub(crate) fn shorten(text: &str, max: usize, more: bool) -> String {
    if text.len() <= max && !more {
        return text.to_owned();
    }
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let left = text.len() - end;
    let note = match (left, more) {
        (0, _) => " … (truncated: the server sent more than lmcpp reads of an error)".to_owned(),
        (n, false) => format!(" … ({n} more bytes)"),
        (n, true) => {
            format!(" … ({n} more bytes, and more the server sent that lmcpp did not read)")
        }
    };
    format!("{}{note}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_routes() {
        use http::Method;
        for (method, path, quick) in [
            (Method::GET, "/props", true),
            (Method::GET, "/slots?fail_on_no_slot=1", true),
            (Method::POST, "/tokenize", true),
            (Method::POST, "/props", false),
            (Method::POST, "/completion", false),
            (Method::POST, "/v1/chat/completions", false),
            (Method::POST, "/slots/0?action=save", false),
            (Method::GET, "/unknown", false),
        ] {
            assert_eq!(is_quick(&method, path), quick, "{method} {path}");
        }
    }

    #[test]
    fn shortening_keeps_characters_whole_and_says_what_was_left_out() {
        assert_eq!(shorten("short", 10, false), "short");
        assert_eq!(shorten("abcdef", 3, false), "abc … (3 more bytes)");
        // "é" is two bytes; a cut in its middle moves before it.
        assert_eq!(shorten("aé", 2, false), "a … (2 more bytes)");
        assert!(shorten("abc", 10, true).contains("truncated"));
        assert!(shorten("abcdef", 3, true).contains("did not read"));
    }
}
