//! The recipe against a loopback "GitHub": install, verify, fingerprints, remove, fail limit.

use std::sync::Arc;

use lmcpp_toolchain::{EntryStatus, Error, Source, no_progress};

use crate::download::sha;
use crate::fixtures::{
    Item, asset_path, dylib, exe, host_asset, prebuilt_request, serve_release, toolchain, zip,
};
use crate::server::{Route, TestServer};

#[tokio::test]
async fn installs_a_prebuilt_tar_gz_and_reuses_it() {
    let server = TestServer::start().await;
    let bytes = serve_release(&server, 0);
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let mut req = prebuilt_request(&server);
    req.version.asset_sha256.insert(host_asset(), sha(&bytes));
    let i = tc.ensure(&req, &no_progress()).await.unwrap();
    let bin = i.entry_dir.join("bin");
    assert_eq!(i.llama_server, bin.join(exe("llama-server")));
    assert_eq!(
        i.rpc_server.as_deref(),
        Some(bin.join(exe("rpc-server")).as_path())
    );
    assert!(bin.join(dylib("ggml")).is_file());
    assert!(i.entry_dir.starts_with(root.path().join("toolchains")));
    assert!(i.source.starts_with("github-release"), "{}", i.source);
    assert_eq!(i.source_dir, None);
    tc.validate(&req).await.unwrap();

    let again = tc.ensure(&req, &no_progress()).await.unwrap();
    assert_eq!(again, i);
    assert_eq!(tc.ensure_cached(&req).await.unwrap(), i);
    assert_eq!(server.hits(&asset_path()), 1);
    let list = tc.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, Some(EntryStatus::Ready));
    assert!(list[0].usable && list[0].size > 0);
    assert_eq!(list[0].version, crate::fixtures::TAG);
    // No scratch or partial files are left next to the entry.
    let names: Vec<String> = std::fs::read_dir(root.path().join("toolchains"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("scratch")), "{names:?}");
}

#[tokio::test]
async fn installs_a_prebuilt_zip_from_any_url() {
    let server = TestServer::start().await;
    let name = format!("llama-bin/{}", exe("llama-server"));
    let bytes = zip(&[
        Item::Dir("llama-bin/"),
        Item::File(&name, crate::fixtures::fake_server(), 0o755),
    ]);
    server.route("/assets/llama.zip", Route::file(bytes.clone()));
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let mut req = prebuilt_request(&server);
    req.sources = vec![Source::PrebuiltUrl {
        url: server.url("/assets/llama.zip"),
        sha256: Some(sha(&bytes)),
    }];
    let i = tc.ensure(&req, &no_progress()).await.unwrap();
    assert!(i.llama_server.is_file());
    assert_eq!(i.rpc_server, None);
    tc.validate(&req).await.unwrap();
}

