//! The proxy's own Prometheus metrics (`GET /lmcpp/metrics`), per model: requests, the
//! time requests waited for their model, load times, evictions, refusals, its state,
//! queue and requests in flight. A model server's own metrics stay at `/metrics`
//! (`?model=`), forwarded like any other request, so the two never mix.

use std::fmt::Write as _;

use super::{models::Listed, view::ModelState};

/// Where the proxy's own Prometheus metrics are: `/metrics` (with `?model=`) is each
/// model server's own, forwarded.
pub const METRICS_PATH: &str = "/lmcpp/metrics";

/// Every state a model can be in, for the one-hot `lmcpp_proxy_model_state`.
const STATES: [ModelState; 4] = [
    ModelState::Stopped,
    ModelState::Loading,
    ModelState::Ready,
    ModelState::Failed,
];

/// The metrics text of `models` (Prometheus exposition format 0.0.4).
pub(crate) fn render(models: &[Listed]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&Listed) -> f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for m in models {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\"}} {}",
                label(&m.view.alias),
                value(m)
            );
        }
    };
    let secs = |d: std::time::Duration| d.as_secs_f64();
    family(
        "lmcpp_proxy_requests_total",
        "counter",
        "Requests let through to the model's server (`POST /models/load` included).",
        &|m| m.counters.requests as f64,
    );
    family(
        "lmcpp_proxy_queue_wait_seconds_sum",
        "counter",
        "Total time requests waited for the model (its start, room, or their turn).",
        &|m| secs(m.counters.wait_total),
    );
    family(
        "lmcpp_proxy_queue_wait_seconds_count",
        "counter",
        "Requests that waited for the model.",
        &|m| m.counters.waits as f64,
    );
    family(
        "lmcpp_proxy_load_seconds_sum",
        "counter",
        "Total time the model's servers took from launch to ready.",
        &|m| secs(m.counters.load_total),
    );
    family(
        "lmcpp_proxy_load_seconds_count",
        "counter",
        "Starts of the model's server that became ready.",
        &|m| m.counters.loads as f64,
    );
    family(
        "lmcpp_proxy_load_failures_total",
        "counter",
        "Starts of the model's server that failed.",
        &|m| m.counters.load_failures as f64,
    );
    family(
        "lmcpp_proxy_evictions_total",
        "counter",
        "Times the model was stopped to make room for another.",
        &|m| m.counters.evictions as f64,
    );
    family(
        "lmcpp_proxy_rejected_total",
        "counter",
        "Requests refused with a 429 because the model's queue was full.",
        &|m| m.counters.rejected as f64,
    );
    family(
        "lmcpp_proxy_queued",
        "gauge",
        "Requests waiting for the model now.",
        &|m| m.queued as f64,
    );
    family(
        "lmcpp_proxy_in_flight",
        "gauge",
        "Requests and streams in flight on the model's server now.",
        &|m| m.view.in_flight as f64,
    );
    family(
        "lmcpp_proxy_estimate_bytes",
        "gauge",
        "The model's memory estimate.",
        &|m| m.view.estimate_bytes as f64,
    );
    let name = "lmcpp_proxy_model_state";
    let _ = writeln!(
        out,
        "# HELP {name} 1 for the model's state (stopped, loading, ready, failed), else 0."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for m in models {
        for state in STATES {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",state=\"{state}\"}} {}",
                label(&m.view.alias),
                u8::from(m.view.state == state)
            );
        }
    }
    out
}

/// A label value escaped as the exposition format wants (`\`, `"` and newlines).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
