//! Launching one `llama-server`, waiting for it to be ready, and stopping it.

use std::{
    io::Read,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use lmcpp_types::ServerArgs;

use crate::{
    client::Client,
    endpoint::Endpoint,
    error::{Error, Result},
    owned, platform,
    registry::{ProcessKind, ServerRecord},
    rpc::{WORKER_CHECK_TIMEOUT, check_workers},
    runtime::{ensure_private_dir, socket_path},
    supervised::{
        EXIT_TAIL_LINES, EnvVars, PORT_ATTEMPTS, Prepared, ProcessOptions, SpawnAttempt,
        Supervised, check_binary, fixed_port, free_port,
    },
};

/// The line llama-server logs when it cannot bind its listening socket.
/// How llama-server versions (and the socket layer under them) say that the port is taken:
/// matched case-insensitively against the log tail.
const BIND_FAILURES: &[&str] = &[
    "couldn't bind http server socket",
    "could not bind",
    "failed to bind",
    "bind failed",
    "address already in use",
];

/// Whether a server that exited early failed to bind its HTTP endpoint: its log says so,
/// or (some versions exit without a word, or before the line reaches the log) the port is
/// taken now, so lmcpp cannot bind it either.
fn could_not_bind(endpoint: &Endpoint, log_tail: &[String]) -> bool {
    let Endpoint::Http { host, port } = endpoint else {
        return false;
    };
    log_tail.iter().any(|l| is_bind_failure(l))
        || std::net::TcpListener::bind((host.as_str(), *port))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
}

/// Whether a log line reports that the listening socket could not be bound.
fn is_bind_failure(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    BIND_FAILURES.iter().any(|p| lower.contains(p))
}

/// What older llama-server versions log once they listen, before the number of their
/// fixed HTTP threads: `main: HTTP server is listening, hostname: ..., port: ...,
/// http threads: N`. Newer ones grow their thread pool on demand and log no such line.
const HTTP_THREADS: &str = "http threads: ";

/// How much of the start of a server's log is searched for [`HTTP_THREADS`]: it comes
/// before the model loads, after a few lines of build and system information.
const HTTP_THREADS_SEARCH_BYTES: u64 = 64 * 1024;

/// The number of fixed HTTP threads a start-up log line reports, if it is that line.
fn http_threads(line: &str) -> Option<usize> {
    let (_, rest) = line.rsplit_once(HTTP_THREADS)?;
    rest.trim_end().parse().ok()
}

/// The `--threads-http` lmcpp passes when none is given: llama.cpp's own default,
/// `max(n_parallel + 2, cores - 1)` (with the 4 slots recent versions default to), made
/// explicit so that the clients know it. Recent versions start that many threads and add
/// more on demand, but only when none is idle at the moment a connection arrives: in a
/// burst, connections still queue behind threads that idle keep-alive connections hold
/// for 5 s (seen as 5 and 10 s stalls of 16 first requests through the proxy on
/// b11312), which the cap derived from this number prevents.
fn default_http_threads(parallel: Option<i64>) -> usize {
    let slots = parallel
        .and_then(|p| usize::try_from(p).ok())
        .filter(|&p| p > 0)
        .unwrap_or(4);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (slots + 2).max(cores.saturating_sub(1))
}

/// The connections lmcpp's clients hold to a server with `threads` fixed HTTP threads:
/// one fewer, which leaves a thread for health probes and other clients; at least one.
/// (Two fewer, as the `+ 2` of llama.cpp's own default `max(n_parallel + 2, cores - 1)`
/// might suggest, leaves one connection for a server of one slot on a small machine: a
/// request made while a stream is open would then wait for the stream to end, where the
/// server itself answers it on a spare thread.)
fn connection_cap(threads: usize) -> usize {
    threads.saturating_sub(1).max(1)
}

/// What `llama-server` prints when it aborts because a worker went away.
const WORKER_LOST: &str = "Remote RPC server crashed";

/// How many trailing server log lines are searched for [`WORKER_LOST`].
const LOST_SEARCH_LINES: usize = 2000;

/// Which port an HTTP server listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HttpPort {
    /// A free port chosen by lmcpp (restarted on another one if it is taken meanwhile).
    #[default]
    Auto,
    /// Exactly this port; [`Error::PortInUse`] if it is taken.
    Fixed(u16),
    /// This port if it is free, else a free one.
    Prefer(u16),
}

