//! A small loopback HTTP server (TCP or Unix socket) that behaves like the parts of
//! llama-server the client tests need, plus helpers shared by the tests.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};
#[cfg(unix)]
use std::{path::Path, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::{Request, Response, body::Frame, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use lmcpp_server::Endpoint;
#[cfg(unix)]
pub(crate) use lmcpp_test_support::{eventually, running};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{Barrier, mpsc},
};

/// Size of the `/big` body.
pub(crate) const BIG: usize = 8 * 1024 * 1024;

/// How many requests `/barrier` waits for at once.
pub(crate) const BARRIER: usize = 16;

type Body = BoxBody<Bytes, Infallible>;

/// Observations the tests make about the server side.
pub(crate) struct Stats {
    /// Connections accepted so far.
    pub(crate) connections: AtomicUsize,
    /// Receives a message when a client drops a held stream.
    pub(crate) stream_closed: tokio::sync::Mutex<mpsc::Receiver<()>>,
    closed_tx: mpsc::Sender<()>,
    barrier: Barrier,
    /// The last `Authorization` header seen.
    pub(crate) last_auth: std::sync::Mutex<Option<String>>,
}

/// A running mock server.
pub(crate) struct Mock {
    pub(crate) endpoint: Endpoint,
    pub(crate) stats: Arc<Stats>,
    _dir: Option<tempfile::TempDir>,
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(body.into()).boxed())
        .expect("static response parts")
}

/// Sends `pieces` as the body, one frame each; the sender task keeps the body open
/// (`hold`) until the client goes away, then reports that.
fn streamed(pieces: Vec<&'static str>, hold: bool, stats: Arc<Stats>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for p in pieces {
            if tx.send(Bytes::from_static(p.as_bytes())).await.is_err() {
                return;
            }
        }
        if hold {
            tx.closed().await;
            let _ = stats.closed_tx.send(()).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(stream).boxed())
        .expect("static response parts")
}

async fn handle(req: Request<Incoming>, stats: Arc<Stats>) -> Result<Response<Body>, Infallible> {
    *stats.last_auth.lock().expect("not poisoned") = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(match path.as_str() {
        "/health" => full(200, r#"{"status":"ok"}"#),
        "/err" => full(
            400,
            r#"{"error":{"code":400,"message":"bad things","type":"invalid_request_error","n_ctx":8}}"#,
        ),
        "/plain-err" => full(502, "upstream down"),
        "/big" => {
            let mut s = String::with_capacity(BIG + 2);
            s.push('"');
            s.extend(std::iter::repeat_n('x', BIG));
            s.push('"');
            full(200, s)
        }
        "/echo" => full(200, body),
        "/barrier" => {
            stats.barrier.wait().await;
            full(200, "true")
        }
        "/sse" => streamed(
            vec![
                ": ping\r\n\r\n",
                "data: {\"content\":\"a\"",
                "}\r\n\r\ndata: {\"content\":",
                "\"b\"}\r\n\r\n:\n\nda",
                "ta: {\"content\":\"c\"}\n\ndata: [DONE]\n\n",
                "data: {\"content\":\"after done\"}\n\n",
            ],
            false,
            stats,
        ),
        "/sse-error" => streamed(
            vec![
                "data: {\"content\":\"a\"}\n\n",
                "data: {\"error\":{\"code\":500,\"message\":\"slot died\",\"type\":\"server_error\"}}\n\n",
            ],
            false,
            stats,
        ),
        "/sse-hold" => streamed(vec!["data: {\"content\":\"a\"}\n\n"], true, stats),
        _ => full(
            404,
            r#"{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}"#,
        ),
    })
}

fn serve<IO>(io: IO, stats: Arc<Stats>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    stats.connections.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        let service = service_fn(move |req| handle(req, Arc::clone(&stats)));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .await;
    });
}

fn stats() -> Arc<Stats> {
    let (closed_tx, closed_rx) = mpsc::channel(4);
    Arc::new(Stats {
        connections: AtomicUsize::new(0),
        stream_closed: tokio::sync::Mutex::new(closed_rx),
        closed_tx,
        barrier: Barrier::new(BARRIER),
        last_auth: std::sync::Mutex::new(None),
    })
}

/// Starts the mock on 127.0.0.1 and a free port.
pub(crate) async fn tcp() -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let stats = stats();
    let s = Arc::clone(&stats);
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            serve(io, Arc::clone(&s));
        }
    });
    Mock {
        endpoint: Endpoint::http("127.0.0.1", port),
        stats,
        _dir: None,
    }
}

/// Starts the mock on a Unix socket in a fresh temp dir.
#[cfg(unix)]
pub(crate) async fn unix() -> Mock {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mock.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind socket");
    let stats = stats();
    let s = Arc::clone(&stats);
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            serve(io, Arc::clone(&s));
        }
    });
    Mock {
        endpoint: Endpoint::unix(path),
        stats,
        _dir: Some(dir),
    }
}

/// Every transport of the platform (TCP, and Unix sockets where they exist), for tests
/// that must hold for each.
pub(crate) async fn both() -> Vec<Mock> {
    #[cfg(unix)]
    return vec![tcp().await, unix().await];
    #[cfg(not(unix))]
    return vec![tcp().await];
}

/// Writes an executable shell script.
#[cfg(unix)]
pub(crate) fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Launch options for `binary` with a fake model and a private runtime dir under `dir`.
#[cfg(unix)]
pub(crate) fn launch_options(
    dir: &Path,
    binary: std::path::PathBuf,
) -> lmcpp_server::LaunchOptions {
    let mut opts = lmcpp_server::LaunchOptions::new(binary, fake_gguf(dir));
    opts.runtime_dir = Some(dir.join("run"));
    opts.socket_fallback_dir = Some(dir.join("s"));
    opts.stop_grace = Duration::from_secs(2);
    opts
}

/// Writes a file that passes the GGUF magic check.
#[cfg(unix)]
pub(crate) fn fake_gguf(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("model.gguf");
    std::fs::write(&path, b"GGUF\x03\0\0\0").expect("write model");
    path
}
