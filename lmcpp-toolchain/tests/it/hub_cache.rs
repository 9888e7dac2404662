//! Models as users have them: the Hugging Face hub cache shared with llama.cpp and
//! `huggingface_hub`, split GGUF files, multimodal projectors, `owner/repo` alone, and the
//! alias a server is given. Against a loopback hub that serves split and multimodal repos
//! with the hub's `X-Linked-Etag` digests and `X-Repo-Commit`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lmcpp_toolchain::download::Error as DownloadError;
use lmcpp_toolchain::models::Error as ModelError;
use lmcpp_toolchain::models::{ModelStore, ModelStoreOptions, PullOptions, VerifyStatus};
use lmcpp_toolchain::{DownloadOptions, Error};

use crate::download::{payload, sha};
use crate::server::{Route, TestServer};

const COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// `n` bytes with the GGUF magic, different for each `seed`.
fn gguf(n: usize, seed: u8) -> Vec<u8> {
    let mut b: Vec<u8> = payload(n).iter().map(|x| x ^ seed).collect();
    b[..4].copy_from_slice(b"GGUF");
    b
}

/// Serves `files` as repository `repo` at `main` (= [`COMMIT`]): a tree listing with LFS
/// digests, resolve redirects carrying the hub's headers, CDN files with ETags.
fn serve_repo(server: &TestServer, repo: &str, files: &[(&str, Vec<u8>)]) {
    let mut listing = vec![r#"{"type":"file","oid":"0","size":5,"path":"README.md"}"#.to_owned()];
    for (path, body) in files {
        let digest = sha(body);
        listing.push(format!(
            r#"{{"type":"file","oid":"1","size":{n},"path":"{path}","lfs":{{"oid":"{digest}","size":{n},"pointerSize":134}}}}"#,
            n = body.len()
        ));
        server.route(
            &format!("/{repo}/resolve/main/{path}"),
            Route::redirect(format!("/cdn/{digest}"))
                .header("x-linked-etag", &format!("\"{digest}\""))
                .header("x-linked-size", &body.len().to_string())
                .header("x-repo-commit", COMMIT),
        );
        server.route(
            &format!("/cdn/{digest}"),
            Route::file(body.clone()).etag(&digest[..8]),
        );
    }
    server.route(
        &format!("/api/models/{repo}/tree/main"),
        Route::Status {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!("[{}]", listing.join(",")).into_bytes().into(),
        },
    );
}

fn options(root: &Path, server: &TestServer) -> ModelStoreOptions {
    ModelStoreOptions {
        cache_root: Some(root.join("lmcpp")),
        hub_cache: Some(root.join("hub")),
        hf_endpoint: Some(server.base()),
        lock_timeout: Duration::from_secs(60),
        download: DownloadOptions {
            retries: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(20),
            ..DownloadOptions::default()
        },
        ..ModelStoreOptions::default()
    }
}

fn repo_dir(root: &Path, repo: &str) -> PathBuf {
    root.join("hub")
        .join(format!("models--{}", repo.replace('/', "--")))
}

fn snapshot(root: &Path, repo: &str) -> PathBuf {
    repo_dir(root, repo).join("snapshots").join(COMMIT)
}

/// Places `files` in the hub cache the way `huggingface_hub` and llama.cpp do.
fn place(root: &Path, repo: &str, files: &[(&str, &[u8])]) {
    let dir = repo_dir(root, repo);
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    std::fs::write(dir.join("refs/main"), COMMIT).unwrap();
    for (path, body) in files {
        let digest = sha(body);
        std::fs::write(dir.join("blobs").join(&digest), body).unwrap();
        let link = snapshot(root, repo).join(path);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        #[cfg(unix)]
        {
            let up = "../".repeat(path.split('/').count() + 1);
            std::os::unix::fs::symlink(format!("{up}blobs/{digest}"), &link).unwrap();
        }
        // Without symlinks (Windows without developer mode) the Python client copies.
        #[cfg(windows)]
        std::fs::write(&link, body).unwrap();
    }
}

/// Places `files` as `huggingface_hub` does where it cannot make symlinks (Windows without
/// developer mode, a FAT drive): each file only in its snapshot, no blob.
fn place_copies(root: &Path, repo: &str, files: &[(&str, &[u8])]) {
    let dir = repo_dir(root, repo);
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    std::fs::write(dir.join("refs/main"), COMMIT).unwrap();
    for (path, body) in files {
        let file = snapshot(root, repo).join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, body).unwrap();
    }
}

