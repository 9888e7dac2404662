//! Model pull throughput against `curl` on the same loopback "Hugging Face" (resolve URL
//! redirecting to a CDN path, digest in `X-Linked-Etag`), reported as a ratio.
//!
//! The pull includes everything a user pays for: the probe of the resolve URL, the
//! redirect, SHA-256 in the same pass as the write, the atomic publish and the ref.
//! `curl -L` only follows the redirect and writes. Run with
//! `cargo bench -p lmcpp-toolchain --bench models`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

#[path = "../tests/it/server.rs"]
#[allow(dead_code, unreachable_pub)]
mod server;

use std::time::{Duration, Instant};

use lmcpp_toolchain::models::{ModelSource, ModelStore, ModelStoreOptions, PullOptions};
use lmcpp_toolchain::{DownloadOptions, DownloadSpec, Downloader, no_progress};
use server::{Route, TestServer};
use sha2::{Digest, Sha256};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

async fn pull_vs_curl(size: usize, rounds: usize) {
    let server = TestServer::start().await;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut body: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // Model pulls refuse anything that does not start like a GGUF file.
    body[..4].copy_from_slice(b"GGUF");
    let digest = hex::encode(Sha256::digest(&body));
    server.route(
        "/owner/bench/resolve/main/bench-Q4_K_M.gguf",
        Route::redirect(format!("/cdn/{digest}")).header("x-linked-etag", &format!("\"{digest}\"")),
    );
    server.route(
        &format!("/cdn/{digest}"),
        Route::file(body).etag("b").chunk(256 * 1024),
    );

    let dir = tempfile::tempdir().unwrap();
    let mut opts = ModelStoreOptions::with_cache_root(dir.path().join("cache"));
    opts.hf_endpoint = Some(server.base());
    let store = ModelStore::new(opts).unwrap();
    let source = ModelSource::parse("owner/bench:bench-Q4_K_M.gguf").unwrap();

    let mut ours = Vec::new();
    let mut curl = Vec::new();
    let mut curl_synced = Vec::new();
    let mut raw = Vec::new();
    let downloader = Downloader::new(DownloadOptions::default()).unwrap();
    for i in 0..rounds {
        // The downloader alone on the CDN URL, to separate store overhead from transfer.
        let dest = dir.path().join(format!("raw-{i}"));
        let t = Instant::now();
        downloader
            .fetch(
                &DownloadSpec::new(server.url(&format!("/cdn/{digest}")), &dest),
                &no_progress(),
            )
            .await
            .unwrap();
        raw.push(t.elapsed());
        std::fs::remove_file(&dest).unwrap();

        let t = Instant::now();
        // One named file, no projector: the pull asks for that file alone (a repository
        // listing, which this server does not serve, is how projectors are found).
        let pull = PullOptions {
            no_mmproj: true,
            ..PullOptions::default()
        };
        let m = store.pull(&source, &pull).await.unwrap();
        ours.push(t.elapsed());
        assert_eq!(m.bytes_transferred, size as u64);
        assert!(store.remove(&source).await.unwrap());

        let dest = dir.path().join(format!("curl-{i}"));
        let t = Instant::now();
        let status = tokio::process::Command::new("curl")
            .args(["-s", "-f", "-L", "-o"])
            .arg(&dest)
            .arg(server.url("/owner/bench/resolve/main/bench-Q4_K_M.gguf"))
            .status()
            .await
            .expect("curl on PATH");
        curl.push(t.elapsed());
        assert!(status.success());
        // The store fsyncs before publishing; curl does not. A second reference adds the
        // same fsync so the durability cost is visible rather than hidden in the ratio.
        std::fs::File::open(&dest).unwrap().sync_all().unwrap();
        curl_synced.push(t.elapsed());
        std::fs::remove_file(&dest).unwrap();
    }
    let mb = size as f64 / (1024.0 * 1024.0);
    let (o, c, cs) = (median(ours), median(curl), median(curl_synced));
    let r = median(raw);
    println!(
        "  downloader alone (no probe, no store): {:>7.1} MiB/s",
        mb / r.as_secs_f64()
    );
    println!(
        "model pull {mb:.0} MiB: lmcpp {:>7.1} MiB/s (probe + redirect + sha-256 + fsync + publish)   curl -L {:>7.1} MiB/s   curl -L + fsync {:>7.1} MiB/s   ratio lmcpp/curl: {:.2}   ratio lmcpp/(curl + fsync): {:.2}   (target >= 0.9)",
        mb / o.as_secs_f64(),
        mb / c.as_secs_f64(),
        mb / cs.as_secs_f64(),
        c.as_secs_f64() / o.as_secs_f64(),
        cs.as_secs_f64() / o.as_secs_f64()
    );
}

fn main() {
    // `cargo test --benches` runs this binary without `--bench`; keep that quick.
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (size, rounds) = if full { (256 << 20, 5) } else { (4 << 20, 1) };
    rt.block_on(pull_vs_curl(size, rounds));
}
