//! The model store against a loopback server that behaves like Hugging Face: a tree
//! listing, resolve URLs that redirect to a CDN path with `X-Linked-Etag`, ETags, ranges,
//! dropped connections and 429s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lmcpp_toolchain::download::Error as DownloadError;
use lmcpp_toolchain::models::Error as ModelError;
use lmcpp_toolchain::models::{
    HfToken, ModelSource, ModelStore, ModelStoreOptions, PullOptions, VerifyStatus,
};
use lmcpp_toolchain::{DownloadOptions, Error};

use crate::download::{payload, sha};

use crate::server::{Route, TestServer};
use lmcpp_toolchain::Classify;

const REPO: &str = "owner/tiny";
const FILE: &str = "tiny-Q4_K_M.gguf";

fn vocab_bytes() -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ggml-vocab-llama-spm.gguf");
    std::fs::read(p).unwrap()
}

/// `n` bytes that pass the store's GGUF magic check (the rest is filler).
fn model_bytes(n: usize) -> Vec<u8> {
    let mut b = payload(n);
    b[..4].copy_from_slice(b"GGUF");
    b
}

fn cdn_path(sha: &str) -> String {
    format!("/cdn/{sha}")
}

fn resolve_path(file: &str) -> String {
    format!("/{REPO}/resolve/main/{file}")
}

const TREE: &str = "/api/models/owner/tiny/tree/main";

/// The commit the fixture hub's `main` points at.
pub const COMMIT: &str = "0123abcd0123abcd0123abcd0123abcd0123abcd";

/// The fixture repository's multimodal projector (a GGUF magic and filler).
pub const MMPROJ: &str = "mmproj-tiny-f16.gguf";
const MMPROJ_BODY: &[u8] = b"GGUFmmprj";

/// Serves `body` as `file` of `REPO`: a resolve redirect with the hub's headers to a CDN
/// path with an ETag.
pub fn serve_file(server: &TestServer, file: &str, body: &[u8]) -> String {
    let digest = sha(body);
    server.route(
        &resolve_path(file),
        Route::redirect(cdn_path(&digest))
            .header("x-linked-etag", &format!("\"{digest}\""))
            .header("x-linked-size", &body.len().to_string())
            .header("x-repo-commit", COMMIT),
    );
    server.route(
        &cdn_path(&digest),
        Route::file(body.to_vec()).etag(&format!("cdn-{}", &digest[..8])),
    );
    digest
}

/// Serves `body` as `FILE` of `REPO`: listing (with the LFS sha256 when `list_sha`),
/// resolve redirect with `X-Linked-Etag`, and the CDN file with an ETag.
fn serve_hub(server: &TestServer, body: &[u8], list_sha: bool) -> String {
    let digest = sha(body);
    let lfs = if list_sha {
        format!(
            r#","lfs":{{"oid":"{digest}","size":{},"pointerSize":134}}"#,
            body.len()
        )
    } else {
        String::new()
    };
    let listing = format!(
        r#"[{{"type":"file","oid":"1","size":12,"path":"README.md"}},
            {{"type":"file","oid":"2","size":{n},"path":"{FILE}"{lfs}}},
            {{"type":"file","oid":"3","size":{n},"path":"tiny-Q8_0.gguf"}},
            {{"type":"file","oid":"4","size":9,"path":"{MMPROJ}",
              "lfs":{{"oid":"{mm}","size":9,"pointerSize":134}}}}]"#,
        n = body.len(),
        mm = sha(MMPROJ_BODY),
    );
    serve_file(server, MMPROJ, MMPROJ_BODY);
    server.route(
        TREE,
        Route::Status {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: listing.into_bytes().into(),
        },
    );
    server.route(
        &resolve_path(FILE),
        Route::redirect(cdn_path(&digest))
            .header("x-linked-etag", &format!("\"{digest}\""))
            .header("x-linked-size", &body.len().to_string())
            .header("x-repo-commit", COMMIT),
    );
    server.route(
        &cdn_path(&digest),
        Route::file(body.to_vec()).etag(&format!("cdn-{}", &digest[..8])),
    );
    digest
}

fn options(root: &Path, server: &TestServer) -> ModelStoreOptions {
    ModelStoreOptions {
        cache_root: Some(root.to_path_buf()),
        hub_cache: Some(root.join("hub")),
        hf_endpoint: Some(server.base()),
        lock_timeout: Duration::from_secs(60),
        download: DownloadOptions {
            retries: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            ..DownloadOptions::default()
        },
        ..ModelStoreOptions::default()
    }
}

