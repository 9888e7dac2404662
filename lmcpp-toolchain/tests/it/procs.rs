//! Separate processes: racing on a cold entry, and being SIGKILLed mid-download and
//! mid-extract. Each test re-runs this test binary filtered to itself with
//! `LMCPP_IT_CHILD_*` set; in that mode the test body is the child's work.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lmcpp_toolchain::no_progress;

use crate::fixtures::{asset_path, list_release, prebuilt_request_for, release_archive, toolchain};
use crate::server::{Route, TestServer};

const ROOT_ENV: &str = "LMCPP_IT_CHILD_ROOT";
const BASE_ENV: &str = "LMCPP_IT_CHILD_BASE";
const OUT_ENV: &str = "LMCPP_IT_CHILD_OUT";

/// In child mode: installs and writes the binary path to the out file. Returns whether
/// this process is a child.
async fn run_as_child() -> bool {
    let (Ok(root), Ok(base), Ok(out)) = (
        std::env::var(ROOT_ENV),
        std::env::var(BASE_ENV),
        std::env::var(OUT_ENV),
    ) else {
        return false;
    };
    let tc = toolchain(Path::new(&root));
    let i = tc
        .ensure(&prebuilt_request_for(&base), &no_progress())
        .await
        .expect("child ensure");
    std::fs::write(out, i.llama_server.to_string_lossy().as_bytes()).expect("write out");
    true
}

fn spawn_child(test: &str, root: &Path, base: &str, out: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "-q"])
        .env(ROOT_ENV, root)
        .env(BASE_ENV, base)
        .env(OUT_ENV, out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls `cond` every millisecond until it holds, checking `invariant` at every step.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool, invariant: impl Fn()) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        invariant();
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_racing_a_cold_entry_download_once() {
    if run_as_child().await {
        return;
    }
    let server = TestServer::start().await;
    let bytes = release_archive(200);
    list_release(&server, &bytes);
    // Slow enough that the children overlap while the first one downloads.
    server.route(
        &asset_path(),
        Route::file(bytes)
            .etag("r")
            .throttle(Duration::from_millis(2)),
    );
    let root = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    for n in 0..8 {
        let out = root.path().join(format!("child-{n}.out"));
        let c = spawn_child(
            "procs::eight_processes_racing_a_cold_entry_download_once",
            &root.path().join("cache"),
            &server.base(),
            &out,
        );
        children.push((c, out));
    }
    let mut paths = Vec::new();
    for (mut c, out) in children {
        let status = tokio::task::spawn_blocking(move || c.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "child failed: {status}");
        paths.push(std::fs::read_to_string(out).unwrap());
    }
    paths.dedup();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(Path::new(&paths[0]).is_file());
    assert_eq!(server.hits(&asset_path()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_download_the_next_run_resumes_and_succeeds() {
    if run_as_child().await {
        return;
    }
    let server = TestServer::start().await;
    let bytes = release_archive(300);
    list_release(&server, &bytes);
    server.route(
        &asset_path(),
        Route::file(bytes.clone())
            .etag("r")
            .chunk(8 * 1024)
            .throttle(Duration::from_millis(5)),
    );
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let tc = toolchain(&cache);
    let req = prebuilt_request_for(&server.base());
    let (_, entry) = tc.entry_for(&req).await.unwrap();
    let mut child = spawn_child(
        "procs::killed_mid_download_the_next_run_resumes_and_succeeds",
        &cache,
        &server.base(),
        &root.path().join("out"),
    );
    let downloads = cache.join("downloads");
    let bin = entry.join("bin");
    wait_for(
        "a partial download",
        || {
            files_ending(&downloads, ".part")
                .iter()
                .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 64 * 1024))
        },
        || assert!(!bin.exists(), "bin/ visible during the download"),
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!bin.exists());

    server.route(&asset_path(), Route::file(bytes).etag("r"));
    let i = tc.ensure(&req, &no_progress()).await.unwrap();
    tc.validate(&req).await.unwrap();
    assert!(i.llama_server.is_file());
    let reqs = server.requests(&asset_path());
    let seen: Vec<_> = reqs
        .iter()
        .map(|r| (r.status, r.headers.get("range").cloned()))
        .collect();
    assert_eq!(reqs.len(), 2, "{seen:?}");
    assert!(
        reqs[1].headers.contains_key("range"),
        "the second run resumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_extract_the_next_run_succeeds() {
    if run_as_child().await {
        return;
    }
    let server = TestServer::start().await;
    let bytes = release_archive(3000);
    list_release(&server, &bytes);
    server.route(&asset_path(), Route::file(bytes).etag("r"));
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let tc = toolchain(&cache);
    let req = prebuilt_request_for(&server.base());
    let (fp, entry) = tc.entry_for(&req).await.unwrap();
    let toolchains = cache.join("toolchains");
    // `.<fingerprint>.<pid>.scratch/prebuilt-0.extracting` of the child, whatever its pid.
    let extracting = move || {
        std::fs::read_dir(&toolchains).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path().join("prebuilt-0.extracting"))
                .find(|p| {
                    p.exists()
                        && p.parent()
                            .and_then(|d| d.file_name())
                            .is_some_and(|n| n.to_string_lossy().starts_with(&format!(".{fp}.")))
                })
        })
    };
    let mut child = spawn_child(
        "procs::killed_mid_extract_the_next_run_succeeds",
        &cache,
        &server.base(),
        &root.path().join("out"),
    );
    let bin = entry.join("bin");
    wait_for(
        "extraction to start",
        || extracting().is_some(),
        || assert!(!bin.exists(), "bin/ visible before extraction finished"),
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!bin.exists());

    let i = tc.ensure(&req, &no_progress()).await.unwrap();
    assert!(i.llama_server.is_file());
    assert!(extracting().is_none());
    let left: Vec<_> = std::fs::read_dir(cache.join("toolchains"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".scratch"))
        .collect();
    assert!(left.is_empty(), "stale scratch dirs: {left:?}");
}
