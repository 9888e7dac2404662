//! The downloader against the loopback server: resume, checksums, redirects, retries.

use std::sync::Arc;
use std::time::Duration;

use lmcpp_test_support::file_url;
use lmcpp_toolchain::download::Error as DownloadError;
use lmcpp_toolchain::download::{Content, HttpProxies, sha256_file};
use lmcpp_toolchain::{DownloadOptions, DownloadSpec, Downloader, Error, no_progress};
use sha2::{Digest, Sha256};

use crate::server::{Route, TestServer};
use lmcpp_toolchain::Classify;

pub fn downloader(retries: u32) -> Downloader {
    Downloader::new(DownloadOptions {
        retries,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(20),
        ..DownloadOptions::default()
    })
    .unwrap()
}

pub fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

pub fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[tokio::test]
async fn downloads_verifies_and_skips_when_present() {
    let server = TestServer::start().await;
    let body = payload(300_000);
    server.route("/f.bin", Route::file(body.clone()).etag("e1"));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let spec = DownloadSpec::new(server.url("/f.bin"), &dest).sha256(sha(&body));
    let d = downloader(0).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(d.sha256, sha(&body));
    assert_eq!(d.size, body.len() as u64);
    assert_eq!(d.bytes_transferred, body.len() as u64);
    assert_eq!(d.etag.as_deref(), Some("e1"));
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(!dir.path().join("f.bin.part").exists());
    assert!(!dir.path().join("f.bin.part.meta").exists());

    let again = downloader(0).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(again.bytes_transferred, 0);
    assert_eq!(server.hits("/f.bin"), 1);
}

