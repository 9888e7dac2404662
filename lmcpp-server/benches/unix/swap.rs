//! Swap thrash: two models of which the memory budget holds one, and a stream of requests
//! that alternates between them (A, B, A, B, ... each arriving 2 ms after the one
//! before, all in flight at once), replayed through the proxy twice: as it schedules by
//! default (batches per model, `max_pass_over` 30 s) and first come first served
//! (`max_pass_over` 0). Reported: how many times a model server was started (each start
//! after the first is a swap), the total time to the last answer, and the longest any
//! request waited, with the ratio of the total times.
//!
//! Needs the prerequisites of the end-to-end tests (`cargo xtask prepare`).

use std::{path::Path, sync::Arc, time::Duration, time::Instant};

use lmcpp_server::{Launch, ModelSpec, Proxy, ProxyOptions};
use lmcpp_test_support::PreparedPaths;
use lmcpp_types::native::completion::CompletionRequest;

use super::{DemoLaunch, options};

/// Requests in the stream, half to each model.
const REQUESTS: usize = 16;
/// Between two arrivals.
const SPACING: Duration = Duration::from_millis(2);

/// What one replay measured.
struct Replay {
    starts: f64,
    total: Duration,
    longest: Duration,
}

async fn replay(paths: &PreparedPaths, dir: &Path, pass_over: Duration) -> Replay {
    let mut opts = ProxyOptions::new(100);
    opts.runtime_dir = Some(dir.join("run"));
    opts.max_pass_over = pass_over;
    let specs = ["a", "b"]
        .into_iter()
        .map(|alias| {
            let launch: Arc<dyn Launch> = Arc::new(DemoLaunch(options(paths, dir)));
            let mut spec = ModelSpec::new(alias, launch);
            // Each holds 60 of the budget's 100: one fits, not both.
            spec.estimate_bytes = 60;
            spec
        })
        .collect();
    let proxy = Proxy::start(opts, specs).await.unwrap();
    let client = proxy.client();
    let started = Instant::now();
    let mut requests = Vec::new();
    for i in 0..REQUESTS {
        let client = client.clone();
        let model = if i % 2 == 0 { "a" } else { "b" };
        let req: CompletionRequest = serde_json::from_value(serde_json::json!({
            "model": model, "prompt": "Once upon a time", "n_predict": 4
        }))
        .unwrap();
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            client.completion(&req).await.unwrap();
            sent.elapsed()
        }));
        tokio::time::sleep(SPACING).await;
    }
    let mut longest = Duration::ZERO;
    for r in requests {
        longest = longest.max(r.await.unwrap());
    }
    let total = started.elapsed();
    let metrics = client.proxy_metrics().await.unwrap();
    let starts = metrics
        .samples()
        .filter(|s| s.name == "lmcpp_proxy_load_seconds_count")
        .map(|s| s.value)
        .sum();
    proxy.stop().await.unwrap();
    Replay {
        starts,
        total,
        longest,
    }
}

pub(crate) async fn run() {
    let paths = lmcpp_test_support::prepared();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "swap thrash: {REQUESTS} requests alternating between two models of which one fits, {} ms apart",
        SPACING.as_millis()
    );
    // FIFO first on odd rounds, so that neither always runs on a machine warmed by the other.
    let mut batched = Vec::new();
    let mut fifo = Vec::new();
    for round in 0..2 {
        if round % 2 == 0 {
            batched.push(replay(&paths, dir.path(), lmcpp_server::DEFAULT_MAX_PASS_OVER).await);
            fifo.push(replay(&paths, dir.path(), Duration::ZERO).await);
        } else {
            fifo.push(replay(&paths, dir.path(), Duration::ZERO).await);
            batched.push(replay(&paths, dir.path(), lmcpp_server::DEFAULT_MAX_PASS_OVER).await);
        }
    }
    let best = |v: &[Replay]| {
        v.iter()
            .min_by_key(|r| r.total)
            .map(|r| (r.starts, r.total, r.longest))
            .unwrap()
    };
    let (b_starts, b_total, b_longest) = best(&batched);
    let (f_starts, f_total, f_longest) = best(&fifo);
    println!(
        "  batches per model: {b_starts} starts ({} swaps), {:.2} s in all, longest wait {:.2} s",
        b_starts - 1.0,
        b_total.as_secs_f64(),
        b_longest.as_secs_f64()
    );
    println!(
        "  first come first served: {f_starts} starts ({} swaps), {:.2} s in all, longest wait {:.2} s",
        f_starts - 1.0,
        f_total.as_secs_f64(),
        f_longest.as_secs_f64()
    );
    println!(
        "swap thrash ratio (batches / first come first served, total time, best of {}): {:.3}",
        batched.len(),
        b_total.as_secs_f64() / f_total.as_secs_f64()
    );
}