/// How clients reach the server. The default is the platform's private transport: a
/// Unix socket on Unix, loopback HTTP guarded by a generated API key on Windows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportChoice {
    /// A Unix socket in the private runtime dir (the default on Unix; not on Windows).
    Unix,
    /// HTTP on 127.0.0.1. On Windows, where it is the default, a server launched without
    /// [`ServerArgs::api_key`] gets a random one, passed through its environment and
    /// kept only in lmcpp's private registry, so other users of the machine cannot use
    /// the port.
    Http(HttpPort),
    /// HTTP bound to `bind`, which may reach beyond this machine (`0.0.0.0`, a LAN
    /// address). Anyone who can reach that address can use the server, so lmcpp logs a
    /// warning for any non-loopback address; set [`ServerArgs::api_key`]. lmcpp's own
    /// client connects to `bind` (to loopback when `bind` is the wildcard address).
    PublicHttp {
        /// The address the server binds.
        bind: IpAddr,
        /// The port.
        port: HttpPort,
    },
}

impl Default for TransportChoice {
    fn default() -> Self {
        if platform::HAS_UNIX_SOCKETS {
            Self::Unix
        } else {
            Self::Http(HttpPort::Auto)
        }
    }
}

impl TransportChoice {
    /// Refuses a Unix socket where the platform has none, and gives `api_key` a random
    /// value when it is unset and this is loopback HTTP as the platform's private default
    /// (Windows). Returns whether it generated the key.
    pub(crate) fn secure(&self, api_key: &mut Option<String>, whose: &str) -> Result<bool> {
        if *self == Self::Unix && !platform::HAS_UNIX_SOCKETS {
            return Err(Error::UnixSocketsUnavailable);
        }
        let generate =
            api_key.is_none() && !platform::HAS_UNIX_SOCKETS && matches!(self, Self::Http(_));
        if generate {
            let key = platform::random_key()
                .map_err(|e| Error::io("cannot generate an api key for", whose, e))?;
            *api_key = Some(key);
        }
        Ok(generate)
    }

    /// The address an HTTP server binds and how its port is chosen; `None` for Unix.
    fn http(&self) -> Option<(IpAddr, HttpPort)> {
        match *self {
            Self::Unix => None,
            Self::Http(port) => Some((IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            Self::PublicHttp { bind, port } => Some((bind, port)),
        }
    }
}

/// Everything [`Server::spawn`] needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LaunchOptions {
    /// The `llama-server` binary.
    pub binary: PathBuf,
    /// The GGUF model (in router mode, the models directory; see [`LaunchOptions::router`]).
    pub model: PathBuf,
    /// Router mode: no model up front; llama-server serves the GGUF files of this
    /// directory (`--models-dir`), loading each when a request names it. Set by
    /// [`LaunchOptions::router`].
    pub models_dir: Option<PathBuf>,
    /// Typed server arguments. Model, host and port are set by the launcher and
    /// override whatever is here; secrets (`api_key`, `hf_token`) reach the server
    /// through its environment, and the client sends `api_key` with every request.
    /// What the launcher owns cannot be passed in `args.extra` (any spelling of
    /// `--host`, `--port`, `-m`/`--model` and the other model sources, `--api-key-file`,
    /// `--log-file`): that is [`Error::LauncherOwned`], naming the setting to use.
    pub args: ServerArgs,
    /// Unix socket (default), HTTP on loopback, or HTTP on a chosen address.
    pub transport: TransportChoice,
    /// Runtime dir for state files, sockets and logs; default
    /// [`crate::default_runtime_dir`].
    pub runtime_dir: Option<PathBuf>,
    /// Where sockets go when the runtime dir path is too long for a socket path;
    /// default `/tmp/lmcpp-<uid>`.
    pub socket_fallback_dir: Option<PathBuf>,
    /// Log file; default `<runtime dir>/<id>.log`.
    pub log_path: Option<PathBuf>,
    /// Working directory of the server; default the runtime dir.
    pub cwd: Option<PathBuf>,
    /// Extra environment variables for the server (those that set what the launcher
    /// owns, such as `LLAMA_ARG_HOST` or `LLAMA_API_KEY`, are refused).
    pub env: Vec<(String, String)>,
    /// Whether the server inherits this process's llama-server variables (`LLAMA_ARG_*`,
    /// `HF_TOKEN`, ...); default false, so the caller's environment cannot reconfigure
    /// the server. Those that set what the launcher owns are never inherited; an
    /// inherited `LLAMA_API_KEY` becomes [`ServerArgs::api_key`] when that is unset, so
    /// the server and lmcpp's client share it.
    pub inherit_llama_env: bool,
    /// How long [`Server::wait_ready`] waits (default 120 s).
    pub ready_timeout: Duration,
    /// How long a stop waits after SIGTERM before SIGKILL (default 5 s).
    pub stop_grace: Duration,
    /// Start the server so that it outlives this process: no parent-death signal, own
    /// session. Such a server is not stopped on drop after [`Server::detach`].
    pub detached: bool,
    /// The flags `binary` accepts (from its `--help`, as the toolchain captures it). When
    /// set, the rendered argv is checked and adapted to them before anything is spawned:
    /// a flag or value this llama.cpp lacks is [`Error::InvalidArgs`] naming the flag,
    /// the value and the version. `None` renders for the pinned version unchecked.
    pub flags: Option<lmcpp_types::args::help::BinaryFlags>,
}

impl LaunchOptions {
    /// Options with defaults: Unix socket, default runtime dir, 120 s ready timeout.
    pub fn new(binary: impl Into<PathBuf>, model: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            model: model.into(),
            models_dir: None,
            args: ServerArgs::default(),
            transport: TransportChoice::default(),
            runtime_dir: None,
            socket_fallback_dir: None,
            log_path: None,
            cwd: None,
            env: Vec::new(),
            inherit_llama_env: false,
            ready_timeout: Duration::from_secs(120),
            stop_grace: Duration::from_secs(5),
            detached: false,
            flags: None,
        }
    }