fn store(root: &Path, server: &TestServer) -> ModelStore {
    ModelStore::new(options(root, server)).unwrap()
}

fn gets(server: &TestServer, path: &str) -> usize {
    server
        .requests(path)
        .iter()
        .filter(|r| r.method == http::Method::GET)
        .count()
}

/// Where the fixture repository's blob `sha` lives in the test's hub cache.
pub fn hub_blob(root: &Path, sha: &str) -> PathBuf {
    root.join("hub/models--owner--tiny/blobs").join(sha)
}

fn no_partials(root: &Path) {
    no_partials_in(&root.join("models/blobs"));
    no_partials_in(&root.join("hub/models--owner--tiny/blobs"));
}

fn no_partials_in(blobs: &Path) {
    let Ok(entries) = std::fs::read_dir(blobs) else {
        return;
    };
    for e in entries {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.len() == 64 || name.ends_with(".lock"),
            "unexpected file {name} in {}",
            blobs.display()
        );
    }
}

#[tokio::test]
async fn pull_by_quant_lists_verifies_publishes_and_then_stays_offline() {
    let server = TestServer::start().await;
    let body = vocab_bytes();
    let digest = serve_hub(&server, &body, true);
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);

    let m = store
        .pull_str("owner/tiny:q4_k_m", &PullOptions::default())
        .await
        .unwrap();
    assert!(!m.from_cache);
    assert_eq!(m.sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(m.size, body.len() as u64);
    // The model and the repository's projector.
    assert_eq!(m.bytes_transferred, (body.len() + MMPROJ_BODY.len()) as u64);
    assert_eq!(m.file_name, FILE);
    assert_eq!(m.repo_file.as_deref(), Some(FILE));
    assert_eq!(m.alias, "owner/tiny:q4_k_m");
    // The model is the hub cache's snapshot link to its blob.
    let snapshot = dir
        .path()
        .join("hub/models--owner--tiny/snapshots")
        .join(COMMIT);
    assert_eq!(m.path, snapshot.join(FILE));
    assert_eq!(m.parts, std::slice::from_ref(&m.path));
    assert_eq!(m.mmproj.as_deref(), Some(snapshot.join(MMPROJ).as_path()));
    assert_eq!(std::fs::read(&m.path).unwrap(), body);
    let blob = m.blob.clone().unwrap();
    assert_eq!(blob, hub_blob(dir.path(), &digest));
    // The listing gave the digests; one probe learned the commit: one listing, a HEAD and
    // a GET of the model, a GET of the projector.
    assert_eq!(server.hits(TREE), 1);
    assert_eq!(server.hits(&resolve_path(FILE)), 2);
    assert_eq!(gets(&server, &cdn_path(&digest)), 1);
    assert_eq!(server.hits(&resolve_path(MMPROJ)), 1);
    no_partials(dir.path());

    // Idempotent: already verified, so no network at all.
    let before = server.total_hits();
    let again = store
        .pull_str("owner/tiny:q4_k_m", &PullOptions::default())
        .await
        .unwrap();
    assert!(again.from_cache);
    assert_eq!((again.bytes_transferred, &again.path), (0, &m.path));
    assert_eq!(server.total_hits(), before);

    // Another reference to the same content is found in the hub cache: no network.
    let other = store
        .pull_str("hf://owner/tiny:Q4_K_M@main", &PullOptions::default())
        .await
        .unwrap();
    assert!(other.from_cache);
    assert_eq!(other.blob, m.blob);
    assert_eq!(other.alias, "owner/tiny:Q4_K_M");
    assert_eq!(server.total_hits(), before);

    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|c| c.present && c.reference.sha256 == digest)
    );
    let r = &listed[0].reference;
    assert_eq!((r.file_name.as_str(), r.size), (FILE, body.len() as u64));
    assert_eq!(r.url, server.url(&resolve_path(FILE)));

    // The summary of what was pulled, from the store only.
    let summary = store
        .inspect_source(&ModelSource::parse("owner/tiny:q4_k_m").unwrap())
        .await
        .unwrap();
    assert_eq!(summary.vocab_size, Some(32000));
}

