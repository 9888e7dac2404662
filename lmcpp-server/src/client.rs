//! The HTTP client: one API over TCP and Unix sockets, pooled, keep-alive, typed errors.

use std::{
    collections::VecDeque,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::{
    body::{Body as _, Incoming},
    client::conn::http1::SendRequest,
};
use serde::{Serialize, de::DeserializeOwned};

use lmcpp_types::error::{ErrorBody, ErrorType};
use lmcpp_types::sse::{SseEvent, SseParser};

use crate::{
    ApiError,
    endpoint::Endpoint,
    error::{Error, Result},
    pool::{Body, Pool},
};

/// Default timeout of `/health` requests.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `Accept` of streaming requests.
const EVENT_STREAM: &str = "text/event-stream";

struct Inner {
    endpoint: Endpoint,
    pool: Pool,
    auth: Option<HeaderValue>,
    health_timeout: Duration,
}

/// Typed async client for one `llama-server`.
///
/// Cheap to clone; clones share the connection pool. Any number of requests may run
/// concurrently (each takes its own pooled connection), and an error answer leaves the
/// connection reusable. Requests have no timeout unless one is set with
/// [`ClientBuilder::timeout`] or [`Client::with_timeout`]; `/health` uses its own short one.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoint: Endpoint,
    api_key: Option<String>,
    timeout: Option<Duration>,
    health_timeout: Duration,
}

impl ClientBuilder {
    /// Sends `Authorization: Bearer <key>` with every request.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Default timeout for every request except `/health` (none by default, because
    /// generation may legitimately take minutes).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout for `/health` requests (default [`DEFAULT_HEALTH_TIMEOUT`]).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// Builds the client. Must be called inside a tokio runtime only when requests are made.
    pub fn build(self) -> Client {
        let pool = Pool::new(&self.endpoint);
        let auth = self
            .api_key
            .and_then(|key| HeaderValue::from_str(&format!("Bearer {key}")).ok())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Client {
            inner: Arc::new(Inner {
                endpoint: self.endpoint,
                pool,
                auth,
                health_timeout: self.health_timeout,
            }),
            timeout: self.timeout,
        }
    }
}

/// A response whose status has not been judged: the escape hatch for callers that want
/// to see everything.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The complete body.
    pub body: Bytes,
}

impl Client {
    /// A client with default settings.
    pub fn new(endpoint: Endpoint) -> Self {
        Self::builder(endpoint).build()
    }

    /// Starts configuring a client.
    pub fn builder(endpoint: Endpoint) -> ClientBuilder {
        ClientBuilder {
            endpoint,
            api_key: None,
            timeout: None,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
        }
    }

