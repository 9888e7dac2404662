//! The proxy's listening socket (Unix or TCP) and the HTTP/1.1 connections it accepts,
//! each served in its own task with the header limits applied.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    sync::Arc,
    time::Duration,
};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::watch,
};

use super::{service::Service, stall::StallGuard};
use crate::{
    endpoint::Endpoint,
    error::{Error, Result},
    registry::Registry,
    server::{HttpPort, TransportChoice},
};

/// How long a client may take to send a request head (slow clients hold a task each).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopping proxy lets each connection finish the requests it has read
/// (answering those that wait for a model with a 503) before it closes it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The smallest read buffer hyper accepts; a head cap below it is raised to it.
const MIN_BUF: usize = 8192;

/// A bound listening socket.
pub(crate) enum Listener {
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
    Tcp(TcpListener),
}

/// Binds the proxy's endpoint: a socket named after `id` in the registry dir (or its
/// short fallback), or TCP as the transport says.
pub(crate) async fn bind(
    transport: &TransportChoice,
    registry: &Registry,
    id: &str,
    fallback_dir: &Path,
) -> Result<(Listener, Endpoint)> {
    let (ip, port) = match *transport {
        TransportChoice::Http(port) => (IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        TransportChoice::PublicHttp { bind, port } => {
            if !bind.is_loopback() {
                tracing::warn!(%bind, "the proxy will serve beyond loopback: anyone who can reach {bind} can use it; set an API key");
            }
            (bind, port)
        }
        // `TransportChoice` is non-exhaustive; anything else is the private socket.
        #[cfg(not(unix))]
        _ => {
            let _ = (registry, id, fallback_dir);
            return Err(Error::UnixSocketsUnavailable);
        }
        #[cfg(unix)]
        _ => {
            use crate::runtime::{ensure_private_dir, socket_path};
            let dir = registry.dir();
            let socket = socket_path(dir, id, fallback_dir);
            if let Some(parent) = socket.parent()
                && parent != dir
            {
                ensure_private_dir(parent)?;
            }
            // The id is fresh or verified unused: a file there is a stale socket.
            let _ = std::fs::remove_file(&socket);
            let listener = tokio::net::UnixListener::bind(&socket)
                .map_err(|e| Error::io("cannot listen on", &socket, e))?;
            return Ok((Listener::Unix(listener), Endpoint::unix(socket)));
        }
    };
    let try_bind = |port: u16| TcpListener::bind(SocketAddr::new(ip, port));
    let listener = match port {
        HttpPort::Fixed(p) => try_bind(p).await.map_err(|e| in_use(ip, p, e))?,
        HttpPort::Prefer(p) => match try_bind(p).await {
            Ok(l) => l,
            Err(_) => try_bind(0).await.map_err(|e| in_use(ip, 0, e))?,
        },
        _ => try_bind(0).await.map_err(|e| in_use(ip, 0, e))?,
    };
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the address of", "the proxy socket", e))?
        .port();
    let host = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok((
        Listener::Tcp(listener),
        Endpoint::http(host.to_string(), port),
    ))
}

fn in_use(ip: IpAddr, port: u16, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        Error::PortInUse {
            host: ip.to_string(),
            port,
        }
    } else {
        Error::io("cannot listen on", format!("{ip}:{port}"), e)
    }
}

/// Limits of every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_header: usize,
    pub(crate) max_headers: usize,
    /// A write the client accepts nothing of for this long ends the connection.
    pub(crate) write_stall: Duration,
}

/// Accepts connections until `shutdown` fires.
pub(crate) async fn serve(
    listener: Listener,
    service: Arc<Service>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            #[cfg(unix)]
            Ok(Conn::Unix(io)) => spawn_conn(io, &service, limits, &shutdown),
            Ok(Conn::Tcp(io)) => {
                let _ = io.set_nodelay(true);
                spawn_conn(io, &service, limits, &shutdown);
            }
            Err(e) => {
                // Out of file descriptors, usually: give the open connections a moment
                // to finish rather than spinning.
                tracing::warn!(error = %e, "the proxy cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

enum Conn {
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    match listener {
        #[cfg(unix)]
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
    }
}

fn spawn_conn<I>(io: I, service: &Arc<Service>, limits: Limits, shutdown: &watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = Arc::clone(service);
    let mut shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(limits.max_header.max(MIN_BUF))
            .max_headers(limits.max_headers);
        let io = StallGuard::new(io, limits.write_stall);
        let conn = builder.serve_connection(
            TokioIo::new(io),
            service_fn(move |req| Arc::clone(&service).handle(req)),
        );
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "proxy connection ended with an error");
                }
                return;
            }
            _ = shutdown.changed() => {}
        }
        // The proxy is stopping: the requests already read are answered (those waiting
        // for a model with a 503), then the connection closes.
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
    });
}
