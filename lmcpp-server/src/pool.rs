//! A lean HTTP/1 connection pool for one server: idle senders on a stack, new
//! connections on demand, each driven by its own task.
//!
//! The general-purpose pooled client of hyper-util keys its pool by scheme and
//! authority, spawns a task per request to return the connection, and needs an absolute
//! URI per request (for Unix sockets a hex-encoded one). Talking to exactly one server,
//! none of that is needed, and its CPU cost showed in the throughput benchmark.

use std::{
    io,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::{
    body::Incoming,
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use hyperlocal::UnixConnector;
use tower_service::Service as _;

use crate::endpoint::Endpoint;

/// The request body type of every connection.
pub(crate) type Body = Full<Bytes>;

/// llama-server (cpp-httplib) closes idle keep-alive connections after 5 s; dropping
/// ours earlier avoids sending a request into a connection the server is closing.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// How to open a connection.
enum Connector {
    Tcp {
        host: String,
        port: u16,
    },
    /// hyperlocal's connector takes the socket path hex-encoded in a URI; it is built
    /// once here, so the encoding costs nothing per request.
    Unix {
        uri: hyper::Uri,
    },
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// A sender taken from the pool or freshly connected.
pub(crate) struct Checkout {
    pub(crate) sender: SendRequest<Body>,
    /// It served a request before, so the server may have closed it meanwhile.
    pub(crate) reused: bool,
}

/// Why a request could not be sent.
#[derive(Debug)]
pub(crate) enum SendError {
    Connect(io::Error),
    /// No connection within the connect timeout.
    ConnectTimeout(Duration),
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::ConnectTimeout(t) => write!(f, "no connection within {t:?}"),
            Self::Http(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => e.source(),
            Self::ConnectTimeout(_) => None,
            Self::Http(e) => std::error::Error::source(e),
        }
    }
}

/// Connections to one server.
pub(crate) struct Pool {
    connector: Connector,
    connect_timeout: Duration,
    /// The `Host` header of every request.
    host: HeaderValue,
    /// Most recently returned last, so the top is the warmest and the bottom the oldest.
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    pub(crate) fn new(endpoint: &Endpoint, connect_timeout: Duration) -> Self {
        let (connector, host) = match endpoint {
            Endpoint::Unix { socket } => (
                Connector::Unix {
                    uri: hyperlocal::Uri::new(socket, "/").into(),
                },
                HeaderValue::from_static("localhost"),
            ),
            Endpoint::Http { host, port } => {
                let authority = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                (
                    Connector::Tcp {
                        host: host.clone(),
                        port: *port,
                    },
                    HeaderValue::from_str(&authority)
                        .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                )
            }
        };
        Self {
            connector,
            connect_timeout,
            host,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The `Host` header value for requests to this server.
    pub(crate) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Sends `req` on a pooled or new connection. A reused connection that turns out to
    /// be closed before the request went out is replaced, and the request sent again.
    ///
    /// The sender comes back with the response; give it to [`Pool::put`] once the body
    /// has been read completely, or drop it to close the connection after the response.
    pub(crate) async fn send(
        &self,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, SendRequest<Body>), SendError> {
        let mut fresh_only = false;
        loop {
            let Checkout { mut sender, reused } = self.checkout(fresh_only).await?;
            match sender.try_send_request(req).await {
                Ok(res) => return Ok((res, sender)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        tracing::debug!(error = %e.error(), "pooled connection was closed; retrying");
                        req = unsent;
                        fresh_only = true;
                    }
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }

    /// A ready sender: the warmest idle one that is still open, else a new connection.
    async fn checkout(&self, fresh_only: bool) -> Result<Checkout, SendError> {
        if !fresh_only && let Some(sender) = self.take_idle().await {
            return Ok(Checkout {
                sender,
                reused: true,
            });
        }
        Ok(Checkout {
            sender: self.connect().await?,
            reused: false,
        })
    }

    /// The warmest idle sender that is still open, discarding closed and stale ones.
    async fn take_idle(&self) -> Option<SendRequest<Body>> {
        loop {
            let Idle { mut sender, since } = self.pop()?;
            if since.elapsed() > POOL_IDLE_TIMEOUT {
                // Everything below it is older still, unless it was returned meanwhile.
                self.lock()
                    .retain(|idle| idle.since.elapsed() <= POOL_IDLE_TIMEOUT);
                return None;
            }
            if sender.is_closed() {
                continue;
            }
            // The connection task marks the sender ready once it has finished the
            // previous exchange, which it may not have done yet.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Returns a sender whose last response has been read completely.
    pub(crate) fn put(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        self.lock().push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    fn pop(&self) -> Option<Idle> {
        self.lock().pop()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The vector stays consistent whatever panicked while holding the lock.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| SendError::ConnectTimeout(self.connect_timeout))?
    }

    async fn open(&self) -> Result<SendRequest<Body>, SendError> {
        match &self.connector {
            Connector::Tcp { host, port } => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(SendError::Connect)?;
                stream.set_nodelay(true).map_err(SendError::Connect)?;
                handshake(TokioIo::new(stream)).await
            }
            Connector::Unix { uri } => {
                let stream = UnixConnector
                    .call(uri.clone())
                    .await
                    .map_err(SendError::Connect)?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Body>, SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await.map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection to llama-server ended with an error");
        }
    });
    Ok(sender)
}
