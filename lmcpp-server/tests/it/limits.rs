//! Client limits against hostile or stuck servers: a loopback TCP server written here that
//! accepts and never answers, answers and then sends nothing, or sends without end. Each
//! case must end in its typed error, quickly; the tokio timeouts around the calls are
//! only a safety net so that a regression fails instead of hanging the test run.

#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use futures_util::StreamExt;
use lmcpp_server::{Client, ClientLimits, Endpoint, Error};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Far longer than any limit below: reaching it means the client hung.
const SAFETY_NET: Duration = Duration::from_secs(20);

/// What the server does with each connection once it has read the request head.
#[derive(Clone)]
enum Behaviour {
    /// Reads the request and answers nothing.
    Silent,
    /// Sends `head` and then nothing, keeping the connection open.
    HeadThenSilence(&'static str),
    /// Sends `head`, then `piece` again and again until the client goes away.
    Endless(&'static str, &'static [u8]),
}

/// A response head whose body lasts until the connection closes.
const OK_UNTIL_CLOSE: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
const SSE_UNTIL_CLOSE: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
const ERROR_UNTIL_CLOSE: &str =
    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
const HUGE_ANNOUNCED: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n";

/// Starts the server on 127.0.0.1 and returns where it listens.
async fn hostile(behaviour: Behaviour) -> Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                match behaviour {
                    Behaviour::Silent => std::future::pending::<()>().await,
                    Behaviour::HeadThenSilence(h) => {
                        let _ = conn.write_all(h.as_bytes()).await;
                        std::future::pending::<()>().await;
                    }
                    Behaviour::Endless(h, piece) => {
                        let _ = conn.write_all(h.as_bytes()).await;
                        while conn.write_all(piece).await.is_ok() {}
                    }
                }
            });
        }
    });
    Endpoint::http("127.0.0.1", port)
}

fn limits() -> ClientLimits {
    let mut limits = ClientLimits::default();
    limits.connect_timeout = Duration::from_millis(300);
    limits.quick_timeout = Duration::from_millis(300);
    limits.stream_idle_timeout = Some(Duration::from_millis(300));
    limits.max_body = 1024 * 1024;
    limits.max_event = 64 * 1024;
    limits
}

fn client(endpoint: Endpoint) -> Client {
    Client::builder(endpoint)
        .limits(limits())
        .timeout(Some(Duration::from_millis(500)))
        .build()
}

async fn net<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(SAFETY_NET, fut)
        .await
        .expect("the client hung")
}