    /// Options for router mode: the models of `models_dir`, each loaded on request, and
    /// no model up front; otherwise the defaults of [`LaunchOptions::new`].
    pub fn router(binary: impl Into<PathBuf>, models_dir: impl Into<PathBuf>) -> Self {
        let models_dir = models_dir.into();
        Self {
            models_dir: Some(models_dir.clone()),
            ..Self::new(binary, models_dir)
        }
    }

    /// Sets [`LaunchOptions::inherit_llama_env`].
    pub fn inherit_llama_env(mut self, inherit: bool) -> Self {
        self.inherit_llama_env = inherit;
        self
    }

    /// The options every supervised process has.
    fn process(&self) -> ProcessOptions {
        ProcessOptions {
            runtime_dir: self.runtime_dir.clone(),
            log_path: self.log_path.clone(),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
            env_remove: owned::server_env_removals(
                std::env::vars_os().map(|(name, _)| name),
                self.inherit_llama_env,
            ),
            stop_grace: self.stop_grace,
            detached: self.detached,
        }
    }

    /// Refuses what would override the launcher, and takes an inherited API key over
    /// when asked to inherit the llama-server environment.
    fn check_owned(&mut self) -> Result<bool> {
        owned::check_server_args(&self.args.extra)?;
        owned::check_server_fields(&self.args)?;
        owned::check_server_env(&self.env)?;
        if self.inherit_llama_env && self.args.api_key.is_none() {
            self.args.api_key = std::env::var(owned::API_KEY_ENV).ok();
        }
        let generate = self
            .transport
            .secure(&mut self.args.api_key, "the server")?;
        if let TransportChoice::PublicHttp { bind, .. } = self.transport
            && !bind.is_loopback()
        {
            tracing::warn!(%bind, "llama-server will serve beyond loopback: anyone who can reach {bind} can use it; set an API key");
        }
        Ok(generate)
    }
}

/// The outcome of waiting for a server to load.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// `/health` answered 200.
    Ready,
    /// The process exited first.
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its log.
        log_tail: Vec<String>,
    },
    /// The timeout elapsed; the server is still running.
    TimedOut {
        /// The last `/health` answer or connection error.
        last_health: Option<String>,
    },
}

/// Checks the binary and model before anything is spawned.
pub fn validate(binary: &Path, model: &Path) -> Result<()> {
    check_binary(binary)?;
    let not_regular = || Error::ModelNotGguf {
        path: model.to_owned(),
        found: "(not a regular file)".into(),
    };
    let missing_or = |e: std::io::Error, action| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound {
            path: model.to_owned(),
        },
        _ => Error::io(action, model, e),
    };
    // Before opening: opening a FIFO blocks, and Windows refuses to open a directory.
    if !std::fs::metadata(model)
        .map_err(|e| missing_or(e, "cannot read model"))?
        .is_file()
    {
        return Err(not_regular());
    }
    let mut file = std::fs::File::open(model).map_err(|e| missing_or(e, "cannot open model"))?;
    if !file
        .metadata()
        .map_err(|e| Error::io("cannot read model", model, e))?
        .is_file()
    {
        return Err(not_regular());
    }
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("cannot read model", model, e)),
        }
    }
    if &magic[..got] != b"GGUF" {
        return Err(Error::ModelNotGguf {
            path: model.to_owned(),
            found: magic[..got].escape_ascii().to_string(),
        });
    }
    Ok(())
}

