//! The request side of the downloader: the HTTPS client (proxies and trust roots in
//! `proxy`), sending one
//! request through its redirects under the redirect policy, and reading response headers.
//!
//! Redirect policy: at most `max_redirects` hops; a hop from `https` to `http` is refused
//! (a downgrade would hand the rest of the transfer, and any validator, to anyone on the
//! path); caller headers (tokens) go only to the original scheme and authority.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER,
    USER_AGENT,
};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;

use super::http_proxy::{HttpProxies, ProxyConnector};
use crate::error::{Error, Result};

/// The client the downloader sends through.
pub(super) type HttpsClient = Client<HttpsConnector<ProxyConnector>, Empty<Bytes>>;

/// A response after redirects: the first hop's status and headers, the final URL, and the
/// final response (whose body has not been read).
pub(super) struct Sent {
    pub(super) first: (u16, HeaderMap),
    pub(super) final_url: String,
    pub(super) response: http::Response<Incoming>,
}

/// What [`send`] needs besides the request itself.
pub(super) struct SendOptions<'a> {
    pub(super) client: &'a HttpsClient,
    pub(super) proxies: &'a HttpProxies,
    pub(super) user_agent: &'a str,
    pub(super) idle_timeout: Duration,
    pub(super) max_redirects: usize,
}

/// Sends a request, following redirects under the redirect policy.
pub(super) async fn send(
    o: &SendOptions<'_>,
    method: Method,
    url: &str,
    user_headers: &[(String, String)],
    extra: &[(HeaderName, String)],
) -> Result<Sent> {
    let origin = parse_uri(url)?;
    let mut current = origin.clone();
    let mut first: Option<(u16, HeaderMap)> = None;
    for _ in 0..=o.max_redirects {
        let same_origin =
            current.scheme() == origin.scheme() && current.authority() == origin.authority();
        let headers = if same_origin { user_headers } else { &[] };
        let req = build_request(o, &method, &current, headers, extra)?;
        let resp = request_once(o, &current, req).await?;
        let status = resp.status();
        if first.is_none() {
            first = Some((status.as_u16(), resp.headers().clone()));
        }
        if status.is_redirection()
            && status != StatusCode::NOT_MODIFIED
            && let Some(loc) = resp.headers().get(LOCATION)
        {
            let loc = loc
                .to_str()
                .map_err(|_| crate::download::error::Error::InvalidUrl {
                    url: current.to_string(),
                    reason: "redirect location is not text".into(),
                })?;
            current = redirect_target(&current, loc)?;
            continue;
        }
        return Ok(Sent {
            first: first.unwrap_or((status.as_u16(), HeaderMap::new())),
            final_url: current.to_string(),
            response: resp,
        });
    }
    Err(crate::download::error::Error::TooManyRedirects {
        url: url.to_owned(),
        limit: o.max_redirects,
    }
    .into())
}

fn build_request(
    o: &SendOptions<'_>,
    method: &Method,
    uri: &Uri,
    user_headers: &[(String, String)],
    extra: &[(HeaderName, String)],
) -> Result<Request<Empty<Bytes>>> {
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(uri.clone())
        .header(USER_AGENT, o.user_agent);
    for (k, v) in user_headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| Error::InvalidRequest {
            reason: format!("invalid header name {k:?}"),
        })?;
        let mut value = HeaderValue::from_str(v).map_err(|_| Error::InvalidRequest {
            reason: format!("invalid value for header {k:?}"),
        })?;
        value.set_sensitive(true);
        builder = builder.header(name, value);
    }
    for (k, v) in extra {
        builder = builder.header(k, v);
    }
    if let Some(auth) = o.proxies.authorization_for(uri) {
        let mut value = HeaderValue::from_str(auth).map_err(|_| Error::InvalidRequest {
            reason: "invalid proxy credentials".into(),
        })?;
        value.set_sensitive(true);
        builder = builder.header(http::header::PROXY_AUTHORIZATION, value);
    }
    builder.body(Empty::<Bytes>::new()).map_err(|e| {
        crate::download::error::Error::InvalidUrl {
            url: uri.to_string(),
            reason: e.to_string(),
        }
        .into()
    })
}

async fn request_once(
    o: &SendOptions<'_>,
    uri: &Uri,
    req: Request<Empty<Bytes>>,
) -> Result<http::Response<Incoming>> {
    match tokio::time::timeout(o.idle_timeout, o.client.request(req)).await {
        Err(_) => Err(crate::download::error::Error::Http {
            url: uri.to_string(),
            message: format!("no response within {}s", o.idle_timeout.as_secs()),
        }
        .into()),
        Ok(Err(e)) => {
            let message = error_chain(&e);
            // A name that does not resolve will not resolve a second later; do not spend
            // the retry budget on it (this is the offline case).
            if message.contains("dns error") {
                Err(crate::download::error::Error::Unreachable {
                    url: uri.to_string(),
                    message,
                }
                .into())
            } else {
                Err(crate::download::error::Error::Http {
                    url: uri.to_string(),
                    message,
                }
                .into())
            }
        }
        Ok(Ok(r)) => Ok(r),
    }
}