#[tokio::test]
async fn checksum_mismatch_fails_and_publishes_nothing() {
    let server = TestServer::start().await;
    let bytes = serve_release(&server, 0);
    // The listing's digest is authoritative: a wrong one fails the install.
    crate::fixtures::serve_listing(
        &server,
        &[(host_asset(), bytes.len() as u64, Some("ab".repeat(32)))],
    );
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let req = prebuilt_request(&server);
    let err = tc.ensure(&req, &no_progress()).await.unwrap_err();
    assert!(matches!(err, Error::AllSourcesFailed { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let (_, entry) = tc.entry_for(&req).await.unwrap();
    assert!(!entry.join("bin").exists());
    let state = lmcpp_toolchain::read_state(&entry).unwrap().unwrap();
    assert_eq!(state.status, EntryStatus::Failed);
    assert_eq!(state.failures, 1);
    assert!(matches!(
        tc.ensure_cached(&req).await.unwrap_err(),
        Error::NotCached { .. }
    ));
    // The corrupt download was deleted, not kept for a later "resume".
    let downloads: Vec<_> = std::fs::read_dir(root.path().join("downloads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(downloads.is_empty(), "{downloads:?}");
}

#[tokio::test]
async fn missing_asset_names_the_url_and_every_source_tried() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let mut req = prebuilt_request(&server);
    req.mode = lmcpp_toolchain::Mode::BuildOrInstall;
    req.sources = vec![
        Source::GithubRelease,
        Source::LocalDir(root.path().join("no-such-checkout")),
    ];
    let err = tc.ensure(&req, &no_progress()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&server.url(&crate::fixtures::listing_path())),
        "{msg}"
    );
    assert!(msg.contains("404"), "{msg}");
    assert!(
        msg.contains("local-dir") && msg.contains("no-such-checkout"),
        "{msg}"
    );
    match err {
        Error::AllSourcesFailed { attempts } => assert_eq!(attempts.len(), 2),
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn fingerprint_change_makes_a_new_entry_and_remove_takes_only_one() {
    let server = TestServer::start().await;
    serve_release(&server, 0);
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let a = prebuilt_request(&server);
    let mut b = a.clone();
    b.features.rpc = false;
    let ia = tc.ensure(&a, &no_progress()).await.unwrap();
    let ib = tc.ensure(&b, &no_progress()).await.unwrap();
    assert_ne!(ia.fingerprint, ib.fingerprint);
    assert_ne!(ia.entry_dir, ib.entry_dir);
    assert!(ia.llama_server.is_file() && ib.llama_server.is_file());
    assert_eq!(tc.list().unwrap().len(), 2);

    assert!(tc.remove(&a, &no_progress()).await.unwrap());
    assert!(!ia.entry_dir.exists());
    let lock = |fp: &str| root.path().join("toolchains").join(format!("{fp}.lock"));
    assert!(
        !lock(&ia.fingerprint).exists(),
        "the removed entry's lock file is gone"
    );
    assert!(lock(&ib.fingerprint).exists());
    assert!(ib.llama_server.is_file());
    assert_eq!(tc.ensure_cached(&b).await.unwrap(), ib);
    assert!(!tc.remove(&a, &no_progress()).await.unwrap());
    let left: Vec<_> = tc
        .list()
        .unwrap()
        .into_iter()
        .map(|e| e.fingerprint)
        .collect();
    assert_eq!(left, vec![ib.fingerprint]);
}

#[tokio::test]
async fn fail_limit_purges_the_entry_and_the_next_run_starts_clean() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path()).with_fail_limit(2);
    let req = prebuilt_request(&server);
    let (_, entry) = tc.entry_for(&req).await.unwrap();
    let read = || lmcpp_toolchain::read_state(&entry).unwrap();

    tc.ensure(&req, &no_progress()).await.unwrap_err();
    assert_eq!(read().unwrap().failures, 1);
    tc.ensure(&req, &no_progress()).await.unwrap_err();
    assert!(!entry.exists(), "purged after the second failure");
    tc.ensure(&req, &no_progress()).await.unwrap_err();
    assert_eq!(read().unwrap().failures, 1);

    // Once the asset appears the entry recovers and the failure count resets.
    serve_release(&server, 0);
    tc.ensure(&req, &no_progress()).await.unwrap();
    let s = read().unwrap();
    assert_eq!((s.status, s.failures), (EntryStatus::Ready, 0));
}

#[tokio::test]
async fn prune_removes_failed_entries_only() {
    let server = TestServer::start().await;
    serve_release(&server, 0);
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let good = prebuilt_request(&server);
    let mut bad = good.clone();
    bad.sources = vec![Source::PrebuiltUrl {
        url: server.url("/nothing.tar.gz"),
        sha256: None,
    }];
    let ok = tc.ensure(&good, &no_progress()).await.unwrap();
    tc.ensure(&bad, &no_progress()).await.unwrap_err();
    let (_, bad_entry) = tc.entry_for(&bad).await.unwrap();
    assert!(bad_entry.exists());
    let removed = tc.prune(&no_progress()).await.unwrap();
    assert_eq!(removed, vec![bad_entry.clone()]);
    assert!(ok.llama_server.is_file());
}

#[tokio::test]
async fn explicit_unavailable_backend_fails_before_any_work() {
    let server = TestServer::start().await;
    serve_release(&server, 0);
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    for backend in [
        lmcpp_toolchain::Backend::Cuda,
        lmcpp_toolchain::Backend::Vulkan,
    ] {
        let mut req = prebuilt_request(&server);
        req.backend = backend;
        req.mode = lmcpp_toolchain::Mode::BuildOnly;
        let err = tc.ensure(&req, &no_progress()).await.unwrap_err();
        assert!(matches!(err, Error::BackendUnavailable { .. }), "{err}");
    }
    assert_eq!(server.hits(&asset_path()), 0);
    assert!(!root.path().join("toolchains").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_racing_a_cold_entry_download_once() {
    let server = TestServer::start().await;
    serve_release(&server, 50);
    let root = tempfile::tempdir().unwrap();
    let tc = Arc::new(toolchain(root.path()));
    let req = Arc::new(prebuilt_request(&server));
    let waits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (tc, req, waits) = (tc.clone(), req.clone(), waits.clone());
        tasks.push(tokio::spawn(async move {
            let p: lmcpp_toolchain::SharedProgress =
                Arc::new(move |e: lmcpp_toolchain::ProgressEvent| {
                    if matches!(e, lmcpp_toolchain::ProgressEvent::Waiting { .. }) {
                        waits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            tc.ensure(&req, &p).await
        }));
    }
    let mut paths = Vec::new();
    for t in tasks {
        paths.push(t.await.unwrap().unwrap().llama_server);
    }
    paths.dedup();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert_eq!(server.hits(&asset_path()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_entry_is_waited_for_with_the_holder_reported() {
    let server = TestServer::start().await;
    serve_release(&server, 0);
    let root = tempfile::tempdir().unwrap();
    let tc = Arc::new(toolchain(root.path()));
    let req = prebuilt_request(&server);
    let (fp, _) = tc.entry_for(&req).await.unwrap();
    let lock = root.path().join("toolchains").join(format!("{fp}.lock"));
    let guard =
        lmcpp_toolchain::lock_exclusive(&lock, std::time::Duration::from_secs(5), &no_progress())
            .await
            .unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let progress: lmcpp_toolchain::SharedProgress =
        Arc::new(move |e: lmcpp_toolchain::ProgressEvent| {
            let _ = tx.send(e);
        });
    let waiter = {
        let (tc, req) = (tc.clone(), req.clone());
        tokio::spawn(async move { tc.ensure(&req, &progress).await })
    };
    let holder = loop {
        match rx.recv().await.unwrap() {
            lmcpp_toolchain::ProgressEvent::Waiting { path, holder } => {
                assert_eq!(path, lock);
                break holder.unwrap();
            }
            _ => continue,
        }
    };
    assert!(holder.contains(&std::process::id().to_string()), "{holder}");
    // While waiting nothing was downloaded; the list shows who is busy.
    assert_eq!(server.hits(&asset_path()), 0);
    drop(guard);
    let installed = waiter.await.unwrap().unwrap();
    assert!(installed.llama_server.is_file());
    assert_eq!(server.hits(&asset_path()), 1);

    let _held =
        lmcpp_toolchain::lock_exclusive(&lock, std::time::Duration::from_secs(5), &no_progress())
            .await
            .unwrap();
    let busy = tc.list().unwrap().remove(0).busy.unwrap();
    assert!(busy.contains(&std::process::id().to_string()), "{busy}");
}

#[tokio::test]
async fn lock_timeout_is_an_error_naming_the_holder() {
    let server = TestServer::start().await;
    serve_release(&server, 0);
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path()).with_lock_timeout(std::time::Duration::from_millis(50));
    let req = prebuilt_request(&server);
    let (fp, _) = tc.entry_for(&req).await.unwrap();
    let lock = root.path().join("toolchains").join(format!("{fp}.lock"));
    let _guard =
        lmcpp_toolchain::lock_exclusive(&lock, std::time::Duration::from_secs(5), &no_progress())
            .await
            .unwrap();
    let err = tc.ensure(&req, &no_progress()).await.unwrap_err();
    match &err {
        Error::LockTimeout { path, holder, .. } => {
            assert_eq!(path, &lock);
            assert!(holder.as_deref().unwrap().starts_with("pid "), "{err}");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(server.hits(&asset_path()), 0);
}

/// A source archive shaped like llama.cpp (one top folder, `CMakeLists.txt`, `tools/server`).
fn tiny_source_archive() -> Vec<u8> {
    crate::fixtures::tar_gz(&[
        Item::File(
            "llama.cpp-b9999/CMakeLists.txt",
            b"cmake_minimum_required(VERSION 3.14)\nproject(tiny C)\n\
              set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)\n\
              add_executable(llama-server main.c)\n\
              add_executable(ggml-rpc-server main.c)\n\
              set_target_properties(ggml-rpc-server PROPERTIES OUTPUT_NAME rpc-server)\n"
                .to_vec(),
            0o644,
        ),
        Item::File(
            "llama.cpp-b9999/main.c",
            b"int main(void) { return 0; }\n".to_vec(),
            0o644,
        ),
        Item::File(
            "llama.cpp-b9999/tools/server/README.md",
            b"x".to_vec(),
            0o644,
        ),
        Item::File(
            "llama.cpp-b9999/models/ggml-vocab-llama-spm.gguf",
            b"GGUF".to_vec(),
            0o644,
        ),
    ])
}

#[tokio::test]
async fn source_archives_are_fetched_verified_and_published_once() {
    let server = TestServer::start().await;
    let archive = tiny_source_archive();
    server.route("/src/tiny.tar.gz", Route::file(archive.clone()).etag("s"));
    let root = tempfile::tempdir().unwrap();
    let local = root.path().join("tiny.tar.gz");
    std::fs::write(&local, &archive).unwrap();
    let tc = toolchain(root.path());
    let mut req = prebuilt_request(&server);
    req.mode = lmcpp_toolchain::Mode::BuildOnly;
    // No Python here: a missing cmake cannot be bootstrapped, so the run stops right after
    // the source stage unless cmake is on PATH (then the tiny project really builds).
    req.python = root.path().join("no-python").display().to_string();
    req.sources = vec![
        Source::Url {
            url: server.url("/src/missing.tar.gz"),
            sha256: None,
        },
        Source::LocalArchive {
            path: local.clone(),
            sha256: Some("cd".repeat(32)),
        },
        Source::Url {
            url: server.url("/src/tiny.tar.gz"),
            sha256: Some(sha(&archive)),
        },
    ];
    let result = tc.ensure(&req, &no_progress()).await;
    let sources: Vec<_> = std::fs::read_dir(root.path().join("sources"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert!(sources[0].join("tools/server/README.md").is_file());
    assert!(
        sources[0]
            .join("models/ggml-vocab-llama-spm.gguf")
            .is_file()
    );
    match result {
        Ok(i) => {
            assert_eq!(i.source_dir.as_deref(), Some(sources[0].as_path()));
            assert!(i.source.contains("/src/tiny.tar.gz"), "{}", i.source);
        }
        Err(e) => assert!(matches!(e, Error::CmakeNotFound { .. }), "{e}"),
    }
    assert_eq!(server.hits("/src/tiny.tar.gz"), 1);
    // The failed attempts came first and are not retried once a source worked.
    assert_eq!(server.hits("/src/missing.tar.gz"), 1);
}

#[tokio::test]
async fn cuda_prebuilt_follows_the_driver_falls_back_across_labels_and_never_to_cpu() {
    use crate::fixtures::{TAG, archive_files, serve_listing};
    let server = TestServer::start().await;
    let os = std::env::consts::OS;
    let arch = std::env::consts::ARCH;
    let names = |label: &str| {
        lmcpp_toolchain::plan::prebuilt_assets(TAG, os, arch, lmcpp_toolchain::Backend::Cuda, label)
            .unwrap()
    };
    let (new, old) = (names("13.4"), names("12.8"));
    assert_eq!(new.len(), 2, "{new:?}");
    let base = format!("/ggml-org/llama.cpp/releases/download/{TAG}");
    // 13.4's llama-server does not start (as with a driver too old for it); 12.8's does.
    let mut broken = crate::fixtures::release_items("llama-cuda-13", 0);
    crate::fixtures::break_server(&mut broken, "CUDA driver version is insufficient");
    let cudart = |v: &str| {
        vec![(
            format!("lib/libcudart.so.{v}"),
            v.as_bytes().to_vec(),
            0o644,
        )]
    };
    let archives = [
        (new[0].clone(), archive_files(&new[0], &broken)),
        (new[1].clone(), archive_files(&new[1], &cudart("13"))),
        (
            old[0].clone(),
            archive_files(&old[0], &crate::fixtures::release_items("llama-cuda-12", 0)),
        ),
        (old[1].clone(), archive_files(&old[1], &cudart("12"))),
    ];
    let cpu = serve_release(&server, 0); // the CPU asset exists too, and must not be picked
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path()).with_probes(lmcpp_toolchain::backend::Probes {
        nvidia: Some("test driver".into()),
        cuda_driver: Some((13, 4)),
        ..Default::default()
    });
    let mut req = prebuilt_request(&server);
    req.backend = lmcpp_toolchain::Backend::Cuda;

    // A release without CUDA assets fails, naming what it looked for; no CPU install.
    let err = tc.ensure(&req, &no_progress()).await.unwrap_err();
    assert!(err.to_string().contains("no cuda asset"), "{err}");
    assert_eq!(server.hits(&asset_path()), 0);

    let mut listed = vec![(host_asset(), cpu.len() as u64, Some(sha(&cpu)))];
    for (name, bytes) in &archives {
        server.route(&format!("{base}/{name}"), Route::file(bytes.clone()));
        listed.push((name.clone(), bytes.len() as u64, Some(sha(bytes))));
    }
    serve_listing(&server, &listed);
    let i = tc.ensure(&req, &no_progress()).await.unwrap();
    assert_eq!(i.backend, lmcpp_toolchain::Backend::Cuda);
    assert!(i.entry_dir.join("bin/libcudart.so.12").is_file());
    assert!(!i.entry_dir.join("bin/libcudart.so.13").exists());
    assert!(i.source.contains("cuda-12.8"), "{}", i.source);
    assert_eq!(
        server.hits(&format!("{base}/{}", new[0])),
        1,
        "13.4 tried first"
    );
    assert_eq!(server.hits(&asset_path()), 0);

    // A driver that supports only 12.x never tries 13.4; a pinned label that the release
    // lacks is an error naming the labels it has.
    let other = tempfile::tempdir().unwrap();
    let old_driver_tc = toolchain(other.path()).with_probes(lmcpp_toolchain::backend::Probes {
        nvidia: Some("test driver".into()),
        cuda_driver: Some((12, 2)),
        ..Default::default()
    });
    let err = old_driver_tc
        .ensure(&req, &no_progress())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("up to 12.2"), "{err}");
    let mut pinned = req.clone();
    pinned.cuda_label = Some("12.4".into());
    let err = old_driver_tc
        .ensure(&pinned, &no_progress())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no cuda 12.4 asset") && err.to_string().contains("13.4, 12.8"),
        "{err}"
    );
}

#[tokio::test]
async fn waiters_get_a_failure_recorded_while_they_waited_instead_of_rerunning_it() {
    let server = TestServer::start().await;
    let bytes = crate::fixtures::release_archive(8);
    // Slow enough that every task is waiting on the entry lock before the first one fails.
    server.route(
        "/slow/llama.tar.gz",
        Route::file(bytes)
            .chunk(4096)
            .throttle(std::time::Duration::from_millis(20)),
    );
    let root = tempfile::tempdir().unwrap();
    let tc = Arc::new(toolchain(root.path()));
    let mut req = prebuilt_request(&server);
    req.sources = vec![Source::PrebuiltUrl {
        url: server.url("/slow/llama.tar.gz"),
        sha256: Some("ab".repeat(32)),
    }];
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (tc, req) = (tc.clone(), req.clone());
            tokio::spawn(async move { tc.ensure(&req, &no_progress()).await })
        })
        .collect();
    let mut errors = Vec::new();
    for t in tasks {
        errors.push(t.await.unwrap().unwrap_err().to_string());
    }
    assert_eq!(server.hits("/slow/llama.tar.gz"), 1, "{errors:#?}");
    assert!(errors.iter().all(|e| e.contains("checksum")), "{errors:#?}");
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.contains("another process"))
            .count(),
        3,
        "{errors:#?}"
    );
}

#[tokio::test]
async fn local_trees_are_keyed_by_content_and_archives_by_digest() {
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let tree = root.path().join("llama.cpp");
    std::fs::create_dir_all(tree.join("tools/server")).unwrap();
    std::fs::write(tree.join("CMakeLists.txt"), "project(x)").unwrap();
    let base = lmcpp_toolchain::ToolchainRequest {
        backend: lmcpp_toolchain::Backend::Cpu,
        mode: lmcpp_toolchain::Mode::BuildOnly,
        ..lmcpp_toolchain::ToolchainRequest::default()
    };
    let dir_req = lmcpp_toolchain::ToolchainRequest {
        sources: vec![Source::LocalDir(tree.clone())],
        ..base.clone()
    };
    let key = |r: lmcpp_toolchain::ToolchainRequest| {
        let tc = &tc;
        async move { tc.entries_for(&r).await.unwrap()[0].1.clone() }
    };
    let first = key(dir_req.clone()).await;
    assert_eq!(
        key(dir_req.clone()).await,
        first,
        "an unchanged tree keeps its entry"
    );
    std::fs::write(tree.join("tools/server/server.cpp"), "int main() {}").unwrap();
    assert_ne!(
        key(dir_req.clone()).await,
        first,
        "an edited tree is a new entry"
    );

    // The same archive bytes at two paths are one entry; other bytes are another.
    let a = root.path().join("a.tar.gz");
    let b = root.path().join("b.tar.gz");
    std::fs::write(&a, b"same bytes").unwrap();
    std::fs::write(&b, b"same bytes").unwrap();
    let archive = |path: &std::path::Path| lmcpp_toolchain::ToolchainRequest {
        sources: vec![Source::LocalArchive {
            path: path.to_path_buf(),
            sha256: None,
        }],
        ..base.clone()
    };
    assert_eq!(key(archive(&a)).await, key(archive(&b)).await);
    std::fs::write(&b, b"other bytes").unwrap();
    assert_ne!(key(archive(&a)).await, key(archive(&b)).await);
    // A version named by tag, commit or sdist is one entry.
    let named = |v: &str| lmcpp_toolchain::ToolchainRequest {
        version: lmcpp_toolchain::versions::parse(v).unwrap(),
        ..base.clone()
    };
    let by_tag = key(named("b11312")).await;
    assert_eq!(key(named("0c1e570")).await, by_tag);
    assert_eq!(key(named("pypi:0.3.36")).await, by_tag);
    assert_ne!(key(named("pypi:0.3.16")).await, by_tag);
}

#[tokio::test]
async fn a_local_archive_is_hashed_once_per_version_of_the_file() {
    use std::time::Duration;
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let archive = root.path().join("src.tar.gz");
    std::fs::write(&archive, b"first bytes").unwrap();
    let req = lmcpp_toolchain::ToolchainRequest {
        backend: lmcpp_toolchain::Backend::Cpu,
        mode: lmcpp_toolchain::Mode::BuildOnly,
        sources: vec![Source::LocalArchive {
            path: archive.clone(),
            sha256: None,
        }],
        ..lmcpp_toolchain::ToolchainRequest::default()
    };
    let key = |tc: &lmcpp_toolchain::Toolchain| {
        let (tc, req) = (tc.clone(), req.clone());
        async move { tc.entries_for(&req).await.unwrap()[0].1.clone() }
    };
    let set_mtime = |path: &std::path::Path, t: std::time::SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    let first = key(&tc).await;
    let mtime = std::fs::metadata(&archive).unwrap().modified().unwrap();

    // Other bytes behind the same identity (same inode and size, the modification time put
    // back): the key stays, which shows the lookup did not read the archive again.
    std::fs::write(&archive, b"other bytes").unwrap();
    set_mtime(&archive, mtime);
    assert_eq!(
        key(&tc).await,
        first,
        "an unchanged file is not hashed again"
    );

    // A fresh cache root hashes the bytes as they are; that is the key a change must give.
    let fresh = |tc_root: &std::path::Path| toolchain(tc_root);
    let other_root = tempfile::tempdir().unwrap();
    let other_bytes = key(&fresh(other_root.path())).await;
    assert_ne!(other_bytes, first);

    // The same size rewritten in place with another modification time is hashed again.
    set_mtime(&archive, mtime + Duration::from_secs(1));
    assert_eq!(key(&tc).await, other_bytes);

    // Replaced through a rename with the same size and time: another inode, hashed again.
    let next = root.path().join("next.tar.gz");
    std::fs::write(&next, b"third bytes").unwrap();
    set_mtime(&next, mtime + Duration::from_secs(1));
    std::fs::rename(&next, &archive).unwrap();
    let third = key(&tc).await;
    assert_ne!(third, other_bytes);
    let third_root = tempfile::tempdir().unwrap();
    assert_eq!(third, key(&fresh(third_root.path())).await);
}

/// A loopback address where nothing listens (connections are refused).
fn refusing_base() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A loopback server that accepts every connection and closes it without an answer.
async fn closing_base() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            drop(conn);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_unreachable_release_records_nothing_while_a_bad_digest_is_recorded() {
    let closing = closing_base().await;
    for base in [refusing_base(), closing] {
        let root = tempfile::tempdir().unwrap();
        let tc = toolchain(root.path());
        let req = crate::fixtures::prebuilt_request_for(&base);
        for _ in 0..2 {
            let err = tc.ensure(&req, &no_progress()).await.unwrap_err();
            assert!(matches!(err, Error::AllSourcesFailed { .. }), "{err}");
            // No entry, no state and no lock file: nothing for `prune` to find.
            let left: Vec<_> = std::fs::read_dir(root.path().join("toolchains"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(left.is_empty(), "{base}: {left:?}");
            assert!(tc.list().unwrap().is_empty());
        }
    }

    // A listing that is reached, whose asset downloads reach nothing (redirected to a
    // host that refuses or closes every connection, as offline as the listing above):
    // nothing recorded either.
    for base in [refusing_base(), closing_base().await] {
        let server = TestServer::start().await;
        serve_release(&server, 0);
        let asset = crate::fixtures::asset_path();
        server.route(&asset, Route::redirect(format!("{base}/objects/asset")));
        let root = tempfile::tempdir().unwrap();
        let tc = toolchain(root.path());
        let req = prebuilt_request(&server);
        let err = tc.ensure(&req, &no_progress()).await.unwrap_err();
        assert!(err.to_string().contains(&base), "{err}");
        assert!(server.hits(&asset) >= 1, "the asset was asked for");
        let left: Vec<_> = std::fs::read_dir(root.path().join("toolchains"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{base}: {left:?}");
    }

    // A listing that is reached but names a wrong digest is a real failure: recorded.
    let server = TestServer::start().await;
    let bytes = serve_release(&server, 0);
    crate::fixtures::serve_listing(
        &server,
        &[(host_asset(), bytes.len() as u64, Some("ab".repeat(32)))],
    );
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let bad = prebuilt_request(&server);
    tc.ensure(&bad, &no_progress()).await.unwrap_err();
    let (_, entry) = tc.entry_for(&bad).await.unwrap();
    let read = || lmcpp_toolchain::read_state(&entry).unwrap().unwrap();
    let recorded = read();
    assert_eq!(
        (recorded.status, recorded.failures),
        (EntryStatus::Failed, 1)
    );
    assert!(
        recorded
            .last_error
            .as_deref()
            .unwrap()
            .contains("checksum mismatch")
    );

    // The same entry offline afterwards keeps that record as it was: not a second failure.
    let offline = crate::fixtures::prebuilt_request_for(&refusing_base());
    assert_eq!(tc.entry_for(&offline).await.unwrap().1, entry);
    tc.ensure(&offline, &no_progress()).await.unwrap_err();
    assert_eq!(read(), recorded);
}

/// `auto` on a machine with a Vulkan loader but no Vulkan SDK (Wine installs the loader):
/// when no Vulkan prebuilt can be had, the CPU one is installed rather than nothing.
#[tokio::test]
async fn auto_falls_back_to_cpu_when_its_gpu_backend_cannot_be_obtained() {
    let server = TestServer::start().await;
    let cpu = serve_release(&server, 0); // the release lists the CPU asset only
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path()).with_probes(lmcpp_toolchain::backend::Probes {
        vulkan: Some("/usr/lib/libvulkan.so.1".into()),
        ..Default::default()
    });
    let mut req = prebuilt_request(&server);
    req.backend = lmcpp_toolchain::Backend::Auto;
    assert_eq!(
        tc.resolve_backend(&req).unwrap().0,
        lmcpp_toolchain::Backend::Vulkan,
        "the loader is evidence for vulkan"
    );
    let i = tc.ensure(&req, &no_progress()).await.unwrap();
    assert_eq!(i.backend, lmcpp_toolchain::Backend::Cpu);
    assert_eq!(server.hits(&asset_path()), 1);
    assert!(!cpu.is_empty());
    // The cache answers `auto` with what `ensure` installed for it.
    assert_eq!(tc.ensure_cached(&req).await.unwrap(), i);

    // An explicit vulkan request is not silently served by the CPU.
    req.backend = lmcpp_toolchain::Backend::Vulkan;
    let err = tc.ensure(&req, &no_progress()).await.unwrap_err();
    assert!(err.to_string().contains("vulkan"), "{err}");
}