/// A router's models directory, resolved; it must exist and be readable.
fn models_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound {
            path: dir.to_owned(),
        },
        _ => Error::io("cannot read models directory", dir, e),
    })?;
    dir.canonicalize()
        .map_err(|e| Error::io("cannot resolve", dir, e))
}

/// `path` made absolute with its directory resolved but its file name kept: a model in the
/// Hugging Face cache is a link named like the file (`…-00001-of-00003.gguf`) to a blob
/// named by its digest, and llama-server finds a split model's other parts by that name.
fn resolve_keeping_name(path: &Path) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (dir.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => Ok(dir.join(name)),
        _ => path
            .canonicalize()
            .map_err(|e| Error::io("cannot resolve", path, e)),
    }
}

/// Everything fixed before the first spawn attempt.
#[derive(Debug)]
struct LaunchPlan {
    opts: LaunchOptions,
    prepared: Prepared,
    model: PathBuf,
    fallback_dir: PathBuf,
    /// The API key lmcpp generated, kept in the registry record (see
    /// [`ServerRecord::api_key`]).
    recorded_key: Option<String>,
}

impl LaunchPlan {
    fn prepare(mut opts: LaunchOptions) -> Result<Self> {
        let generated = opts.check_owned()?;
        let recorded_key = if generated {
            opts.args.api_key.clone()
        } else {
            None
        };
        let model = match &opts.models_dir {
            None => {
                validate(&opts.binary, &opts.model)?;
                resolve_keeping_name(&opts.model)?
            }
            Some(dir) => {
                check_binary(&opts.binary)?;
                models_dir(dir)?
            }
        };
        let prepared = Prepared::new(ProcessKind::Server, &opts.binary, opts.process())?;
        let fallback_dir = opts
            .socket_fallback_dir
            .clone()
            .unwrap_or_else(platform::private_tmp_dir);
        Ok(Self {
            opts,
            prepared,
            model,
            fallback_dir,
            recorded_key,
        })
    }

    fn endpoint(&self, port: HttpPort) -> Result<Endpoint> {
        let Some((bind, _)) = self.opts.transport.http() else {
            let dir = self.prepared.registry().dir();
            let socket = socket_path(dir, self.prepared.id(), &self.fallback_dir);
            if let Some(parent) = socket.parent()
                && parent != dir
            {
                ensure_private_dir(parent)?;
            }
            return Ok(Endpoint::unix(socket));
        };
        let port = match port {
            HttpPort::Auto => free_port(bind)?,
            HttpPort::Prefer(p) => p,
            HttpPort::Fixed(p) => fixed_port(bind, p)?,
        };
        Ok(Endpoint::http(connect_host(bind).to_string(), port))
    }

    /// The HTTP threads the server starts with when lmcpp knows the number: the typed
    /// `threads_http` given, else the default lmcpp passes ([`default_http_threads`]) if
    /// the binary takes `--threads-http`; `None` when the raw `extra` arguments set it.
    fn http_threads(&self) -> Option<usize> {
        let args = &self.opts.args;
        if let Some(n) = args.threads_http {
            return usize::try_from(n).ok().filter(|&n| n > 0);
        }
        let in_extra = args
            .extra
            .iter()
            .any(|a| a == "--threads-http" || a.starts_with("--threads-http="));
        let accepted = self
            .opts
            .flags
            .as_ref()
            .is_none_or(|f| f.accepts("--threads-http"));
        (!in_extra && accepted).then(|| default_http_threads(args.parallel))
    }

    fn argv(&self, endpoint: &Endpoint) -> Result<(Vec<String>, EnvVars)> {
        let mut args = self.opts.args.clone();
        if args.threads_http.is_none()
            && let Some(n) = self.http_threads()
        {
            args.threads_http = i64::try_from(n).ok();
        }
        if self.opts.models_dir.is_some() {
            args.model = None;
            args.models_dir = Some(self.model.clone());
        } else {
            args.model = Some(self.model.clone());
        }
        match (endpoint, self.opts.transport.http()) {
            (Endpoint::Unix { socket }, _) => {
                args.host = Some(socket.to_string_lossy().into_owned());
                args.port = None;
            }
            (Endpoint::Http { host, port }, bind) => {
                args.host = Some(bind.map_or_else(|| host.clone(), |(ip, _)| ip.to_string()));
                args.port = Some(*port);
            }
        }
        let mut argv = args
            .to_argv()
            .map_err(|source| Error::InvalidArgs { source })?;
        if let Some(flags) = &self.opts.flags {
            argv = flags
                .adapt(&argv)
                .map_err(|source| Error::InvalidArgs { source })?;
        }
        Ok((argv, args.secret_env()))
    }