/// A cache written without symlinks is used with no request (its digest from hashing the
/// file once), `verify` checks the snapshot file itself, and a corrupt one is removed.
#[tokio::test]
async fn a_cache_written_without_symlinks_is_used_and_verified() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let body = gguf(3000, 7);
    place_copies(dir.path(), "org/copied", &[("c-Q4_K_M.gguf", &body)]);
    let store = ModelStore::new(options(dir.path(), &server)).unwrap();
    let m = store
        .pull_str("org/copied", &PullOptions::default())
        .await
        .unwrap();
    assert!(m.from_cache);
    let file = snapshot(dir.path(), "org/copied").join("c-Q4_K_M.gguf");
    assert_eq!(m.path, file);
    assert_eq!(m.sha256.as_deref(), Some(sha(&body).as_str()));
    assert_eq!(server.total_hits(), 0);
    let report = store.verify().await.unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].status, VerifyStatus::Ok, "{report:?}");

    let mut bad = body.clone();
    bad[9] ^= 1;
    std::fs::write(&file, &bad).unwrap();
    let report = store.verify().await.unwrap();
    assert_eq!(report[0].status, VerifyStatus::Corrupt { found: sha(&bad) });
    assert!(!file.exists(), "the corrupt copy is removed");
    assert_eq!(server.total_hits(), 0);
}

fn split_repo() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("m-Q4_K_M-00001-of-00003.gguf", gguf(7000, 1)),
        ("m-Q4_K_M-00002-of-00003.gguf", gguf(6000, 2)),
        ("m-Q4_K_M-00003-of-00003.gguf", gguf(5000, 3)),
        ("m-Q8_0.gguf", gguf(9000, 4)),
        ("mmproj-m-Q8_0.gguf", gguf(300, 5)),
        ("mmproj-m-F16.gguf", gguf(400, 6)),
    ]
}

