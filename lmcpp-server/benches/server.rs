//! Benchmarks of lmcpp-server against reference tools, run side by side and reported as
//! ratios: `/tokenize` throughput vs `oha` (UDS and TCP), UDS vs TCP, launch-to-ready vs a
//! shell loop polling `/health`, and streaming time-to-first-chunk vs `curl -N`.
//!
//! Needs the prerequisites of the end-to-end tests (`cargo xtask prepare`), `curl`, and
//! `oha` on `PATH` (or in `LMCPP_OHA`) for the throughput reference; without `oha` those
//! two ratios are reported as missing.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use lmcpp_server::{Client, Endpoint, HttpPort, LaunchOptions, Server, TransportChoice};
use lmcpp_test_support::PreparedPaths;
use lmcpp_types::native::{completion::CompletionRequest, tokenize::TokenizeRequest};

const CONCURRENCY: usize = 8;
const LOAD_SECS: u64 = 2;
const LOAD_ROUNDS: usize = 3;
const LAUNCH_RUNS: usize = 5;
const TTFC_RUNS: usize = 30;
const TOKENIZE_BODY: &str = r#"{"content":"The quick brown fox jumps over the lazy dog"}"#;

fn options(paths: &PreparedPaths, dir: &Path, transport: TransportChoice) -> LaunchOptions {
    let mut opts = LaunchOptions::new(&paths.llama_server, &paths.demo_model);
    opts.runtime_dir = Some(dir.join("run"));
    opts.transport = transport;
    opts.args.ctx_size = Some(2048);
    opts.args.parallel = Some(4);
    opts
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `/tokenize` requests per second through one shared client.
async fn client_rps(client: &Client) -> f64 {
    let req: TokenizeRequest = serde_json::from_str(TOKENIZE_BODY).unwrap();
    // Warm the pool.
    client.tokenize(&req).await.unwrap();
    let client = client.clone();
    let (rps, _) =
        lmcpp_test_support::load(CONCURRENCY, Duration::from_secs(LOAD_SECS), move || {
            let (client, req) = (client.clone(), req.clone());
            async move {
                client.tokenize(&req).await.unwrap();
            }
        })
        .await;
    rps
}

fn oha() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LMCPP_OHA") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("oha"))
            .find(|p| p.is_file())
    })
}

/// `/tokenize` requests per second measured by oha at the same concurrency.
fn oha_rps(oha: &Path, endpoint: &Endpoint) -> Option<f64> {
    let mut cmd = Command::new(oha);
    cmd.args(["--no-tui", "--output-format", "json"])
        .args([
            "-z",
            &format!("{LOAD_SECS}s"),
            "-c",
            &CONCURRENCY.to_string(),
        ])
        .args(["-m", "POST", "-H", "content-type: application/json"])
        .args(["-d", TOKENIZE_BODY]);
    match endpoint {
        Endpoint::Unix { socket } => {
            cmd.arg("--unix-socket")
                .arg(socket)
                .arg("http://localhost/tokenize");
        }
        Endpoint::Http { host, port } => {
            cmd.arg(format!("http://{host}:{port}/tokenize"));
        }
        _ => return None,
    }
    let out = cmd.output().ok()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    json["summary"]["requestsPerSec"].as_f64()
}

/// Milliseconds from spawning to a 200 `/health`, through `Server::launch`.
async fn lmcpp_launch_ms(paths: &PreparedPaths, dir: &Path) -> f64 {
    let started = Instant::now();
    let server = Server::launch(options(paths, dir, TransportChoice::Unix))
        .await
        .unwrap();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    server.stop().await.unwrap();
    ms
}

/// The same with a shell loop polling `/health` every 10 ms with curl.
fn shell_launch_ms(paths: &PreparedPaths, dir: &Path) -> f64 {
    let sock = dir.join("shell.sock");
    let _ = std::fs::remove_file(&sock);
    let script = format!(
        "start=$(date +%s%N); {bin} -m {model} -c 2048 -np 4 --host {sock} > {log} 2>&1 & pid=$!; \
         until curl -sf --unix-socket {sock} http://x/health > /dev/null; do sleep 0.01; done; \
         end=$(date +%s%N); kill $pid; wait $pid; echo $(( (end - start) / 1000 ))",
        bin = paths.llama_server.display(),
        model = paths.demo_model.display(),
        sock = sock.display(),
        log = dir.join("shell.log").display(),
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let micros: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0.0);
    micros / 1e3
}

fn ttfc_request() -> CompletionRequest {
    serde_json::from_value(serde_json::json!({
        "prompt": "Once upon a time ".repeat(40), "n_predict": 8, "cache_prompt": false
    }))
    .unwrap()
}

/// Milliseconds from sending a streaming completion to its first chunk.
async fn lmcpp_ttfc_ms(client: &Client) -> f64 {
    let req = ttfc_request();
    let started = Instant::now();
    let mut stream = client.completion_stream(&req).await.unwrap();
    stream.next().await.unwrap().unwrap();
    started.elapsed().as_secs_f64() * 1e3
}