    fn client(&self, endpoint: &Endpoint, max_connections: Option<usize>) -> Client {
        let mut builder = Client::builder(endpoint.clone());
        if let Some(key) = &self.opts.args.api_key {
            builder = builder.api_key(key.clone());
        }
        if let Some(n) = max_connections {
            builder = builder.max_connections(n);
        }
        builder.build()
    }

    /// One spawn attempt on `endpoint`.
    async fn spawn(&self, endpoint: Endpoint) -> Result<Attempt> {
        let (args, env) = self.argv(&endpoint)?;
        if let Endpoint::Unix { socket } = &endpoint {
            let _ = std::fs::remove_file(socket);
        }
        let process = self
            .prepared
            .spawn(SpawnAttempt {
                args,
                env,
                endpoint: endpoint.clone(),
                model: self.model.clone(),
                api_key: self.recorded_key.clone(),
            })
            .await?;
        Ok(Attempt {
            client: self.client(&endpoint, None),
            process,
            max_connections: None,
        })
    }
}

/// One running child and its client.
#[derive(Debug)]
struct Attempt {
    process: Supervised,
    client: Client,
    /// The cap of its clients' connections, once it is ready and has logged
    /// [`HTTP_THREADS`].
    max_connections: Option<usize>,
}

impl Attempt {
    /// Once the server is ready: caps its client's connections to one fewer than its
    /// HTTP threads, as passed or, when lmcpp passed none, as logged (older versions).
    /// The client is replaced, and with it the pool the health probes used, whose idle
    /// connection would otherwise keep one of those threads.
    fn cap_connections(&mut self, plan: &LaunchPlan) {
        // The number lmcpp passed needs no log read; only a server started without it
        // (a binary without the flag, or the flag among the raw arguments) is asked.
        let threads = plan.http_threads().or_else(|| {
            self.process
                .log_head(HTTP_THREADS_SEARCH_BYTES)
                .iter()
                .find_map(|line| http_threads(line))
        });
        let Some(threads) = threads else {
            return;
        };
        let cap = connection_cap(threads);
        tracing::debug!(
            threads,
            cap,
            "capping connections to llama-server's HTTP threads"
        );
        self.max_connections = Some(cap);
        self.client = plan.client(&self.process.record().endpoint, Some(cap));
    }
}

/// A supervised `llama-server` process.
///
/// Dropping it stops the server (SIGTERM, then SIGKILL after the grace period), blocking
/// the dropping thread for at most the grace period plus 5 s; prefer [`Server::stop`] in
/// async code. On Linux an attached server is also killed by the kernel if this process
/// dies without running destructors.
#[derive(Debug)]
pub struct Server {
    plan: LaunchPlan,
    current: Attempt,
    port_attempts: u32,
}

impl Server {
    /// Validates the inputs, picks the endpoint and starts the process; does not wait
    /// for it to load (see [`Server::wait_ready`]).
    pub async fn spawn(opts: LaunchOptions) -> Result<Self> {
        let port = opts
            .transport
            .http()
            .map_or(HttpPort::Auto, |(_, port)| port);
        let plan = LaunchPlan::prepare(opts)?;
        // llama-server aborts on an unreachable worker with a core-dump-sized log and no
        // typed reason; name the worker before anything is spawned instead.
        check_workers(&plan.opts.args.rpc, WORKER_CHECK_TIMEOUT).await?;
        let endpoint = plan.endpoint(port)?;
        let current = plan.spawn(endpoint).await?;
        Ok(Self {
            plan,
            current,
            port_attempts: 1,
        })
    }

