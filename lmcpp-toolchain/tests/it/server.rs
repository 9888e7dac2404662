//! A real HTTP/1.1 server on 127.0.0.1 that behaves like the remotes we cannot reach here.
//!
//! Usage:
//!
//! ```ignore
//! let server = TestServer::start().await;
//! server.route("/a.tar.gz", Route::file(bytes).etag("v1"));            // 200 / 206 with ETag
//! server.route("/big", Route::file(b).truncate_first(1, 4096));         // first response cut at 4 KiB
//! server.route("/busy", Route::file(b).fail_first(2, 429, Some(0)));    // two 429s, then the file
//! server.route("/r", Route::redirect("/a.tar.gz").header("x-linked-etag", "abc"));
//! server.route("/gone", Route::status(404));
//! let url = server.url("/a.tar.gz");
//! // ... exercise the client ...
//! assert_eq!(server.hits("/a.tar.gz"), 1);
//! let first = &server.requests("/big")[1];  // method + headers of the second request
//! assert!(first.headers.contains_key("range"));
//! ```
//!
//! File routes honour `Range: bytes=N-` / `bytes=N-M` (206 with `Content-Range`) unless
//! `.no_ranges()` is set, and `If-Range`: a validator that does not match the current
//! ETag yields the full 200 response, as HTTP requires. Unknown paths answer 404.
//! The server stops when the `TestServer` is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How one path responds.
#[derive(Debug, Clone)]
pub enum Route {
    /// A file with optional ETag, ranges, injected failures and throttling.
    File(FileRoute),
    /// A redirect to `location` with extra headers on the redirect response.
    Redirect {
        /// Target (absolute URL or path).
        location: String,
        /// 301, 302, 307 or 308.
        status: u16,
        /// Extra headers sent with the redirect.
        headers: Vec<(String, String)>,
    },
    /// A fixed status with headers and body.
    Status {
        /// The status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body bytes.
        body: Bytes,
    },
}

/// A file route; build with [`Route::file`] and the builder methods.
#[derive(Debug, Clone)]
pub struct FileRoute {
    /// Content.
    pub body: Bytes,
    /// ETag sent (quoted) when set.
    pub etag: Option<String>,
    /// Whether `Range` is honoured.
    pub ranges: bool,
    /// Cut the first `.0` GET responses after `.1` body bytes (Content-Length stays full).
    pub truncate: Option<(u32, usize)>,
    /// Answer the first `.0` requests with status `.1` and optional `Retry-After` `.2`.
    pub fail: Option<(u32, u16, Option<u64>)>,
    /// Bytes per body chunk.
    pub chunk: usize,
    /// Pause before each chunk (to make transfers slow enough to interrupt).
    pub throttle: Option<Duration>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Send no `Content-Length` (the body is chunked, so a cut is a clean end).
    pub no_length: bool,
}

impl Route {
    /// A file served from memory with ranges on and no ETag.
    pub fn file(body: impl Into<Bytes>) -> FileRoute {
        FileRoute {
            body: body.into(),
            etag: None,
            ranges: true,
            truncate: None,
            fail: None,
            chunk: 16 * 1024,
            throttle: None,
            headers: Vec::new(),
            no_length: false,
        }
    }

    /// A 302 redirect.
    pub fn redirect(location: impl Into<String>) -> RedirectRoute {
        RedirectRoute {
            location: location.into(),
            status: 302,
            headers: Vec::new(),
        }
    }