#[tokio::test]
async fn pull_by_file_takes_the_digest_from_x_linked_etag() {
    let server = TestServer::start().await;
    let body = model_bytes(200_000);
    let digest = serve_hub(&server, &body, false);
    let dir = tempfile::tempdir().unwrap();
    let no_mmproj = PullOptions {
        no_mmproj: true,
        ..PullOptions::default()
    };
    let m = store(dir.path(), &server)
        .pull_str(&format!("{REPO}:{FILE}"), &no_mmproj)
        .await
        .unwrap();
    assert_eq!(m.sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(m.mmproj, None);
    // A named file without its projector needs no listing; the probe's first hop gave
    // the digest and commit.
    assert_eq!(server.hits(TREE), 0);
    assert_eq!(gets(&server, &cdn_path(&digest)), 1);
    let r = &store(dir.path(), &server).list().unwrap()[0].reference;
    assert_eq!(r.commit.as_deref(), Some(COMMIT));
    assert_eq!(
        r.etag.as_deref(),
        Some(&format!("cdn-{}", &digest[..8])[..])
    );
}

#[tokio::test]
async fn checksum_mismatch_deletes_the_partial_and_publishes_nothing() {
    let server = TestServer::start().await;
    let body = model_bytes(150_000);
    let digest = serve_hub(&server, &body, false);
    // The CDN serves other bytes than the digest the hub announced.
    let mut evil = body.clone();
    evil[1000] ^= 0xff;
    server.route(&cdn_path(&digest), Route::file(evil.clone()).etag("x"));
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);
    let err = store
        .pull_str(&format!("{REPO}:{FILE}"), &PullOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::Download(DownloadError::ChecksumMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, &digest);
            assert_eq!(found, &sha(&evil));
        }
        other => panic!("unexpected {other:?}"),
    }
    no_partials(dir.path());
    assert!(!dir.path().join("models/blobs").join(&digest).exists());
    assert!(store.list().unwrap().is_empty());

    // A caller-supplied digest wins over the hub's and is checked the same way.
    let good = model_bytes(1000);
    server.route("/plain/m.gguf", Route::file(good.clone()));
    let err = store
        .pull_str(
            &server.url("/plain/m.gguf"),
            &PullOptions::sha256("ab".repeat(32)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Download(DownloadError::ChecksumMismatch { .. })),
        "{err:?}"
    );
    let ok = store
        .pull_str(
            &server.url("/plain/m.gguf"),
            &PullOptions::sha256(sha(&good)),
        )
        .await
        .unwrap();
    assert_eq!(ok.size, 1000);
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_range() {
    let server = TestServer::start().await;
    let body = model_bytes(600_000);
    let digest = serve_hub(&server, &body, true);
    let chunk = 16 * 1024;
    server.route(
        &cdn_path(&digest),
        Route::file(body.clone())
            .etag("v1")
            .chunk(chunk)
            // The probe's HEAD counts as the first request.
            .truncate_first(2, 256 * 1024),
    );
    let dir = tempfile::tempdir().unwrap();
    let m = store(dir.path(), &server)
        .pull_str(REPO, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&m.path).unwrap(), body);
    // (The probe's HEAD, which learned the commit, is not counted.)
    let reqs: Vec<_> = server
        .requests(&cdn_path(&digest))
        .into_iter()
        .filter(|r| r.method == http::Method::GET)
        .collect();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].headers.contains_key("range"),
        "second request resumes"
    );
    assert_eq!(reqs[1].headers.get("if-range").unwrap(), "\"v1\"");
    let sent = server.bytes_sent(&cdn_path(&digest));
    assert!(
        sent <= body.len() as u64 + chunk as u64,
        "{sent} bytes sent for a {} byte file",
        body.len()
    );
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_advertised_pause() {
    let server = TestServer::start().await;
    let body = model_bytes(50_000);
    let digest = serve_hub(&server, &body, true);
    server.route(
        &cdn_path(&digest),
        Route::file(body.clone()).fail_first(2, 429, Some(0)),
    );
    let dir = tempfile::tempdir().unwrap();
    let m = store(dir.path(), &server)
        .pull_str(&format!("{REPO}:Q4_K_M"), &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(m.size, body.len() as u64);
    let statuses: Vec<u16> = server
        .requests(&cdn_path(&digest))
        .iter()
        .map(|r| r.status)
        .collect();
    // The probe for the commit met the limit and was retried; then the download.
    assert_eq!(statuses, [429, 429, 200, 200]);
}

#[tokio::test]
async fn eight_concurrent_pulls_transfer_once() {
    let server = TestServer::start().await;
    let body = model_bytes(400_000);
    let digest = serve_hub(&server, &body, false);
    server.route(
        &cdn_path(&digest),
        Route::file(body.clone())
            .etag("v1")
            .throttle(Duration::from_millis(2)),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        // Separate store handles share nothing but the directory, like separate programs.
        let s = store(dir.path(), &server);
        tasks.push(tokio::spawn(async move {
            s.pull_str("owner/tiny:Q4_K_M", &PullOptions::default())
                .await
        }));
    }
    let mut transferred = 0;
    for t in tasks {
        let m = t.await.unwrap().unwrap();
        assert_eq!(m.sha256.as_deref(), Some(digest.as_str()));
        transferred += m.bytes_transferred;
    }
    assert_eq!(transferred, (body.len() + MMPROJ_BODY.len()) as u64);
    assert_eq!(gets(&server, &cdn_path(&digest)), 1);
    assert_eq!(server.hits(TREE), 1);
}

#[tokio::test]
async fn cache_only_errors_when_missing_and_never_connects() {
    let server = TestServer::start().await;
    let body = model_bytes(10_000);
    serve_hub(&server, &body, true);
    let dir = tempfile::tempdir().unwrap();
    let store_ = store(dir.path(), &server);
    let err = store_
        .pull_str(REPO, &PullOptions::cache_only())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Model(ModelError::NotCached { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("owner/tiny"), "{err}");
    let offline = ModelStore::new(ModelStoreOptions {
        offline: true,
        ..options(dir.path(), &server)
    })
    .unwrap();
    let err = offline
        .pull_str(&server.url("/x.gguf"), &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Model(ModelError::NotCached { .. })),
        "{err:?}"
    );
    assert_eq!(server.total_hits(), 0);

    // Once pulled, cache-only and offline lookups succeed without the network.
    store_
        .pull_str(REPO, &PullOptions::default())
        .await
        .unwrap();
    let hits = server.total_hits();
    let m = offline
        .pull_str(REPO, &PullOptions::default())
        .await
        .unwrap();
    assert!(m.from_cache);
    store_
        .pull_str(REPO, &PullOptions::cache_only())
        .await
        .unwrap();
    assert_eq!(server.total_hits(), hits);
}

#[tokio::test]
async fn the_token_goes_to_the_hub_only_and_is_never_shown() {
    let server = TestServer::start().await;
    let cdn = TestServer::start().await; // another origin, like a real CDN
    let body = model_bytes(5_000);
    let digest = serve_hub(&server, &body, false);
    server.route(
        &resolve_path(FILE),
        Route::redirect(cdn.url(&cdn_path(&digest))).header("x-linked-etag", &digest),
    );
    cdn.route(&cdn_path(&digest), Route::file(body.clone()));
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(ModelStoreOptions {
        hf_token: Some(HfToken::new("hf_s3cret")),
        ..options(dir.path(), &server)
    })
    .unwrap();
    assert!(!format!("{store:?}").contains("s3cret"));
    let m = store
        .pull_str(&format!("{REPO}:{FILE}"), &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(m.sha256.as_deref(), Some(digest.as_str()));
    let auth = |server: &TestServer, path: &str| {
        server
            .requests(path)
            .iter()
            .map(|r| {
                r.headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned())
            })
            .collect::<Vec<_>>()
    };
    let hub = auth(&server, &resolve_path(FILE));
    assert!(!hub.is_empty());
    assert!(
        hub.iter().all(|a| a.as_deref() == Some("Bearer hf_s3cret")),
        "{hub:?}"
    );
    let cdn_auth = auth(&cdn, &cdn_path(&digest));
    assert!(!cdn_auth.is_empty());
    assert!(cdn_auth.iter().all(Option::is_none), "{cdn_auth:?}");
    for r in std::fs::read_dir(dir.path().join("models/refs")).unwrap() {
        let text = std::fs::read_to_string(r.unwrap().path()).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
    }

    // The listing request carries it too.
    store.pull_str(REPO, &PullOptions::default()).await.unwrap();
    assert_eq!(auth(&server, TREE), [Some("Bearer hf_s3cret".to_owned())]);
}

#[tokio::test]
async fn unknown_quant_names_the_available_files() {
    let server = TestServer::start().await;
    serve_hub(&server, &model_bytes(10), true);
    let dir = tempfile::tempdir().unwrap();
    let err = store(dir.path(), &server)
        .pull_str("owner/tiny:IQ1_S", &PullOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::Model(ModelError::NoMatchingFile { available, .. }) => {
            assert_eq!(available, &[FILE.to_owned(), "tiny-Q8_0.gguf".to_owned()]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn urls_without_a_digest_are_hashed_while_streaming() {
    let server = TestServer::start().await;
    let body = model_bytes(70_000);
    server.route("/files/model.gguf", Route::file(body.clone()).etag("u1"));
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);
    let url = format!("{}?download=true", server.url("/files/model.gguf"));
    let m = store.pull_str(&url, &PullOptions::default()).await.unwrap();
    assert_eq!(m.sha256, Some(sha(&body)));
    assert_eq!(m.file_name, "model.gguf");
    assert_eq!(m.blob.unwrap(), store.blob_path(&sha(&body)));
    // Nothing is left in the download area.
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path().join("models/downloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let again = store.pull_str(&url, &PullOptions::default()).await.unwrap();
    assert!(again.from_cache);
    assert_eq!(server.hits("/files/model.gguf"), 1);
}

#[tokio::test]
async fn remove_keeps_shared_blobs_and_verify_finds_corruption() {
    let server = TestServer::start().await;
    let body = model_bytes(30_000);
    let digest = serve_hub(&server, &body, true);
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);
    let a = ModelSource::parse("owner/tiny:Q4_K_M").unwrap();
    let b = ModelSource::parse(&format!("owner/tiny:{FILE}")).unwrap();
    let ma = store.pull(&a, &PullOptions::default()).await.unwrap();
    store.pull(&b, &PullOptions::default()).await.unwrap();
    let blob = ma.blob.unwrap();

    let report = store.verify().await.unwrap();
    // The model and its projector.
    assert_eq!(report.len(), 2);
    assert!(report.iter().all(|r| r.status == VerifyStatus::Ok));
    let model = report.iter().find(|r| r.sha256 == digest).unwrap();
    assert_eq!(model.sources.len(), 2);

    // Flip one byte behind the store's back: verify notices and drops the blob.
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[7] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let report = store.verify().await.unwrap();
    let model = report.iter().find(|r| r.sha256 == digest).unwrap();
    assert_eq!(model.status, VerifyStatus::Corrupt { found: sha(&bytes) });
    assert!(!blob.exists());
    // The next pull downloads it again.
    let again = store.pull(&a, &PullOptions::default()).await.unwrap();
    assert!(!again.from_cache);
    assert_eq!(std::fs::read(&blob).unwrap(), body);
    assert_eq!(gets(&server, &cdn_path(&digest)), 2);

    assert!(store.remove(&a).await.unwrap());
    assert!(blob.exists(), "still used by the other reference");
    assert!(!store.remove(&a).await.unwrap(), "already removed");
    assert!(store.remove(&b).await.unwrap());
    assert!(!blob.exists());
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn local_paths_are_used_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let store = store(dir.path(), &server);
    let file = dir.path().join("m.gguf");
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ggml-vocab-llama-spm.gguf");
    std::fs::copy(real, &file).unwrap();
    // Not copy's answer: under Wine it reports 0 bytes copied.
    let size = std::fs::metadata(&file).unwrap().len();
    let m = store
        .pull_str(file.to_str().unwrap(), &PullOptions::default())
        .await
        .unwrap();
    assert_eq!((m.path, m.size, m.blob), (file.clone(), size, None));
    // A local file is checked as GGUF: the bare magic is a truncated file.
    let stub = dir.path().join("stub.gguf");
    std::fs::write(&stub, b"GGUF").unwrap();
    let err = store
        .pull_str(stub.to_str().unwrap(), &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.is_user_error() && err.to_string().contains("truncated"),
        "{err}"
    );
    let err = store
        .pull_str(
            dir.path().join("missing.gguf").to_str().unwrap(),
            &PullOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Model(ModelError::FileMissing { .. })),
        "{err:?}"
    );
    assert_eq!(server.total_hits(), 0);
}

/// Env var that turns the test binary into a pulling child process: `<endpoint>|<root>`.
const CHILD_ENV: &str = "LMCPP_TEST_STORE_CHILD";

/// In a child process (spawned by [`spawn_child`]), pulls `REPO` and returns true; the test
/// then ends, so its exit status is the pull's outcome.
async fn child_mode() -> bool {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return false;
    };
    let (endpoint, root) = spec.split_once('|').unwrap();
    let mut opts = ModelStoreOptions::with_cache_root(root);
    opts.hub_cache = Some(Path::new(root).join("hub"));
    opts.hf_endpoint = Some(endpoint.to_owned());
    let store = ModelStore::new(opts).unwrap();
    store.pull_str(REPO, &PullOptions::default()).await.unwrap();
    true
}

/// Runs the test `name` of this binary as a child process in [`child_mode`].
fn spawn_child(name: &str, server: &TestServer, root: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{}", server.base(), root.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn concurrent_pulls_in_separate_processes_transfer_once() {
    if child_mode().await {
        return;
    }
    let server = TestServer::start().await;
    let body = model_bytes(1 << 20);
    let digest = serve_hub(&server, &body, true);
    server.route(
        &cdn_path(&digest),
        Route::file(body.clone())
            .etag("v1")
            .throttle(Duration::from_millis(5)),
    );
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            spawn_child(
                "store::concurrent_pulls_in_separate_processes_transfer_once",
                &server,
                dir.path(),
            )
        })
        .collect();
    for mut c in children {
        let status = tokio::task::spawn_blocking(move || c.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "a child pull failed: {status}");
    }
    assert_eq!(gets(&server, &cdn_path(&digest)), 1);
    let m = store(dir.path(), &server)
        .pull_str(REPO, &PullOptions::cache_only())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&m.path).unwrap(), body);
}