    /// Starts the server and waits until it is ready. A server that exits or times out
    /// is an error (and a timed-out one is stopped).
    pub async fn launch(opts: LaunchOptions) -> Result<Self> {
        let mut server = Self::spawn(opts).await?;
        match server.wait_ready().await? {
            Readiness::Ready => match server.unauthenticated_status().await? {
                Some(status) => {
                    let log_path = server.log_path().to_owned();
                    server.stop().await?;
                    Err(Error::ApiKeyNotEnforced { status, log_path })
                }
                None => Ok(server),
            },
            Readiness::Exited { status, log_tail } => {
                if let (Endpoint::Http { host, port }, true) = (
                    server.endpoint(),
                    could_not_bind(server.endpoint(), &log_tail),
                ) {
                    return Err(Error::PortInUse {
                        host: host.clone(),
                        port: *port,
                    });
                }
                Err(Error::Exited {
                    status,
                    log_tail,
                    log_path: server.log_path().to_owned(),
                })
            }
            Readiness::TimedOut { last_health } => {
                let log_path = server.log_path().to_owned();
                let timeout = server.plan.opts.ready_timeout;
                server.stop().await?;
                Err(Error::ReadyTimeout {
                    timeout,
                    last_health,
                    log_path,
                })
            }
        }
    }

    /// With an API key set, a request without it must be refused: some llama-server
    /// versions ignore the key where it was passed and serve everyone. Returns the status
    /// an unauthenticated request got when it was *not* refused; [`Server::launch`] then
    /// stops the server and fails ([`Error::ApiKeyNotEnforced`]): fail closed.
    async fn unauthenticated_status(&self) -> Result<Option<u16>> {
        if self.plan.opts.args.api_key.is_none() {
            return Ok(None);
        }
        // `/props` is behind the key in every version (`/health` and `/v1/models` are
        // public in some).
        let anonymous = Client::builder(self.endpoint().clone()).build();
        let answer = anonymous.raw(http::Method::GET, "/props", None).await?;
        let status = answer.status.as_u16();
        Ok((status != 401 && status != 403).then_some(status))
    }

    /// Polls `/health` (every 1 ms at first, backing off to 10 ms) while watching the
    /// process, until it answers 200, the process exits (reported as soon as the
    /// kernel reports the exit), or the ready timeout elapses. An HTTP server whose
    /// lmcpp-chosen port was taken before it could bind is restarted on another port.
    pub async fn wait_ready(&mut self) -> Result<Readiness> {
        let deadline = tokio::time::Instant::now() + self.plan.opts.ready_timeout;
        loop {
            let status = match watch_health(&self.current, deadline).await {
                HealthWatch::Ready => {
                    self.current.cap_connections(&self.plan);
                    return Ok(Readiness::Ready);
                }
                HealthWatch::TimedOut { last_health } => {
                    return Ok(Readiness::TimedOut { last_health });
                }
                HealthWatch::Exited(status) => status,
            };
            let log_tail = self.current.process.retire();
            let retry = matches!(
                self.plan.opts.transport.http(),
                Some((_, HttpPort::Auto | HttpPort::Prefer(_)))
            ) && self.port_attempts < PORT_ATTEMPTS
                && could_not_bind(self.endpoint(), &log_tail);
            if !retry {
                return Ok(Readiness::Exited { status, log_tail });
            }
            tracing::debug!(endpoint = %self.endpoint(), "port taken, restarting on another port");
            let endpoint = self.plan.endpoint(HttpPort::Auto)?;
            self.current = self.plan.spawn(endpoint).await?;
            self.port_attempts += 1;
        }
    }

    /// A client for this server (cheap; clones share one connection pool). Once the
    /// server is ready, the client holds at most [`Server::max_connections`] connections;
    /// take it after [`Server::wait_ready`] (or [`Server::launch`]).
    pub fn client(&self) -> Client {
        self.current.client.clone()
    }

    /// How many connections [`Server::client`] holds at most: one fewer than the
    /// server's HTTP threads, which lmcpp passes as `--threads-http` unless the arguments
    /// set it (or which an older version logs as `http threads: N`); `None` when the
    /// number is not known (a binary without `--threads-http`, or the flag among the raw
    /// `extra` arguments), and before the server is ready. See
    /// [`ClientBuilder::max_connections`](crate::ClientBuilder::max_connections).
    pub fn max_connections(&self) -> Option<usize> {
        self.current.max_connections
    }

    /// The registry id.
    pub fn id(&self) -> &str {
        self.plan.prepared.id()
    }

    /// The API key its clients send, if one is set.
    pub(crate) fn api_key(&self) -> Option<&str> {
        self.plan.opts.args.api_key.as_deref()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.current.process.pid()
    }