#[tokio::test]
async fn defaults_bound_every_wait_and_buffer() {
    let client = Client::new(Endpoint::http("127.0.0.1", 1));
    assert_eq!(
        client.timeout(),
        Some(lmcpp_server::DEFAULT_REQUEST_TIMEOUT)
    );
    let limits = client.limits();
    assert_eq!(limits, &ClientLimits::default());
    assert!(limits.connect_timeout <= Duration::from_secs(30));
    assert!(limits.stream_idle_timeout.is_some());
    assert!(limits.max_body <= 1024 * 1024 * 1024);
    assert!(limits.max_error_body <= 1024 * 1024);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let client = client(hostile(Behaviour::Silent).await);
    // A request that never generates gets the quick timeout...
    match net(client.props()).await {
        Err(Error::Timeout { path, timeout, .. }) => {
            assert_eq!(
                (path.as_str(), timeout),
                ("/props", Duration::from_millis(300))
            );
        }
        other => panic!("{other:?}"),
    }
    // ...generation the request timeout, and a stream's head the same.
    match net(client.post::<_, Value>("/completion", &serde_json::json!({}))).await {
        Err(Error::Timeout { timeout, .. }) => assert_eq!(timeout, Duration::from_millis(500)),
        other => panic!("{other:?}"),
    }
    match net(client.stream::<_, Value>("/completion", &serde_json::json!({}))).await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stream_that_sends_nothing_stalls() {
    let client = client(hostile(Behaviour::HeadThenSilence(SSE_UNTIL_CLOSE)).await);
    let mut stream = net(client.stream::<_, Value>("/completion", &serde_json::json!({})))
        .await
        .unwrap();
    match net(stream.next()).await {
        Some(Err(Error::StreamStalled { path, timeout })) => {
            assert_eq!(path, "/completion");
            assert_eq!(timeout, Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
    assert!(net(stream.next()).await.is_none(), "the stream goes on");
}

#[tokio::test]
async fn a_line_that_never_ends_is_cut_at_the_event_cap() {
    for piece in [&b"data: xxxxxxxxxxxxxxxx"[..], &b"data: x\n"[..]] {
        let leaked: &'static [u8] = Box::leak(piece.repeat(512).into_boxed_slice());
        let client = client(hostile(Behaviour::Endless(SSE_UNTIL_CLOSE, leaked)).await);
        let mut stream = net(client.stream::<_, Value>("/completion", &serde_json::json!({})))
            .await
            .unwrap();
        match net(stream.next()).await {
            Some(Err(Error::TooLarge { what, limit, .. })) => {
                assert_eq!((what, limit), ("event", 64 * 1024));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn pings_keep_a_stream_alive_and_are_not_buffered() {
    // Ping comments arrive all the time: the stream neither stalls (idle timeout 300 ms)
    // nor hits the event cap (64 KiB, far less than the pings sent meanwhile).
    let pings: &'static [u8] = Box::leak(b": ping\n\n".repeat(512).into_boxed_slice());
    let client = client(hostile(Behaviour::Endless(SSE_UNTIL_CLOSE, pings)).await);
    let mut stream = net(client.stream::<_, Value>("/completion", &serde_json::json!({})))
        .await
        .unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
    assert!(quiet.is_err(), "{quiet:?}");
}

#[tokio::test]
async fn huge_bodies_are_refused_not_buffered() {
    let announced = client(hostile(Behaviour::HeadThenSilence(HUGE_ANNOUNCED)).await);
    match net(announced.post::<_, Value>("/completion", &serde_json::json!({}))).await {
        Err(Error::TooLarge { what, limit, .. }) => {
            assert_eq!((what, limit), ("response body", 1024 * 1024));
        }
        other => panic!("{other:?}"),
    }
    let endless = client(hostile(Behaviour::Endless(OK_UNTIL_CLOSE, &[b'x'; 4096])).await);
    match net(endless.post::<_, Value>("/completion", &serde_json::json!({}))).await {
        Err(Error::TooLarge { what, .. }) => assert_eq!(what, "response body"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn huge_error_bodies_are_cut_with_a_note() {
    let client = client(hostile(Behaviour::Endless(ERROR_UNTIL_CLOSE, &[b'e'; 4096])).await);
    for result in [
        net(client.post::<_, Value>("/completion", &serde_json::json!({})))
            .await
            .map(drop),
        net(client.stream::<_, Value>("/completion", &serde_json::json!({})))
            .await
            .map(drop),
    ] {
        match result {
            Err(Error::Api { status, error, .. }) => {
                assert_eq!(status, 500);
                assert!(error.message.len() < 5 * 1024, "{}", error.message.len());
                assert!(error.message.starts_with("eeee"));
                assert!(error.message.contains("did not read"), "{}", error.message);
            }
            other => panic!("{other:?}"),
        }
    }
    let raw = net(client.raw(http::Method::GET, "/x", None))
        .await
        .unwrap();
    assert!(raw.truncated);
    assert_eq!(raw.body.len(), lmcpp_server::DEFAULT_MAX_ERROR_BODY);
}

/// A listener whose accept queue is full: the kernel drops further connection attempts,
/// so a connect hangs until its timeout. (Windows refuses instead of dropping.)
#[cfg(unix)]
fn full_listener() -> (OwnedFd, u16, Vec<std::net::TcpStream>) {
    // SAFETY: plain socket calls on a new fd we own; the sockaddr is fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let sa = &addr as *const libc::sockaddr_in as *const libc::sockaddr;
        assert_eq!(libc::bind(fd.as_raw_fd(), sa, len), 0);
        assert_eq!(libc::listen(fd.as_raw_fd(), 0), 0);
        let mut bound: libc::sockaddr_in = std::mem::zeroed();
        let mut blen = len;
        let bp = &mut bound as *mut libc::sockaddr_in as *mut libc::sockaddr;
        assert_eq!(libc::getsockname(fd.as_raw_fd(), bp, &mut blen), 0);
        let port = u16::from_be(bound.sin_port);
        // Fill the queue (a backlog of 0 holds one connection, sometimes two).
        let mut held = Vec::new();
        for _ in 0..4 {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
        (fd, port, held)
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_connect_that_never_completes_times_out() {
    let (_listener, port, _held) = full_listener();
    let client = Client::builder(Endpoint::http("127.0.0.1", port))
        .connect_timeout(Duration::from_millis(200))
        .build();
    match net(client.props()).await {
        Err(Error::ConnectTimeout { endpoint, timeout }) => {
            assert_eq!(endpoint, format!("http://127.0.0.1:{port}"));
            assert_eq!(timeout, Duration::from_millis(200));
        }
        other => panic!("{other:?}"),
    }
}
