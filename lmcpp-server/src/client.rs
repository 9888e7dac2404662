//! The HTTP client: one API over TCP and Unix sockets, pooled, keep-alive, typed errors.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::Full;
use hyper::{body::Incoming, client::conn::http1::SendRequest};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    answer::{RawResponse, api_error, decode, transport_error},
    endpoint::Endpoint,
    error::{Error, Result},
    limits::{CappedBody, ClientLimits, DEFAULT_REQUEST_TIMEOUT, is_quick, read_capped},
    pool::{Body, Pool, SendError},
    stream::EventStream,
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
    limits: ClientLimits,
}

/// Typed async client for one `llama-server`.
///
/// Cheap to clone; clones share the connection pool. Any number of requests may run
/// concurrently (each takes its own pooled connection; beyond
/// [`ClientBuilder::max_connections`], when set, they wait for one), and an error answer
/// leaves the connection reusable. Every wait is bounded: connecting, each request (by default
/// [`DEFAULT_REQUEST_TIMEOUT`], [`ClientBuilder::timeout`], [`Client::with_timeout`];
/// requests that never generate get the shorter quick timeout, `/health` its own), and
/// silence inside a stream; and every buffer is capped (see [`ClientLimits`]).
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
    limits: ClientLimits,
    max_connections: Option<usize>,
}

impl ClientBuilder {
    /// Sends `Authorization: Bearer <key>` with every request.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Timeout of every request except `/health`, and of the response head of a stream
    /// (default [`DEFAULT_REQUEST_TIMEOUT`]; `None` for none). Requests that never
    /// generate use the shorter of this and [`ClientLimits::quick_timeout`].
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// All timeouts and size caps at once (default [`ClientLimits::default`]).
    pub fn limits(mut self, limits: ClientLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Time allowed to open a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.limits.connect_timeout = timeout;
        self
    }

    /// Holds at most `n` connections to the server (in use and idle; at least 1); a
    /// request beyond them waits, first come first served, for one to be free or to close,
    /// and after 5 s connects beyond the cap (so a caller holding every connection itself,
    /// say a request inside the loops of `n` open streams, is slowed, never hung).
    /// Default: no cap.
    ///
    /// llama-server (cpp-httplib) keeps each HTTP thread on its connection until the
    /// connection has been idle for 5 s. Older versions (e.g. llama.cpp 4227c9b) have a
    /// fixed number of threads; newer ones add threads only when none is idle at the
    /// moment a connection arrives, which a burst outruns. Without a cap, a burst of more
    /// concurrent requests than threads opens connections the server does not serve
    /// until one of this client's idle connections times out: 16 requests took 10-20 s
    /// instead of 0.2 s on 4227c9b, and 5 or 10 s in some runs on b11312. A server lmcpp
    /// launches is told its threads (`--threads-http`, unless given) and
    /// [`Server::client`](crate::Server::client) holds one connection fewer, leaving a
    /// thread for health probes and other clients; set it here for a server started
    /// elsewhere, from its `--threads-http` (or the `http threads: N` it logs).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// Longest silence inside a stream (default 120 s; `None` for none).
    pub fn stream_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.limits.stream_idle_timeout = timeout;
        self
    }

    /// Cap of a successful response body (default 256 MiB).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.limits.max_body = bytes;
        self
    }

    /// Cap of one Server-Sent Event (default 16 MiB).
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.limits.max_event = bytes;
        self
    }

    /// Timeout for `/health` requests (default [`DEFAULT_HEALTH_TIMEOUT`]).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// Builds the client. Must be called inside a tokio runtime only when requests are made.
    pub fn build(self) -> Client {
        let pool = Pool::new(
            &self.endpoint,
            self.limits.connect_timeout,
            self.max_connections,
        );
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
                limits: self.limits,
            }),
            timeout: self.timeout,
        }
    }
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
            timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            limits: ClientLimits::default(),
            max_connections: None,
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

    /// The timeouts and size caps of this client.
    pub fn limits(&self) -> &ClientLimits {
        &self.inner.limits
    }

    /// The timeout of one request: the quick timeout caps it for requests that never
    /// generate.
    fn timeout_for(&self, method: &Method, path: &str) -> Option<Duration> {
        if !is_quick(method, path) {
            return self.timeout;
        }
        let quick = self.inner.limits.quick_timeout;
        Some(self.timeout.map_or(quick, |t| t.min(quick)))
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
        self.inner.pool.send(req).await.map_err(|e| match e {
            SendError::ConnectTimeout(timeout) => Error::ConnectTimeout {
                endpoint: self.inner.endpoint.to_string(),
                timeout,
            },
            e => transport_error(method, path, &e),
        })
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
            let CappedBody { bytes, truncated } = self.read_body(&method, path, res).await?;
            // Only now is the connection free for another request; an exchange that
            // failed, timed out or left part of its body unread before this point drops
            // the sender, which closes it.
            if reusable && !truncated {
                self.inner.pool.put(sender);
            }
            Ok(RawResponse {
                status,
                content_type,
                body: bytes,
                truncated,
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

    /// Reads a response body: a success up to [`ClientLimits::max_body`] (more is
    /// [`Error::TooLarge`]), an error up to [`ClientLimits::max_error_body`] (more is cut).
    async fn read_body(
        &self,
        method: &Method,
        path: &str,
        res: Response<Incoming>,
    ) -> Result<CappedBody> {
        let limits = &self.inner.limits;
        let success = res.status().is_success();
        let cap = if success {
            limits.max_body
        } else {
            limits.max_error_body
        };
        let too_large = || Error::TooLarge {
            path: path.to_owned(),
            what: "response body",
            limit: limits.max_body,
        };
        let announced = res
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if success && announced.is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        let body = read_capped(res.into_body(), cap)
            .await
            .map_err(|e| transport_error(method, path, &e))?;
        if success && body.truncated {
            return Err(too_large());
        }
        Ok(body)
    }

    /// Sends a request and returns the response whatever its status (no error decoding).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<RawResponse> {
        let timeout = self.timeout_for(&method, path);
        self.exchange(method, path, body, timeout).await
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
        let timeout = self.timeout_for(&method, path);
        let raw = self.exchange(method, path, body, timeout).await?;
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
    /// Events decoded as `T`. The request timeout (if any) covers only the response
    /// head; after it, the stream idle timeout bounds each silence.
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
        self.open_stream(Method::POST, path, Some(bytes)).await
    }

    /// `GET path`; the answer's Server-Sent Events decoded as `T` (comment lines, such
    /// as pings, are skipped). Timeouts as for [`Client::stream`].
    pub async fn stream_get<T: DeserializeOwned>(&self, path: &str) -> Result<EventStream<T>> {
        self.open_stream(Method::GET, path, None).await
    }

    async fn open_stream<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<EventStream<T>> {
        let fut = self.send(&method, path, body, EVENT_STREAM);
        // The connection was asked to close after this response, so its sender is
        // dropped at once and the connection lives only as long as the body.
        let (res, _) = match self.timeout {
            None => fut.await?,
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::Timeout {
                    method: method.to_string(),
                    path: path.to_owned(),
                    timeout: t,
                })??,
        };
        if !res.status().is_success() {
            let status = res.status();
            let body = self.read_body(&method, path, res).await?;
            return Err(api_error(
                path,
                status.as_u16(),
                &body.bytes,
                body.truncated,
            ));
        }
        Ok(EventStream::new(path, res.into_body(), &self.inner.limits))
    }
}

/// Whether the connection may carry another request after this response (the proxy asks
/// the same of its upstream answers).
pub(crate) fn keeps_alive<B>(res: &Response<B>) -> bool {
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
