//! The fourth way to the same model: llama-server's own router mode (`--models-dir`), the
//! same binary and demo model as the proxy bench, asked the way its clients ask it (the
//! model named in every request). Measured: `/tokenize` req/s at concurrency 1 and
//! [`super::CONCURRENCY`], the first streamed chunk, and the first request to a model the
//! router has not loaded, each printed beside the proxy's number from the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lmcpp_server::{Client, LaunchOptions, Server, TransportChoice};
use lmcpp_test_support::PreparedPaths;
use lmcpp_types::native::{completion::CompletionRequest, tokenize::TokenizeRequest};
use serde_json::{Value, json};

/// `oha` on `PATH` or in `LMCPP_OHA` (`cargo xtask bench` installs one): the HTTP load
/// tool that measures all four the same way, from outside.
pub(crate) fn oha() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LMCPP_OHA") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("oha"))
            .find(|p| p.is_file())
    })
}

/// `/tokenize` req/s that `oha` measures on a Unix socket at `concurrency`, the model
/// named in the body (a single llama-server and the byte relay ignore it).
pub(crate) fn oha_rps(oha: &Path, socket: &Path, model: &str, concurrency: usize) -> Option<f64> {
    let body = json!({"content": "The quick brown fox jumps over the lazy dog", "model": model});
    let out = std::process::Command::new(oha)
        .args(["--no-tui", "--output-format", "json"])
        .args([
            "-z",
            &format!("{}s", super::LOAD_SECS),
            "-c",
            &concurrency.to_string(),
        ])
        .args(["-m", "POST", "-H", "content-type: application/json"])
        .args(["-d", &body.to_string()])
        .arg("--unix-socket")
        .arg(socket)
        .arg("http://localhost/tokenize")
        .output()
        .ok()?;
    let json: Value = serde_json::from_slice(&out.stdout).ok()?;
    json["summary"]["requestsPerSec"].as_f64()
}

/// What the proxy measured in the same run, for the ratios.
pub(crate) struct ProxyNumbers {
    /// `/tokenize` req/s at concurrency 1 and [`super::CONCURRENCY`].
    pub(crate) rps: [f64; 2],
    /// Median milliseconds to the first streamed chunk (stream read to the end).
    pub(crate) ttfc_ms: f64,
    /// Median milliseconds of the first request to a stopped model.
    pub(crate) cold_ms: f64,
    /// `oha`'s `/tokenize` req/s at concurrency 1 and [`super::CONCURRENCY`]: direct, the
    /// byte relay, the proxy (`None` without `oha`).
    pub(crate) oha: Option<[[f64; 3]; 2]>,
}

/// The router of `paths`' llama-server over a folder holding the demo model; `None` (with
/// the reason printed) when this llama-server has no router mode.
async fn router(paths: &PreparedPaths, dir: &Path, tag: &str) -> Option<(Server, String)> {
    let models = dir.join(format!("router-models-{tag}"));
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(&paths.demo_model, models.join("demo.gguf")).unwrap();
    let mut opts = LaunchOptions::router(&paths.llama_server, &models);
    opts.runtime_dir = Some(dir.join("run"));
    opts.transport = TransportChoice::Unix;
    opts.args.ctx_size = Some(2048);
    opts.args.parallel = Some(4);
    let server = match Server::launch(opts).await {
        Ok(server) => server,
        Err(e) => {
            println!(
                "router mode: not measured, this llama-server does not start as a router ({e})"
            );
            return None;
        }
    };
    let models: Value = server.client().get("/models").await.unwrap();
    let id = models["data"][0]["id"].as_str().unwrap().to_owned();
    Some((server, id))
}

fn tokenize(model: &str) -> TokenizeRequest {
    serde_json::from_value(
        json!({"content": "The quick brown fox jumps over the lazy dog", "model": model}),
    )
    .unwrap()
}

