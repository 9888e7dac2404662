//! The supervised-process core that [`crate::Server`] and [`crate::RpcWorker`] wrap: the
//! options every supervised process has, the preparation before the first spawn (binary
//! check, registry, id, log and working directory), and the handle that owns a running
//! child (stop, detach, stop on drop, log tail, exit status) and its registry record.
//!
//! Only what differs between a `llama-server` and an `rpc-server` stays in the wrappers:
//! their command lines, how readiness is judged, and how a start-up failure is named.

use std::{
    ffi::OsString,
    net::{IpAddr, TcpListener},
    path::{Path, PathBuf},
    process::ExitStatus,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    child::ChildProc,
    endpoint::Endpoint,
    error::{Error, Result},
    platform,
    registry::{self, ProcessKind, Registry, ServerRecord},
    runtime,
    spawn::{SpawnSpec, spawn},
};

/// How many log lines a start-up failure carries.
pub(crate) const EXIT_TAIL_LINES: usize = 20;

/// How many times a process whose lmcpp-chosen port was taken between choosing and
/// binding it is restarted on another port.
pub(crate) const PORT_ATTEMPTS: u32 = 5;

/// Environment variables as name/value pairs.
pub(crate) type EnvVars = Vec<(String, String)>;

/// What every supervised process is configured with, whatever it runs.
#[derive(Debug, Clone)]
pub(crate) struct ProcessOptions {
    /// Runtime dir for state files, sockets and logs; default
    /// [`crate::default_runtime_dir`].
    pub(crate) runtime_dir: Option<PathBuf>,
    /// Log file; default `<runtime dir>/<id>.log`.
    pub(crate) log_path: Option<PathBuf>,
    /// Working directory; default the runtime dir.
    pub(crate) cwd: Option<PathBuf>,
    /// Environment variables added to the child's environment.
    pub(crate) env: EnvVars,
    /// Variables of this process's environment the child does not inherit.
    pub(crate) env_remove: Vec<OsString>,
    /// How long a stop waits after SIGTERM before SIGKILL.
    pub(crate) stop_grace: Duration,
    /// Start the process so that it outlives this one.
    pub(crate) detached: bool,
}

/// Everything fixed before the first spawn attempt.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    kind: ProcessKind,
    registry: Registry,
    id: String,
    exe: PathBuf,
    log_path: PathBuf,
    cwd: PathBuf,
    opts: ProcessOptions,
}

/// What one spawn attempt runs: the parts that differ between attempts and kinds.
#[derive(Debug)]
pub(crate) struct SpawnAttempt {
    /// The command line after the binary.
    pub(crate) args: Vec<String>,
    /// Environment added to [`ProcessOptions::env`] for this attempt (secrets).
    pub(crate) env: EnvVars,
    /// Where the process will listen.
    pub(crate) endpoint: Endpoint,
    /// The model it serves (empty for workers).
    pub(crate) model: PathBuf,
    /// An API key lmcpp generated for it, recorded for other lmcpp processes.
    pub(crate) api_key: Option<String>,
}

impl Prepared {
    /// Checks the binary, opens the registry (creating the private runtime dir) and picks
    /// an id no state file uses yet.
    pub(crate) fn new(kind: ProcessKind, binary: &Path, opts: ProcessOptions) -> Result<Self> {
        check_binary(binary)?;
        let exe = binary
            .canonicalize()
            .map_err(|e| Error::io("cannot resolve", binary, e))?;
        let registry = Registry::new(
            opts.runtime_dir
                .clone()
                .unwrap_or_else(platform::default_runtime_dir),
        );
        registry.ensure_dir()?;
        let mut id = runtime::new_id();
        while registry.state_path(&id).exists() {
            id = runtime::new_id();
        }
        let log_path = opts
            .log_path
            .clone()
            .unwrap_or_else(|| registry.default_log_path(&id));
        let cwd = opts
            .cwd
            .clone()
            .unwrap_or_else(|| registry.dir().to_owned());
        Ok(Self {
            kind,
            registry,
            id,
            exe,
            log_path,
            cwd,
            opts,
        })
    }

