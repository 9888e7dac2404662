//! Benchmarks reported as ratios against a reference measured in the same run:
//! a warm `ensure()` against a bare `stat` of the published binary, downloader
//! throughput (hashing in the same pass) against `curl` fetching the same loopback file,
//! and a whole prebuilt install (listing, download, SHA-256, extraction, `--version`,
//! fsync, publish) against `curl` of the same archive plus `tar -x`.
//!
//! Run with `cargo bench -p lmcpp-toolchain --bench toolchain`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

#[path = "../tests/it/server.rs"]
#[allow(dead_code, unreachable_pub)]
mod server;

use std::io::Write;
use std::time::{Duration, Instant};

use lmcpp_toolchain::backend::Probes;
use lmcpp_toolchain::{
    Backend, DownloadOptions, DownloadSpec, Downloader, LlamaVersion, Mode, Source, Toolchain,
    ToolchainRequest, no_progress,
};
use server::{Route, TestServer};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn fake_release(top: &str) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(enc);
    for name in ["llama-server", "rpc-server"] {
        let body = b"#!/bin/sh\necho 'version: 1 (fake)'\n";
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("{top}/{name}")).unwrap();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append(&h, &body[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// The host's CPU asset name of `tag` and the top-level folder its archive holds.
fn host_asset(tag: &str) -> (String, String) {
    let asset = lmcpp_toolchain::plan::prebuilt_assets(
        tag,
        std::env::consts::OS,
        std::env::consts::ARCH,
        Backend::Cpu,
        "",
    )
    .unwrap()
    .remove(0);
    let top = asset
        .trim_end_matches(".tar.gz")
        .trim_end_matches(".zip")
        .to_owned();
    (asset, top)
}

/// Serves `archive` as the host asset of `tag` on a loopback "GitHub" under `/r`, listed
/// with its size and SHA-256, and returns the install-only request for it and its URL path.
fn serve_release(server: &TestServer, tag: &str, archive: Vec<u8>) -> (ToolchainRequest, String) {
    let (asset, _) = host_asset(tag);
    let url_path = format!("/r/releases/download/{tag}/{asset}");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&archive))
    };
    let listing = serde_json::json!({
        "tag_name": tag,
        "assets": [{
            "name": asset,
            "size": archive.len(),
            "digest": format!("sha256:{digest}"),
            "browser_download_url": server.url(&url_path),
        }],
    });
    server.route(&url_path, Route::file(archive).chunk(256 * 1024));
    server.route(
        &format!("/r/api/releases/tags/{tag}"),
        Route::file(listing.to_string().into_bytes()),
    );
    let req = ToolchainRequest {
        version: LlamaVersion::tag(tag),
        sources: vec![Source::GithubRelease],
        backend: Backend::Cpu,
        mode: Mode::InstallOnly,
        github_repo: server.url("/r"),
        github_api: server.url("/r/api"),
        ..ToolchainRequest::default()
    };
    (req, url_path)
}

async fn warm_ensure(rounds: usize) {
    let server = TestServer::start().await;
    let (_, top) = host_asset("b1");
    let (req, _) = serve_release(&server, "b1", fake_release(&top));
    let root = tempfile::tempdir().unwrap();
    let tc = Toolchain::new(Some(root.path()))
        .unwrap()
        .with_probes(Probes::default());
    let installed = tc.ensure(&req, &no_progress()).await.unwrap();
    let p = no_progress();
    let mut ensure = Vec::with_capacity(rounds);
    let mut stat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        std::hint::black_box(tc.ensure(&req, &p).await.unwrap());
        ensure.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(std::fs::metadata(&installed.llama_server).unwrap());
        stat.push(t.elapsed());
    }
    let (e, s) = (median(ensure), median(stat));
    println!(
        "warm ensure: {:>9.1} us   bare stat: {:>7.1} us   ratio ensure/stat: {:.1}x   (target: ensure < 5 ms)",
        e.as_secs_f64() * 1e6,
        s.as_secs_f64() * 1e6,
        e.as_secs_f64() / s.as_secs_f64().max(1e-9)
    );
}