#[tokio::test]
async fn sigkill_mid_pull_then_the_next_pull_resumes() {
    if child_mode().await {
        return;
    }
    // The digest comes from the listing; the CDN has a strong ETag.
    kill_mid_pull_then_resume(
        "store::sigkill_mid_pull_then_the_next_pull_resumes",
        true,
        Some("v1"),
    )
    .await;
}

#[tokio::test]
async fn sigkill_mid_pull_resumes_on_the_hub_digest_without_an_etag() {
    if child_mode().await {
        return;
    }
    // The digest comes from `X-Linked-Etag` only, and the CDN sends no validator.
    kill_mid_pull_then_resume(
        "store::sigkill_mid_pull_resumes_on_the_hub_digest_without_an_etag",
        false,
        None,
    )
    .await;
}

/// Starts a child pulling `REPO`, SIGKILLs it once 1 MiB is in the `.part`, pulls again
/// and checks that the second pull continued the part with a `Range` request.
async fn kill_mid_pull_then_resume(test_name: &str, list_sha: bool, etag: Option<&str>) {
    let server = TestServer::start().await;
    // Bigger than the downloader's 1 MiB write buffer, so the `.part` on disk grows.
    let body = model_bytes(3 << 20);
    let digest = serve_hub(&server, &body, list_sha);
    let cdn = |throttle: Option<Duration>| {
        let mut r = Route::file(body.clone()).chunk(16 * 1024);
        if let Some(e) = etag {
            r = r.etag(e);
        }
        if let Some(t) = throttle {
            r = r.throttle(t);
        }
        r
    };
    server.route(&cdn_path(&digest), cdn(Some(Duration::from_millis(10))));
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(test_name, &server, dir.path());

    let part = hub_blob(dir.path(), &format!("{digest}.part"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let len = std::fs::metadata(&part).map_or(0, |m| m.len());
        if len >= 1 << 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never wrote 1 MiB (part is {len} bytes)"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child finished early"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs in the child.
    child.wait().unwrap();
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept >= 1 << 20);

    server.route(&cdn_path(&digest), cdn(None));
    let m = store(dir.path(), &server)
        .pull_str(REPO, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&m.path).unwrap(), body);
    assert!(
        // (The projector is fetched after the model.)
        m.bytes_transferred <= (body.len() + MMPROJ_BODY.len()) as u64 - kept,
        "resumed: {} transferred, {kept} were kept",
        m.bytes_transferred
    );
    let last = server.requests(&cdn_path(&digest)).pop().unwrap();
    assert_eq!(
        last.headers
            .get("range")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some(format!("bytes={kept}-"))
    );
    assert_eq!(last.status, 206);
}

