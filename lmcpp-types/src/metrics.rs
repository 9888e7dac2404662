//! `GET /metrics` (needs `--metrics`): Prometheus text exposition parsed into typed
//! samples, plus the llama.cpp metrics by name.

use std::collections::{BTreeMap, HashMap};

use crate::Error;
use crate::macros::open_enum;

open_enum! {
    /// The `# TYPE` of a metric family.
    pub enum MetricKind {
        /// Monotonic counter.
        Counter = "counter",
        /// Value that goes up and down.
        Gauge = "gauge",
        /// Histogram.
        Histogram = "histogram",
        /// Summary.
        Summary = "summary",
        /// No type given.
        Untyped = "untyped",
    }
}

/// One sample line: `name{label="v"} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// Metric name, e.g. `llamacpp:prompt_tokens_total`.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value (`NaN`, `+Inf` and `-Inf` are allowed).
    pub value: f64,
    /// Optional timestamp in milliseconds.
    pub timestamp_ms: Option<i64>,
}

/// A metric family: its `# HELP`, `# TYPE` and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// Family name.
    pub name: String,
    /// Help text.
    pub help: Option<String>,
    /// Declared type.
    pub kind: Option<MetricKind>,
    /// Samples, in order.
    pub samples: Vec<MetricSample>,
}

/// A parsed `/metrics` body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    /// Families in the order they first appeared.
    pub families: Vec<MetricFamily>,
}

/// The metrics llama-server exports, by name (`None` when absent).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlamaMetrics {
    /// `llamacpp:prompt_tokens_total`.
    pub prompt_tokens_total: Option<f64>,
    /// `llamacpp:prompt_seconds_total`.
    pub prompt_seconds_total: Option<f64>,
    /// `llamacpp:prompt_tokens_seconds`.
    pub prompt_tokens_seconds: Option<f64>,
    /// `llamacpp:tokens_predicted_total`.
    pub tokens_predicted_total: Option<f64>,
    /// `llamacpp:tokens_predicted_seconds_total`.
    pub tokens_predicted_seconds_total: Option<f64>,
    /// `llamacpp:predicted_tokens_seconds`.
    pub predicted_tokens_seconds: Option<f64>,
    /// `llamacpp:requests_processing`.
    pub requests_processing: Option<f64>,
    /// `llamacpp:requests_deferred`.
    pub requests_deferred: Option<f64>,
    /// `llamacpp:n_tokens_max`.
    pub n_tokens_max: Option<f64>,
    /// `llamacpp:n_decode_total`.
    pub n_decode_total: Option<f64>,
    /// `llamacpp:n_busy_slots_per_decode`.
    pub n_busy_slots_per_decode: Option<f64>,
    /// `llamacpp:spec_decode_num_draft_tokens_total`.
    pub spec_decode_num_draft_tokens_total: Option<f64>,
    /// `llamacpp:spec_decode_num_accepted_tokens_total`.
    pub spec_decode_num_accepted_tokens_total: Option<f64>,
    /// `llamacpp:spec_decode_num_drafts_total`.
    pub spec_decode_num_drafts_total: Option<f64>,
}

impl Metrics {
    /// Parses Prometheus text exposition format.
    ///
    /// Linear in the size of the text: families are found through a map from name to
    /// index, so a body with many distinct names costs no more per line than a small one.
    pub fn parse(text: &str) -> Result<Metrics, Error> {
        let mut b = FamiliesBuilder::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |reason: &str| Error::MetricsParse {
                line: i + 1,
                reason: reason.to_owned(),
            };
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                let rest = rest.trim_start();
                if let Some(r) = rest.strip_prefix("HELP ") {
                    let (name, help) = r.split_once(' ').unwrap_or((r, ""));
                    b.family_mut(name).help = Some(unescape(help, false));
                } else if let Some(r) = rest.strip_prefix("TYPE ") {
                    let (name, kind) = r
                        .split_once(' ')
                        .ok_or_else(|| err("TYPE without a type"))?;
                    b.family_mut(name).kind = Some(MetricKind::from(kind.trim()));
                }
                continue;
            }
            let sample = parse_sample(line).map_err(|r| err(&r))?;
            let idx = b.family_of_sample(&sample.name);
            b.families[idx].samples.push(sample);
        }
        Ok(Metrics {
            families: b.families,
        })
    }

    /// All samples of all families.
    pub fn samples(&self) -> impl Iterator<Item = &MetricSample> {
        self.families.iter().flat_map(|f| f.samples.iter())
    }

    /// The value of the first sample named `name`.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.samples().find(|s| s.name == name).map(|s| s.value)
    }

    /// The llama.cpp metrics by name.
    pub fn llama(&self) -> LlamaMetrics {
        let v = |n: &str| self.value(&format!("llamacpp:{n}"));
        LlamaMetrics {
            prompt_tokens_total: v("prompt_tokens_total"),
            prompt_seconds_total: v("prompt_seconds_total"),
            prompt_tokens_seconds: v("prompt_tokens_seconds"),
            tokens_predicted_total: v("tokens_predicted_total"),
            tokens_predicted_seconds_total: v("tokens_predicted_seconds_total"),
            predicted_tokens_seconds: v("predicted_tokens_seconds"),
            requests_processing: v("requests_processing"),
            requests_deferred: v("requests_deferred"),
            n_tokens_max: v("n_tokens_max"),
            n_decode_total: v("n_decode_total"),
            n_busy_slots_per_decode: v("n_busy_slots_per_decode"),
            spec_decode_num_draft_tokens_total: v("spec_decode_num_draft_tokens_total"),
            spec_decode_num_accepted_tokens_total: v("spec_decode_num_accepted_tokens_total"),
            spec_decode_num_drafts_total: v("spec_decode_num_drafts_total"),
        }
    }
}

