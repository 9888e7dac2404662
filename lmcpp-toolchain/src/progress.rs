//! Progress reporting: libraries emit events, the CLI renders them.

use std::path::PathBuf;
use std::sync::Arc;

/// One thing worth telling a user about long-running work.
///
/// Libraries never print; they send these to a [`Progress`] sink, which the CLI turns into
/// progress bars and log lines. Events are advisory: a sink may drop any of them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// A new stage of work started (e.g. "downloading llama.cpp source").
    Stage {
        /// Short human-readable name of the stage.
        name: String,
    },
    /// Bytes transferred or processed so far in the current stage.
    Bytes {
        /// Bytes done so far (including bytes resumed from an earlier partial transfer).
        done: u64,
        /// Total bytes, when known.
        total: Option<u64>,
    },
    /// Percentage of a build reported by the build tool (`[ 42%]` lines).
    BuildPercent {
        /// 0 to 100.
        percent: u8,
        /// The line the percentage came from.
        line: String,
    },
    /// Another thread or process holds a lock we need; we are waiting for it.
    Waiting {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as recorded in the lock file (pid and command), when known.
        holder: Option<String>,
    },
    /// A free-form note (a fallback taken, a cache hit, a retry).
    Note {
        /// The message, lower-case, no trailing period.
        message: String,
    },
    /// The current stage finished.
    Done,
}

/// A sink for [`ProgressEvent`]s. Implementations must be cheap and must not block.
pub trait Progress: Send + Sync {
    /// Receives one event.
    fn event(&self, event: ProgressEvent);
}

/// A sink that drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}

impl<F> Progress for F
where
    F: Fn(ProgressEvent) + Send + Sync,
{
    fn event(&self, event: ProgressEvent) {
        self(event)
    }
}

/// A shareable progress sink.
pub type SharedProgress = Arc<dyn Progress>;

/// A sink that drops every event, as a [`SharedProgress`].
pub fn no_progress() -> SharedProgress {
    Arc::new(NoProgress)
}