#[tokio::test]
async fn every_digest_source_resumes_a_cut_transfer() {
    let server = TestServer::start().await;
    let body = model_bytes(600_000);
    // The hub's `X-Linked-Etag` (no listing digest), a CDN without validators.
    let digest = serve_hub(&server, &body, false);
    // (The probe's HEAD counts as the first request.)
    server.route(
        &cdn_path(&digest),
        Route::file(body.clone()).truncate_first(2, 200_000),
    );
    // A caller's `--sha256` for a plain URL, again without validators.
    server.route(
        "/plain/m.gguf",
        Route::file(body.clone()).truncate_first(1, 300_000),
    );
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let hub = store(a.path(), &server)
        .pull_str(&format!("{REPO}:{FILE}"), &PullOptions::default())
        .await
        .unwrap();
    let url = store(b.path(), &server)
        .pull_str(&server.url("/plain/m.gguf"), &PullOptions::sha256(&digest))
        .await
        .unwrap();
    for m in [&hub, &url] {
        assert_eq!(m.sha256.as_deref(), Some(digest.as_str()));
        assert_eq!(std::fs::read(&m.path).unwrap(), body);
    }
    for path in [cdn_path(&digest), "/plain/m.gguf".to_owned()] {
        let reqs = server.requests(&path);
        let gets: Vec<_> = reqs
            .iter()
            .filter(|r| r.method == http::Method::GET)
            .collect();
        assert_eq!(gets.len(), 2, "{path}");
        assert!(gets[1].headers.contains_key("range"), "{path} resumes");
        assert_eq!(gets[1].status, 206, "{path}");
    }
}