/// The same with `curl -N`, from curl's own trace: from its first trace line (just
/// before it connects) to the first body bytes. (`%{time_starttransfer}` would stop at
/// the response head, which llama-server sends before the first chunk.)
fn curl_ttfc_ms(socket: &Path) -> f64 {
    let mut body = serde_json::to_value(ttfc_request()).unwrap();
    body["stream"] = true.into();
    let out = Command::new("curl")
        .args([
            "-sN",
            "-o",
            "/dev/null",
            "--trace-ascii",
            "-",
            "--trace-time",
        ])
        .arg("--unix-socket")
        .arg(socket)
        .args([
            "http://x/completion",
            "-H",
            "content-type: application/json",
        ])
        .args(["-d", &body.to_string()])
        .output()
        .unwrap();
    let trace = String::from_utf8_lossy(&out.stdout);
    // Lines look like `10:35:18.847922 == Info: ...` and `10:35:18.861484 <= Recv data, ...`.
    let seconds = |line: &str| -> Option<f64> {
        let stamp = line.split_whitespace().next()?;
        let mut parts = stamp.split(':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + s)
    };
    let start = trace.lines().find_map(seconds);
    let first_data = trace
        .lines()
        .filter(|l| l.contains("<= Recv data"))
        .find_map(seconds);
    match (start, first_data) {
        (Some(a), Some(b)) => (b - a) * 1e3,
        _ => f64::NAN,
    }
}

async fn run() {
    let paths = lmcpp_test_support::prepared();
    let dir = tempfile::tempdir().unwrap();
    let uds = Server::launch(options(&paths, dir.path(), TransportChoice::Unix))
        .await
        .unwrap();
    let tcp = Server::launch(options(
        &paths,
        dir.path(),
        TransportChoice::Http(HttpPort::Auto),
    ))
    .await
    .unwrap();

    println!("lmcpp-server benchmarks (concurrency {CONCURRENCY}, {LOAD_SECS} s per load run)");
    // Other work on the machine shifts throughput between runs, so the contenders
    // alternate and each keeps its best of LOAD_ROUNDS runs.
    let oha = oha();
    let mut results = Vec::new();
    for (name, server) in [("UDS", &uds), ("TCP", &tcp)] {
        let (mut ours, mut theirs) = (0.0f64, None::<f64>);
        for _ in 0..LOAD_ROUNDS {
            ours = ours.max(client_rps(&server.client()).await);
            if let Some(oha) = &oha
                && let Some(rps) = oha_rps(oha, server.endpoint())
            {
                theirs = Some(theirs.unwrap_or(0.0).max(rps));
            }
        }
        match (&oha, theirs) {
            (Some(_), Some(theirs)) => println!(
                "/tokenize {name}: lmcpp {ours:.0} req/s, oha {theirs:.0} req/s, \
                 ratio {:.2} (target >= 0.9)",
                ours / theirs
            ),
            (Some(_), None) => println!("/tokenize {name}: lmcpp {ours:.0} req/s, oha failed"),
            (None, _) => println!(
                "/tokenize {name}: lmcpp {ours:.0} req/s; oha reference missing \
                 (`cargo install oha`, or set LMCPP_OHA)"
            ),
        }
        results.push(ours);
    }
    let (uds_rps, tcp_rps) = (results[0], results[1]);
    println!("/tokenize UDS/TCP ratio (lmcpp): {:.2}", uds_rps / tcp_rps);

    let Endpoint::Unix { socket } = uds.endpoint().clone() else {
        unreachable!("launched on a Unix socket")
    };
    let (mut fresh, mut pooled, mut curl) = (Vec::new(), Vec::new(), Vec::new());
    let shared = uds.client();
    lmcpp_ttfc_ms(&shared).await;
    for run in 0..TTFC_RUNS {
        // Rotate the order so that no contender always follows the same one.
        for which in (0..3).map(|i| (i + run) % 3) {
            match which {
                // A new client per run, as curl is a new process per run.
                0 => fresh.push(lmcpp_ttfc_ms(&Client::new(uds.endpoint().clone())).await),
                1 => pooled.push(lmcpp_ttfc_ms(&shared).await),
                _ => curl.push(curl_ttfc_ms(&socket)),
            }
        }
    }
    let (fresh, pooled, curl) = (median(fresh), median(pooled), median(curl));
    println!(
        "streaming time to first chunk (UDS, median of {TTFC_RUNS}): curl -N {curl:.2} ms, \
         lmcpp new client {fresh:.2} ms (ratio {:.2}), shared client {pooled:.2} ms \
         (ratio {:.2}) (target <= 1.1)",
        fresh / curl,
        pooled / curl
    );
    uds.stop().await.unwrap();
    tcp.stop().await.unwrap();

    let mut ours = Vec::new();
    let mut shell = Vec::new();
    for _ in 0..LAUNCH_RUNS {
        ours.push(lmcpp_launch_ms(&paths, dir.path()).await);
        shell.push(shell_launch_ms(&paths, dir.path()));
    }
    let (ours, shell) = (median(ours), median(shell));
    println!(
        "launch to ready: lmcpp {ours:.1} ms, shell loop {shell:.1} ms, \
         overhead {:.1} ms (target <= 25 ms), ratio {:.2}",
        ours - shell,
        ours / shell
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without
    // it, and must not spend half a minute benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        println!("lmcpp-server benchmarks: run them with `cargo bench -p lmcpp-server`");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
