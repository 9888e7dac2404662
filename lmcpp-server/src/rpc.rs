//! Supervised ggml `rpc-server` workers, and the reachability check run before a
//! `llama-server` is pointed at workers with `--rpc`.
//!
//! A worker lends its CPU or GPU to a `llama-server` on another (or the same) machine. It
//! speaks ggml's binary RPC protocol over TCP, which is unauthenticated: anyone who can
//! connect can allocate memory and run graphs on it. Workers therefore bind 127.0.0.1
//! unless an address is given explicitly, and must only ever listen on a trusted network.
//!
//! A worker is contained exactly like a server: it is started through the crate's one
//! spawn helper (own process group, parent-death signal), stopped with SIGTERM then
//! SIGKILL, recorded in the [`Registry`] with [`ProcessKind::RpcWorker`], and its output
//! goes to a log file. It is ready once its port accepts a TCP connection; an exit
//! before that is reported with the last log lines.
//!
//! Facts about the pinned `rpc-server` that shape this module: it binds IPv4 literals
//! only, serves one client connection at a time (a `llama-server` holds its connection
//! for its whole life), has a listen backlog of one, and fails a bind by printing
//! `Failed to create server socket` and exiting with status 0. A `llama-server` whose
//! worker disappears aborts (`Remote RPC server crashed ...`) rather than failing the
//! request; [`crate::Server::rpc_worker_lost`] recognises that exit.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use crate::{
    child::ChildProc,
    endpoint::Endpoint,
    error::{Error, Result},
    owned::check_rpc_args,
    registry::{ProcessKind, ServerRecord},
    supervised::{
        EnvVars, PORT_ATTEMPTS, Prepared, ProcessOptions, SpawnAttempt, Supervised, fixed_port,
        free_port,
    },
};

/// The address workers bind when none is given: loopback only.
pub const DEFAULT_RPC_HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The port `rpc-server` itself defaults to.
pub const DEFAULT_RPC_PORT: u16 = 50052;

/// How long the pre-launch check waits for each worker to accept a connection.
pub const WORKER_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What `rpc-server` prints when it cannot bind its port.
const BIND_FAILURE: &str = "Failed to create server socket";

/// Everything [`RpcWorker::launch`] needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RpcWorkerOptions {
    /// The `rpc-server` binary.
    pub binary: PathBuf,
    /// The IPv4 address to bind (`rpc-server` accepts no names and no IPv6); default
    /// 127.0.0.1. Anything else exposes an unauthenticated service to that network.
    pub host: Ipv4Addr,
    /// The port; `None` picks a free one (and retries on another if it is taken before
    /// the worker binds it).
    pub port: Option<u16>,
    /// Threads for the CPU device (`-t`; `rpc-server` defaults to 1).
    pub threads: Option<u32>,
    /// Devices to serve (`-d`, e.g. `CUDA0`); default: every accelerator, else the CPU.
    pub devices: Vec<String>,
    /// Enables the worker's tensor cache (`-c`) in this directory (passed as
    /// `LLAMA_CACHE`, so the cache never lands in the home directory by accident).
    pub cache_dir: Option<PathBuf>,
    /// Logs every RPC command the worker receives (`GGML_RPC_DEBUG=1`); verbose.
    pub debug_log: bool,
    /// Further `rpc-server` arguments, appended as given (the address and port flags are
    /// refused: [`RpcWorkerOptions::host`] and [`RpcWorkerOptions::port`] set them).
    pub extra_args: Vec<String>,
    /// Runtime dir for the state file and log; default [`crate::default_runtime_dir`].
    pub runtime_dir: Option<PathBuf>,
    /// Log file; default `<runtime dir>/<id>.log`.
    pub log_path: Option<PathBuf>,
    /// Working directory; default the runtime dir.
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// How long [`RpcWorker::launch`] waits for the port to accept connections
    /// (default 30 s).
    pub ready_timeout: Duration,
    /// How long a stop waits after SIGTERM before SIGKILL (default 5 s).
    pub stop_grace: Duration,
    /// Start the worker so that it outlives this process (no parent-death signal, own
    /// session); it is not stopped on drop after [`RpcWorker::detach`].
    pub detached: bool,
}