async fn throughput(size: usize, rounds: usize) {
    let server = TestServer::start().await;
    let mut x: u64 = 88172645463325252;
    let body: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    server.route("/blob", Route::file(body).etag("b").chunk(256 * 1024));
    let dir = tempfile::tempdir().unwrap();
    let durable = Downloader::new(DownloadOptions::default()).unwrap();
    let no_sync = Downloader::new(DownloadOptions {
        fsync: false,
        ..DownloadOptions::default()
    })
    .unwrap();
    let (mut ours, mut ours_nosync, mut curl) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        for (dl, times) in [(&durable, &mut ours), (&no_sync, &mut ours_nosync)] {
            let dest = dir.path().join(format!("ours-{i}"));
            let t = Instant::now();
            dl.fetch(
                &DownloadSpec::new(server.url("/blob"), &dest),
                &no_progress(),
            )
            .await
            .unwrap();
            times.push(t.elapsed());
            std::fs::remove_file(&dest).unwrap();
        }

        let dest = dir.path().join(format!("curl-{i}"));
        let url = server.url("/blob");
        let t = Instant::now();
        let status = tokio::process::Command::new("curl")
            .args(["-s", "-f", "-o"])
            .arg(&dest)
            .arg(&url)
            .status()
            .await
            .expect("curl on PATH");
        curl.push(t.elapsed());
        assert!(status.success());
        std::fs::remove_file(&dest).unwrap();
    }
    let mb = size as f64 / (1024.0 * 1024.0);
    let (o, n, c) = (median(ours), median(ours_nosync), median(curl));
    println!(
        "download {mb:.0} MiB: lmcpp {:>7.1} MiB/s with fsync, {:>7.1} MiB/s without (sha-256 in the same pass)   curl {:>7.1} MiB/s (no fsync)",
        mb / o.as_secs_f64(),
        mb / n.as_secs_f64(),
        mb / c.as_secs_f64(),
    );
    println!(
        "ratio lmcpp/curl: {:.2} without fsync, {:.2} with fsync   (target >= 0.9)",
        c.as_secs_f64() / n.as_secs_f64(),
        c.as_secs_f64() / o.as_secs_f64()
    );
}

/// A release archive of `mib` MiB of incompressible libraries next to a fake server.
fn big_release(top: &str, mib: usize) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(enc);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let add = |b: &mut tar::Builder<_>, name: String, body: &[u8], mode| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        b.append(&h, body).unwrap();
    };
    add(
        &mut b,
        format!("{top}/llama-server"),
        b"#!/bin/sh\necho 'version: 1 (fake)'\n",
        0o755,
    );
    for i in 0..mib {
        let body: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        add(&mut b, format!("{top}/libggml-part{i}.so"), &body, 0o644);
    }
    b.into_inner().unwrap().finish().unwrap()
}

async fn prebuilt_install(mib: usize, rounds: usize) {
    let server = TestServer::start().await;
    let (_, top) = host_asset("b2");
    let (req, url_path) = serve_release(&server, "b2", big_release(&top, mib));
    let (mut ours, mut reference) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let root = tempfile::tempdir().unwrap();
        let tc = Toolchain::new(Some(root.path()))
            .unwrap()
            .with_probes(Probes::default());
        let t = Instant::now();
        tc.ensure(&req, &no_progress()).await.unwrap();
        ours.push(t.elapsed());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.tar.gz");
        let t = Instant::now();
        let curl = tokio::process::Command::new("curl")
            .args(["-s", "-f", "-o"])
            .arg(&file)
            .arg(server.url(&url_path))
            .status()
            .await
            .expect("curl on PATH");
        let tar = tokio::process::Command::new("tar")
            .arg("-xzf")
            .arg(&file)
            .arg("-C")
            .arg(dir.path())
            .status()
            .await
            .expect("tar on PATH");
        reference.push(t.elapsed());
        assert!(curl.success() && tar.success());
    }
    let (o, r) = (median(ours), median(reference));
    println!(
        "prebuilt install {mib} MiB: lmcpp {:>7.1} ms (listing, sha-256, extract, --version, fsync, publish)   curl + tar -x {:>7.1} ms",
        o.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
    );
    println!(
        "ratio lmcpp/(curl + tar) speed: {:.2}   (target >= 0.9)",
        r.as_secs_f64() / o.as_secs_f64()
    );
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent; keep that quick.
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (rounds, size, dl_rounds, release_mib) = if full {
        (500, 256 << 20, 5, 32)
    } else {
        (20, 8 << 20, 1, 2)
    };
    rt.block_on(async {
        warm_ensure(rounds).await;
        throughput(size, dl_rounds).await;
        prebuilt_install(release_mib, dl_rounds.max(3)).await;
    });
    let _ = std::io::stdout().flush();
}
