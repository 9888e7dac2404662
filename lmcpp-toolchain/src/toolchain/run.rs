//! One run of an entry in its scratch directory: the origin's sources tried in order (a
//! prebuilt installed, or a source tree obtained and built), and why a run produced nothing
//! ([`RunFailure`]: recorded in the entry, or not when nothing could be reached).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, SourceAttempt};
use crate::progress::{ProgressEvent, SharedProgress};
use crate::toolchain::entries::plan_here;
use crate::toolchain::handle::Toolchain;
use crate::toolchain::request::{Origin, ToolchainRequest};
use crate::toolchain::source::Ctx;
use lmcpp_types::Classify;

/// One origin of one request, as `ensure` works on it.
pub(super) struct EntryJob<'a> {
    pub(super) request: &'a ToolchainRequest,
    pub(super) origin: Origin,
    pub(super) fingerprint: &'a str,
    pub(super) entry: &'a Path,
    pub(super) reason: &'a str,
}

/// What a successful run leaves in scratch.
pub(super) struct Outcome {
    pub(super) bin: PathBuf,
    pub(super) source: String,
    pub(super) source_dir: Option<PathBuf>,
    pub(super) cmake_args: Vec<String>,
    /// What `llama-server --version` printed, when it already ran in scratch.
    pub(super) version_output: Option<String>,
}

/// Why a run produced nothing, and whether that says something about the entry.
///
/// A bad digest, a broken archive, a binary whose `--version` fails or a failed build are
/// recorded in the entry (and count towards its purge). A run whose every source failed
/// before anything could be had from it (connection refused, timeout, a name that does not
/// resolve, a 5xx: the usual offline case) is not: the entry is left as it was, so an
/// offline machine does not collect failed entries for `toolchain prune` to remove.
pub(super) struct RunFailure {
    pub(super) error: Error,
    pub(super) record: bool,
}

impl RunFailure {
    /// A failure recorded in the entry.
    pub(super) fn recorded(error: Error) -> Self {
        Self {
            error,
            record: true,
        }
    }
}

/// Whether `e` is the network not being reachable or failing transiently (a later retry
/// may succeed): it says nothing about what was asked for.
pub(super) fn is_unreached(e: &Error) -> bool {
    e.is_transient()
        || matches!(
            e,
            Error::Download(crate::download::error::Error::Unreachable { .. })
        )
}

/// The sources a run tried and why each gave nothing, and whether every one tried failed
/// before reaching anything (then the run's failure is not recorded, see [`RunFailure`]).
struct Attempts {
    list: Vec<SourceAttempt>,
    tried: bool,
    unreached: bool,
}

impl Attempts {
    fn new() -> Self {
        Self {
            list: Vec::new(),
            tried: false,
            unreached: true,
        }
    }

    /// A source passed over (by the plan, or because it cannot make the backend).
    fn skipped(&mut self, source: String, location: String, why: impl std::fmt::Display) {
        self.list.push(SourceAttempt {
            source,
            location: if location.is_empty() {
                "-".into()
            } else {
                location
            },
            error: format!("skipped: {why}"),
        });
    }

    /// A source tried that failed with `error`.
    fn failed(&mut self, source: String, location: String, error: &Error) {
        self.tried = true;
        self.unreached &= is_unreached(error);
        self.list.push(SourceAttempt {
            source,
            location,
            error: error.to_string(),
        });
    }

    /// The run's failure once every source gave nothing.
    fn into_failure(self) -> RunFailure {
        RunFailure {
            record: !(self.tried && self.unreached),
            error: Error::AllSourcesFailed {
                attempts: self.list,
            },
        }
    }
}

impl Toolchain {
    /// Tries the sources of `job`'s origin in order until one gives a `bin/` in
    /// `scratch`.
    pub(super) async fn run(
        &self,
        job: &EntryJob<'_>,
        scratch: &Path,
        progress: &SharedProgress,
    ) -> Result<Outcome, RunFailure> {
        let request = &ToolchainRequest {
            sources: job.request.sources_of(job.origin),
            ..job.request.clone()
        };
        let cross = if job.origin == Origin::Built {
            self.cross_for_build(request).await?
        } else {
            None
        };
        let plan = plan_here(request, cross.as_ref());
        let ctx = Ctx {
            layout: &self.layout,
            downloader: &self.downloader,
            lock_timeout: self.lock_timeout,
            progress,
        };
        let mut attempts = Attempts::new();
        let backend_check = self.check_build_backend(request, cross.is_some(), &plan.os);
        if job.origin == Origin::Built
            && let Err(e) = backend_check
        {
            attempts.skipped("build".into(), String::new(), e);
            return Err(RunFailure::recorded(attempts.into_failure().error));
        }
        for ps in &plan.sources {
            let kind = ps.source.kind().to_owned();
            let location = ps.locations.join(" + ");
            if let Some(why) = &ps.skip {
                attempts.skipped(kind, location, why);
                continue;
            }
            progress.event(ProgressEvent::Note {
                message: format!("trying {kind} ({location})"),
            });
            if ps.source.is_prebuilt() {
                match self.prebuilt(&ctx, request, &ps.source, scratch).await {
                    Ok(outcome) => return Ok(outcome),
                    Err(e) => {
                        tracing::debug!(%kind, "source failed: {e}");
                        attempts.failed(kind, location, &e);
                        continue;
                    }
                }
            }
            let tree = match self.source_tree(&ctx, request, &ps.source, &location).await {
                Ok(t) => t,
                Err(e) => {
                    attempts.failed(kind, location, &e);
                    continue;
                }
            };
            // A build failure is final: another copy of the same source would fail alike.
            let bin = self
                .build(&tree, &plan, &request.python, job.entry, scratch, progress)
                .await
                .map_err(RunFailure::recorded)?;
            return Ok(Outcome {
                bin,
                source: format!("{kind} {location}"),
                source_dir: Some(tree),
                cmake_args: plan.cmake_args.clone(),
                version_output: None,
            });
        }
        Err(attempts.into_failure())
    }
}
