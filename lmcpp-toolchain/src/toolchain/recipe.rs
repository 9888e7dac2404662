//! The recipe state machine: request → fingerprint → entry → lock → re-check → work in
//! scratch → publish `bin/` with one rename → persist `state.json` atomically.
//!
//! An entry directory `<root>/toolchains/<fingerprint>/` holds `state.json`, `build.log`
//! and, once published, `bin/`. Its lock is `<root>/toolchains/<fingerprint>.lock` and its
//! scratch dir `<root>/toolchains/.<fingerprint>.<pid>.scratch` (same filesystem, so the publish
//! is a rename). A run that fails records the failure; after `fail_limit` consecutive
//! failures the entry is purged so the next run starts clean. A run that could reach none
//! of its sources records nothing (see `RunFailure`).

use std::path::Path;

use crate::cache::remove_all;
use crate::error::{Error, IoContext, Result};
use crate::lock::{LockGuard, lock_exclusive};
use crate::progress::{ProgressEvent, SharedProgress};
use crate::toolchain::backend::Backend;
use crate::toolchain::entries::Keyed;
use crate::toolchain::handle::Toolchain;
use crate::toolchain::request::ToolchainRequest;
use crate::toolchain::run::{EntryJob, RunFailure};
use crate::toolchain::state::{
    EntryState, EntryStatus, Installed, clear_stale_scratch, first_usable, installed_from,
    now_unix, read_state, shared_failure, write_state,
};

impl Toolchain {
    /// Returns the cached toolchain for `request` without any network or build work.
    pub async fn ensure_cached(&self, request: &ToolchainRequest) -> Result<Installed> {
        let entries = self.entries_for(request).await?;
        if let Some(i) = first_usable(&entries) {
            return Ok(i);
        }
        // `auto`'s GPU choice may have been unobtainable when the toolchain was ensured;
        // then `ensure` installed the CPU one, which is what `auto` has here.
        if request.backend == Backend::Auto {
            let cpu = ToolchainRequest {
                backend: Backend::Cpu,
                ..request.clone()
            };
            if let Some(i) = first_usable(&self.entries_for(&cpu).await?) {
                return Ok(i);
            }
        }
        Err(Error::NotCached {
            entry: entries.into_iter().next().map(|e| e.2).unwrap_or_default(),
        })
    }

    /// Makes sure the toolchain for `request` is installed or built, and returns it.
    ///
    /// Any published entry the request accepts (a prebuilt, or a build of the same version,
    /// backend, arguments and features) is returned without locking. Otherwise each origin
    /// is tried in turn: its entry lock is taken (waiting, with holder reports, up to the
    /// lock timeout), the entry re-checked, and its sources tried in order. Failure is
    /// always an error, recorded in the entry.
    pub async fn ensure(
        &self,
        request: &ToolchainRequest,
        progress: &SharedProgress,
    ) -> Result<Installed> {
        let Keyed {
            backend,
            reason,
            entries,
        } = self.keyed(request).await?;
        if let Some(i) = first_usable(&entries) {
            return Ok(i);
        }
        if request.backend == Backend::Auto {
            progress.event(ProgressEvent::Note {
                message: format!("backend auto: {backend} ({reason})"),
            });
        }
        self.layout.create()?;
        let resolved = ToolchainRequest {
            backend,
            ..request.clone()
        };
        let mut attempts = Vec::new();
        for (origin, fp, entry) in &entries {
            let job = EntryJob {
                request: &resolved,
                origin: *origin,
                fingerprint: fp,
                entry,
                reason: &reason,
            };
            match self.ensure_entry(&job, progress).await {
                Ok(i) => return Ok(i),
                // A source that could not be had is not final while other origins remain.
                Err(Error::AllSourcesFailed { attempts: a }) => attempts.extend(a),
                Err(e) => return Err(e),
            }
        }
        // `auto` picked a GPU backend on the machine's evidence (a loader or driver), but
        // neither its prebuilt nor its build could be had (offline, no SDK): the CPU is
        // always there, and a working CPU server beats none.
        if request.backend == Backend::Auto && backend != Backend::Cpu {
            progress.event(ProgressEvent::Note {
                message: format!("backend auto: {backend} could not be obtained; using cpu"),
            });
            let cpu = ToolchainRequest {
                backend: Backend::Cpu,
                ..request.clone()
            };
            return Box::pin(self.ensure(&cpu, progress))
                .await
                .map_err(|e| match e {
                    Error::AllSourcesFailed { attempts: cpu } => {
                        attempts.extend(cpu);
                        Error::AllSourcesFailed { attempts }
                    }
                    e => e,
                });
        }
        Err(Error::AllSourcesFailed { attempts })
    }

