//! The real thing: the default request (CPU, RPC on) for the llama.cpp version under test
//! (the pinned one, or the older one of the second end-to-end pass) through the default
//! cache root, which `cargo xtask prepare` populates (the first build takes ~10 minutes and
//! is cached; later runs return at once). Then `llama-server --version` from the published
//! path.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use lmcpp_test_support::PreparedPaths;
use lmcpp_toolchain::{Mode, Origin, ProgressEvent, SharedProgress, Toolchain, ToolchainRequest};

fn paths() -> PreparedPaths {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    PreparedPaths::load(root).unwrap_or_else(|e| panic!("{e}"))
}

fn request(paths: &PreparedPaths) -> ToolchainRequest {
    let version = if paths.llama_version.is_empty() {
        lmcpp_toolchain::LlamaVersion::pinned()
    } else {
        lmcpp_toolchain::versions::parse(&paths.llama_version).unwrap()
    };
    ToolchainRequest {
        version,
        ..ToolchainRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_request_is_ensured_and_the_published_server_runs() {
    let tc = Toolchain::new(None).expect("cache root (set LMCPP_HOME if there is no home)");
    let paths = paths();
    let req = request(&paths);
    let stages = Arc::new(Mutex::new(Vec::new()));
    let s = stages.clone();
    let progress: SharedProgress = Arc::new(move |e: ProgressEvent| {
        if let ProgressEvent::Stage { name } = e {
            s.lock().unwrap().push(name);
        }
    });
    let installed = tc.ensure(&req, &progress).await.unwrap_or_else(|e| {
        panic!("ensure failed: {e}\n(run `cargo xtask prepare` to build the toolchain with progress output)")
    });
    assert!(installed.llama_server.starts_with(tc.layout().root()));
    assert!(installed.entry_dir.join("state.json").is_file());
    assert_eq!(installed.llama_server, paths.llama_server);

    let out = Command::new(&installed.llama_server)
        .arg("--version")
        .output()
        .expect("run llama-server --version");
    assert!(out.status.success(), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("version"), "{text}");

    // The binary says which llama.cpp it is: the build number and commit were passed to
    // CMake (a source build has no git metadata to find them in).
    let v = installed.version.clone().expect("--version recorded");
    assert!(!v.commit.is_empty(), "{v:?}");
    // A version lmcpp's table knows must be the commit and build the table says; any other
    // must at least be the commit its request resolved to, when that is known.
    match lmcpp_toolchain::versions::lookup(
        req.version.tag.as_deref(),
        Some(&req.version.commit),
        None,
    ) {
        Some(known) => {
            assert!(
                known.commit.starts_with(&v.commit),
                "{v:?} vs {}",
                known.commit
            );
            if let Some(n) = known.build_number {
                assert_eq!(v.build_number, u64::from(n), "{v:?}");
            }
        }
        None if !req.version.commit.is_empty() => {
            assert!(
                req.version.commit.starts_with(&v.commit),
                "{v:?} vs {req:?}"
            );
        }
        None => {}
    }
    let help = std::fs::read_to_string(installed.help.as_ref().expect("help captured")).unwrap();
    assert!(help.contains("--ctx-size"), "{help}");

    // RPC is on by default, so one build provides both servers (whatever the tree calls
    // the target: `ggml-rpc-server` now, `rpc-server` in older trees).
    let rpc = installed.rpc_server.as_ref().expect("rpc-server published");
    assert!(rpc.is_file());
    if let Some(src) = &installed.source_dir {
        assert!(src.join("models/ggml-vocab-llama-spm.gguf").is_file());
    }

    // A second call is a cache hit with identical paths and no new stages.
    let before = stages.lock().unwrap().len();
    let again = tc.ensure(&req, &progress).await.unwrap();
    assert_eq!(again, installed);
    assert_eq!(stages.lock().unwrap().len(), before);
    assert_eq!(tc.validate(&req).await.unwrap(), installed);

    // What was produced is the identity: a build-only request, or one that names the same
    // version another way, finds this entry (no second build).
    let origin = lmcpp_toolchain::read_state(&installed.entry_dir)
        .unwrap()
        .unwrap()
        .origin;
    if origin == Some(Origin::Built) {
        let build_only = ToolchainRequest {
            mode: Mode::BuildOnly,
            ..req.clone()
        };
        assert_eq!(tc.ensure_cached(&build_only).await.unwrap(), installed);
    }
    // Named by the commit it reports (a build from a source without its git metadata,
    // of a version lmcpp's table does not know, reports none).
    if v.commit.len() >= 7 && v.commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        let by_commit = ToolchainRequest {
            version: lmcpp_toolchain::versions::parse(&v.commit[..v.commit.len().min(9)]).unwrap(),
            ..req.clone()
        };
        assert_eq!(tc.ensure_cached(&by_commit).await.unwrap(), installed);
    }
}
