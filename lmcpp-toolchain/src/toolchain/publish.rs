//! Publishing a run's `bin/`: executables marked, `--version` and `--help` taken, every
//! file synced, then one rename into the entry and its state written `ready`.

use std::path::Path;

use crate::cache::{dir_size, sync_dir};
use crate::error::{Error, IoContext, Result};
use crate::toolchain::binary::{exe_name, run_binary_with};
use crate::toolchain::handle::Toolchain;
use crate::toolchain::run::Outcome;
use crate::toolchain::state::{
    EntryState, EntryStatus, HELP_FILE, Installed, installed_from, now_unix, write_state,
};
use crate::toolchain::target::Runner;
use crate::toolchain::versions::BinaryVersion;

impl Toolchain {
    /// Publishes a run's `bin/` into `entry` and marks the state ready.
    pub(super) async fn publish(
        &self,
        entry: &Path,
        scratch: &Path,
        outcome: Outcome,
        state: &mut EntryState,
    ) -> Result<Installed> {
        let server = exe_name(&state.request, "llama-server");
        let rpc = exe_name(&state.request, "rpc-server");
        let runner = Runner::for_target(&state.request.target_or_host());
        let server_path = outcome.bin.join(&server);
        if !server_path.is_file() {
            return Err(Error::ArtefactMissing {
                path: server_path,
                stage: "publishing".into(),
            });
        }
        make_executable(&server_path)?;
        let prefixed_rpc = outcome.bin.join(format!("ggml-{rpc}"));
        if !outcome.bin.join(&rpc).exists() && prefixed_rpc.is_file() {
            std::fs::rename(&prefixed_rpc, outcome.bin.join(&rpc)).ctx("rename", &prefixed_rpc)?;
        }
        let has_rpc = outcome.bin.join(&rpc).is_file();
        if has_rpc {
            make_executable(&outcome.bin.join(&rpc))?;
        }
        // Nothing is published that does not start: `--version` must answer (shared
        // libraries found, CPU supported), and `--help` is kept as the flags it accepts.
        // A cross build's binary is checked the same way where this machine can run it
        // (a Windows binary under Wine), and published unchecked where it cannot.
        let version_out = match outcome.version_output {
            Some(out) => Some(out),
            None => run_binary_with(&runner, &server_path, "--version").await?,
        };
        let obtained = version_out.as_deref().and_then(BinaryVersion::parse);
        let help = match version_out {
            Some(_) => run_binary_with(&runner, &server_path, "--help")
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
            None => String::new(),
        };
        let help_tmp = scratch.join(HELP_FILE);
        std::fs::write(&help_tmp, help.as_bytes()).ctx("write", &help_tmp)?;
        let server_size = std::fs::metadata(&server_path)
            .ctx("inspect", &server_path)?
            .len();
        sync_tree(&outcome.bin)?;
        let bin = entry.join("bin");
        if bin.exists() {
            // A stale bin/ from an earlier state is moved aside first; the state file still
            // says "building", so no reader trusts either directory in between.
            std::fs::rename(&bin, scratch.join("old-bin")).ctx("move aside", &bin)?;
        }
        std::fs::rename(&outcome.bin, &bin).ctx("publish", &bin)?;
        let help_path = entry.join(HELP_FILE);
        std::fs::rename(&help_tmp, &help_path).ctx("publish", &help_path)?;
        sync_dir(entry);
        state.status = EntryStatus::Ready;
        state.failures = 0;
        state.last_error = None;
        state.source = Some(outcome.source);
        state.source_dir = outcome.source_dir;
        state.cmake_args = outcome.cmake_args;
        state.obtained = obtained;
        state.llama_server = Some(server);
        state.rpc_server = has_rpc.then_some(rpc);
        state.bin_size = dir_size(&bin);
        state.llama_server_size = server_size;
        state.updated_unix = now_unix();
        write_state(entry, state)?;
        installed_from(entry, state).ok_or_else(|| Error::ArtefactMissing {
            path: bin,
            stage: "publishing".into(),
        })
    }
}

/// Flushes every file under `dir` (and the directories) to disk, so the publishing rename
/// never exposes binaries whose data a crash could lose.
fn sync_tree(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).ctx("read directory", dir)?.flatten() {
        let p = e.path();
        let t = e.file_type().ctx("inspect", &p)?;
        if t.is_dir() {
            sync_tree(&p)?;
        } else if t.is_file() {
            // Windows flushes a file only through a handle that may write to it
            // (`FlushFileBuffers`); elsewhere a read-only handle does, and files that
            // are read-only by their mode can still be synced.
            let file = if cfg!(windows) {
                std::fs::OpenOptions::new().write(true).open(&p)
            } else {
                std::fs::File::open(&p)
            };
            file.and_then(|f| f.sync_all()).ctx("sync", &p)?;
        }
    }
    sync_dir(dir);
    Ok(())
}

/// Marks a binary executable (and, on macOS, clears the quarantine mark).
fn make_executable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).ctx("inspect", path)?;
        let mode = meta.permissions().mode();
        if mode & 0o111 != 0o111 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o755))
                .ctx("make executable", path)?;
        }
    }
    // Gatekeeper refuses to run a binary marked as downloaded by a browser; an archive
    // the user fetched that way passes the mark to what is unpacked from it. lmcpp's own
    // downloads are never marked, so a missing attribute is the usual case.
    #[cfg(target_os = "macos")]
    {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
            // SAFETY: NUL-terminated path and attribute name; no options.
            unsafe { libc::removexattr(c.as_ptr(), c"com.apple.quarantine".as_ptr(), 0) };
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