    /// One origin's entry: locked, re-checked, run in scratch, published or its failure
    /// recorded.
    async fn ensure_entry(
        &self,
        job: &EntryJob<'_>,
        progress: &SharedProgress,
    ) -> Result<Installed> {
        let (fp, entry) = (job.fingerprint, job.entry);
        let lock_path = self.layout.toolchains().join(format!("{fp}.lock"));
        let before = read_state(entry).ok().flatten();
        let guard = lock_exclusive(&lock_path, self.lock_timeout, progress).await?;
        // A corrupt state file is treated like a missing one: the entry is rebuilt.
        let previous = read_state(entry).unwrap_or_default();
        if let Some(state) = &previous {
            if let Some(i) = installed_from(entry, state) {
                progress.event(ProgressEvent::Note {
                    message: format!("{} was published while we waited", entry.display()),
                });
                return Ok(i);
            }
            if let Some(e) = shared_failure(before.as_ref(), state, job.origin) {
                return Err(e);
            }
        }
        let now = now_unix();
        let mut state = EntryState {
            schema: 2,
            status: EntryStatus::Building,
            fingerprint: fp.to_owned(),
            version: job.request.version.label(),
            obtained: None,
            origin: Some(job.origin),
            backend: job.request.backend,
            backend_reason: job.reason.to_owned(),
            mode: job.request.mode,
            cmake_args: Vec::new(),
            source: None,
            source_dir: None,
            llama_server: None,
            rpc_server: None,
            failures: previous.as_ref().map_or(0, |p| p.failures),
            last_error: previous.as_ref().and_then(|p| p.last_error.clone()),
            bin_size: 0,
            llama_server_size: 0,
            created_unix: previous.as_ref().map_or(now, |p| p.created_unix),
            updated_unix: now,
            request: job.request.clone(),
        };
        std::fs::create_dir_all(entry).ctx("create directory", entry)?;
        write_state(entry, &state)?;
        // Scratch dirs of earlier runs of this entry are stale (we hold its lock). They are
        // removed best effort: a build orphaned by a killed run may still be writing into
        // one, which is why every run works in its own directory.
        clear_stale_scratch(&self.layout.toolchains(), fp);
        let scratch = self
            .layout
            .toolchains()
            .join(format!(".{fp}.{}.scratch", std::process::id()));
        remove_all(&scratch)?;
        std::fs::create_dir_all(&scratch).ctx("create directory", &scratch)?;

        let result = match self.run(job, &scratch, progress).await {
            Ok(outcome) => self
                .publish(entry, &scratch, outcome, &mut state)
                .await
                .map_err(RunFailure::recorded),
            Err(f) => Err(f),
        };
        let _ = remove_all(&scratch);
        match result {
            Ok(installed) => Ok(installed),
            Err(RunFailure {
                error,
                record: false,
            }) => {
                // Nothing could be reached: that says nothing about the entry, so it is left
                // as it was before this run (and not created at all when it was new).
                match &previous {
                    Some(p) => {
                        let _ = write_state(entry, p);
                    }
                    None => {
                        if remove_all(entry).is_ok() {
                            guard.unlink();
                        }
                    }
                }
                Err(error)
            }
            Err(RunFailure { error, .. }) => {
                self.record_failure(entry, &mut state, &error, &guard, progress);
                Err(error)
            }
        }
    }

    /// Records a failed run in the entry's state, and purges the entry once it failed
    /// `fail_limit` times in a row.
    fn record_failure(
        &self,
        entry: &Path,
        state: &mut EntryState,
        error: &Error,
        guard: &LockGuard,
        progress: &SharedProgress,
    ) {
        state.status = EntryStatus::Failed;
        state.failures += 1;
        state.last_error = Some(error.to_string());
        state.updated_unix = now_unix();
        if state.failures >= self.fail_limit {
            progress.event(ProgressEvent::Note {
                message: format!(
                    "{} failed {} times in a row; purged it so the next run starts clean",
                    entry.display(),
                    state.failures
                ),
            });
            if remove_all(entry).is_ok() {
                guard.unlink();
            }
        } else {
            let _ = write_state(entry, state);
        }
    }
}
