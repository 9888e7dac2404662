//! Server-Sent Events as the streaming endpoints send them: an incremental parser (the
//! subset of the WHATWG rules a client needs) and helpers to read `data:` payloads. Pure
//! parsing, no I/O.
//!
//! Bytes arrive in arbitrary pieces; the parser buffers only the current unfinished line.
//! Lines end with LF, CRLF or a lone CR (also when the CR and LF arrive in different
//! pieces). Comment lines (`:` first, used by servers as pings) are skipped, several
//! `data:` lines of one event are joined with `\n`, and an event is dispatched at a blank
//! line. Interpreting `[DONE]` or an error payload is the caller's business
//! ([`SseEvent::is_done`], [`SseEvent::json`]).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if the event had one (`/v1/messages`, `/v1/responses`, `error`).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The `id:` field, if the event had one.
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

/// Incremental parser; feed it with [`SseParser::push`] and finish with [`SseParser::finish`].
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line that has not ended yet.
    line: Vec<u8>,
    /// The previous piece ended with CR, so a leading LF of the next piece belongs to it.
    after_cr: bool,
    /// The event being assembled.
    current: SseEvent,
    /// Whether any `data:` field was seen for the current event.
    has_data: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the stream and appends every event it completes to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut impl Extend<SseEvent>) {
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if let [b'\n', rest @ ..] = bytes {
                bytes = rest;
            }
        }
        while let Some(pos) = bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (head, tail) = bytes.split_at(pos);
            let line = if self.line.is_empty() {
                String::from_utf8_lossy(head).into_owned()
            } else {
                self.line.extend_from_slice(head);
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                line
            };
            self.line_done(&line, out);
            bytes = &tail[1..];
            if tail[0] == b'\r' {
                match bytes {
                    [b'\n', rest @ ..] => bytes = rest,
                    [] => self.after_cr = true,
                    _ => {}
                }
            }
        }
        self.line.extend_from_slice(bytes);
    }

    /// How many bytes the parser holds right now: the unfinished line and the event being
    /// assembled. A client caps this to bound what a hostile stream can make it buffer.
    pub fn buffered(&self) -> usize {
        self.line.len()
            + self.current.data.len()
            + self.current.event.as_ref().map_or(0, String::len)
            + self.current.id.as_ref().map_or(0, String::len)
    }

    /// Ends the stream: an unterminated last line is processed and an event still being
    /// assembled is dispatched (servers that close without the final blank line lose
    /// nothing).
    pub fn finish(&mut self, out: &mut impl Extend<SseEvent>) {
        if !self.line.is_empty() {
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            self.line_done(&line, out);
        }
        self.line_done("", out);
        self.after_cr = false;
    }

    fn line_done(&mut self, line: &str, out: &mut impl Extend<SseEvent>) {
        if line.is_empty() {
            let event = std::mem::take(&mut self.current);
            if std::mem::take(&mut self.has_data) {
                out.extend(std::iter::once(event));
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
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
            "id" if !value.contains('\0') => self.current.id = Some(value.to_owned()),
            _ => {}
        }
    }
}

/// Splits a complete SSE body into events.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    parser.push(text.as_bytes(), &mut out);
    parser.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: None,
        }
    }

    /// Parses `input` split into pieces at every possible position (one split, and
    /// byte by byte) and checks that all of them give `expected`.
    fn check(name: &str, input: &str, expected: &[SseEvent]) {
        let bytes = input.as_bytes();
        let mut splits: Vec<Vec<&[u8]>> = vec![vec![bytes], bytes.chunks(1).collect()];
        for i in 0..=bytes.len() {
            splits.push(vec![&bytes[..i], &[], &bytes[i..]]);
        }
        for pieces in splits {
            let mut parser = SseParser::new();
            let mut out = Vec::new();
            for piece in &pieces {
                parser.push(piece, &mut out);
            }
            parser.finish(&mut out);
            assert_eq!(out, expected, "case {name:?}, pieces {pieces:?}");
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, Vec<SseEvent>)] = &[
            ("empty stream", "", vec![]),
            (
                "one event",
                "data: {\"a\":1}\n\n",
                vec![ev(None, "{\"a\":1}")],
            ),
            (
                "two events",
                "data: a\n\ndata: b\n\n",
                vec![ev(None, "a"), ev(None, "b")],
            ),
            (
                "crlf",
                "data: a\r\n\r\ndata: b\r\n\r\n",
                vec![ev(None, "a"), ev(None, "b")],
            ),
            (
                "lone cr",
                "data: a\r\rdata: b\r\r",
                vec![ev(None, "a"), ev(None, "b")],
            ),
            (
                "mixed endings",
                "data: a\r\n\ndata: b\n\r\n",
                vec![ev(None, "a"), ev(None, "b")],
            ),
            (
                "multi-line data",
                "data: a\ndata: b\ndata:\n\n",
                vec![ev(None, "a\nb\n")],
            ),
            ("no space after colon", "data:x\n\n", vec![ev(None, "x")]),
            (
                "only one space stripped",
                "data:  x\n\n",
                vec![ev(None, " x")],
            ),
            (
                "comment ping",
                ":\n\n: ping\ndata: a\n\n",
                vec![ev(None, "a")],
            ),
            (
                "blank lines without data",
                "\n\n\n\ndata: a\n\n\n",
                vec![ev(None, "a")],
            ),
            ("field without colon", "data\n\n", vec![ev(None, "")]),
            (
                "unknown field ignored",
                "retry: 10\nfoo: bar\ndata: a\n\n",
                vec![ev(None, "a")],
            ),
            (
                "named event",
                "event: error\ndata: {}\n\n",
                vec![ev(Some("error"), "{}")],
            ),
            (
                "event name reset",
                "event: x\ndata: 1\n\ndata: 2\n\n",
                vec![ev(Some("x"), "1"), ev(None, "2")],
            ),
            (
                "event without data not dispatched",
                "event: x\n\ndata: 2\n\n",
                vec![ev(None, "2")],
            ),
            (
                "done marker",
                "data: {}\n\ndata: [DONE]\n\n",
                vec![ev(None, "{}"), ev(None, "[DONE]")],
            ),
            ("missing final blank line", "data: a\n", vec![ev(None, "a")]),
            ("missing final newline", "data: a", vec![ev(None, "a")]),
            (
                "utf-8 kept whole",
                "data: h\u{e9}llo \u{1f600}\n\n",
                vec![ev(None, "h\u{e9}llo \u{1f600}")],
            ),
            (
                "colon inside value",
                "data: {\"a\":\"b:c\"}\n\n",
                vec![ev(None, "{\"a\":\"b:c\"}")],
            ),
        ];
        for (name, input, expected) in cases {
            check(name, input, expected);
        }
    }

    #[test]
    fn id_field() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        parser.push(b"id: 7\ndata: a\n\n", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id.as_deref(), Some("7"));
    }

    #[test]
    fn events_are_emitted_as_soon_as_complete() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        parser.push(b"data: a\n", &mut out);
        assert!(out.is_empty());
        parser.push(b"\ndata: b", &mut out);
        assert_eq!(out, vec![ev(None, "a")]);
    }

    #[test]
    fn large_stream_in_odd_pieces() {
        let mut input = String::new();
        for i in 0..2000 {
            input.push_str(&format!("data: {{\"i\":{i}}}\r\n\r\n"));
        }
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(7) {
            parser.push(piece, &mut out);
        }
        parser.finish(&mut out);
        assert_eq!(out.len(), 2000);
        assert_eq!(out[1999].data, "{\"i\":1999}");
    }

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
}