#[tokio::test]
async fn content_that_is_not_gguf_is_never_stored() {
    let server = TestServer::start().await;
    let page = b"<!doctype html><p>rate limited</p>".repeat(100);
    server.route("/m.gguf", Route::file(page.clone()).etag("p"));
    let digest = serve_hub(&server, &page, false);
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);
    for reference in [server.url("/m.gguf"), format!("{REPO}:{FILE}")] {
        let err = store
            .pull_str(&reference, &PullOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Download(DownloadError::NotGguf { .. })),
            "{err:?}"
        );
    }
    assert!(store.list().unwrap().is_empty());
    assert!(!store.blob_path(&digest).exists());
    assert!(!store.blob_path(&sha(&page)).exists());
    no_partials(dir.path());
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path().join("models/downloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_cut_body_without_length_or_digest_is_never_stored() {
    let server = TestServer::start().await;
    let gguf = vocab_bytes();
    server.route(
        "/files/cut.gguf",
        Route::file(gguf.clone())
            .no_length()
            .truncate_first(u32::MAX, gguf.len() / 3),
    );
    server.route("/files/whole.gguf", Route::file(gguf.clone()).no_length());
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);
    let err = store
        .pull_str(&server.url("/files/cut.gguf"), &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Download(DownloadError::Unverifiable { .. })),
        "{err:?}"
    );
    assert!(store.list().unwrap().is_empty());
    no_partials(dir.path());
    let m = store
        .pull_str(&server.url("/files/whole.gguf"), &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(m.sha256, Some(sha(&gguf)));
}

