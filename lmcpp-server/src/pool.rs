//! A lean HTTP/1 connection pool for one server: idle senders on a stack, new
//! connections on demand, each driven by its own task.
//!
//! The general-purpose pooled client of hyper-util keys its pool by scheme and
//! authority, spawns a task per request to return the connection, and needs an absolute
//! URI per request (for Unix sockets a hex-encoded one). Talking to exactly one server,
//! none of that is needed, and its CPU cost showed in the throughput benchmark.
//!
//! A pool may be capped: older llama-server versions serve HTTP with a fixed number of
//! threads, each kept by one keep-alive connection until it has been idle for 5 s, so a
//! burst of more requests than threads opened more connections than the server could
//! take, and the extra ones waited in its accept backlog while this pool kept the idle
//! ones (16 requests: 10-20 s instead of 0.2 s). With a cap, a request at the cap waits,
//! first come first served, for a connection to come back to the pool or to close. Each
//! connection holds one slot of the cap from before it is opened until its task ends (it
//! was dropped after its response, or the server closed it), so returning it idle keeps
//! the slot and handing it to a waiter moves it with the connection.

use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Mutex, PoisonError},
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::endpoint::Endpoint;

/// How long a request waits at the cap before it opens a connection beyond it:
/// cpp-httplib's keep-alive idle timeout, after which a thread held by an idle
/// connection would have been freed anyway.
const CAP_WAIT: Duration = Duration::from_secs(5);

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
    #[cfg(unix)]
    Unix {
        uri: hyper::Uri,
    },
    /// A Unix socket endpoint where tokio has no Unix sockets (Windows): every connect
    /// fails, saying so.
    #[cfg(not(unix))]
    Unsupported {
        socket: std::path::PathBuf,
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

/// The idle connections and, in a capped pool, the requests waiting for one.
#[derive(Default)]
struct Shared {
    /// Most recently returned last, so the top is the warmest and the bottom the oldest.
    idle: Vec<Idle>,
    /// Requests waiting at the cap, first come first; a returned connection goes to the
    /// first one still waiting instead of to `idle`.
    waiters: VecDeque<oneshot::Sender<Idle>>,
}

/// What a request waiting at the cap got.
enum Waited {
    /// A connection returned to the pool.
    Idle(Idle),
    /// A free slot, to open a connection with.
    Slot(Option<OwnedSemaphorePermit>),
}

/// Connections to one server.
pub(crate) struct Pool {
    connector: Connector,
    connect_timeout: Duration,
    /// The `Host` header of every request.
    host: HeaderValue,
    shared: Mutex<Shared>,
    /// The cap: one permit per open connection, held by the connection's task.
    slots: Option<Arc<Semaphore>>,
    /// How long a request waits at the cap ([`CAP_WAIT`]).
    cap_wait: Duration,
}

impl Pool {
    /// A pool for `endpoint` holding at most `max_connections` connections (checked out
    /// and idle; at least one), or any number for `None`.
    pub(crate) fn new(
        endpoint: &Endpoint,
        connect_timeout: Duration,
        max_connections: Option<usize>,
    ) -> Self {
        let (connector, host) = match endpoint {
            #[cfg(unix)]
            Endpoint::Unix { socket } => (
                Connector::Unix {
                    uri: hyperlocal::Uri::new(socket, "/").into(),
                },
                HeaderValue::from_static("localhost"),
            ),
            #[cfg(not(unix))]
            Endpoint::Unix { socket } => (
                Connector::Unsupported {
                    socket: socket.clone(),
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
            shared: Mutex::new(Shared::default()),
            slots: max_connections.map(|n| Arc::new(Semaphore::new(n.max(1)))),
            cap_wait: CAP_WAIT,
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

    /// A ready sender: the warmest idle one that is still open, else a new connection;
    /// at the cap, the first connection returned or the first slot freed.
    async fn checkout(&self, fresh_only: bool) -> Result<Checkout, SendError> {
        if !fresh_only && let Some(sender) = self.take_idle().await {
            return Ok(Checkout {
                sender,
                reused: true,
            });
        }
        let Some(slots) = &self.slots else {
            return Ok(Checkout {
                sender: self.connect(None).await?,
                reused: false,
            });
        };
        loop {
            let permit = match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => match self.wait(slots).await {
                    Waited::Slot(permit) => permit,
                    Waited::Idle(idle) => match usable(idle).await {
                        Some(sender) => {
                            return Ok(Checkout {
                                sender,
                                reused: true,
                            });
                        }
                        // Its slot is freed once its task has ended, which wakes a waiter.
                        None => continue,
                    },
                },
            };
            return Ok(Checkout {
                sender: self.connect(permit).await?,
                reused: false,
            });
        }
    }

    /// Waits at the cap for whichever comes first: a connection returned to the pool, or
    /// a slot freed by a connection that closed. Dropping the future gives up its place.
    async fn wait(&self, slots: &Arc<Semaphore>) -> Waited {
        let (tx, mut rx) = oneshot::channel();
        {
            // Checked under the lock [`Pool::put`] takes, so a connection returned after
            // the failed `try_acquire` is either here or handed to this waiter.
            let mut shared = self.lock();
            if let Some(idle) = shared.idle.pop() {
                return Waited::Idle(idle);
            }
            // Waiters that gave up are removed here too, so none accumulate while no
            // connection comes back.
            shared.waiters.retain(|w| !w.is_closed());
            shared.waiters.push_back(tx);
        }
        let permit = tokio::select! {
            biased;
            idle = &mut rx => match idle {
                Ok(idle) => return Waited::Idle(idle),
                // Only the pool holds the sender, and it sends or drops it only by
                // taking it from the queue; wait for a slot all the same.
                Err(_) => tokio::time::timeout(self.cap_wait, Arc::clone(slots).acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok),
            },
            permit = Arc::clone(slots).acquire_owned() => permit.ok(),
            // Past the wait, a connection beyond the cap: at worst it waits in the server's
            // backlog as it would without a cap, where waiting here for ever would hang a
            // caller that holds every connection itself (a request made inside the loop of
            // as many open streams as the cap).
            () = tokio::time::sleep(self.cap_wait) => None,
        };
        // A connection may have been handed over at the same moment: take it rather than
        // let it close unused, and give the slot to the next waiter.
        rx.close();
        if let Ok(idle) = rx.try_recv() {
            return Waited::Idle(idle);
        }
        // `None`: past the wait (the semaphore is never closed), a connection that no
        // slot counts.
        Waited::Slot(permit)
    }

    /// The warmest idle sender that is still open, discarding closed and stale ones.
    async fn take_idle(&self) -> Option<SendRequest<Body>> {
        loop {
            let idle = self.pop()?;
            if idle.since.elapsed() > POOL_IDLE_TIMEOUT {
                // Everything below it is older still, unless it was returned meanwhile.
                self.lock()
                    .idle
                    .retain(|idle| idle.since.elapsed() <= POOL_IDLE_TIMEOUT);
                return None;
            }
            if let Some(sender) = usable(idle).await {
                return Some(sender);
            }
        }
    }

    /// Returns a sender whose last response has been read completely: to the first
    /// request waiting at the cap, else to the idle stack.
    pub(crate) fn put(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = Idle {
            sender,
            since: Instant::now(),
        };
        let mut shared = self.lock();
        while let Some(waiter) = shared.waiters.pop_front() {
            match waiter.send(idle) {
                Ok(()) => return,
                // That one gave up waiting.
                Err(back) => idle = back,
            }
        }
        shared.idle.push(idle);
    }

    fn pop(&self) -> Option<Idle> {
        self.lock().idle.pop()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // The state stays consistent whatever panicked while holding the lock.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a connection in the background and pools it, for a request expected soon;
    /// not at the cap, where it would only take a slot from a request.
    pub(crate) async fn spare(&self) {
        let permit = match &self.slots {
            None => None,
            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return,
            },
        };
        if let Ok(sender) = self.connect(permit).await {
            self.put(sender);
        }
    }

    /// Opens a connection holding `slot`, which is freed when the connection ends.
    async fn connect(
        &self,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<SendRequest<Body>, SendError> {
        tokio::time::timeout(self.connect_timeout, self.open(slot))
            .await
            .map_err(|_| SendError::ConnectTimeout(self.connect_timeout))?
    }

    async fn open(
        &self,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<SendRequest<Body>, SendError> {
        match &self.connector {
            Connector::Tcp { host, port } => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(SendError::Connect)?;
                stream.set_nodelay(true).map_err(SendError::Connect)?;
                handshake(TokioIo::new(stream), slot).await
            }
            #[cfg(unix)]
            Connector::Unix { uri } => {
                use tower_service::Service as _;
                let stream = hyperlocal::UnixConnector
                    .call(uri.clone())
                    .await
                    .map_err(SendError::Connect)?;
                handshake(stream, slot).await
            }
            #[cfg(not(unix))]
            Connector::Unsupported { socket } => Err(SendError::Connect(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!(
                    "{} is a Unix socket, which this platform cannot connect to; use HTTP",
                    socket.display()
                ),
            ))),
        }
    }

    /// How many requests wait at the cap (some may have given up).
    #[cfg(all(test, unix))]
    fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }

    /// How many more connections the cap allows now; `None` without a cap.
    #[cfg(test)]
    pub(crate) fn free_slots(&self) -> Option<usize> {
        self.slots.as_ref().map(|s| s.available_permits())
    }
}

/// The sender of an idle connection if it is fresh and still open, once it is ready.
async fn usable(idle: Idle) -> Option<SendRequest<Body>> {
    let Idle { mut sender, since } = idle;
    if since.elapsed() > POOL_IDLE_TIMEOUT || sender.is_closed() {
        return None;
    }
    // The connection task marks the sender ready once it has finished the previous
    // exchange, which it may not have done yet.
    sender.ready().await.ok().map(|()| sender)
}

/// The HTTP/1 handshake, and the task that drives the connection and holds its `slot`
/// until the connection ends.
async fn handshake<T>(
    io: T,
    slot: Option<OwnedSemaphorePermit>,
) -> Result<SendRequest<Body>, SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await.map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection to llama-server ended with an error");
        }
        drop(slot);
    });
    Ok(sender)
}