    /// Where the server listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.current.process.record().endpoint
    }

    /// The registry record.
    pub fn record(&self) -> &ServerRecord {
        self.current.process.record()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        self.plan.prepared.log_path()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> Result<Vec<String>> {
        self.current.process.log_tail(n)
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.current.process.exit_status()
    }

    /// Resolves when the server exits (for foreground supervision).
    pub async fn exited(&self) -> ExitStatus {
        self.current.process.exited().await
    }

    /// SIGTERM, up to the grace period, SIGKILL; reaps the process and removes its
    /// state file and socket. Returns the exit status.
    pub async fn stop(self) -> Result<ExitStatus> {
        self.current.process.stop().await
    }

    /// Lets the server run on after this handle is dropped and returns its record, by
    /// which [`Registry::stop`](crate::Registry::stop) can stop it later. Only a server
    /// launched with [`LaunchOptions::detached`] also survives the exit of this process.
    pub fn detach(self) -> ServerRecord {
        self.current.process.detach()
    }

    /// When this server has exited because it lost a worker connection (llama-server
    /// aborts with `Remote RPC server crashed ...` when a worker goes away), the typed
    /// [`Error::RpcWorkerLost`]; `None` while it runs or when it exited for another
    /// reason. A request in flight at that moment fails with [`Error::Transport`].
    pub fn rpc_worker_lost(&self) -> Option<Error> {
        let status = self.exit_status()?;
        // The abort line is followed by a backtrace (gdb's, when installed) of a few dozen
        // to a few hundred lines; search generously, report the lines from it on.
        let mut log_tail = self.log_tail(LOST_SEARCH_LINES).ok()?;
        let at = log_tail.iter().rposition(|l| l.contains(WORKER_LOST))?;
        log_tail.drain(..at);
        log_tail.truncate(EXIT_TAIL_LINES);
        Some(Error::RpcWorkerLost {
            workers: self.plan.opts.args.rpc.clone(),
            status,
            log_tail,
            log_path: self.log_path().to_owned(),
        })
    }
}

