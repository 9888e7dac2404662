//! What happens to the proxy's models, as a stream of typed events ([`ModelEvent`]):
//! each start, ready server, failed start, stop with its exact cause, and death, sent at
//! the moment the lifecycle (`models`) makes the transition, to every receiver of
//! [`Proxy::events`](crate::Proxy::events).
//!
//! A broadcast channel of bounded capacity: sending never waits for a receiver, so a
//! receiver that reads slowly or never costs the proxy nothing but the channel's fixed
//! memory; it loses the oldest events instead, and is told how many.

use std::time::SystemTime;

use tokio::sync::broadcast;

/// Where the proxy streams its [`ModelEvent`]s as Server-Sent Events.
pub const EVENTS_PATH: &str = "/lmcpp/events";

/// How many events the proxy keeps for a receiver that has not read them yet. A receiver
/// further behind misses the oldest ones: its next `recv` is
/// [`RecvError::Lagged(n)`](tokio::sync::broadcast::error::RecvError::Lagged) with the
/// number missed, and the one after that the oldest event still kept.
pub const MODEL_EVENT_CAPACITY: usize = 256;

/// One thing that happened to one model behind the proxy.
///
/// The events of one model come in the order they happened. A start is
/// [`Starting`](ModelEventKind::Starting) followed by exactly one of
/// [`Ready`](ModelEventKind::Ready), [`StartFailed`](ModelEventKind::StartFailed),
/// [`NoRoom`](ModelEventKind::NoRoom), or [`Stopped`](ModelEventKind::Stopped) with
/// [`StopReason::ProxyStopping`] (the proxy stopped during the start; with the server's
/// id when its server had started). A ready server ends with exactly one
/// [`Stopped`](ModelEventKind::Stopped) (sent once it has exited) or
/// [`Died`](ModelEventKind::Died).
///
/// A reload ([`Proxy::reload`](crate::Proxy::reload)) announces each model it touched:
/// [`Added`](ModelEventKind::Added), [`Removed`](ModelEventKind::Removed) (its server, if
/// one runs, is [`Stopped`](ModelEventKind::Stopped) with [`StopReason::Removed`] once
/// its requests have finished), [`Replaced`](ModelEventKind::Replaced) (likewise with
/// [`StopReason::Replaced`]; the next request starts the new configuration) or
/// [`Updated`](ModelEventKind::Updated) (settings changed in place, the server kept);
/// then one [`Reloaded`](ModelEventKind::Reloaded) whose alias is `*`, as the router's
/// `models_reload` event names every model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ModelEvent {
    /// The model's alias.
    pub alias: String,
    /// When it happened (milliseconds since the Unix epoch in JSON).
    #[serde(with = "unix_ms")]
    pub at: SystemTime,
    /// The registry id of the model's server, where one is concerned and known.
    pub server_id: Option<String>,
    /// The pid of the model's server, where one is concerned and known.
    pub pid: Option<u32>,
    /// What happened.
    pub kind: ModelEventKind,
}

/// What happened to a model ([`ModelEvent::kind`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelEventKind {
    /// A request needs the model: its start began (the [`Launch`](crate::Launch)'s
    /// `prepare`, then room in the budget, then its `launch`).
    Starting,
    /// Its server is ready and takes requests.
    Ready,
    /// The start failed; the next request tries again.
    StartFailed {
        /// Why, as the requests that waited for it were told.
        message: String,
        /// The exit code of a server that exited during its start (a signal `N` is
        /// `128 + N`).
        #[serde(default)]
        exit_code: Option<i32>,
    },
    /// The start was refused: the model does not fit the memory budget beside the models
    /// that cannot be stopped now (busy, pinned, loading or just started).
    NoRoom {
        /// The model's memory estimate.
        estimate_bytes: u64,
        /// The proxy's memory budget.
        budget_bytes: u64,
    },
    /// The proxy stopped the model's server, which has exited.
    Stopped {
        /// Why the proxy stopped it.
        reason: StopReason,
    },
    /// The model's server exited on its own; the next request starts it again.
    Died {
        /// How it exited (`exit status: 1`, `signal: 9 (SIGKILL)`).
        exit: String,
        /// The same as one number: the exit code, or `128 + N` for signal `N`.
        #[serde(default)]
        exit_code: Option<i32>,
    },
    /// A reload added the model; it starts at its first request.
    Added,
    /// A reload removed the model: it takes no new request, and its server stops once
    /// the requests in flight have finished.
    Removed,
    /// A reload changed how the model starts (its model, binary or arguments): the
    /// running server, if any, finishes its requests and stops; the next request starts
    /// the new configuration.
    Replaced,
    /// A reload changed only how the proxy treats the model (keep-alive, pinning, queue
    /// bound, estimate): applied at once, its server kept.
    Updated,
    /// A reload was applied (after the events of each model it changed). Its alias is
    /// `*`: it concerns the whole list of models, which a client may read again.
    Reloaded,
}