// The fake servers of these tests listen on Unix sockets.
#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        path::PathBuf,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use futures_util::future::join_all;
    use http_body_util::BodyExt as _;
    use lmcpp_test_support::eventually;
    use proptest::prelude::*;
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::{UnixListener, UnixStream},
        sync::watch,
    };

    use super::*;

    /// How long the fake keeps an idle keep-alive connection (and its thread), as
    /// cpp-httplib does.
    const HOLD: Duration = Duration::from_secs(5);

    /// Well under [`HOLD`]: a burst that had to wait for an idle connection to time out
    /// cannot finish within it, while one that did not takes milliseconds.
    const BUDGET: Duration = Duration::from_millis(2500);

    /// An HTTP/1 server on a Unix socket that, like the fixed thread pool of older
    /// llama-server versions, serves `threads` connections at a time (the others wait in
    /// the accept backlog) and keeps each until it has been idle for [`HOLD`]. `/close`
    /// answers and closes; `/hang` sends a head announcing a body it never sends.
    struct Fake {
        socket: PathBuf,
        accepted: Arc<AtomicUsize>,
        /// Bumped to close every connection opened before, once it is idle.
        close: watch::Sender<u64>,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl Fake {
        fn start(threads: usize) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("fake.sock");
            let listener = UnixListener::bind(&socket).unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let (close, closed) = watch::channel(0);
            let count = Arc::clone(&accepted);
            let task = tokio::spawn(async move {
                let threads = Arc::new(Semaphore::new(threads));
                loop {
                    let thread = Arc::clone(&threads).acquire_owned().await.unwrap();
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let closed = closed.clone();
                    tokio::spawn(async move {
                        serve(stream, closed).await;
                        drop(thread);
                    });
                }
            });
            Self {
                socket,
                accepted,
                close,
                task,
                _dir: dir,
            }
        }

        fn pool(&self, max_connections: Option<usize>) -> Arc<Pool> {
            Arc::new(Pool::new(
                &Endpoint::unix(&self.socket),
                Duration::from_secs(10),
                max_connections,
            ))
        }

        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        /// Closes the connections it holds now, as a keep-alive timeout would.
        fn close_idle(&self) {
            self.close.send_modify(|n| *n += 1);
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// One connection of the fake: requests without bodies, answered in turn.
    async fn serve(mut stream: UnixStream, mut closed: watch::Receiver<u64>) {
        closed.borrow_and_update();
        let mut buf = Vec::new();
        loop {
            let end = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                let mut chunk = [0u8; 1024];
                let n = tokio::select! {
                    read = tokio::time::timeout(HOLD, stream.read(&mut chunk)) => match read {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => return,
                    },
                    _ = closed.changed() => return,
                };
                buf.extend_from_slice(&chunk[..n]);
            };
            let head: Vec<u8> = buf.drain(..end).collect();
            let path = String::from_utf8_lossy(&head)
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .to_owned();
            let answer: &[u8] = match path.as_str() {
                "/close" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                "/hang" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            };
            if stream.write_all(answer).await.is_err() || path == "/close" {
                return;
            }
            if path == "/hang" {
                // Until the client goes away.
                let _ = tokio::time::timeout(HOLD, stream.read(&mut [0u8; 1])).await;
                return;
            }
        }
    }

    async fn send(pool: &Pool, path: &str) -> (Response<Incoming>, SendRequest<Body>) {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = hyper::Uri::try_from(path).unwrap();
        req.headers_mut()
            .insert(http::header::HOST, pool.host().clone());
        pool.send(req).await.unwrap()
    }

    /// A whole exchange; the connection goes back to the pool.
    async fn fetch(pool: &Pool, path: &str) {
        let (res, sender) = send(pool, path).await;
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        pool.put(sender);
    }

    async fn burst(pool: &Arc<Pool>, n: usize) -> Result<(), tokio::time::error::Elapsed> {
        let requests = (0..n).map(|_| {
            let pool = Arc::clone(pool);
            tokio::spawn(async move { fetch(&pool, "/").await })
        });
        let all = tokio::time::timeout(BUDGET, join_all(requests)).await?;
        for r in all {
            r.unwrap();
        }
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_through_a_capped_pool_uses_the_servers_threads_promptly() {
        let fake = Fake::start(2);
        let pool = fake.pool(Some(2));
        burst(&pool, 16)
            .await
            .expect("16 requests through 2 connections finish well under the idle hold");
        assert!(fake.accepted() <= 2, "{} connections", fake.accepted());
        // Again, on the pooled connections.
        burst(&pool, 16).await.unwrap();
        assert!(fake.accepted() <= 2, "{} connections", fake.accepted());
    }

    /// The defect the cap is for, shown on the same fake: uncapped, the burst opens more
    /// connections than the server serves, and the extra ones wait for an idle one to
    /// time out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_through_an_uncapped_pool_waits_for_the_idle_hold() {
        let fake = Fake::start(2);
        let pool = fake.pool(None);
        assert!(burst(&pool, 16).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_the_server_closes_frees_its_slot() {
        let fake = Fake::start(1);
        let pool = fake.pool(Some(1));
        let (res, held) = send(&pool, "/").await;
        res.into_body().collect().await.unwrap();
        let waiter = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { fetch(&pool, "/").await }
        });
        assert!(eventually(BUDGET, || pool.waiting() == 1).await);
        assert!(!waiter.is_finished());
        fake.close_idle();
        tokio::time::timeout(BUDGET, waiter)
            .await
            .expect("the waiter gets the freed slot")
            .unwrap();
        assert!(held.is_closed());
        assert_eq!(fake.accepted(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_request_frees_its_slot() {
        let fake = Fake::start(1);
        let pool = fake.pool(Some(1));
        // The head came, the body did not: dropping both closes the connection.
        let (res, sender) = send(&pool, "/hang").await;
        let waiter = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { fetch(&pool, "/").await }
        });
        assert!(eventually(BUDGET, || pool.waiting() == 1).await);
        assert!(!waiter.is_finished());
        drop((res, sender));
        tokio::time::timeout(BUDGET, waiter)
            .await
            .expect("the waiter gets the freed slot")
            .unwrap();
    }

    /// A caller that holds every connection of the pool and makes one more request (a
    /// request inside a stream's loop) is not left waiting for ever: past the wait at
    /// the cap, it opens a connection beyond it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_at_the_cap_connects_beyond_it_after_the_wait() {
        let fake = Fake::start(2);
        let mut pool = Pool::new(
            &Endpoint::unix(&fake.socket),
            Duration::from_secs(10),
            Some(1),
        );
        pool.cap_wait = Duration::from_millis(300);
        let pool = Arc::new(pool);
        let (res, held) = send(&pool, "/hang").await;
        let started = std::time::Instant::now();
        tokio::time::timeout(BUDGET, fetch(&pool, "/"))
            .await
            .expect("the second request is served past the wait at the cap");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(fake.accepted(), 2);
        drop((res, held));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_returned_connection_goes_to_the_first_waiter() {
        let fake = Fake::start(1);
        let pool = fake.pool(Some(1));
        let (res, sender) = send(&pool, "/").await;
        res.into_body().collect().await.unwrap();
        let waiter = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { fetch(&pool, "/").await }
        });
        assert!(eventually(BUDGET, || pool.waiting() == 1).await);
        pool.put(sender);
        tokio::time::timeout(BUDGET, waiter)
            .await
            .expect("the waiter gets the returned connection")
            .unwrap();
        assert_eq!(fake.accepted(), 1);
    }

    /// What one request does with its connection.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        /// Reads the answer and returns the connection.
        Return,
        /// Reads the answer and drops the connection.
        Drop,
        /// Drops the connection with its answer's body unread.
        Abandon,
        /// The server closes the connection after the answer; it is returned anyway.
        ServerCloses,
        /// Gives up while it may still be waiting.
        GiveUp,
    }

    fn op() -> impl Strategy<Value = (Op, u8)> {
        let op = prop_oneof![
            Just(Op::Return),
            Just(Op::Drop),
            Just(Op::Abandon),
            Just(Op::ServerCloses),
            Just(Op::GiveUp),
        ];
        (op, 0u8..4)
    }

    async fn yields(n: u8) {
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
    }

    async fn run(pool: Arc<Pool>, op: Op, n: u8) {
        yields(n).await;
        match op {
            Op::Return => fetch(&pool, "/").await,
            Op::Drop => {
                let (res, sender) = send(&pool, "/").await;
                yields(n).await;
                res.into_body().collect().await.unwrap();
                drop(sender);
            }
            Op::Abandon => {
                let (res, sender) = send(&pool, "/hang").await;
                yields(n).await;
                drop((res, sender));
            }
            Op::ServerCloses => fetch(&pool, "/close").await,
            Op::GiveUp => {
                let _ =
                    tokio::time::timeout(Duration::from_millis(u64::from(n)), fetch(&pool, "/"))
                        .await;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// However requests return, drop, abandon or give up on their connections, and
        /// however the server closes them, no request is left waiting: the server serves
        /// exactly as many connections as the cap, so a slot not freed or a waiter not
        /// woken would hold a request for the idle hold, past the budget.
        #[test]
        fn no_interleaving_leaves_a_request_waiting(
            cap in 1usize..=3,
            ops in proptest::collection::vec(op(), 1..14),
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let fake = Fake::start(cap);
                let pool = fake.pool(Some(cap));
                let tasks = ops
                    .iter()
                    .map(|&(op, n)| tokio::spawn(run(Arc::clone(&pool), op, n)));
                let all = tokio::time::timeout(BUDGET, join_all(tasks))
                    .await
                    .unwrap_or_else(|_| panic!("a request still waits: cap {cap}, {ops:?}"));
                for r in all {
                    r.unwrap();
                }
                // Every slot is still there.
                burst(&pool, 2 * cap).await.unwrap_or_else(|_| panic!("a slot leaked: {ops:?}"));
            });
        }
    }
}