#[tokio::test]
async fn a_split_multimodal_model_is_pulled_whole_into_the_hub_layout() {
    let server = TestServer::start().await;
    let files = split_repo();
    serve_repo(&server, "org/split", &files);
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(options(dir.path(), &server)).unwrap();

    let m = store
        .pull_str("org/split:Q4_K_M", &PullOptions::default())
        .await
        .unwrap();
    let snap = snapshot(dir.path(), "org/split");
    let blobs = repo_dir(dir.path(), "org/split").join("blobs");
    // Every part, in order; the first is what the server loads.
    let parts: Vec<PathBuf> = files[..3].iter().map(|(p, _)| snap.join(p)).collect();
    assert_eq!(m.parts, parts);
    assert_eq!(m.path, parts[0]);
    assert_eq!(m.repo_file.as_deref(), Some(files[0].0));
    assert_eq!(m.alias, "org/split:Q4_K_M");
    // The F16 projector is preferred over the Q8_0 one.
    assert_eq!(
        m.mmproj.as_deref(),
        Some(snap.join("mmproj-m-F16.gguf").as_path())
    );
    let expected = [&files[0], &files[1], &files[2], &files[5]];
    assert_eq!(
        m.bytes_transferred,
        expected.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
    );
    // The hub layout: blobs named by SHA-256, relative snapshot links, the revision's ref.
    for (path, body) in expected {
        let link = snap.join(path);
        // A copy of the blob where there are no links (Windows).
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../../blobs").join(sha(body)),
            "{path}"
        );
        assert_eq!(&std::fs::read(&link).unwrap(), body, "{path}");
    }
    let mut names: Vec<String> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    names.sort();
    let mut want: Vec<String> = expected.iter().map(|(_, b)| sha(b)).collect();
    want.sort();
    assert_eq!(names, want, "only verified blobs, no partial files");
    assert_eq!(
        std::fs::read_to_string(repo_dir(dir.path(), "org/split").join("refs/main")).unwrap(),
        COMMIT
    );
    // Nothing of the Q8_0 model was fetched.
    assert_eq!(server.hits(&format!("/cdn/{}", sha(&files[3].1))), 0);

    // lmcpp's list and verify see every file of the model.
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].present);
    assert_eq!(listed[0].reference.parts.len(), 2);
    assert!(listed[0].reference.mmproj.is_some());
    let report = store.verify().await.unwrap();
    assert_eq!(report.len(), 4);
    assert!(
        report.iter().all(|r| r.status == VerifyStatus::Ok),
        "{report:?}"
    );

    // Again: nothing is asked.
    let hits = server.total_hits();
    let again = store
        .pull_str("org/split:Q4_K_M", &PullOptions::default())
        .await
        .unwrap();
    assert!(again.from_cache);
    assert_eq!(again.parts, parts);
    assert_eq!(server.total_hits(), hits);

    // Removal takes the snapshot links and the blobs with it.
    assert!(
        store
            .remove(&"org/split:Q4_K_M".parse().unwrap())
            .await
            .unwrap()
    );
    assert!(!parts[1].exists() && std::fs::symlink_metadata(&parts[1]).is_err());
    assert!(!blobs.join(sha(&files[1].1)).exists());
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn the_projector_can_be_left_out_and_the_alias_overridden() {
    let server = TestServer::start().await;
    serve_repo(&server, "org/split", &split_repo());
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(options(dir.path(), &server)).unwrap();
    let m = store
        .pull_str(
            "org/split:Q8_0",
            &PullOptions {
                no_mmproj: true,
                alias: Some("chat".into()),
                ..PullOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(m.mmproj, None);
    assert_eq!(m.alias, "chat");
    assert_eq!(m.parts.len(), 1);
    assert!(
        !repo_dir(dir.path(), "org/split")
            .join("blobs")
            .join(sha(&split_repo()[5].1))
            .exists()
    );
}

#[tokio::test]
async fn owner_repo_alone_picks_q4_k_m_else_the_closest_and_says_which() {
    let server = TestServer::start().await;
    serve_repo(
        &server,
        "org/noq4",
        &[
            ("m-Q8_0.gguf", gguf(900, 1)),
            ("m-Q5_K_M.gguf", gguf(800, 2)),
            ("m-Q2_K.gguf", gguf(700, 3)),
        ],
    );
    serve_repo(&server, "org/split", &split_repo());
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(options(dir.path(), &server)).unwrap();
    let m = store
        .pull_str("org/noq4", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(m.repo_file.as_deref(), Some("m-Q5_K_M.gguf"));
    assert_eq!(m.file_name, "m-Q5_K_M.gguf");
    assert_eq!(m.alias, "org/noq4");
    let m = store
        .pull_str("org/split", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(m.repo_file.as_deref(), Some("m-Q4_K_M-00001-of-00003.gguf"));
    assert_eq!(m.parts.len(), 3);
}

#[tokio::test]
async fn a_model_already_in_the_hub_cache_is_used_without_any_request() {
    // The hub answers nothing: every path is 404 and every request is recorded.
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (one, two, proj) = (gguf(3000, 1), gguf(2000, 2), gguf(100, 3));
    place(
        dir.path(),
        "org/placed",
        &[
            ("sub/big-Q4_K_M-00001-of-00002.gguf", &one),
            ("sub/big-Q4_K_M-00002-of-00002.gguf", &two),
            ("sub/mmproj-big-f16.gguf", &proj),
        ],
    );
    let store = ModelStore::new(options(dir.path(), &server)).unwrap();
    for reference in ["org/placed:Q4_K_M", "org/placed", "hf://org/placed@main"] {
        let m = store
            .pull_str(reference, &PullOptions::default())
            .await
            .unwrap();
        assert!(m.from_cache, "{reference}");
        let snap = snapshot(dir.path(), "org/placed");
        assert_eq!(m.path, snap.join("sub/big-Q4_K_M-00001-of-00002.gguf"));
        assert_eq!(m.parts.len(), 2);
        assert_eq!(
            m.mmproj.as_deref(),
            Some(snap.join("sub/mmproj-big-f16.gguf").as_path())
        );
        assert_eq!(m.sha256.as_deref(), Some(sha(&one).as_str()));
    }
    // By commit too, and cache-only.
    store
        .pull_str(
            &format!("org/placed:Q4_K_M@{COMMIT}"),
            &PullOptions::cache_only(),
        )
        .await
        .unwrap();
    assert_eq!(server.total_hits(), 0);
    // And lmcpp lists it (`org/placed` and `hf://org/placed@main` are one reference).
    assert_eq!(store.list().unwrap().len(), 3);
}

#[tokio::test]
async fn a_cache_lacking_q4_k_m_asks_the_hub_unless_offline() {
    let server = TestServer::start().await;
    let q4 = gguf(1000, 1);
    let q8 = gguf(2000, 2);
    serve_repo(
        &server,
        "org/r",
        &[("r-Q4_K_M.gguf", q4.clone()), ("r-Q8_0.gguf", q8.clone())],
    );
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), "org/r", &[("r-Q8_0.gguf", &q8)]);
    let offline = ModelStore::new(ModelStoreOptions {
        offline: true,
        ..options(dir.path(), &server)
    })
    .unwrap();
    let m = offline
        .pull_str("org/r", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(m.repo_file.as_deref(), Some("r-Q8_0.gguf"));
    assert_eq!(server.total_hits(), 0);
    // Online, `org/r` means what the hub picks (the cache holds only part of the repo).
    let online = ModelStore::new(options(dir.path(), &server)).unwrap();
    let key_differs = online
        .pull_str("hf://org/r@main", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(key_differs.repo_file.as_deref(), Some("r-Q4_K_M.gguf"));
    assert_eq!(std::fs::read(&key_differs.path).unwrap(), q4);
    assert_eq!(server.hits("/api/models/org/r/tree/main"), 1);
}

#[tokio::test]
async fn a_part_that_fails_verification_leaves_no_snapshot_link() {
    let server = TestServer::start().await;
    let files = split_repo();
    serve_repo(&server, "org/split", &files);
    // The CDN serves other bytes for part 2 than the hub's digest names.
    let bad = sha(&files[1].1);
    server.route(&format!("/cdn/{bad}"), Route::file(gguf(6000, 99)));
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(options(dir.path(), &server)).unwrap();
    let err = store
        .pull_str("org/split:Q4_K_M", &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Download(DownloadError::ChecksumMismatch { .. })),
        "{err:?}"
    );
    let snap = snapshot(dir.path(), "org/split");
    let linked = std::fs::read_dir(&snap).map_or(0, |d| d.count());
    assert_eq!(linked, 0, "no part of a failed model is published");
    assert!(store.list().unwrap().is_empty());
    // Once the hub serves the right bytes, the verified part 1 is not fetched again.
    server.route(&format!("/cdn/{bad}"), Route::file(files[1].1.clone()));
    let m = store
        .pull_str("org/split:Q4_K_M", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(m.parts.len(), 3);
    let gets = server
        .requests(&format!("/cdn/{}", sha(&files[0].1)))
        .iter()
        .filter(|r| r.method == http::Method::GET)
        .count();
    assert_eq!(gets, 1);
}

#[tokio::test]
async fn refs_written_by_earlier_lmcpp_versions_keep_working() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let body = gguf(1234, 7);
    let digest = sha(&body);
    let models = dir.path().join("lmcpp/models");
    std::fs::create_dir_all(models.join("blobs")).unwrap();
    std::fs::create_dir_all(models.join("refs")).unwrap();
    std::fs::write(models.join("blobs").join(&digest), &body).unwrap();
    let source: lmcpp_toolchain::models::ModelSource = "org/old:Q4_K_M".parse().unwrap();
    let key = source.cache_key();
    // A ref exactly as lmcpp 0.2 wrote it: no hub fields.
    let old = format!(
        r#"{{"source":"hf://org/old:Q4_K_M","key":"{key}","url":"http://x/org/old/resolve/main/old-Q4_K_M.gguf","file_name":"old-Q4_K_M.gguf","sha256":"{digest}","size":1234,"etag":null,"commit":"abc","pulled_at":1}}"#
    );
    std::fs::write(models.join("refs").join(format!("{key}.json")), old).unwrap();
    let store = ModelStore::new(options(dir.path(), &server)).unwrap();
    let m = store
        .pull_str("org/old:Q4_K_M", &PullOptions::default())
        .await
        .unwrap();
    assert!(m.from_cache);
    assert_eq!(std::fs::read(&m.path).unwrap(), body);
    assert_eq!(m.alias, "org/old:Q4_K_M");
    assert_eq!(server.total_hits(), 0);
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.verify().await.unwrap()[0].status, VerifyStatus::Ok);
}

/// The command that makes the Python check possible.
const INSTALL: &str = "pip install huggingface_hub";

#[tokio::test]
async fn huggingface_hub_finds_what_lmcpp_wrote() {
    let server = TestServer::start().await;
    let files = split_repo();
    serve_repo(&server, "org/split", &files);
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(options(dir.path(), &server)).unwrap();
    let m = store
        .pull_str("org/split:Q4_K_M", &PullOptions::default())
        .await
        .unwrap();
    // The Python client's own lookups, on the cache lmcpp wrote: by revision and by
    // commit, for a part and the projector, and its cache scan.
    let script = r#"
import sys
from huggingface_hub import try_to_load_from_cache, scan_cache_dir
cache, repo, commit = sys.argv[1], sys.argv[2], sys.argv[3]
for name in sys.argv[4:]:
    for rev in ("main", commit):
        p = try_to_load_from_cache(repo, name, cache_dir=cache, revision=rev)
        assert isinstance(p, str), (name, rev, p)
        print(p)
info = scan_cache_dir(cache)
assert not info.warnings, info.warnings
(r,) = info.repos
assert r.repo_id == repo, r.repo_id
(s,) = r.revisions
assert s.commit_hash == commit and "main" in s.refs, (s.commit_hash, s.refs)
print(len(s.files))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.path().join("hub"))
        .args(["org/split", COMMIT, files[1].0, "mmproj-m-F16.gguf"])
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HOME", dir.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 cannot be run ({e}); install Python 3, then `{INSTALL}`")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'huggingface_hub'"),
        "the Python package is missing: run `{INSTALL}`"
    );
    assert!(out.status.success(), "huggingface_hub disagrees: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(Path::new(lines[0]), m.parts[1]);
    assert_eq!(Path::new(lines[2]), m.mmproj.as_deref().unwrap());
    assert_eq!(lines[4], "4", "the three parts and the projector");
}