#[tokio::test]
async fn checksum_mismatch_deletes_partial_and_publishes_nothing() {
    let server = TestServer::start().await;
    server.route("/f.bin", Route::file(payload(10_000)).etag("e1"));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let spec = DownloadSpec::new(server.url("/f.bin"), &dest).sha256("00".repeat(32));
    let err = downloader(2)
        .fetch(&spec, &no_progress())
        .await
        .unwrap_err();
    match &err {
        Error::Download(DownloadError::ChecksumMismatch {
            expected,
            found,
            url,
            ..
        }) => {
            assert_eq!(expected, &"00".repeat(32));
            assert_eq!(found, &sha(&payload(10_000)));
            assert_eq!(url, &server.url("/f.bin"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(!dest.exists());
    assert!(!dir.path().join("f.bin.part").exists());
    // A mismatch is not retried: the bytes would be the same.
    assert_eq!(server.hits("/f.bin"), 1);
}

#[tokio::test]
async fn truncated_body_resumes_with_range_on_next_call() {
    let server = TestServer::start().await;
    let body = payload(1_000_000);
    let chunk = 16 * 1024;
    server.route(
        "/big",
        Route::file(body.clone())
            .etag("v1")
            .chunk(chunk)
            .truncate_first(1, 400_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big");
    let spec = DownloadSpec::new(server.url("/big"), &dest).sha256(sha(&body));
    let err = downloader(0)
        .fetch(&spec, &no_progress())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!dest.exists());
    let part_len = std::fs::metadata(dir.path().join("big.part"))
        .unwrap()
        .len();
    assert!(part_len > 0 && part_len <= 400_000, "{part_len}");

    let d = downloader(0).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(d.sha256, sha(&body));
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let reqs = server.requests("/big");
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].headers.get("range").is_none());
    assert_eq!(
        reqs[1].headers.get("range").unwrap().to_str().unwrap(),
        format!("bytes={part_len}-")
    );
    assert_eq!(reqs[1].headers.get("if-range").unwrap(), "\"v1\"");
    assert_eq!(reqs[1].status, 206);
    assert!(
        server.bytes_sent("/big") <= (body.len() + chunk) as u64,
        "sent {} part {part_len}",
        server.bytes_sent("/big")
    );
    assert_eq!(d.bytes_transferred, body.len() as u64 - part_len);
}

#[tokio::test]
async fn truncation_is_retried_within_one_call() {
    let server = TestServer::start().await;
    let body = payload(500_000);
    server.route(
        "/big",
        Route::file(body.clone())
            .etag("v1")
            .truncate_first(2, 100_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = DownloadSpec::new(server.url("/big"), dir.path().join("big")).sha256(sha(&body));
    let d = downloader(3).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(d.sha256, sha(&body));
    assert_eq!(server.hits("/big"), 3);
}

#[tokio::test]
async fn server_ignoring_range_restarts_cleanly() {
    let server = TestServer::start().await;
    let body = payload(200_000);
    server.route(
        "/f",
        Route::file(body.clone())
            .etag("v1")
            .no_ranges()
            .truncate_first(1, 50_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = DownloadSpec::new(server.url("/f"), dir.path().join("f")).sha256(sha(&body));
    let d = downloader(1).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(d.sha256, sha(&body));
    let reqs = server.requests("/f");
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].headers.contains_key("range"));
    assert_eq!(reqs[1].status, 200);
}

#[tokio::test]
async fn changed_resource_is_not_spliced() {
    let server = TestServer::start().await;
    let old = payload(200_000);
    server.route(
        "/f",
        Route::file(old.clone())
            .etag("old")
            .truncate_first(1, 60_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = DownloadSpec::new(server.url("/f"), dir.path().join("f"));
    downloader(0)
        .fetch(&spec, &no_progress())
        .await
        .unwrap_err();
    // The resource changes: If-Range no longer matches, so the server sends all of it.
    let new: Vec<u8> = old.iter().map(|b| b.wrapping_add(1)).collect();
    server.route("/f", Route::file(new.clone()).etag("new"));
    let d = downloader(0).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(d.sha256, sha(&new));
    assert_eq!(server.requests("/f")[1].status, 200);
}

#[tokio::test]
async fn not_found_names_the_url_and_is_not_retried() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/missing.tar.gz");
    let spec = DownloadSpec::new(&url, dir.path().join("m"));
    let err = downloader(3)
        .fetch(&spec, &no_progress())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Download(DownloadError::HttpStatus { status: 404, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    assert_eq!(server.hits("/missing.tar.gz"), 1);
}

#[tokio::test]
async fn rate_limit_and_server_errors_are_retried() {
    let server = TestServer::start().await;
    let body = payload(1000);
    server.route("/f", Route::file(body.clone()).fail_first(2, 429, Some(0)));
    server.route("/g", Route::file(body.clone()).fail_first(1, 503, None));
    server.route("/h", Route::file(body.clone()).fail_first(9, 500, None));
    let dir = tempfile::tempdir().unwrap();
    let dl = downloader(3);
    let p = no_progress();
    dl.fetch(
        &DownloadSpec::new(server.url("/f"), dir.path().join("f")),
        &p,
    )
    .await
    .unwrap();
    dl.fetch(
        &DownloadSpec::new(server.url("/g"), dir.path().join("g")),
        &p,
    )
    .await
    .unwrap();
    let err = dl
        .fetch(
            &DownloadSpec::new(server.url("/h"), dir.path().join("h")),
            &p,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Download(DownloadError::HttpStatus { status: 500, .. })
        ),
        "{err}"
    );
    assert_eq!(server.hits("/f"), 3);
    assert_eq!(server.hits("/g"), 2);
    assert_eq!(server.hits("/h"), 4);
    assert!(!dir.path().join("h").exists());
}

#[tokio::test]
async fn redirects_are_followed_and_probe_keeps_first_hop() {
    let server = TestServer::start().await;
    let body = payload(5000);
    server.route(
        "/cdn/blob",
        Route::file(body.clone())
            .etag("blob-etag")
            .header("x-served-by", "cdn"),
    );
    server.route("/temp", Route::redirect("/cdn/blob").with_status(307));
    server.route(
        "/resolve/main/model.gguf",
        Route::redirect("/cdn/blob")
            .header("x-linked-etag", &format!("\"{}\"", sha(&body)))
            .header("x-linked-size", "5000"),
    );
    server.route("/loop", Route::redirect("/loop"));
    let dl = downloader(0);
    let probe = dl
        .probe(&server.url("/resolve/main/model.gguf"), &[])
        .await
        .unwrap();
    assert_eq!(probe.first_status, 302);
    assert_eq!(probe.first_header("x-linked-size"), Some("5000"));
    assert_eq!(probe.final_url, server.url("/cdn/blob"));
    assert_eq!(probe.etag.as_deref(), Some("blob-etag"));
    assert_eq!(probe.size, Some(5000));
    assert!(probe.accept_ranges);
    assert_eq!(server.requests("/cdn/blob")[0].method, http::Method::HEAD);
    assert_eq!(probe.headers.get("x-served-by").unwrap(), "cdn");
    let temp = dl.probe(&server.url("/temp"), &[]).await.unwrap();
    assert_eq!((temp.first_status, temp.status), (307, 200));

    let dir = tempfile::tempdir().unwrap();
    let d = dl
        .fetch(
            &DownloadSpec::new(server.url("/resolve/main/model.gguf"), dir.path().join("m")),
            &no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(d.final_url, server.url("/cdn/blob"));
    let err = dl
        .fetch(
            &DownloadSpec::new(server.url("/loop"), dir.path().join("l")),
            &no_progress(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Download(DownloadError::TooManyRedirects { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn secrets_stay_on_origin_and_out_of_errors() {
    let origin = TestServer::start().await;
    let cdn = TestServer::start().await;
    cdn.route("/blob", Route::file(payload(100)));
    origin.route("/r", Route::redirect(cdn.url("/blob")));
    origin.route("/denied", Route::status(401));
    let dir = tempfile::tempdir().unwrap();
    let dl = downloader(0);
    let spec = DownloadSpec::new(origin.url("/r"), dir.path().join("b"))
        .header("Authorization", "Bearer hf_secret");
    dl.fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(
        origin.requests("/r")[0]
            .headers
            .get("authorization")
            .unwrap(),
        "Bearer hf_secret"
    );
    assert!(
        cdn.requests("/blob")[0]
            .headers
            .get("authorization")
            .is_none()
    );
    let spec = DownloadSpec::new(origin.url("/denied"), dir.path().join("d"))
        .header("Authorization", "Bearer hf_secret");
    let err = dl.fetch(&spec, &no_progress()).await.unwrap_err();
    assert!(!format!("{err} {err:?} {spec:?}").contains("hf_secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_of_one_dest_download_once() {
    let server = TestServer::start().await;
    let body = payload(400_000);
    server.route("/f", Route::file(body.clone()).etag("x"));
    let dir = tempfile::tempdir().unwrap();
    let spec =
        Arc::new(DownloadSpec::new(server.url("/f"), dir.path().join("f")).sha256(sha(&body)));
    let dl = downloader(0);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (dl, spec) = (dl.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            dl.fetch(&spec, &no_progress()).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().sha256, sha(&body));
    }
    assert_eq!(server.hits("/f"), 1);
}

#[tokio::test]
async fn local_paths_and_file_urls_are_sources() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, payload(1234)).unwrap();
    let dl = downloader(0);
    let a = dl
        .fetch(
            &DownloadSpec::new(src.to_str().unwrap(), dir.path().join("a")),
            &no_progress(),
        )
        .await
        .unwrap();
    let b = dl
        .fetch(
            &DownloadSpec::new(file_url(&src), dir.path().join("b")).sha256(sha(&payload(1234))),
            &no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(sha256_file(&dir.path().join("b")).await.unwrap().1, 1234);
}

#[tokio::test]
async fn unsatisfiable_range_discards_the_part_and_restarts() {
    let server = TestServer::start().await;
    let long = payload(200_000);
    server.route(
        "/f",
        Route::file(long).etag("same").truncate_first(1, 100_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = DownloadSpec::new(server.url("/f"), dir.path().join("f"));
    downloader(0)
        .fetch(&spec, &no_progress())
        .await
        .unwrap_err();
    // The resource shrank below the part without changing its ETag: the server answers 416.
    let short = payload(10_000);
    server.route("/f", Route::file(short.clone()).etag("same"));
    let d = downloader(0).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(d.sha256, sha(&short));
    let statuses: Vec<u16> = server.requests("/f").iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 416, 200]);
}

/// The vocabulary-only GGUF shipped with the tests: a complete GGUF file.
pub fn vocab_gguf() -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ggml-vocab-llama-spm.gguf");
    std::fs::read(p).unwrap()
}

#[tokio::test]
async fn a_known_digest_resumes_without_an_etag() {
    // No validator from the server: the digest is what vouches for the spliced file.
    let server = TestServer::start().await;
    let body = payload(1_000_000);
    let chunk = 16 * 1024;
    server.route(
        "/big",
        Route::file(body.clone())
            .chunk(chunk)
            .truncate_first(1, 400_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big");
    let spec = DownloadSpec::new(server.url("/big"), &dest).sha256(sha(&body));
    let err = downloader(0)
        .fetch(&spec, &no_progress())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    let kept = std::fs::metadata(dir.path().join("big.part"))
        .unwrap()
        .len();
    assert!(kept > 0, "the cut-short body is kept");

    let d = downloader(0).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(d.bytes_transferred, body.len() as u64 - kept);
    let reqs = server.requests("/big");
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].headers.get("range").unwrap().to_str().unwrap(),
        format!("bytes={kept}-")
    );
    assert!(reqs[1].headers.get("if-range").is_none());
    assert_eq!(reqs[1].status, 206);
    assert!(!dir.path().join("big.part.meta").exists());
}

#[tokio::test]
async fn resumed_bytes_that_do_not_verify_are_fetched_whole() {
    let server = TestServer::start().await;
    let old = payload(300_000);
    server.route("/f", Route::file(old.clone()).truncate_first(1, 100_000));
    let dir = tempfile::tempdir().unwrap();
    let new: Vec<u8> = old.iter().map(|b| b.wrapping_add(7)).collect();
    // The first run fetched the old content for the new digest (a changed file behind an
    // unchanged URL, without validators): the splice cannot verify, the whole file can.
    let spec = DownloadSpec::new(server.url("/f"), dir.path().join("f")).sha256(sha(&new));
    downloader(0)
        .fetch(&spec, &no_progress())
        .await
        .unwrap_err();
    server.route("/f", Route::file(new.clone()));
    let d = downloader(0).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!(d.sha256, sha(&new));
    let statuses: Vec<u16> = server.requests("/f").iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 206, 200]);
}

#[tokio::test]
async fn a_complete_part_is_published_without_transferring_again() {
    // A run killed between the last byte and the rename left a whole file in `.part`.
    let server = TestServer::start().await;
    let body = payload(50_000);
    server.route("/f", Route::file(body.clone()));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f");
    let spec = DownloadSpec::new(server.url("/f"), &dest).sha256(sha(&body));
    server.route("/f", Route::file(body.clone()).truncate_first(1, 49_000));
    downloader(0)
        .fetch(&spec, &no_progress())
        .await
        .unwrap_err();
    std::fs::write(dir.path().join("f.part"), &body).unwrap();
    let d = downloader(0).fetch(&spec, &no_progress()).await.unwrap();
    assert_eq!((d.bytes_transferred, d.size), (0, body.len() as u64));
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let statuses: Vec<u16> = server.requests("/f").iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 416]);
}

#[tokio::test]
async fn gguf_downloads_refuse_other_content_early() {
    let server = TestServer::start().await;
    let mut page = b"<!doctype html><title>sign in</title>".to_vec();
    page.extend(payload(4 << 20));
    server.route(
        "/m.gguf",
        Route::file(page.clone())
            .chunk(16 * 1024)
            .throttle(Duration::from_millis(1)),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("m.gguf");
    for expected in [None, Some(sha(&page))] {
        let mut spec = DownloadSpec::new(server.url("/m.gguf"), &dest).content(Content::Gguf);
        spec.expected_sha256 = expected;
        let err = downloader(2)
            .fetch(&spec, &no_progress())
            .await
            .unwrap_err();
        match &err {
            Error::Download(DownloadError::NotGguf { url, found }) => {
                assert_eq!(url, &server.url("/m.gguf"));
                assert_eq!(found, b"<!do");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("not a GGUF"), "{err}");
        assert!(!dest.exists());
        assert!(!dir.path().join("m.gguf.part").exists());
    }
    // Not retried, and both transfers stopped long before the end of the page.
    assert_eq!(server.hits("/m.gguf"), 2);
    assert!(
        server.bytes_sent("/m.gguf") < page.len() as u64 / 2,
        "{} of {} bytes sent",
        server.bytes_sent("/m.gguf"),
        page.len()
    );
    // The same file is fine as plain content, and local copies are checked too.
    let d = downloader(0)
        .fetch(
            &DownloadSpec::new(server.url("/m.gguf"), &dest),
            &no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(d.size, page.len() as u64);
    let err = downloader(0)
        .fetch(
            &DownloadSpec::new(dest.to_str().unwrap(), dir.path().join("copy.gguf"))
                .content(Content::Gguf),
            &no_progress(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Download(DownloadError::NotGguf { .. })),
        "{err:?}"
    );
    assert!(!dir.path().join("copy.gguf").exists());
}

#[tokio::test]
async fn without_length_or_digest_only_a_whole_gguf_is_accepted() {
    let server = TestServer::start().await;
    let gguf = vocab_gguf();
    // A proxy that gives up mid-stream and ends the chunked body cleanly, every time.
    server.route(
        "/cut.gguf",
        Route::file(gguf.clone())
            .no_length()
            .truncate_first(u32::MAX, gguf.len() / 2),
    );
    server.route("/whole.gguf", Route::file(gguf.clone()).no_length());
    let dir = tempfile::tempdir().unwrap();
    let dl = downloader(1);
    let cut = DownloadSpec::new(server.url("/cut.gguf"), dir.path().join("cut.gguf"))
        .content(Content::Gguf);
    let err = dl.fetch(&cut, &no_progress()).await.unwrap_err();
    match &err {
        Error::Download(DownloadError::Unverifiable { url, reason }) => {
            assert_eq!(url, &server.url("/cut.gguf"));
            assert!(reason.contains("no length"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        server.requests("/cut.gguf")[0]
            .headers
            .get("range")
            .is_none()
    );
    assert!(!dir.path().join("cut.gguf").exists());
    assert!(!dir.path().join("cut.gguf.part").exists());

    // With the digest known the cut is a checksum mismatch, never a published file.
    let err = dl
        .fetch(&cut.clone().sha256(sha(&gguf)), &no_progress())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Download(DownloadError::ChecksumMismatch { .. })),
        "{err:?}"
    );
    assert!(!dir.path().join("cut.gguf").exists());

    let whole = DownloadSpec::new(server.url("/whole.gguf"), dir.path().join("whole.gguf"))
        .content(Content::Gguf);
    let d = dl.fetch(&whole, &no_progress()).await.unwrap();
    assert_eq!(d.sha256, sha(&gguf));
}

fn proxied(proxies: HttpProxies) -> Downloader {
    Downloader::with_proxies(downloader(0).options().clone(), proxies).unwrap()
}

#[tokio::test]
async fn plain_http_goes_through_the_proxy_with_its_credentials() {
    // The loopback server plays the proxy: it sees the absolute-form request for a host
    // that does not exist and serves the path.
    let proxy = TestServer::start().await;
    let body = payload(20_000);
    proxy.route("/files/m.bin", Route::file(body.clone()));
    let addr = proxy.base().trim_start_matches("http://").to_owned();
    let dl =
        proxied(HttpProxies::new(Some(&format!("http://us%3Aer:pw@{addr}")), None, None).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let d = dl
        .fetch(
            &DownloadSpec::new("http://models.invalid/files/m.bin", dir.path().join("m")),
            &no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(d.sha256, sha(&body));
    let seen = &proxy.requests("/files/m.bin")[0];
    assert_eq!(seen.headers.get("host").unwrap(), "models.invalid");
    assert_eq!(
        seen.headers.get("proxy-authorization").unwrap(),
        "Basic dXM6ZXI6cHc="
    );
}

#[tokio::test]
async fn loopback_urls_never_use_the_proxy() {
    let server = TestServer::start().await;
    server.route("/f", Route::file(payload(1000)));
    // A proxy that nobody listens on: any use of it would fail the download.
    let dl = proxied(
        HttpProxies::new(Some("http://127.0.0.1:9"), Some("http://127.0.0.1:9"), None).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    dl.fetch(
        &DownloadSpec::new(server.url("/f"), dir.path().join("f")),
        &no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(server.hits("/f"), 1);
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A proxy that records the CONNECT request and refuses it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before the end of CONNECT");
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(head).unwrap()
    });
    let dl =
        proxied(HttpProxies::new(None, Some(&format!("http://user:pw@{addr}")), None).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let err = dl
        .fetch(
            &DownloadSpec::new("https://models.invalid/m.gguf", dir.path().join("m")),
            &no_progress(),
        )
        .await
        .unwrap_err();
    let head = proxy.await.unwrap();
    assert!(
        head.starts_with("CONNECT models.invalid:443 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Proxy-Authorization: Basic dXNlcjpwdw==\r\n"),
        "{head}"
    );
    assert!(err.to_string().contains("refused the tunnel"), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");
}