async fn rps(client: &Client, model: &str, concurrency: usize) -> f64 {
    let req = tokenize(model);
    client.tokenize(&req).await.unwrap();
    let client = client.clone();
    let secs = Duration::from_secs(super::LOAD_SECS);
    let mut best = 0.0f64;
    for _ in 0..super::LOAD_ROUNDS {
        let (client, req) = (client.clone(), req.clone());
        let (rps, _) = lmcpp_test_support::load(concurrency, secs, move || {
            let (client, req) = (client.clone(), req.clone());
            async move {
                client.tokenize(&req).await.unwrap();
            }
        })
        .await;
        best = best.max(rps);
    }
    best
}

async fn ttfc_ms(client: &Client, model: &str) -> f64 {
    let req: CompletionRequest = serde_json::from_value(json!({
        "prompt": "Once upon a time ".repeat(40), "n_predict": 8, "cache_prompt": false,
        "model": model
    }))
    .unwrap();
    let started = Instant::now();
    let mut stream = client.completion_stream(&req).await.unwrap();
    stream.next().await.unwrap().unwrap();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    ms
}

/// Runs the router measurements and prints them beside `proxy`'s.
pub(crate) async fn run(paths: &PreparedPaths, dir: &Path, proxy: &ProxyNumbers) {
    // Cold: a fresh router per run, its first request loading the model.
    let mut cold = Vec::new();
    for run in 0..super::LAUNCH_RUNS {
        let Some((server, model)) = router(paths, dir, &format!("cold-{run}")).await else {
            return;
        };
        let started = Instant::now();
        server.client().tokenize(&tokenize(&model)).await.unwrap();
        cold.push(started.elapsed().as_secs_f64() * 1e3);
        server.stop().await.unwrap();
    }
    let Some((server, model)) = router(paths, dir, "warm").await else {
        return;
    };
    let client = server.client();
    let mut rates = [0.0f64; 2];
    for (i, concurrency) in [1, super::CONCURRENCY].into_iter().enumerate() {
        rates[i] = rps(&client, &model, concurrency).await;
    }
    ttfc_ms(&client, &model).await;
    let mut times = Vec::new();
    for _ in 0..super::TTFC_RUNS / 2 {
        times.push(ttfc_ms(&client, &model).await);
    }
    let ttfc = super::median(times);
    let socket = match server.endpoint() {
        lmcpp_server::Endpoint::Unix { socket } => Some(socket.clone()),
        _ => None,
    };
    let by_oha = oha()
        .zip(socket)
        .zip(proxy.oha)
        .map(|((oha, socket), others)| {
            [1, super::CONCURRENCY]
                .map(|c| oha_rps(&oha, &socket, &model, c).unwrap_or(0.0))
                .into_iter()
                .zip(others)
                .collect::<Vec<_>>()
        });
    server.stop().await.unwrap();
    let cold = super::median(cold);
    println!(
        "llama-server's router mode, the same binary and model (model named in each request):"
    );
    for (i, concurrency) in [1, super::CONCURRENCY].into_iter().enumerate() {
        println!(
            "  /tokenize, concurrency {concurrency}: router {:.0} req/s, the proxy {:.0} req/s, ratio proxy/router {:.2}",
            rates[i],
            proxy.rps[i],
            proxy.rps[i] / rates[i]
        );
    }
    println!(
        "  time to first chunk (median): router {ttfc:.2} ms, the proxy {:.2} ms, ratio proxy/router {:.3}",
        proxy.ttfc_ms,
        proxy.ttfc_ms / ttfc
    );
    println!(
        "  first request to an unloaded model (median of {}): router {cold:.1} ms, the proxy {:.1} ms, proxy - router {:+.1} ms (target <= 0)",
        super::LAUNCH_RUNS,
        proxy.cold_ms,
        proxy.cold_ms - cold
    );
    let Some(by_oha) = by_oha else {
        println!("  measured by oha: skipped (no oha; `cargo xtask bench` installs one)");
        return;
    };
    for ((router, [direct, relay, proxied]), concurrency) in
        by_oha.into_iter().zip([1, super::CONCURRENCY])
    {
        println!(
            "  oha /tokenize, concurrency {concurrency}: direct {direct:.0}, byte relay {relay:.0}, proxy {proxied:.0}, router {router:.0} req/s; ratio proxy/relay {:.2}, ratio proxy/router {:.2}",
            proxied / relay,
            proxied / router
        );
    }
}