    /// The registry the process is recorded in.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The log file.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Starts one attempt and records it; from the moment this returns, dropping the
    /// handle stops the process and removes its record.
    pub(crate) async fn spawn(&self, attempt: SpawnAttempt) -> Result<Supervised> {
        let log_start = std::fs::metadata(&self.log_path)
            .map(|m| m.len())
            .unwrap_or(0);
        let mut env = self.opts.env.clone();
        env.extend(attempt.env);
        let child = spawn(SpawnSpec {
            program: self.exe.clone(),
            args: attempt.args.clone(),
            cwd: self.cwd.clone(),
            env,
            env_remove: self.opts.env_remove.clone(),
            log: self.log_path.clone(),
            detached: self.opts.detached,
        })
        .await?;
        let pid = child.pid();
        let identity = platform::identity(pid);
        let record = ServerRecord {
            id: self.id.clone(),
            kind: self.kind,
            pid,
            exe: self.exe.clone(),
            start_time: identity.start_time,
            spawned_exe: identity.exe,
            boot_id: platform::boot_id(),
            endpoint: attempt.endpoint,
            model: attempt.model,
            api_key: attempt.api_key,
            log_path: self.log_path.clone(),
            args: attempt.args,
            detached: self.opts.detached,
            started_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
        };
        let handle = Supervised {
            registry: self.registry.clone(),
            record,
            child,
            stop_grace: self.opts.stop_grace,
            log_start,
            finished: false,
        };
        if let Err(e) = self.registry.write(&handle.record) {
            let _ = handle.stop().await;
            return Err(e);
        }
        Ok(handle)
    }
}

/// A running supervised child and its registry record.
///
/// Dropping it stops the process (SIGTERM, then SIGKILL after the grace period), blocking
/// the dropping thread for at most the grace period plus 5 s, and removes the record;
/// unless it was stopped, detached or retired after an exit.
#[derive(Debug)]
pub(crate) struct Supervised {
    registry: Registry,
    record: ServerRecord,
    child: ChildProc,
    stop_grace: Duration,
    /// Log size before this attempt, so its tail does not show an earlier attempt.
    log_start: u64,
    /// Set once the process is stopped, retired after its exit, or detached.
    finished: bool,
}

impl Supervised {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The registry record.
    pub(crate) fn record(&self) -> &ServerRecord {
        &self.record
    }

    /// The child, for readiness checks that race its exit.
    pub(crate) fn child(&self) -> &ChildProc {
        &self.child
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        self.child.status()
    }

    /// Resolves when the process exits.
    pub(crate) async fn exited(&self) -> ExitStatus {
        self.child.exited().await
    }

    /// The last `n` lines of the whole log.
    pub(crate) fn log_tail(&self, n: usize) -> Result<Vec<String>> {
        registry::log_tail(&self.record.log_path, 0, n)
    }

    /// The first lines this attempt wrote to the log, within `max_bytes`: what it said
    /// at start-up.
    pub(crate) fn log_head(&self, max_bytes: u64) -> Vec<String> {
        use std::io::{Read as _, Seek as _};
        let Ok(mut file) = std::fs::File::open(&self.record.log_path) else {
            return Vec::new();
        };
        let mut buf = Vec::new();
        if file.seek(std::io::SeekFrom::Start(self.log_start)).is_err()
            || file.take(max_bytes).read_to_end(&mut buf).is_err()
        {
            return Vec::new();
        }
        String::from_utf8_lossy(&buf)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// After the process exited: removes its record and returns the log lines this
    /// attempt wrote (at most [`EXIT_TAIL_LINES`]). Dropping the handle is then a no-op.
    pub(crate) fn retire(&mut self) -> Vec<String> {
        self.finished = true;
        self.registry.remove(&self.record);
        registry::log_tail(&self.record.log_path, self.log_start, EXIT_TAIL_LINES)
            .unwrap_or_default()
    }

    /// SIGTERM, up to the grace period, SIGKILL; reaps the process and removes its state
    /// file and socket. Returns the exit status.
    pub(crate) async fn stop(mut self) -> Result<ExitStatus> {
        let status = self.child.stop(self.stop_grace).await;
        self.registry.remove(&self.record);
        self.finished = true;
        status.ok_or(Error::StopTimeout { pid: self.pid() })
    }

    /// Lets the process run on after this handle is dropped; returns its record. One
    /// started attached still ends with this process.
    pub(crate) fn detach(mut self) -> ServerRecord {
        self.child.keep_until_exit();
        self.finished = true;
        self.record.clone()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.child.stop_blocking(self.stop_grace);
        self.registry.remove(&self.record);
    }
}

/// The binary exists and is an executable regular file.
pub(crate) fn check_binary(binary: &Path) -> Result<()> {
    let meta = std::fs::metadata(binary).map_err(|_| Error::BinaryNotFound {
        path: binary.to_owned(),
    })?;
    if !platform::is_executable(&meta) {
        return Err(Error::BinaryNotExecutable {
            path: binary.to_owned(),
        });
    }
    Ok(())
}

/// A port that is free on `host` right now (the OS picks it; we release it for the child).
pub(crate) fn free_port(host: IpAddr) -> Result<u16> {
    TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("cannot find a free port on", host.to_string(), e))
}

/// `port` on `host`, if nobody holds it right now; else [`Error::PortInUse`].
pub(crate) fn fixed_port(host: IpAddr, port: u16) -> Result<u16> {
    match TcpListener::bind((host, port)) {
        Ok(_) => Ok(port),
        Err(_) => Err(Error::PortInUse {
            host: host.to_string(),
            port,
        }),
    }
}
