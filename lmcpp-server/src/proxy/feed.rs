//! The proxy's event streams as Server-Sent Events: `GET /lmcpp/events` (each
//! [`ModelEvent`] as its JSON) and `GET /models/sse` (the same events in the router's
//! shape). Each is a receiver of the proxy's broadcast channel: subscribed before the
//! answer's head is sent, so a client that has the head misses no later event; a client
//! that reads too slowly loses the oldest events and is told how many in a comment line
//! (`: lagged N`); a ping comment every [`SSE_PING`] keeps idle connections (and the
//! clients' idle timeouts) alive and finds a client that went away. The stream ends when
//! the proxy stops.

use std::{pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, stream};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::events::ModelEvent;

/// How often an event stream with nothing to say sends a comment line.
pub const SSE_PING: Duration = Duration::from_secs(15);

/// A stream of SSE frames.
pub(crate) type Feed = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// How a feed renders one event: the JSON of each frame it sends for it (none, one, or
/// several, as the router sends two for a start).
pub(crate) type Render = Arc<dyn Fn(&ModelEvent) -> Vec<Value> + Send + Sync>;

/// The SSE frames of every event `events` receives, each rendered by `render` (an event
/// it renders as nothing is not sent), until the proxy stops (`stopping` turns true) or
/// the channel closes.
pub(crate) fn feed(
    events: broadcast::Receiver<ModelEvent>,
    stopping: watch::Receiver<bool>,
    render: Render,
) -> Feed {
    let mut ping = tokio::time::interval(SSE_PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.reset();
    let state = (events, stopping, ping);
    Box::pin(stream::unfold(
        state,
        move |(mut events, mut stopping, mut ping)| {
            let render = Arc::clone(&render);
            async move {
                let frame = loop {
                    break tokio::select! {
                        received = events.recv() => match received {
                            Ok(event) => {
                                let frames = render(&event);
                                if frames.is_empty() {
                                    continue;
                                }
                                frames.iter().map(|json| format!("data: {json}\n\n")).collect()
                            }
                            Err(broadcast::error::RecvError::Lagged(n)) => format!(": lagged {n}\n\n"),
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        _ = stopping.wait_for(|s| *s) => return None,
                        _ = ping.tick() => ": ping\n\n".to_owned(),
                    };
                };
                Some((Bytes::from(frame), (events, stopping, ping)))
            }
        },
    ))
}

/// A [`ModelEvent`] as `/lmcpp/events` sends it: its own JSON.
pub(crate) fn own_json(event: &ModelEvent) -> Vec<Value> {
    serde_json::to_value(event).into_iter().collect()
}