/// Where a redirect from `current` to `location` leads, or why it is refused.
pub(super) fn redirect_target(current: &Uri, location: &str) -> Result<Uri> {
    let next = resolve_location(current, location)?;
    if current.scheme_str() == Some("https") && next.scheme_str() == Some("http") {
        return Err(crate::download::error::Error::InsecureRedirect {
            from: current.to_string(),
            to: next.to_string(),
        }
        .into());
    }
    Ok(next)
}

pub(super) fn parse_uri(url: &str) -> Result<Uri> {
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
        crate::download::error::Error::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        }
    })?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err(crate::download::error::Error::InvalidUrl {
            url: url.to_owned(),
            reason: "only http, https and file urls are supported".into(),
        }
        .into()),
    }
}

fn resolve_location(base: &Uri, loc: &str) -> Result<Uri> {
    let bad = |reason: String| crate::download::error::Error::InvalidUrl {
        url: loc.to_owned(),
        reason,
    };
    if loc.contains("://") {
        return parse_uri(loc);
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base
        .authority()
        .map(|a| a.as_str())
        .ok_or_else(|| bad("redirect from a url without host".into()))?;
    let full = if let Some(rest) = loc.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if loc.starts_with('/') {
        format!("{scheme}://{authority}{loc}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{loc}")
    };
    parse_uri(&full)
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The strong ETag of a response, quotes removed; weak validators count as absent because
/// they cannot be used with `If-Range`.
pub(super) fn header_etag(h: &HeaderMap) -> Option<String> {
    let v = h.get(ETAG)?.to_str().ok()?.trim();
    if v.starts_with("W/") {
        return None;
    }
    let v = v.trim_matches('"');
    (!v.is_empty()).then(|| v.to_owned())
}

pub(super) fn content_range_start(h: &HeaderMap) -> Option<u64> {
    let v = h.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

pub(super) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

pub(super) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    // Only the delta-seconds form; an HTTP date falls back to the normal backoff.
    let v = h.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lmcpp_types::Classify;

    #[test]
    fn relative_redirects_resolve() {
        let base: Uri = "http://h:1/a/b/c?x=1".parse().unwrap();
        let cases = [
            ("/z", "http://h:1/z"),
            ("z", "http://h:1/a/b/z"),
            ("//o:2/p", "http://o:2/p"),
            ("https://q/r", "https://q/r"),
        ];
        for (loc, want) in cases {
            assert_eq!(
                redirect_target(&base, loc).unwrap().to_string(),
                want,
                "{loc}"
            );
        }
    }

    #[test]
    fn https_to_http_redirects_are_refused() {
        let base: Uri = "https://hub.example/a/b".parse().unwrap();
        for loc in ["http://cdn.example/x", "http://hub.example/a/c"] {
            match redirect_target(&base, loc) {
                Err(crate::Error::Download(crate::download::error::Error::InsecureRedirect {
                    from,
                    to,
                })) => {
                    assert_eq!(from, "https://hub.example/a/b");
                    assert!(to.starts_with("http://"), "{to}");
                }
                other => panic!("{loc}: {other:?}"),
            }
        }
        // Staying on https, relative locations and upgrades are fine.
        for (loc, want) in [
            ("https://cdn.example/x", "https://cdn.example/x"),
            ("/c", "https://hub.example/c"),
            ("//cdn.example/y", "https://cdn.example/y"),
        ] {
            assert_eq!(redirect_target(&base, loc).unwrap().to_string(), want);
        }
        let plain: Uri = "http://h/a".parse().unwrap();
        assert!(redirect_target(&plain, "https://h/b").is_ok());
        let err = redirect_target(&base, "http://cdn.example/x").unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("http://cdn.example/x"), "{err}");
    }

    #[test]
    fn etags_are_unquoted_and_weak_ones_dropped() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("\"abc\""));
        assert_eq!(header_etag(&h).as_deref(), Some("abc"));
        h.insert(ETAG, HeaderValue::from_static("W/\"abc\""));
        assert_eq!(header_etag(&h), None);
    }

    #[test]
    fn content_range_length_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("100"));
        assert_eq!(content_range_start(&h), Some(100));
        assert_eq!(content_length(&h), Some(100));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }
}