/// Why the proxy stopped a model's server ([`ModelEventKind::Stopped`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// It was idle for its keep-alive.
    KeepAlive {
        /// The keep-alive, in milliseconds.
        keep_alive_ms: u64,
    },
    /// It was idle and another model needed its room in the memory budget.
    Evicted {
        /// The alias of the model it made room for.
        for_model: String,
    },
    /// `POST /models/unload` asked for it.
    Unloaded,
    /// The proxy stops.
    ProxyStopping,
    /// A reload removed the model (stopped once its requests had finished).
    Removed,
    /// A reload changed how the model starts (stopped once its requests had finished;
    /// the next request starts the new configuration).
    Replaced,
}

/// The sending side, owned by the lifecycle.
pub(crate) struct Emitter(broadcast::Sender<ModelEvent>);

impl Emitter {
    pub(crate) fn new() -> Self {
        Self(broadcast::channel(MODEL_EVENT_CAPACITY).0)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ModelEvent> {
        self.0.subscribe()
    }

    /// Sends an event about model `alias` (and its server, where one is concerned) to
    /// every receiver; never waits, and builds nothing when there is none.
    pub(crate) fn emit(
        &self,
        alias: &str,
        server_id: Option<&str>,
        pid: Option<u32>,
        kind: ModelEventKind,
    ) {
        if self.0.receiver_count() == 0 {
            return;
        }
        // An error only says that every receiver has gone meanwhile.
        let _ = self.0.send(ModelEvent {
            alias: alias.to_owned(),
            at: SystemTime::now(),
            server_id: server_id.map(str::to_owned),
            pid,
            kind,
        });
    }
}

/// `SystemTime` as milliseconds since the Unix epoch.
mod unix_ms {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = u64::deserialize(d)?;
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| serde::de::Error::custom("time out of range"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The JSON shape is part of the API: an event round-trips, and reads as shown.
    #[test]
    fn events_serialize_as_documented() {
        let json = serde_json::json!({
            "alias": "a", "at": 1_700_000_000_123_u64, "server_id": "s1", "pid": 42,
            "kind": {"type": "stopped", "reason": {"type": "evicted", "for_model": "b"}}
        });
        let event: ModelEvent = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            event.kind,
            ModelEventKind::Stopped {
                reason: StopReason::Evicted {
                    for_model: "b".into()
                }
            }
        );
        assert_eq!(serde_json::to_value(&event).unwrap(), json);
        let hostile = serde_json::json!({
            "alias": "a", "at": u64::MAX, "server_id": null, "pid": null,
            "kind": {"type": "ready"}
        });
        // Far beyond any real time: refused or read, never a panic.
        let _ = serde_json::from_value::<ModelEvent>(hostile);
    }

    #[tokio::test]
    async fn a_receiver_that_never_reads_loses_the_oldest_events_and_is_told_how_many() {
        let emitter = Emitter::new();
        let never = emitter.subscribe();
        let mut late = emitter.subscribe();
        let extra = 10;
        for _ in 0..MODEL_EVENT_CAPACITY + extra {
            emitter.emit("a", None, None, ModelEventKind::Starting);
        }
        assert_eq!(
            late.recv().await.unwrap_err(),
            broadcast::error::RecvError::Lagged(extra as u64)
        );
        assert_eq!(late.recv().await.unwrap().kind, ModelEventKind::Starting);
        drop(never);
    }
}