/// Sends every progress event to a channel.
struct Events(std::sync::Mutex<std::sync::mpsc::Sender<lmcpp_toolchain::ProgressEvent>>);

impl lmcpp_toolchain::Progress for Events {
    fn event(&self, event: lmcpp_toolchain::ProgressEvent) {
        let _ = self.0.lock().unwrap().send(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_huggingface_hub_is_downloading_is_waited_for() {
    let server = TestServer::start().await;
    let files = split_repo();
    serve_repo(&server, "org/split", &files);
    let dir = tempfile::tempdir().unwrap();
    let lock = dir
        .path()
        .join("hub/.locks/models--org--split")
        .join(format!("{}.lock", sha(&files[0].1)));
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // The Python client's own lock (`filelock`, which huggingface_hub depends on), held
    // until its stdin closes.
    let mut python = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom filelock import FileLock\nwith FileLock(sys.argv[1]):\n    print('locked', flush=True)\n    sys.stdin.read()\n",
        ])
        .arg(&lock)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 cannot be run ({e}); install Python 3, then `{INSTALL}`"));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(python.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(
        line.trim(),
        "locked",
        "the Python lock was not taken: run `{INSTALL}`"
    );

    let (tx, rx) = std::sync::mpsc::channel();
    let store = ModelStore::with_progress(
        options(dir.path(), &server),
        std::sync::Arc::new(Events(std::sync::Mutex::new(tx))),
    )
    .unwrap();
    let pull = tokio::spawn(async move {
        store
            .pull_str("org/split:Q4_K_M", &PullOptions::default())
            .await
    });
    // The pull reports that it waits on that lock; nothing of the blob is fetched meanwhile.
    let waited = tokio::task::spawn_blocking(move || {
        rx.iter().find_map(|e| match e {
            lmcpp_toolchain::ProgressEvent::Waiting { path, .. } => Some(path),
            _ => None,
        })
    })
    .await
    .unwrap();
    assert_eq!(waited.as_deref(), Some(lock.as_path()));
    let cdn = format!("/cdn/{}", sha(&files[0].1));
    let gets = |server: &TestServer| {
        server
            .requests(&cdn)
            .iter()
            .filter(|r| r.method == http::Method::GET)
            .count()
    };
    assert_eq!(gets(&server), 0);
    drop(python.stdin.take());
    python.wait().unwrap();
    let m = pull.await.unwrap().unwrap();
    assert_eq!(m.parts.len(), 3);
    assert_eq!(gets(&server), 1);
}

