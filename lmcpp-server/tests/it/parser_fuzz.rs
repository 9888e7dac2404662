//! Fuzz targets, as bounded proptest runs in every test run, for the two parsers the
//! client feeds with whatever a server sends: Server-Sent Events
//! ([`lmcpp_types::sse::SseParser`]) and Prometheus text ([`lmcpp_types::metrics`]).
//! Hostile input must give values or typed errors, never a panic, and what the SSE parser
//! holds must stay within what it was fed.

use lmcpp_types::metrics::Metrics;
use lmcpp_types::sse::{SseEvent, SseParser, parse_sse};
use proptest::prelude::*;

/// Bytes rich in what SSE is made of: field names, colons, spaces, every line ending,
/// `[DONE]`, and arbitrary bytes (invalid UTF-8 included).
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data:".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event: error".to_vec()),
        Just(b"id: 7".to_vec()),
        Just(b": ping".to_vec()),
        Just(b"retry: 10".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(b"{\"content\":\"a\"}".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(token, 0..64).prop_map(|t| t.concat())
}

/// Feeds `bytes` in the pieces `cuts` makes, checking the parser's holding on the way.
fn feed_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        parser.push(&bytes[from..cut], &mut out);
        // It never holds more than it was given (lossy UTF-8 may triple a byte).
        assert!(
            parser.buffered() <= 3 * cut + 3,
            "{} > {cut}",
            parser.buffered()
        );
        from = cut;
    }
    parser.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// However the stream is cut into pieces, the same events come out (CR and LF split
    /// across pieces included), and no event holds more than the input.
    #[test]
    fn sse_events_do_not_depend_on_how_bytes_arrive(
        bytes in sse_bytes(),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let whole = feed_in_pieces(&bytes, &[]);
        let pieces = feed_in_pieces(&bytes, &cuts);
        prop_assert_eq!(&whole, &pieces);
        for event in &whole {
            prop_assert!(event.data.len() <= 3 * bytes.len());
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            prop_assert_eq!(parse_sse(text), whole);
        }
    }

    /// Arbitrary text never panics the Prometheus parser.
    #[test]
    fn prometheus_text_never_panics(text in prometheus_text()) {
        if let Ok(metrics) = Metrics::parse(&text) {
            let samples = metrics.samples().count();
            prop_assert!(samples <= text.lines().count());
            let _ = metrics.llama();
        }
    }

    /// Samples written out in the exposition format are read back as written.
    #[test]
    fn prometheus_samples_round_trip(
        samples in proptest::collection::vec(
            ("[a-z_:][a-z0-9_:]{0,12}", "[a-z_][a-z0-9_]{0,6}", "[ -~]{0,10}", -1e9f64..1e9),
            1..20,
        ).prop_map(|mut samples| {
            // One sample per name: samples are grouped by family when read back.
            let mut seen = std::collections::HashSet::new();
            samples.retain(|s| seen.insert(s.0.clone()));
            samples
        }),
    ) {
        let mut text = String::new();
        for (name, label, value, number) in &samples {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            text.push_str(&format!(
                "# TYPE {name} gauge\n{name}{{{label}=\"{escaped}\"}} {number}\n"
            ));
        }
        let metrics = Metrics::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        let parsed: Vec<_> = metrics.samples().collect();
        prop_assert_eq!(parsed.len(), samples.len());
        for (sample, (name, label, value, number)) in parsed.iter().zip(&samples) {
            prop_assert_eq!(&sample.name, name);
            prop_assert_eq!(sample.labels.get(label.as_str()), Some(value));
            prop_assert_eq!(sample.value, *number);
        }
    }
}

/// Text rich in what the exposition format is made of.
fn prometheus_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("# HELP ".to_owned()),
        Just("# TYPE ".to_owned()),
        Just("llamacpp:prompt_tokens_total".to_owned()),
        Just(" counter".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("le=\"0.5\"".to_owned()),
        Just(",".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just(" 1.5".to_owned()),
        Just(" NaN".to_owned()),
        Just(" +Inf".to_owned()),
        Just(" 1700000000000".to_owned()),
        Just("\n".to_owned()),
        any::<String>(),
    ];
    proptest::collection::vec(token, 0..48).prop_map(|t| t.concat())
}
