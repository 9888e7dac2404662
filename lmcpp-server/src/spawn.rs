//! The one place that starts processes: cwd, environment, log file and containment.
//!
//! On Linux an attached child gets `PR_SET_PDEATHSIG(SIGKILL)`. The kernel delivers that
//! signal when the *thread* that forked the child exits, not the process, so every spawn
//! runs on one dedicated thread that lives as long as the process. After setting it the
//! child re-checks its parent: if the parent died between `fork` and `prctl`, the signal
//! will never come and the child exits on its own.

use std::{
    ffi::OsString,
    fs::File,
    io,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{OnceLock, mpsc},
};

use crate::error::{Error, Result};

/// What to start and how.
#[derive(Debug)]
pub(crate) struct SpawnSpec {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: PathBuf,
    /// Added to the inherited environment (secrets go here, never on the command line).
    pub(crate) env: Vec<(String, String)>,
    /// Removed from the inherited environment before `env` is added.
    pub(crate) env_remove: Vec<OsString>,
    /// stdout and stderr are appended to this file.
    pub(crate) log: PathBuf,
    /// Detached children start a new session and do not die with us.
    pub(crate) detached: bool,
}

type Job = Box<dyn FnOnce() + Send>;

/// The spawner thread's queue. The thread never exits, because the sender lives in this
/// static for the life of the process.
fn spawner() -> io::Result<&'static mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("lmcpp-spawner".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .map(|_| tx)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| io::Error::other(format!("cannot start the spawner thread: {e}")))
}

/// Starts the process described by `spec` on the spawner thread.
pub(crate) async fn spawn(spec: SpawnSpec) -> Result<Child> {
    let spawn_err = |source| Error::Spawn {
        binary: spec.program.clone(),
        source,
    };
    let log = File::options()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|e| Error::io("cannot open log file", &spec.log, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("cannot open log file", &spec.log, e))?;

    let mut cmd = Command::new(&spec.program);
    for name in &spec.env_remove {
        cmd.env_remove(name);
    }
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let detached = spec.detached;
    if !detached {
        cmd.process_group(0);
    }
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // calls (setsid, prctl, getppid, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if detached {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                return Ok(());
            }
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) == -1
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
            }
            let _ = parent;
            Ok(())
        });
    }

    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(cmd.spawn());
    });
    spawner()
        .map_err(spawn_err)?
        .send(job)
        .map_err(|_| spawn_err(io::Error::other("the spawner thread is gone")))?;
    rx.await
        .map_err(|_| spawn_err(io::Error::other("the spawner thread dropped the request")))?
        .map_err(spawn_err)
}
