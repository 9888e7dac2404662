//! A small server-sent-events decoder for the streaming endpoints: turns raw bytes into
//! events and `data:` payloads. Pure parsing, no I/O.

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any (`/v1/messages`, `/v1/responses`, `error`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
}

impl SseEvent {
    /// `true` for the OpenAI end marker `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }

    /// Decodes the data as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

/// Incremental decoder: feed it chunks as they arrive, get complete events back.
/// Comment lines (`: ping`) are skipped; `\n`, `\r\n` and `\r` line ends are accepted.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseDecoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes and returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            // A lone `\r` at the end of the buffer may be followed by `\n` in the next chunk.
            if self.buf[pos] == b'\r' && pos + 1 == self.buf.len() {
                break;
            }
            let skip = if self.buf[pos] == b'\r' && self.buf.get(pos + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let line: Vec<u8> = self.buf.drain(..pos + skip).take(pos).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(ev) = self.line(&line) {
                out.push(ev);
            }
        }
        out
    }

    /// Flushes a final event that was not followed by a blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buf.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            let trimmed = rest.trim_end_matches(['\r', '\n']).to_owned();
            if let Some(ev) = self.line(&trimmed) {
                return Some(ev);
            }
        }
        self.dispatch()
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.current.event = Some(value.to_owned()),
            "id" => self.current.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let ev = std::mem::take(&mut self.current);
        let had = std::mem::replace(&mut self.has_data, false);
        had.then_some(ev)
    }
}

/// Splits a complete SSE body into events.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    let mut out = d.push(text.as_bytes());
    out.extend(d.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_comments_and_crlf() {
        let body = ": ping\r\n\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\ndata: [DONE]";
        let evs = parse_sse(body);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].event.as_deref(), Some("message_start"));
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].data, "x\ny");
        assert!(evs[2].is_done());
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let body = b"data: {\"content\":\"hi\"}\r\n\r\ndata: {\"content\":\"!\"}\n\n";
        let whole = parse_sse(std::str::from_utf8(body).unwrap_or_default());
        for split in 0..body.len() {
            let mut d = SseDecoder::new();
            let mut evs = d.push(&body[..split]);
            evs.extend(d.push(&body[split..]));
            evs.extend(d.finish());
            assert_eq!(evs, whole, "split at {split}");
        }
    }
}