/// Where a client reaches a server bound to `bind`: loopback for the wildcard address.
fn connect_host(bind: IpAddr) -> IpAddr {
    match bind {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

/// How watching `/health` ended.
enum HealthWatch {
    Ready,
    Exited(ExitStatus),
    TimedOut { last_health: Option<String> },
}

/// Polls `/health` of one attempt (every 1 ms at first, backing off to 10 ms) until it
/// answers 200, the process exits, or `deadline` passes.
async fn watch_health(attempt: &Attempt, deadline: tokio::time::Instant) -> HealthWatch {
    let child = attempt.process.child();
    let mut last_health = None;
    let mut delay = Duration::from_millis(1);
    loop {
        tokio::select! {
            biased;
            status = child.exited() => return HealthWatch::Exited(status),
            () = tokio::time::sleep_until(deadline) => {
                return HealthWatch::TimedOut { last_health };
            }
            probe = attempt.client.probe_health() => match probe {
                Ok(res) if res.status.is_success() => return HealthWatch::Ready,
                Ok(res) => {
                    last_health = Some(format!(
                        "{} {}",
                        res.status.as_u16(),
                        String::from_utf8_lossy(&res.body).trim()
                    ));
                }
                Err(e) => last_health = Some(e.to_string()),
            },
        }
        tokio::select! {
            biased;
            status = child.exited() => return HealthWatch::Exited(status),
            () = tokio::time::sleep_until(deadline) => {
                return HealthWatch::TimedOut { last_health };
            }
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A server that exits early without a word about binding (as some versions do) is
    /// still known to have lost its port when the port is held; a free port is not that.
    #[test]
    fn a_held_port_is_a_bind_failure_whatever_the_log_says() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let http = |port| Endpoint::Http {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(could_not_bind(&http(port), &[]));
        assert!(could_not_bind(
            &http(port),
            &["main: couldn't bind HTTP server socket".into()]
        ));
        drop(held);
        assert!(!could_not_bind(
            &http(port),
            &["error: model not found".into()]
        ));
        let socket = Endpoint::Unix {
            socket: "/nonexistent/s.sock".into(),
        };
        assert!(!could_not_bind(&socket, &["address already in use".into()]));
    }

    /// An executable shell script `exe` in `dir`.
    fn executable(dir: &Path) -> PathBuf {
        let exe = dir.join("exe");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        exe
    }

    #[test]
    fn validation_table() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let exe = executable(d);
        let noexec = d.join("noexec");
        std::fs::write(&noexec, "").unwrap();
        let gguf = d.join("m.gguf");
        std::fs::write(&gguf, b"GGUF\x03\0\0\0").unwrap();
        let text = d.join("m.txt");
        std::fs::write(&text, b"hello").unwrap();
        let short = d.join("short");
        std::fs::write(&short, b"GG").unwrap();
        let missing = d.join("missing");

        let cases: Vec<(&Path, &Path, &str)> = vec![
            (&exe, &gguf, "ok"),
            (&missing, &gguf, "BinaryNotFound"),
            // Windows has no execute bit: any regular file may be run.
            (
                &noexec,
                &gguf,
                if cfg!(unix) {
                    "BinaryNotExecutable"
                } else {
                    "ok"
                },
            ),
            (d, &gguf, "BinaryNotExecutable"),
            (&exe, &missing, "ModelNotFound"),
            (&exe, &text, "ModelNotGguf"),
            (&exe, &short, "ModelNotGguf"),
            (&exe, d, "ModelNotGguf"),
        ];
        for (binary, model, want) in cases {
            let got = match validate(binary, model) {
                Ok(()) => "ok",
                Err(Error::BinaryNotFound { .. }) => "BinaryNotFound",
                Err(Error::BinaryNotExecutable { .. }) => "BinaryNotExecutable",
                Err(Error::ModelNotFound { .. }) => "ModelNotFound",
                Err(Error::ModelNotGguf { .. }) => "ModelNotGguf",
                Err(e) => panic!("{e}"),
            };
            assert_eq!(got, want, "{binary:?} {model:?}");
        }
    }

    /// A FIFO named as the model is refused by its type: opening it would block until
    /// something writes to it.
    #[cfg(unix)]
    #[test]
    fn a_fifo_model_is_refused_without_opening_it() {
        let dir = tempfile::tempdir().unwrap();
        let exe = executable(dir.path());
        let fifo = dir.path().join("m.gguf");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            validate(&exe, &fifo),
            Err(Error::ModelNotGguf { .. })
        ));
    }

    #[test]
    fn a_router_gets_its_models_directory_and_no_model() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let exe = executable(d);
        let models = d.join("models");
        std::fs::create_dir(&models).unwrap();
        let mut opts = LaunchOptions::router(&exe, &models);
        opts.runtime_dir = Some(d.join("run"));
        opts.args.model = Some("/elsewhere.gguf".into());
        let plan = LaunchPlan::prepare(opts).unwrap();
        let (argv, _) = plan.argv(&Endpoint::http("127.0.0.1", 8080)).unwrap();
        let at = argv.iter().position(|a| a == "--models-dir").unwrap();
        assert_eq!(
            argv[at + 1],
            models.canonicalize().unwrap().to_string_lossy()
        );
        assert!(
            !argv.iter().any(|a| a == "-m" || a == "--model"),
            "{argv:?}"
        );

        let mut missing = LaunchOptions::router(&exe, d.join("none"));
        missing.runtime_dir = Some(d.join("run"));
        assert!(matches!(
            LaunchPlan::prepare(missing),
            Err(Error::ModelNotFound { .. })
        ));
    }

    /// Start-up lines of both tested llama.cpp versions (demo model on a Unix socket, two
    /// cores, default `--parallel` and `--threads-http`), and the cap each gives.
    #[test]
    fn http_threads_are_read_from_the_start_up_log_of_older_versions_only() {
        let cases: &[(&str, Option<usize>)] = &[
            // 4227c9b: a fixed pool of max(n_parallel + 2, cores - 1) = 3 threads.
            (
                "main: HTTP server is listening, hostname: /tmp/h14logs/old.sock, port: 8080, http threads: 3",
                Some(2),
            ),
            (
                "main: HTTP server is listening, hostname: 127.0.0.1, port: 40123, http threads: 15",
                Some(14),
            ),
            (
                "main: HTTP server is listening, hostname: x, port: 1, http threads: 1",
                Some(1),
            ),
            // b11312: a dynamic pool, and no such line.
            (
                "0.00.119.135 I srv  llama_server: listening on unix:///tmp/h14logs/new.sock",
                None,
            ),
            (
                "0.00.004.781 I srv    load_model: loading model '/work/main/target/lmcpp-test/demo.gguf'",
                None,
            ),
            (
                "main: HTTP server is listening, hostname: x, port: 1, http threads: many",
                None,
            ),
            ("http threads: -3", None),
            ("http threads: ", None),
        ];
        for (line, cap) in cases {
            assert_eq!(http_threads(line).map(connection_cap), *cap, "{line}");
        }
    }
}
