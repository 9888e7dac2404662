//! What the proxy reports about its models: [`ModelState`] and [`ModelView`], shared by
//! the lifecycle (`models`) and the HTTP side (`service`).

use std::time::SystemTime;

/// The lifecycle state of one model behind the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ModelState {
    /// Not running; the next request starts it.
    Stopped,
    /// Its server is starting.
    Loading,
    /// Its server is ready.
    Ready,
    /// The last start failed or the server died; the next request tries again.
    Failed,
}

impl std::fmt::Display for ModelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stopped => "stopped",
            Self::Loading => "loading",
            Self::Ready => "ready",
            Self::Failed => "failed",
        })
    }
}

/// What the proxy reports about one model ([`Proxy::models`](crate::Proxy::models), and the `lmcpp` object of
/// each `/v1/models` entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ModelView {
    /// The alias.
    pub alias: String,
    /// Its state.
    pub state: ModelState,
    /// Its memory estimate in bytes.
    pub estimate_bytes: u64,
    /// When a request last used it (started or finished), if ever.
    #[serde(default, with = "opt_ms")]
    pub last_used: Option<SystemTime>,
    /// The pid of its server while one runs.
    pub pid: Option<u32>,
    /// The registry id of its server while one runs.
    pub server_id: Option<String>,
    /// Requests and streams in flight.
    pub in_flight: usize,
    /// Its keep-alive in seconds (`None`: kept running).
    pub keep_alive_secs: Option<u64>,
    /// Whether it is never evicted.
    pub pinned: bool,
    /// The llama.cpp version, when known.
    pub llama_version: Option<String>,
    /// Why the last start failed or the server died (state [`ModelState::Failed`]).
    pub error: Option<String>,
    /// How its server exited, as one number, when it failed by exiting (state
    /// [`ModelState::Failed`]): the exit code, or `128 + N` for signal `N`.
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// `Option<SystemTime>` as milliseconds since the Unix epoch.
mod opt_ms {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }
}
