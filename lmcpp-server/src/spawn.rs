//! The one place that starts processes: cwd, environment, log file and containment
//! ([`crate::platform::contain`]: what keeps a child from outliving lmcpp on each OS).
//!
//! Every spawn runs on one dedicated thread that lives as long as the process: Linux
//! delivers the parent-death signal when the *thread* that forked the child exits, not
//! the process, so a child spawned from a short-lived thread would die with it.

use std::{
    ffi::OsString,
    fs::File,
    io,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{OnceLock, mpsc},
};

use crate::{
    child::ChildProc,
    error::{Error, Result},
    platform,
};

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

/// Starts the process described by `spec` on the spawner thread, contained.
pub(crate) async fn spawn(spec: SpawnSpec) -> Result<ChildProc> {
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
    let pending = platform::contain(&mut cmd, spec.detached).map_err(spawn_err)?;

    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let started = cmd
            .spawn()
            .and_then(|mut child| match pending.adopt(&child) {
                Ok(group) => Ok(ChildProc::new(child, group)),
                Err(e) => {
                    // Uncontained, it must not run at all.
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(e)
                }
            });
        let _ = tx.send(started);
    });
    spawner()
        .map_err(spawn_err)?
        .send(job)
        .map_err(|_| spawn_err(io::Error::other("the spawner thread is gone")))?;
    rx.await
        .map_err(|_| spawn_err(io::Error::other("the spawner thread dropped the request")))?
        .map_err(spawn_err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::PathBuf;

    use super::*;

    /// Set when this test binary runs as the contained child (it sleeps) or as the
    /// parent that contains it (then it holds the child's pid file's directory).
    const CHILD_ROLE: &str = "LMCPP_PLATFORM_TEST_CHILD";
    const PARENT_ROLE: &str = "LMCPP_PLATFORM_TEST_PARENT";

    /// Whatever ends lmcpp (here: SIGKILL on Unix, TerminateProcess on Windows), a child it
    /// started attached ends with it: the parent-death signal and lifeline on Unix, the
    /// Job object's kill-on-close on Windows.
    #[test]
    fn a_contained_child_dies_with_its_parent() {
        let exe = std::env::current_exe().unwrap();
        let this = "spawn::tests::a_contained_child_dies_with_its_parent";
        if std::env::var_os(CHILD_ROLE).is_some() {
            std::thread::sleep(std::time::Duration::from_secs(60));
            return;
        }
        if let Some(dir) = std::env::var_os(PARENT_ROLE) {
            let dir = PathBuf::from(dir);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let child = spawn(SpawnSpec {
                    program: exe.clone(),
                    args: vec!["--exact".into(), this.into(), "--nocapture".into()],
                    cwd: dir.clone(),
                    env: vec![(CHILD_ROLE.into(), "1".into())],
                    env_remove: vec![PARENT_ROLE.into()],
                    log: dir.join("child.log"),
                    detached: false,
                })
                .await
                .unwrap();
                std::fs::write(dir.join("pid.tmp"), child.pid().to_string()).unwrap();
                std::fs::rename(dir.join("pid.tmp"), dir.join("pid")).unwrap();
                std::future::pending::<()>().await;
            });
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut parent = std::process::Command::new(&exe)
            .args(["--exact", this, "--nocapture"])
            .env(PARENT_ROLE, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let wait = |what: &str, cond: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !cond() {
                assert!(std::time::Instant::now() < deadline, "timed out: {what}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        let pidfile = dir.path().join("pid");
        wait("the child's pid", &|| pidfile.exists());
        let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
        assert!(platform::alive(pid));
        parent.kill().unwrap();
        parent.wait().unwrap();
        wait("the child's end after its parent's", &|| {
            !platform::alive(pid)
        });
    }
}
