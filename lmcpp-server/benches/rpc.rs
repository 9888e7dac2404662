//! Generation speed of the demo model run locally vs offloaded to two ggml RPC workers on
//! loopback, side by side with the ratio. There is no target: the numbers document what
//! the RPC hop costs (every graph evaluation crosses two TCP connections).
//!
//! Needs the prerequisites of the end-to-end tests (`cargo xtask prepare`), including
//! `rpc_server`. Run with `cargo bench -p lmcpp-server --bench rpc`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use lmcpp_server::{LaunchOptions, RpcWorker, RpcWorkerOptions, Server, TransportChoice};
use lmcpp_test_support::PreparedPaths;
use lmcpp_types::native::completion::CompletionRequest;

/// Tokens generated per run.
const N_PREDICT: i32 = 128;
/// Measured runs per configuration (after one warm-up).
const RUNS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median tokens/s over [`RUNS`]: measured end to end by the client, and as the server
/// reports it for the generation phase alone.
struct Speed {
    client: f64,
    server: f64,
}

async fn measure(paths: &PreparedPaths, dir: &Path, rpc: Vec<String>) -> Speed {
    let mut opts = LaunchOptions::new(&paths.llama_server, &paths.demo_model);
    opts.runtime_dir = Some(dir.join("run"));
    opts.transport = TransportChoice::Unix;
    opts.args.ctx_size = Some(1024);
    opts.args.parallel = Some(1);
    opts.args.threads = Some(1);
    opts.args.rpc = rpc;
    // Every layer on the workers when there are workers; irrelevant for the CPU build
    // when there are none.
    opts.args.gpu_layers = Some(99);
    let server = Server::launch(opts).await.unwrap();
    let client = server.client();
    let mut req = CompletionRequest::new("Once upon a time").n_predict(N_PREDICT);
    req.params.ignore_eos = Some(true);
    req.params.seed = Some(1);
    client.completion(&req).await.unwrap();
    let (mut by_client, mut by_server) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let started = Instant::now();
        let resp = client.completion(&req).await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        by_client.push(resp.tokens_predicted as f64 / secs);
        if let Some(tps) = resp.timings.and_then(|t| t.predicted_per_second) {
            by_server.push(tps);
        }
    }
    server.stop().await.unwrap();
    Speed {
        client: median(by_client),
        server: if by_server.is_empty() {
            f64::NAN
        } else {
            median(by_server)
        },
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without
    // it, and must not start workers and servers for a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "lmcpp-server rpc benchmark: run it with `cargo bench -p lmcpp-server --bench rpc`"
        );
        return;
    }
    let paths = lmcpp_test_support::prepared();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let rpc_server = paths
        .rpc_server(root)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_path_buf();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let local = measure(&paths, dir.path(), Vec::new()).await;

        let mut workers = Vec::new();
        for _ in 0..2 {
            let mut opts = RpcWorkerOptions::new(&rpc_server);
            opts.runtime_dir = Some(dir.path().join("run"));
            opts.threads = Some(1);
            opts.ready_timeout = Duration::from_secs(30);
            workers.push(RpcWorker::launch(opts).await.unwrap());
        }
        let addrs = workers.iter().map(RpcWorker::address).collect();
        let remote = measure(&paths, dir.path(), addrs).await;
        for w in workers {
            w.stop().await.unwrap();
        }

        println!("demo model, {N_PREDICT} tokens per run, median of {RUNS} runs (tokens/s)");
        println!(
            "{:<28} {:>12} {:>16} {:>10}",
            "measure", "local", "2 rpc workers", "ratio"
        );
        for (name, l, r) in [
            ("end to end (client)", local.client, remote.client),
            ("generation (server timings)", local.server, remote.server),
        ] {
            println!("{name:<28} {l:>12.1} {r:>16.1} {:>9.2}x", l / r);
        }
        println!("ratio = local / rpc: how many times slower generation is through the workers");
    });
}