    /// The server this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The default request timeout of this handle.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// A handle sharing this client's connections whose requests use `timeout`.
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            timeout,
        }
    }

    /// Sends one request and returns the response head with its unread body, and the
    /// connection's sender for [`Pool::put`] once that body has been read.
    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
        accept: &'static str,
    ) -> Result<(Response<Incoming>, SendRequest<Body>)> {
        // Over an explicit connection HTTP/1 wants the origin form (`/path?query`); the
        // server is named by the `Host` header.
        let uri = if path.starts_with('/') {
            hyper::Uri::try_from(path).map_err(|e| e.to_string())
        } else {
            Err("it must start with `/`".to_owned())
        }
        .map_err(|e| Error::Transport {
            method: method.to_string(),
            path: path.to_owned(),
            message: format!("invalid request path: {e}"),
        })?;
        let has_body = body.is_some();
        let mut req = Request::new(Full::new(body.unwrap_or_default()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(header::HOST, self.inner.pool.host().clone());
        headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        if accept == EVENT_STREAM {
            // llama-server closes the connection after every streamed response although
            // it announces keep-alive; a pooled connection would then fail the next
            // request. Asking for the close keeps such connections out of the pool.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if has_body {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Some(auth) = &self.inner.auth {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        self.inner
            .pool
            .send(req)
            .await
            .map_err(|e| transport_error(method, path, &e))
    }

    /// Sends one request and reads the whole body, within `timeout` if given.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<RawResponse> {
        let fut = async {
            let (res, sender) = self.send(&method, path, body, "application/json").await?;
            let status = res.status();
            let reusable = keeps_alive(&res);
            let content_type = res
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| transport_error(&method, path, &e))?
                .to_bytes();
            // Only now is the connection free for another request; an exchange that
            // failed or timed out before this point drops the sender, which closes it.
            if reusable {
                self.inner.pool.put(sender);
            }
            Ok(RawResponse {
                status,
                content_type,
                body,
            })
        };
        match timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::Timeout {
                    method: method.to_string(),
                    path: path.to_owned(),
                    timeout: t,
                })?,
        }
    }

    /// Sends a request and returns the response whatever its status (no error decoding).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<RawResponse> {
        self.exchange(method, path, body, self.timeout).await
    }

    /// Sends `body` as JSON and decodes the JSON answer; non-2xx answers become
    /// [`Error::Api`]. For endpoints or fields the typed methods do not cover.
    pub async fn raw_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        self.request(method, path, body).await
    }

    /// Typed request: serializes `body`, checks the status and decodes the answer.
    pub async fn request<B, T>(&self, method: Method, path: &str, body: Option<&B>) -> Result<T>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let body = body.map(|b| encode(path, b)).transpose()?;
        let raw = self.exchange(method, path, body, self.timeout).await?;
        decode(path, &raw)
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request::<(), T>(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, decoded.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// `GET /health` with the short health timeout, whatever the status: used to watch
    /// a server load (503 while loading, 200 when ready).
    pub async fn probe_health(&self) -> Result<RawResponse> {
        self.exchange(
            Method::GET,
            "/health",
            None,
            Some(self.inner.health_timeout),
        )
        .await
    }

    /// `POST path` with `"stream": true` added to `body`; the answer's Server-Sent
    /// Events decoded as `T`. The timeout (if any) covers only the response head.
    /// Dropping the stream closes the connection, which makes the server stop generating.
    pub async fn stream<B, T>(&self, path: &str, body: &B) -> Result<EventStream<T>>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let mut value = serde_json::to_value(body).map_err(|e| Error::Decode {
            path: path.to_owned(),
            snippet: String::new(),
            source: e,
        })?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("stream".into(), serde_json::Value::Bool(true));
        }
        let bytes = encode(path, &value)?;
        let fut = self.send(&Method::POST, path, Some(bytes), EVENT_STREAM);
        // The connection was asked to close after this response, so its sender is
        // dropped at once and the connection lives only as long as the body.
        let (res, _) = match self.timeout {
            None => fut.await?,
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::Timeout {
                    method: "POST".into(),
                    path: path.to_owned(),
                    timeout: t,
                })??,
        };
        if !res.status().is_success() {
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| transport_error(&Method::POST, path, &e))?
                .to_bytes();
            return Err(api_error(path, status.as_u16(), &body));
        }
        Ok(EventStream::new(path, res.into_body()))
    }
}

/// Whether the connection may carry another request after this response.
fn keeps_alive(res: &Response<Incoming>) -> bool {
    let close = res
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    !close && res.version() == http::Version::HTTP_11
}

fn encode<B: Serialize + ?Sized>(path: &str, body: &B) -> Result<Bytes> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| Error::Decode {
            path: path.to_owned(),
            snippet: "(request body could not be encoded)".into(),
            source: e,
        })
}

