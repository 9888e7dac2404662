//! Typed Server-Sent Event streams: the body of a streaming response, parsed by
//! [`lmcpp_types::sse`] within the client's size cap and idle timeout, each event
//! classified as an item, the end, or an error.

use std::{
    collections::VecDeque,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use http::Method;
use hyper::body::{Body as _, Incoming};
use serde::de::DeserializeOwned;
use tokio::time::Sleep;

use lmcpp_types::sse::{SseEvent, SseParser};

use crate::{
    ApiError,
    answer::{api_error_from_text, snippet, transport_error},
    error::{Error, Result},
    limits::ClientLimits,
};

/// A stream of typed Server-Sent Events from one streaming request.
///
/// Ends after `data: [DONE]` or when the server closes the response. A mid-stream error
/// (`{"error":{...}}` as data, or an `error` event) is yielded as [`Error::Api`] and ends
/// the stream, as do a server that sends nothing for the idle timeout
/// ([`Error::StreamStalled`]) and an event over the size cap ([`Error::TooLarge`]).
/// Dropping it closes the connection and cancels the generation.
pub struct EventStream<T> {
    path: String,
    body: Option<Incoming>,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
    done: bool,
    max_event: usize,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("path", &self.path)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// What one SSE event means for a typed stream.
#[derive(Debug)]
pub(crate) enum Classified<T> {
    Item(T),
    Done,
    Skip,
    Failed(Error),
}

/// Interprets one event: `[DONE]`, an error, an item, or nothing.
pub(crate) fn classify<T: DeserializeOwned>(path: &str, event: &SseEvent) -> Classified<T> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Classified::Done;
    }
    if data.is_empty() {
        return Classified::Skip;
    }
    let value: serde_json::Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => {
            return Classified::Failed(Error::Decode {
                path: path.to_owned(),
                snippet: snippet(data.as_bytes()),
                source: e,
            });
        }
    };
    let is_error_event = event.event.as_deref() == Some("error");
    if let Some(err) = value.get("error").filter(|e| e.is_object())
        && (is_error_event || value.as_object().is_some_and(|o| o.len() == 1))
    {
        return Classified::Failed(stream_error(path, err));
    }
    if is_error_event {
        return Classified::Failed(stream_error(path, &value));
    }
    match serde_json::from_value(value) {
        Ok(item) => Classified::Item(item),
        Err(e) => Classified::Failed(Error::Decode {
            path: path.to_owned(),
            snippet: snippet(data.as_bytes()),
            source: e,
        }),
    }
}

fn stream_error(path: &str, err: &serde_json::Value) -> Error {
    let error = serde_json::from_value::<ApiError>(err.clone())
        .unwrap_or_else(|_| api_error_from_text(200, &err.to_string()));
    Error::Api {
        status: 200,
        path: path.to_owned(),
        error,
    }
}

impl<T> EventStream<T> {
    pub(crate) fn new(path: &str, body: Incoming, limits: &ClientLimits) -> Self {
        Self {
            path: path.to_owned(),
            body: Some(body),
            parser: SseParser::new(),
            queue: VecDeque::new(),
            done: false,
            max_event: limits.max_event,
            idle: limits
                .stream_idle_timeout
                .map(|d| (d, Box::pin(tokio::time::sleep(d)))),
            _item: PhantomData,
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.body = None;
        self.queue.clear();
    }

    /// Feeds one piece of the body to the parser, within the event size cap (counting
    /// what the parser still holds, so a line or event that never ends is cut too).
    fn feed(&mut self, data: &[u8]) -> Result<()> {
        let queued = self.queue.len();
        self.parser.push(data, &mut self.queue);
        let oversized = self
            .queue
            .iter()
            .skip(queued)
            .any(|e| e.data.len() > self.max_event);
        if oversized || self.parser.buffered() > self.max_event {
            return Err(Error::TooLarge {
                path: self.path.clone(),
                what: "event",
                limit: self.max_event,
            });
        }
        if let Some((timeout, sleep)) = &mut self.idle {
            sleep.as_mut().reset(tokio::time::Instant::now() + *timeout);
        }
        Ok(())
    }

    /// Whether the idle timer has run out (registering the waker when not).
    fn stalled(&mut self, cx: &mut Context<'_>) -> Option<Error> {
        let (timeout, sleep) = self.idle.as_mut()?;
        sleep
            .as_mut()
            .poll(cx)
            .is_ready()
            .then(|| Error::StreamStalled {
                path: self.path.clone(),
                timeout: *timeout,
            })
    }
}

impl<T: DeserializeOwned> Stream for EventStream<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(event) = this.queue.pop_front() {
                match classify(&this.path, &event) {
                    Classified::Item(item) => return Poll::Ready(Some(Ok(item))),
                    Classified::Skip => continue,
                    Classified::Done => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Classified::Failed(e) => {
                        this.finish();
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            let Some(body) = this.body.as_mut() else {
                this.done = true;
                continue;
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => {
                    if let Some(err) = this.stalled(cx) {
                        this.finish();
                        return Poll::Ready(Some(Err(err)));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data()
                        && let Err(err) = this.feed(&data)
                    {
                        this.finish();
                        return Poll::Ready(Some(Err(err)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let err = transport_error(&Method::POST, &this.path, &e);
                    this.finish();
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    this.parser.finish(&mut this.queue);
                    this.body = None;
                    if this.queue.is_empty() {
                        this.done = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: None,
        }
    }

    #[test]
    fn classify_table() {
        type V = serde_json::Value;
        let cases: Vec<(SseEvent, &str)> = vec![
            (ev(None, "[DONE]"), "done"),
            (ev(None, " [DONE] "), "done"),
            (ev(None, ""), "skip"),
            (ev(None, "{\"content\":\"a\"}"), "item"),
            (
                ev(
                    None,
                    "{\"error\":{\"code\":500,\"message\":\"boom\",\"type\":\"server_error\"}}",
                ),
                "api",
            ),
            (
                ev(
                    Some("error"),
                    "{\"code\":500,\"message\":\"boom\",\"type\":\"server_error\"}",
                ),
                "api",
            ),
            (
                ev(Some("error"), "{\"error\":{\"message\":\"boom\"}}"),
                "api",
            ),
            // A chunk that merely has an `error` field among others is an item.
            (ev(None, "{\"error\":{\"x\":1},\"content\":\"a\"}"), "item"),
            (ev(None, "not json"), "decode"),
        ];
        for (event, want) in cases {
            let got = match classify::<V>("/x", &event) {
                Classified::Item(_) => "item",
                Classified::Done => "done",
                Classified::Skip => "skip",
                Classified::Failed(Error::Api { .. }) => "api",
                Classified::Failed(Error::Decode { .. }) => "decode",
                Classified::Failed(_) => "other",
            };
            assert_eq!(got, want, "{event:?}");
        }
    }
}