    /// A bare status with an empty body.
    pub fn status(status: u16) -> Route {
        Route::Status {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
}

/// Builder for [`Route::Redirect`].
#[derive(Debug, Clone)]
pub struct RedirectRoute {
    location: String,
    status: u16,
    headers: Vec<(String, String)>,
}

impl RedirectRoute {
    /// Adds a header to the redirect response.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    /// Uses another redirect status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

impl From<RedirectRoute> for Route {
    fn from(r: RedirectRoute) -> Self {
        Route::Redirect {
            location: r.location,
            status: r.status,
            headers: r.headers,
        }
    }
}

impl FileRoute {
    /// Sends this ETag.
    pub fn etag(mut self, etag: &str) -> Self {
        self.etag = Some(etag.to_owned());
        self
    }
    /// Ignores `Range` (always 200).
    pub fn no_ranges(mut self) -> Self {
        self.ranges = false;
        self
    }
    /// Cuts the first `times` responses after `after` body bytes.
    pub fn truncate_first(mut self, times: u32, after: usize) -> Self {
        self.truncate = Some((times, after));
        self
    }
    /// Fails the first `times` requests with `status` (and `Retry-After` seconds).
    pub fn fail_first(mut self, times: u32, status: u16, retry_after: Option<u64>) -> Self {
        self.fail = Some((times, status, retry_after));
        self
    }
    /// Sets the chunk size.
    pub fn chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }
    /// Pauses before every chunk.
    pub fn throttle(mut self, pause: Duration) -> Self {
        self.throttle = Some(pause);
        self
    }
    /// Adds a response header.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    /// Sends no `Content-Length`: the body is chunked, and a truncated one ends cleanly,
    /// like a proxy that gives up mid-stream.
    pub fn no_length(mut self) -> Self {
        self.no_length = true;
        self
    }
}

impl From<FileRoute> for Route {
    fn from(f: FileRoute) -> Self {
        Route::File(f)
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// The request headers.
    pub headers: HeaderMap,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    requests: HashMap<String, Vec<Recorded>>,
    sent: HashMap<String, Arc<AtomicU64>>,
}

/// The running server. Dropping it stops accepting connections.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

impl TestServer {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req)) }
                    });
                    // A small write buffer makes hyper pull the next chunk only after the
                    // previous one reached the socket, so `bytes_sent` is close to what the
                    // client received even when a response is cut short.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .max_buf_size(8192)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestServer { addr, state, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Sets (or replaces) the route for `path`.
    pub fn route(&self, path: &str, route: impl Into<Route>) {
        self.lock().routes.insert(path.to_owned(), route.into());
    }

    /// Number of requests seen for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.lock().requests.get(path).map_or(0, Vec::len)
    }

    /// The requests seen for `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.lock().requests.get(path).cloned().unwrap_or_default()
    }

    /// Number of requests seen for any path.
    pub fn total_hits(&self) -> usize {
        self.lock().requests.values().map(Vec::len).sum()
    }

    /// Body bytes handed to hyper for `path` (an upper bound of what the client received).
    pub fn bytes_sent(&self, path: &str) -> u64 {
        self.lock()
            .sent
            .get(path)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn handle(state: &Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    let route = st.routes.get(&path).cloned();
    let seen = st.requests.get(&path).map_or(0, Vec::len) as u32;
    let sent = st.sent.entry(path.clone()).or_default().clone();
    let resp = match route {
        None => simple(404, &[], Bytes::from_static(b"not found")),
        Some(Route::Status {
            status,
            headers,
            body,
        }) => simple(status, &headers, body),
        Some(Route::Redirect {
            location,
            status,
            headers,
        }) => {
            let mut h = headers.clone();
            h.push(("location".into(), location));
            simple(status, &h, Bytes::new())
        }
        Some(Route::File(f)) => file_response(&f, &req, seen, sent),
    };
    st.requests.entry(path.clone()).or_default().push(Recorded {
        method: req.method().clone(),
        headers: req.headers().clone(),
        status: resp.status().as_u16(),
    });
    resp
}

fn simple(status: u16, headers: &[(String, String)], body: Bytes) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(
        http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed(),
    )
    .expect("response")
}

fn file_response(
    f: &FileRoute,
    req: &Request<Incoming>,
    seen: u32,
    sent: Arc<AtomicU64>,
) -> Response<Body> {
    if let Some((times, status, retry)) = f.fail
        && seen < times
    {
        let mut h = vec![];
        if let Some(r) = retry {
            h.push(("retry-after".to_owned(), r.to_string()));
        }
        return simple(status, &h, Bytes::from_static(b"try later"));
    }
    let len = f.body.len();
    let mut range = None;
    if f.ranges
        && let Some(r) = req.headers().get("range").and_then(|v| v.to_str().ok())
    {
        let if_range_ok = match req.headers().get("if-range").and_then(|v| v.to_str().ok()) {
            None => true,
            Some(v) => f
                .etag
                .as_ref()
                .is_some_and(|e| v.trim_matches('"') == e.as_str()),
        };
        if if_range_ok && let Some(spec) = r.strip_prefix("bytes=") {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let start: usize = a.parse().unwrap_or(0);
            let end: usize = b.parse().map(|e: usize| e + 1).unwrap_or(len).min(len);
            if start >= len {
                let resp = Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header("content-range", format!("bytes */{len}"))
                    .body(
                        http_body_util::Empty::new()
                            .map_err(|never| match never {})
                            .boxed(),
                    )
                    .expect("response");
                return resp;
            }
            range = Some((start, end));
        }
    }
    let (start, end) = range.unwrap_or((0, len));
    let mut b = Response::builder().status(if range.is_some() { 206 } else { 200 });
    if !f.no_length {
        b = b.header("content-length", (end - start).to_string());
    }
    if f.ranges {
        b = b.header("accept-ranges", "bytes");
    }
    if let Some(e) = &f.etag {
        b = b.header("etag", format!("\"{e}\""));
    }
    if range.is_some() {
        b = b.header("content-range", format!("bytes {start}-{}/{len}", end - 1));
    }
    for (k, v) in &f.headers {
        b = b.header(k, v);
    }
    if req.method() == Method::HEAD {
        let body = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed();
        return b.body(body).expect("response");
    }
    let cut = match f.truncate {
        Some((times, after)) if seen < times => Some(after.min(end - start)),
        _ => None,
    };
    let data = f.body.slice(start..end);
    let stop = cut.unwrap_or(data.len());
    let chunk = f.chunk;
    let throttle = f.throttle;
    let counter = sent.clone();
    let stream = futures_util::stream::unfold(0usize, move |pos| {
        let data = data.clone();
        let counter = counter.clone();
        async move {
            if let Some(p) = throttle {
                tokio::time::sleep(p).await;
            }
            if pos >= stop {
                // Ending early leaves the declared Content-Length unmet, so hyper closes the
                // connection after what was written: a cut-short body as the client sees it.
                return None;
            }
            let next = (pos + chunk).min(stop);
            counter.fetch_add((next - pos) as u64, Ordering::SeqCst);
            Some((Ok(Frame::data(data.slice(pos..next))), next))
        }
    });
    let body = BodyExt::boxed(StreamBody::new(stream));
    b.body(body).expect("response")
}