impl RpcWorkerOptions {
    /// Options with defaults: 127.0.0.1, a free port, default runtime dir.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            host: DEFAULT_RPC_HOST,
            port: None,
            threads: None,
            devices: Vec::new(),
            cache_dir: None,
            debug_log: false,
            extra_args: Vec::new(),
            runtime_dir: None,
            log_path: None,
            cwd: None,
            env: Vec::new(),
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
            detached: false,
        }
    }

    /// The `rpc-server` command line after the binary, for `port`.
    fn argv(&self, port: u16) -> Vec<String> {
        let mut args = vec![
            "--host".to_owned(),
            self.host.to_string(),
            "--port".to_owned(),
            port.to_string(),
        ];
        if let Some(threads) = self.threads {
            args.extend(["--threads".to_owned(), threads.to_string()]);
        }
        if !self.devices.is_empty() {
            args.extend(["--device".to_owned(), self.devices.join(",")]);
        }
        if self.cache_dir.is_some() {
            args.push("--cache".to_owned());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The options every supervised process has.
    fn process(&self) -> ProcessOptions {
        ProcessOptions {
            runtime_dir: self.runtime_dir.clone(),
            log_path: self.log_path.clone(),
            cwd: self.cwd.clone(),
            env: self.env(),
            env_remove: Vec::new(),
            stop_grace: self.stop_grace,
            detached: self.detached,
        }
    }

    /// Environment added to the inherited one.
    fn env(&self) -> EnvVars {
        let mut env = self.env.clone();
        if let Some(dir) = &self.cache_dir {
            env.push(("LLAMA_CACHE".into(), dir.to_string_lossy().into_owned()));
        }
        if self.debug_log {
            env.push(("GGML_RPC_DEBUG".into(), "1".into()));
        }
        env
    }
}

/// A supervised `rpc-server` worker.
///
/// Dropping it stops the worker (SIGTERM, then SIGKILL after the grace period), blocking
/// for at most the grace period plus 5 s; prefer [`RpcWorker::stop`] in async code.
#[derive(Debug)]
pub struct RpcWorker {
    process: Supervised,
}

impl RpcWorker {
    /// Starts the worker and waits until its port accepts TCP connections, watching the
    /// process meanwhile: an early exit is [`Error::RpcWorkerExited`] (or
    /// [`Error::PortInUse`] for a fixed port that is taken), no connection within the
    /// ready timeout is [`Error::RpcWorkerReadyTimeout`] (and the worker is stopped).
    pub async fn launch(opts: RpcWorkerOptions) -> Result<Self> {
        check_rpc_args(&opts.extra_args)?;
        let prepared = Prepared::new(ProcessKind::RpcWorker, &opts.binary, opts.process())?;
        let deadline = tokio::time::Instant::now() + opts.ready_timeout;
        let host = IpAddr::V4(opts.host);
        let mut attempt = 1;
        loop {
            let port = match opts.port {
                Some(port) => fixed_port(host, port)?,
                None => free_port(host)?,
            };
            let mut process = prepared
                .spawn(SpawnAttempt {
                    args: opts.argv(port),
                    env: Vec::new(),
                    endpoint: Endpoint::http(opts.host.to_string(), port),
                    model: PathBuf::new(),
                    api_key: None,
                })
                .await?;
            let probe = probe_addr(opts.host, port);
            let status = match wait_listening(process.child(), probe, deadline).await {
                Listening::Ready => return Ok(Self { process }),
                Listening::TimedOut => {
                    let worker = Self { process };
                    let addr = worker.address();
                    worker.stop().await?;
                    return Err(Error::RpcWorkerReadyTimeout {
                        addr,
                        timeout: opts.ready_timeout,
                        log_path: prepared.log_path().to_owned(),
                    });
                }
                Listening::Exited(status) => status,
            };
            let log_tail = process.retire();
            let bind_failed = log_tail.iter().any(|l| l.contains(BIND_FAILURE));
            if bind_failed && opts.port.is_none() && attempt < PORT_ATTEMPTS {
                tracing::debug!(port, "rpc worker port taken, restarting on another port");
                attempt += 1;
                continue;
            }
            if bind_failed && let Some(port) = opts.port {
                return Err(Error::PortInUse {
                    host: opts.host.to_string(),
                    port,
                });
            }
            return Err(Error::RpcWorkerExited {
                status,
                log_tail,
                log_path: prepared.log_path().to_owned(),
            });
        }
    }

    /// The address to give `llama-server --rpc` (`host:port`).
    pub fn address(&self) -> String {
        match &self.record().endpoint {
            Endpoint::Http { host, port } => format!("{host}:{port}"),
            other => other.to_string(),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        match &self.record().endpoint {
            Endpoint::Http { port, .. } => *port,
            _ => 0,
        }
    }

    /// The registry id.
    pub fn id(&self) -> &str {
        &self.record().id
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The registry record (kind [`ProcessKind::RpcWorker`]).
    pub fn record(&self) -> &ServerRecord {
        self.process.record()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.record().log_path
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> Result<Vec<String>> {
        self.process.log_tail(n)
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.process.exit_status()
    }

    /// Resolves when the worker exits (for foreground supervision).
    pub async fn exited(&self) -> ExitStatus {
        self.process.exited().await
    }

    /// SIGTERM, up to the grace period, SIGKILL; reaps the process and removes its state
    /// file. Returns the exit status.
    pub async fn stop(self) -> Result<ExitStatus> {
        self.process.stop().await
    }

    /// Lets the worker run on after this handle is dropped and returns its record, by
    /// which [`Registry::stop`](crate::Registry::stop) can stop it later. Only a worker
    /// launched with [`RpcWorkerOptions::detached`] also survives the exit of this process.
    pub fn detach(self) -> ServerRecord {
        self.process.detach()
    }
}

/// Checks every worker in `addrs` (`host:port`), all at once; the first failing one, in
/// list order, is the error. A worker must accept a TCP connection within `timeout`
/// ([`Error::RpcWorkerUnreachable`]) and answer the ggml RPC handshake within `timeout`
/// ([`Error::RpcWorkerBusy`]: a worker serves one llama-server at a time and leaves
/// everyone else waiting in its accept queue). A worker that answers the handshake in a
/// way this version does not understand (another protocol revision) passes: the server
/// has the final word on compatibility.
pub async fn check_workers(addrs: &[String], timeout: Duration) -> Result<()> {
    let checks = addrs.iter().map(|addr| check_worker(addr, timeout));
    for result in futures_util::future::join_all(checks).await {
        result?;
    }
    Ok(())
}

/// Checks that `addr` is a worker address as llama-server's `--rpc` takes it: `host:port`
/// with a host name or IPv4 address, or `[v6]:port`; a port from 1 to 65535. What is
/// wrong is [`Error::RpcAddressInvalid`], found before anything is contacted.
pub fn parse_rpc_address(addr: &str) -> Result<()> {
    let invalid = |reason: &str| Error::RpcAddressInvalid {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(invalid("it has no :port"));
    };
    match port.parse::<u16>() {
        Ok(0) => return Err(invalid("port 0 is not a port a worker listens on")),
        Ok(_) => {}
        Err(_) => return Err(invalid("the port is not a number from 1 to 65535")),
    }
    if let Some(v6) = host.strip_prefix('[') {
        let ok = v6
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        return if ok {
            Ok(())
        } else {
            Err(invalid("the bracketed host is not an IPv6 address"))
        };
    }
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    if host.contains(':') {
        return Err(invalid("an IPv6 host must be in brackets"));
    }
    let name_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if !name_ok {
        return Err(invalid("the host is not a name or an IP address"));
    }
    Ok(())
}

/// Connects to one worker, says hello, and closes the connection again.
async fn check_worker(addr: &str, timeout: Duration) -> Result<()> {
    let unreachable = |reason: String| Error::RpcWorkerUnreachable {
        addr: addr.to_owned(),
        reason,
    };
    parse_rpc_address(addr)?;
    let connect = async {
        let targets: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| unreachable(format!("cannot resolve it: {e}")))?
            .collect();
        let mut last = None;
        for target in targets {
            match tokio::net::TcpStream::connect(target).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(unreachable(match last {
            Some(e) => e.to_string(),
            None => "its name resolves to no address".into(),
        }))
    };
    let mut stream = match tokio::time::timeout(timeout, connect).await {
        Ok(result) => result?,
        Err(_) => return Err(unreachable(format!("no connection within {timeout:?}"))),
    };
    match tokio::time::timeout(timeout, hello(&mut stream)).await {
        Err(_) => Err(Error::RpcWorkerBusy {
            addr: addr.to_owned(),
            timeout,
        }),
        Ok(Ok((major, minor, patch))) => {
            tracing::debug!(addr, "rpc worker speaks protocol {major}.{minor}.{patch}");
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::warn!(addr, error = %e, "rpc worker did not complete the handshake; leaving the verdict to llama-server");
            Ok(())
        }
    }
}

/// `RPC_CMD_HELLO`, fixed across protocol versions.
const RPC_CMD_HELLO: u8 = 14;

/// Size of the capability block in a hello request (protocol 7).
const HELLO_CAPS: usize = 24;

/// The ggml RPC handshake: `HELLO` with all-zero capabilities (plain TCP, no transport
/// upgrade); the answer starts with the protocol version.
async fn hello(stream: &mut tokio::net::TcpStream) -> std::io::Result<(u8, u8, u8)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::with_capacity(1 + 8 + HELLO_CAPS);
    request.push(RPC_CMD_HELLO);
    request.extend_from_slice(&(HELLO_CAPS as u64).to_le_bytes());
    request.extend_from_slice(&[0; HELLO_CAPS]);
    stream.write_all(&request).await?;
    let mut size = [0u8; 8];
    stream.read_exact(&mut size).await?;
    let size = u64::from_le_bytes(size);
    if !(3..=1024).contains(&size) {
        return Err(std::io::Error::other(format!(
            "a hello answer of {size} bytes is not a ggml RPC answer"
        )));
    }
    let mut answer = vec![0; size as usize];
    stream.read_exact(&mut answer).await?;
    Ok((answer[0], answer[1], answer[2]))
}

/// How waiting for the port ended.
enum Listening {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

/// Polls `addr` with TCP connects (1 ms apart at first, backing off to 20 ms) until one
/// succeeds, the child exits, or `deadline` passes.
async fn wait_listening(
    child: &ChildProc,
    addr: SocketAddr,
    deadline: tokio::time::Instant,
) -> Listening {
    let mut delay = Duration::from_millis(1);
    loop {
        let connected = tokio::select! {
            biased;
            status = child.exited() => return Listening::Exited(status),
            () = tokio::time::sleep_until(deadline) => return Listening::TimedOut,
            res = tokio::net::TcpStream::connect(addr) => res.is_ok(),
        };
        // A connect can win the race against an exit that already happened (another
        // process on the port); trust it only while our child still runs.
        if connected && child.status().is_none() {
            return Listening::Ready;
        }
        tokio::select! {
            biased;
            status = child.exited() => return Listening::Exited(status),
            () = tokio::time::sleep_until(deadline) => return Listening::TimedOut,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

/// Where to probe a worker bound to `host`: loopback for the wildcard address.
fn probe_addr(host: Ipv4Addr, port: u16) -> SocketAddr {
    let host = if host.is_unspecified() {
        Ipv4Addr::LOCALHOST
    } else {
        host
    };
    SocketAddr::from((host, port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::net::TcpListener;

    use super::*;
    use lmcpp_types::Classify;

    #[test]
    fn rpc_addresses_are_host_port_and_anything_else_is_the_users_error() {
        for ok in [
            "127.0.0.1:50052",
            "gpu-box.lan:1",
            "[::1]:50052",
            "h_1:65535",
        ] {
            parse_rpc_address(ok).unwrap();
        }
        for bad in [
            "nohost",
            "h:",
            ":50052",
            "h:0",
            "h:65536",
            "h:port",
            "::1:50052",
            "[::1:50052",
            "[nope]:1",
            "h h:1",
            "h/x:1",
            "",
        ] {
            let err = parse_rpc_address(bad).unwrap_err();
            assert!(err.is_user_error(), "{bad}: {err}");
            assert!(err.to_string().contains("host:port"), "{err}");
        }
    }

    proptest::proptest! {
        /// Every socket address, as Rust prints it, is accepted; any port past u16 is not.
        #[test]
        fn every_socket_address_is_accepted(
            v4 in proptest::prelude::any::<[u8; 4]>(),
            v6 in proptest::prelude::any::<[u16; 8]>(),
            port in 1u16..,
            over in 65_536u32..10_000_000,
        ) {
            let v4 = std::net::SocketAddr::from((v4, port)).to_string();
            let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::from(v6), port)).to_string();
            proptest::prop_assert!(parse_rpc_address(&v4).is_ok(), "{}", v4);
            proptest::prop_assert!(parse_rpc_address(&v6).is_ok(), "{}", v6);
            let over = format!("h:{over}");
            proptest::prop_assert!(parse_rpc_address(&over).is_err(), "{}", over);
        }
    }

    #[test]
    fn argv_renders_every_option() {
        let mut opts = RpcWorkerOptions::new("/bin/rpc-server");
        assert_eq!(opts.argv(7), ["--host", "127.0.0.1", "--port", "7"]);
        assert!(opts.env().is_empty());
        opts.host = Ipv4Addr::new(192, 168, 1, 20);
        opts.threads = Some(4);
        opts.devices = vec!["CUDA0".into(), "CUDA1".into()];
        opts.cache_dir = Some("/c".into());
        opts.debug_log = true;
        opts.extra_args = vec!["--x".into()];
        assert_eq!(
            opts.argv(50052),
            [
                "--host",
                "192.168.1.20",
                "--port",
                "50052",
                "--threads",
                "4",
                "--device",
                "CUDA0,CUDA1",
                "--cache",
                "--x"
            ]
        );
        assert_eq!(
            opts.env(),
            [
                ("LLAMA_CACHE".to_owned(), "/c".to_owned()),
                ("GGML_RPC_DEBUG".to_owned(), "1".to_owned())
            ]
        );
    }

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        assert_eq!(
            probe_addr(Ipv4Addr::UNSPECIFIED, 9),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(
            probe_addr(Ipv4Addr::new(10, 0, 0, 2), 9),
            "10.0.0.2:9".parse().unwrap()
        );
    }

    /// A stand-in worker that answers every hello like protocol 7.0.0 does, or closes
    /// the connection at once when `answer` is false.
    async fn fake_worker(answer: bool) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                if !answer {
                    continue;
                }
                let mut request = [0u8; 1 + 8 + HELLO_CAPS];
                conn.read_exact(&mut request).await.unwrap();
                assert_eq!(request[0], RPC_CMD_HELLO);
                let mut answer = (4 + HELLO_CAPS as u64).to_le_bytes().to_vec();
                answer.extend_from_slice(&[7, 0, 0, 0]);
                answer.extend_from_slice(&[0; HELLO_CAPS]);
                conn.write_all(&answer).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn each_failure_names_its_worker() {
        let closed = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            l.local_addr().unwrap().to_string()
        };
        // Accepts (through the kernel's queue) but never answers, like a busy worker.
        let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let silent = silent
            .local_addr()
            .map(|a| (a.to_string(), silent))
            .unwrap();
        let good = fake_worker(true).await;
        let odd = fake_worker(false).await;
        let t = Duration::from_millis(300);
        // A worker that hangs up on the handshake is left to llama-server to judge.
        check_workers(&[good.clone(), odd], t).await.unwrap();
        for (bad, want) in [
            ("no-port", "invalid"),
            ("host:notaport", "invalid"),
            (closed.as_str(), "unreachable"),
            (silent.0.as_str(), "busy"),
        ] {
            let addrs = vec![good.clone(), bad.to_owned()];
            match check_workers(&addrs, t).await {
                Err(Error::RpcWorkerUnreachable { addr, .. }) if want == "unreachable" => {
                    assert_eq!(addr, bad)
                }
                Err(Error::RpcWorkerBusy { addr, .. }) if want == "busy" => assert_eq!(addr, bad),
                Err(Error::RpcAddressInvalid { addr, .. }) if want == "invalid" => {
                    assert_eq!(addr, bad)
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