#[tokio::test]
async fn removing_one_part_by_digest_removes_the_whole_model() {
    let server = TestServer::start().await;
    let files = split_repo();
    serve_repo(&server, "org/split", &files);
    let dir = tempfile::tempdir().unwrap();
    // A short wait: a removal that waited on a lock it holds itself fails instead of hanging.
    let store = ModelStore::new(ModelStoreOptions {
        lock_timeout: Duration::from_secs(5),
        ..options(dir.path(), &server)
    })
    .unwrap();
    let m = store
        .pull_str("org/split:Q4_K_M", &PullOptions::default())
        .await
        .unwrap();
    let removed = store.remove_digest(&sha(&files[1].1)).await.unwrap();
    assert_eq!(removed.sources, ["hf://org/split:Q4_K_M"]);
    let expected: u64 = [&files[0], &files[1], &files[2], &files[5]]
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(removed.freed, expected);
    for p in m.parts.iter().chain(m.mmproj.iter()) {
        assert!(
            std::fs::symlink_metadata(p).is_err(),
            "{} is left",
            p.display()
        );
    }
    let blobs = repo_dir(dir.path(), "org/split").join("blobs");
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_hub_that_names_no_commit_gets_single_files_into_lmcpp_s_area_only() {
    let server = TestServer::start().await;
    let files = split_repo();
    serve_repo(&server, "org/split", &files);
    // The same repository, but the resolve redirects carry no `X-Repo-Commit`.
    for (path, body) in &files {
        let digest = sha(body);
        server.route(
            &format!("/org/split/resolve/main/{path}"),
            Route::redirect(format!("/cdn/{digest}"))
                .header("x-linked-etag", &format!("\"{digest}\"")),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(options(dir.path(), &server)).unwrap();
    let m = store
        .pull_str(
            "org/split:m-Q8_0.gguf",
            &PullOptions {
                no_mmproj: true,
                ..PullOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        m.blob.as_deref(),
        Some(
            dir.path()
                .join("lmcpp/models/blobs")
                .join(sha(&files[3].1))
                .as_path()
        )
    );
    assert_eq!(std::fs::read(&m.path).unwrap(), files[3].1);
    let err = store
        .pull_str("org/split:Q4_K_M", &PullOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Model(ModelError::HubFileUnverifiable { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("--no-mmproj"), "{err}");
    assert!(!dir.path().join("hub/models--org--split/snapshots").exists());
}