/// The families of a body being parsed, in order of first appearance, with an index by name.
#[derive(Default)]
struct FamiliesBuilder {
    families: Vec<MetricFamily>,
    by_name: HashMap<String, usize>,
}

impl FamiliesBuilder {
    /// The index of the family named `name`, created (last) when it is new.
    fn index_or_insert(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        self.families.push(MetricFamily {
            name: name.to_owned(),
            help: None,
            kind: None,
            samples: Vec::new(),
        });
        let i = self.families.len() - 1;
        self.by_name.insert(name.to_owned(), i);
        i
    }

    fn family_mut(&mut self, name: &str) -> &mut MetricFamily {
        let i = self.index_or_insert(name);
        &mut self.families[i]
    }

    /// The family a sample belongs to: its own name when a family has it, else the
    /// declared family of a histogram or summary suffix (`_bucket`, `_sum`, `_count`),
    /// else a new family of its own name.
    fn family_of_sample(&mut self, sample: &str) -> usize {
        if let Some(&i) = self.by_name.get(sample) {
            return i;
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && let Some(&i) = self.by_name.get(base)
            {
                return i;
            }
        }
        self.index_or_insert(sample)
    }
}

fn unescape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') if quote => out.push('"'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("`{s}` is not a number")),
    }
}

fn parse_sample(line: &str) -> Result<MetricSample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| "sample without a value".to_owned())?;
    let name = line[..name_end].to_owned();
    if name.is_empty() {
        return Err("sample without a name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut s = after;
        loop {
            s = s.trim_start_matches([' ', ',']);
            if let Some(r) = s.strip_prefix('}') {
                rest = r;
                break;
            }
            let (key, r) = s.split_once('=').ok_or("label without `=`")?;
            let r = r.strip_prefix('"').ok_or("label value is not quoted")?;
            let mut end = None;
            let mut escaped = false;
            for (i, c) in r.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated label value")?;
            labels.insert(key.trim().to_owned(), unescape(&r[..end], true));
            s = &r[end + 1..];
        }
    }
    let mut parts = rest.split_whitespace();
    let value = parse_value(parts.next().ok_or("sample without a value")?)?;
    let timestamp_ms = match parts.next() {
        Some(t) => Some(t.parse().map_err(|_| format!("`{t}` is not a timestamp"))?),
        None => None,
    };
    Ok(MetricSample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_help_type_labels_and_special_values() {
        let text = "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n\
                    # TYPE llamacpp:prompt_tokens_total counter\n\
                    llamacpp:prompt_tokens_total 12\n\
                    # TYPE x gauge\n\
                    x{a=\"b\\\"c\",d=\"e\"} +Inf 1700000000000\n\
                    # TYPE h histogram\n\
                    h_bucket{le=\"0.5\"} 3\nh_sum 1.5\nh_count 3\n";
        let m = Metrics::parse(text).expect("valid text");
        assert_eq!(m.llama().prompt_tokens_total, Some(12.0));
        let fam = &m.families[0];
        assert_eq!(fam.kind, Some(MetricKind::Counter));
        assert_eq!(
            fam.help.as_deref(),
            Some("Number of prompt tokens processed.")
        );
        let x = &m.families[1].samples[0];
        assert_eq!(x.labels.get("a").map(String::as_str), Some("b\"c"));
        assert_eq!(x.value, f64::INFINITY);
        assert_eq!(x.timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(m.families[2].samples.len(), 3);
    }

    /// The grouping as it was first written (a linear search per line), kept as the
    /// reference the map-based parse must agree with.
    fn reference_parse(text: &str) -> Result<Metrics, Error> {
        fn family_mut<'a>(m: &'a mut Metrics, name: &str) -> &'a mut MetricFamily {
            let idx = match m.families.iter().position(|f| f.name == name) {
                Some(i) => i,
                None => {
                    m.families.push(MetricFamily {
                        name: name.to_owned(),
                        help: None,
                        kind: None,
                        samples: Vec::new(),
                    });
                    m.families.len() - 1
                }
            };
            &mut m.families[idx]
        }
        fn family_name(m: &Metrics, sample: &str) -> String {
            if m.families.iter().any(|f| f.name == sample) {
                return sample.to_owned();
            }
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = sample.strip_suffix(suffix)
                    && m.families.iter().any(|f| f.name == base)
                {
                    return base.to_owned();
                }
            }
            sample.to_owned()
        }
        let mut m = Metrics::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |reason: &str| Error::MetricsParse {
                line: i + 1,
                reason: reason.to_owned(),
            };
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                let rest = rest.trim_start();
                if let Some(r) = rest.strip_prefix("HELP ") {
                    let (name, help) = r.split_once(' ').unwrap_or((r, ""));
                    family_mut(&mut m, name).help = Some(unescape(help, false));
                } else if let Some(r) = rest.strip_prefix("TYPE ") {
                    let (name, kind) = r
                        .split_once(' ')
                        .ok_or_else(|| err("TYPE without a type"))?;
                    family_mut(&mut m, name).kind = Some(MetricKind::from(kind.trim()));
                }
                continue;
            }
            let sample = parse_sample(line).map_err(|r| err(&r))?;
            let family = family_name(&m, &sample.name);
            family_mut(&mut m, &family).samples.push(sample);
        }
        Ok(m)
    }

    /// One line of a generated body: declarations and samples over a few names whose
    /// suffixes collide (`h`, `h_bucket`, `h_sum_count`, ...), so every branch of the
    /// grouping is taken, plus the odd broken line.
    fn line() -> impl Strategy<Value = String> {
        let base = prop::sample::select(vec!["h", "s", "x", "llamacpp:a", "h_sum"]);
        let suffix = prop::sample::select(vec!["", "_bucket", "_sum", "_count"]);
        let name = (base, suffix).prop_map(|(b, s)| format!("{b}{s}"));
        let kind = prop::sample::select(vec!["counter", "gauge", "histogram", "summary", "odd"]);
        prop_oneof![
            (name.clone(), "[a-z ]{0,8}").prop_map(|(n, h)| format!("# HELP {n} {h}")),
            (name.clone(), kind).prop_map(|(n, k)| format!("# TYPE {n} {k}")),
            (name.clone(), 0u8..3, -5i32..5).prop_map(|(n, l, v)| match l {
                0 => format!("{n} {v}"),
                1 => format!("{n}{{le=\"{v}\"}} {v}"),
                _ => format!("{n}{{a=\"x\",b=\"y\"}} {v} 17"),
            }),
            Just(String::new()),
            Just("# a comment".to_owned()),
            Just("broken{a=1} 2".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn parse_equals_the_reference(lines in prop::collection::vec(line(), 0..40)) {
            let text = lines.join("\n");
            match (Metrics::parse(&text), reference_parse(&text)) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "parse {a:?} but reference {b:?}"),
            }
        }
    }

    #[test]
    fn many_distinct_names_parse() {
        // Quadratic grouping made this take minutes; linear it is a blink. No timing
        // assert: the test's normal run completing is the check.
        const N: usize = 50_000;
        let mut text = String::new();
        for i in 0..N {
            text.push_str(&format!(
                "# TYPE m{i} histogram\nm{i}_bucket 1\nm{i}_sum 2\n"
            ));
        }
        let m = Metrics::parse(&text).expect("valid text");
        assert_eq!(m.families.len(), N);
        assert_eq!(m.families[N - 1].name, format!("m{}", N - 1));
        assert_eq!(m.families[N - 1].samples.len(), 2);
        assert_eq!(m.samples().count(), 2 * N);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err = Metrics::parse("ok 1\nbroken{a=1} 2\n").expect_err("unquoted label");
        assert!(matches!(err, Error::MetricsParse { line: 2, .. }), "{err}");
        assert!(Metrics::parse("x notanumber").is_err());
    }
}