/// Checks the status and decodes a JSON body.
pub(crate) fn decode<T: DeserializeOwned>(path: &str, raw: &RawResponse) -> Result<T> {
    if !raw.status.is_success() {
        return Err(api_error(path, raw.status.as_u16(), &raw.body));
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

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.into_owned()
}

/// Builds [`Error::Api`] from an error answer; a body that is not the usual
/// `{"error":{...}}` is kept as the message.
pub(crate) fn api_error(path: &str, status: u16, body: &[u8]) -> Error {
    let error = ErrorBody::parse(body).map_or_else(
        || api_error_from_text(status, &String::from_utf8_lossy(body)),
        |b| b.error,
    );
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
fn api_error_from_text(status: u16, text: &str) -> ApiError {
    ApiError {
        code: status,
        message: text.to_owned(),
        kind: ErrorType::Unknown(String::new()),
        extra: Default::default(),
    }
}

fn transport_error(method: &Method, path: &str, err: &dyn std::error::Error) -> Error {
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

/// A stream of typed Server-Sent Events from one streaming request.
///
/// Ends after `data: [DONE]` or when the server closes the response. A mid-stream error
/// (`{"error":{...}}` as data, or an `error` event) is yielded as [`Error::Api`] and ends
/// the stream. Dropping it closes the connection and cancels the generation.
pub struct EventStream<T> {
    path: String,
    body: Option<Incoming>,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
    done: bool,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("path", &self.path)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// What one SSE event means for a typed stream.
#[derive(Debug)]
pub(crate) enum Classified<T> {
    Item(T),
    Done,
    Skip,
    Failed(Error),
}

/// Interprets one event: `[DONE]`, an error, an item, or nothing.
pub(crate) fn classify<T: DeserializeOwned>(path: &str, event: &SseEvent) -> Classified<T> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Classified::Done;
    }
    if data.is_empty() {
        return Classified::Skip;
    }
    let value: serde_json::Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => {
            return Classified::Failed(Error::Decode {
                path: path.to_owned(),
                snippet: snippet(data.as_bytes()),
                source: e,
            });
        }
    };
    let is_error_event = event.event.as_deref() == Some("error");
    if let Some(err) = value.get("error").filter(|e| e.is_object())
        && (is_error_event || value.as_object().is_some_and(|o| o.len() == 1))
    {
        return Classified::Failed(stream_error(path, err));
    }
    if is_error_event {
        return Classified::Failed(stream_error(path, &value));
    }
    match serde_json::from_value(value) {
        Ok(item) => Classified::Item(item),
        Err(e) => Classified::Failed(Error::Decode {
            path: path.to_owned(),
            snippet: snippet(data.as_bytes()),
            source: e,
        }),
    }
}

fn stream_error(path: &str, err: &serde_json::Value) -> Error {
    let error = serde_json::from_value::<ApiError>(err.clone())
        .unwrap_or_else(|_| api_error_from_text(200, &err.to_string()));
    Error::Api {
        status: 200,
        path: path.to_owned(),
        error,
    }
}

impl<T> EventStream<T> {
    fn new(path: &str, body: Incoming) -> Self {
        Self {
            path: path.to_owned(),
            body: Some(body),
            parser: SseParser::new(),
            queue: VecDeque::new(),
            done: false,
            _item: PhantomData,
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.body = None;
        self.queue.clear();
    }
}

impl<T: DeserializeOwned> Stream for EventStream<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(event) = this.queue.pop_front() {
                match classify(&this.path, &event) {
                    Classified::Item(item) => return Poll::Ready(Some(Ok(item))),
                    Classified::Skip => continue,
                    Classified::Done => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Classified::Failed(e) => {
                        this.finish();
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            let Some(body) = this.body.as_mut() else {
                this.done = true;
                continue;
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.parser.push(&data, &mut this.queue);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let err = transport_error(&Method::POST, &this.path, &e);
                    this.finish();
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    this.parser.finish(&mut this.queue);
                    this.body = None;
                    if this.queue.is_empty() {
                        this.done = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: None,
        }
    }

    #[test]
    fn classify_table() {
        type V = serde_json::Value;
        let cases: Vec<(SseEvent, &str)> = vec![
            (ev(None, "[DONE]"), "done"),
            (ev(None, " [DONE] "), "done"),
            (ev(None, ""), "skip"),
            (ev(None, "{\"content\":\"a\"}"), "item"),
            (
                ev(
                    None,
                    "{\"error\":{\"code\":500,\"message\":\"boom\",\"type\":\"server_error\"}}",
                ),
                "api",
            ),
            (
                ev(
                    Some("error"),
                    "{\"code\":500,\"message\":\"boom\",\"type\":\"server_error\"}",
                ),
                "api",
            ),
            (
                ev(Some("error"), "{\"error\":{\"message\":\"boom\"}}"),
                "api",
            ),
            // A chunk that merely has an `error` field among others is an item.
            (ev(None, "{\"error\":{\"x\":1},\"content\":\"a\"}"), "item"),
            (ev(None, "not json"), "decode"),
        ];
        for (event, want) in cases {
            let got = match classify::<V>("/x", &event) {
                Classified::Item(_) => "item",
                Classified::Done => "done",
                Classified::Skip => "skip",
                Classified::Failed(Error::Api { .. }) => "api",
                Classified::Failed(Error::Decode { .. }) => "decode",
                Classified::Failed(_) => "other",
            };
            assert_eq!(got, want, "{event:?}");
        }
    }

    #[test]
    fn error_bodies_decode() {
        let e = api_error(
            "/completion",
            400,
            br#"{"error":{"code":400,"message":"bad","type":"invalid_request_error"}}"#,
        );
        match e {
            Error::Api { status, error, .. } => {
                assert_eq!(status, 400);
                assert_eq!(error.message, "bad");
            }
            other => panic!("{other:?}"),
        }
        match api_error("/x", 502, b"upstream down") {
            Error::Api { status, error, .. } => {
                assert_eq!(status, 502);
                assert_eq!(error.message, "upstream down");
            }
            other => panic!("{other:?}"),
        }
    }
}