/// Pulls two references to one blob (`a`, `b`) and one to another blob (`other`).
async fn two_blobs(server: &TestServer, store: &ModelStore) -> (String, String) {
    let body = model_bytes(40_000);
    let digest = serve_hub(server, &body, true);
    let mut other: Vec<u8> = model_bytes(20_000).iter().map(|b| b ^ 0x5a).collect();
    other[..4].copy_from_slice(b"GGUF");
    server.route("/other/o.gguf", Route::file(other.clone()));
    for r in [
        "owner/tiny:Q4_K_M".to_owned(),
        format!("owner/tiny:{FILE}"),
        server.url("/other/o.gguf"),
    ] {
        store.pull_str(&r, &PullOptions::default()).await.unwrap();
    }
    (digest, sha(&other))
}

#[tokio::test]
async fn models_are_named_by_source_digest_or_unique_prefix() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);
    let (digest, other) = two_blobs(&server, &store).await;

    assert_eq!(store.resolve(&digest).unwrap(), digest);
    assert_eq!(store.resolve(&digest[..12].to_uppercase()).unwrap(), digest);
    assert_eq!(store.resolve(&other[..16]).unwrap(), other);
    assert_eq!(store.resolve("owner/tiny:Q4_K_M").unwrap(), digest);
    assert_eq!(store.resolve(&server.url("/other/o.gguf")).unwrap(), other);
    for unknown in [&digest[..11], &"0".repeat(64), "owner/tiny:Q8_0", "nothing"] {
        let err = store.resolve(unknown).unwrap_err();
        assert!(
            matches!(err, Error::Model(ModelError::Unknown { .. })),
            "{unknown}: {err:?}"
        );
        assert!(err.to_string().contains("lmcpp model list"), "{err}");
    }
    // Two blobs sharing a 12-digit prefix: the prefix is ambiguous, longer ones are not.
    let blobs = dir.path().join("models/blobs");
    let (x, y) = (
        format!("{}0{}", "a".repeat(12), "1".repeat(51)),
        format!("{}0{}", "a".repeat(12), "2".repeat(51)),
    );
    std::fs::write(blobs.join(&x), b"GGUF").unwrap();
    std::fs::write(blobs.join(&y), b"GGUF").unwrap();
    match store.resolve(&"a".repeat(12)).unwrap_err() {
        Error::Model(ModelError::Ambiguous { matches, .. }) => {
            assert_eq!(matches, [x.clone(), y.clone()])
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(store.resolve(&x[..14]).unwrap(), x);
}

#[tokio::test]
async fn remove_by_digest_forgets_every_source_and_keeps_other_blobs() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);
    let (digest, other) = two_blobs(&server, &store).await;
    let blob = hub_blob(dir.path(), &digest);
    let size = std::fs::metadata(&blob).unwrap().len();

    let removed = store.remove_digest(&digest).await.unwrap();
    assert_eq!(removed.sha256, digest);
    // The projector pulled with the model goes with it.
    assert_eq!(removed.freed, size + MMPROJ_BODY.len() as u64);
    assert!(!hub_blob(dir.path(), &sha(MMPROJ_BODY)).exists());
    assert_eq!(removed.sources.len(), 2, "{:?}", removed.sources);
    assert!(!blob.exists());
    assert!(
        !dir.path()
            .join("models/by-name")
            .read_dir()
            .unwrap()
            .any(|e| {
                let p = e.unwrap().path();
                std::fs::read_dir(&p).unwrap().any(|l| {
                    std::fs::read_link(l.unwrap().path())
                        .unwrap()
                        .ends_with(&digest)
                })
            })
    );
    let left = store.list().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].reference.sha256, other);
    assert!(store.blob_path(&other).exists());
    let err = store.remove_digest(&digest).await.unwrap_err();
    assert!(
        matches!(err, Error::Model(ModelError::Unknown { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn verifying_one_model_reads_and_touches_no_other() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);
    let (digest, other) = two_blobs(&server, &store).await;
    // Corrupt the other blob: only a verification of that blob may delete it.
    let other_blob = store.blob_path(&other);
    let mut bytes = std::fs::read(&other_blob).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&other_blob, &bytes).unwrap();

    let unknown = "f".repeat(64);
    let err = store.resolve(&unknown).unwrap_err();
    assert!(
        matches!(err, Error::Model(ModelError::Unknown { .. })),
        "{err:?}"
    );
    let err = store.verify_digest(&unknown).await.unwrap_err();
    assert!(
        matches!(err, Error::Model(ModelError::Unknown { .. })),
        "{err:?}"
    );
    let report = store.verify_digest(&digest).await.unwrap();
    assert_eq!(report.status, VerifyStatus::Ok);
    assert_eq!(report.sources.len(), 2);
    assert!(
        other_blob.exists(),
        "a corrupt blob of another model was touched"
    );

    let report = store.verify_digest(&other).await.unwrap();
    assert!(matches!(report.status, VerifyStatus::Corrupt { .. }));
    assert!(!other_blob.exists());
}

#[tokio::test]
async fn removal_never_deletes_a_blob_a_pull_is_publishing() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &server);
    let body = model_bytes(30_000);
    server.route("/a/m.gguf", Route::file(body.clone()));
    let a = store
        .pull_str(&server.url("/a/m.gguf"), &PullOptions::default())
        .await
        .unwrap();
    let digest = a.sha256.clone().unwrap();
    let blob = store.blob_path(&digest);

    // Another pull of the same content is between its download and its ref: it holds the
    // blob's lock (the layout names it) and has not written its ref yet.
    let lock = dir
        .path()
        .join("models/locks")
        .join(format!("blob-{digest}.lock"));
    let publishing = lmcpp_toolchain::lock_exclusive(
        &lock,
        Duration::from_secs(5),
        &lmcpp_toolchain::no_progress(),
    )
    .await
    .unwrap();
    let s = store.clone();
    let source = ModelSource::parse(&server.url("/a/m.gguf")).unwrap();
    let mut removal = tokio::spawn(async move { s.remove(&source).await });
    // Today's removal would finish here and delete the blob; it must wait instead.
    let finished = tokio::time::timeout(Duration::from_millis(500), &mut removal).await;
    assert!(
        finished.is_err(),
        "the removal did not wait for the publishing pull"
    );
    // The pull writes its ref (a copy of the first one under another key) and lets go.
    let refs = dir.path().join("models/refs");
    let first = std::fs::read_dir(&refs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
    v["key"] = "other-key".into();
    v["source"] = "other source".into();
    std::fs::write(refs.join("other-key.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    drop(publishing);
    assert!(removal.await.unwrap().unwrap());
    assert!(blob.exists(), "the blob of the other reference was deleted");
    assert_eq!(store.list().unwrap().len(), 1);
}
