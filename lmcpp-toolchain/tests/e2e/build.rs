//! The build path with real cmake on a tiny CMake project shaped like llama.cpp (it has
//! `tools/server`, and targets `llama-server` and `ggml-rpc-server` whose binary is named
//! `rpc-server`, like the pinned llama.cpp), through both build drivers:
//! the cmake command line (progress and `build.log`) and the `cmake` crate as a build
//! script would use it. Uses the default cache root so the cmake that
//! `cargo xtask prepare` bootstrapped is reused; the entries are removed afterwards.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use lmcpp_toolchain::{
    Backend, EntryStatus, Mode, ProgressEvent, SharedProgress, Source, Toolchain, ToolchainRequest,
    no_progress,
};

const CHILD_ENV: &str = "LMCPP_E2E_BUILD_SCRIPT_TREE";

fn tiny_tree(dir: &Path) {
    tiny_tree_with(dir, "ggml-rpc-server");
}

/// A tiny tree whose RPC server target is called `rpc_target` (`rpc-server` in llama.cpp
/// before 2026, `ggml-rpc-server` now).
fn tiny_tree_with(dir: &Path, rpc_target: &str) {
    std::fs::create_dir_all(dir.join("tools/server")).unwrap();
    std::fs::write(
        dir.join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.14)\n\
             project(tiny C)\n\
             option(GGML_RPC \"rpc\" OFF)\n\
             set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${{CMAKE_BINARY_DIR}}/bin)\n\
             add_executable(llama-server main.c)\n\
             if (GGML_RPC)\n\
               add_executable({rpc_target} main.c)\n\
               set_target_properties({rpc_target} PROPERTIES OUTPUT_NAME rpc-server)\n\
             endif()\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("main.c"),
        "#include <stdio.h>\nint main(void) { puts(\"version: 0 (tiny)\"); return 0; }\n",
    )
    .unwrap();
}

fn request(tree: &Path) -> ToolchainRequest {
    ToolchainRequest {
        sources: vec![Source::LocalDir(tree.to_path_buf())],
        mode: Mode::BuildOnly,
        backend: Backend::Cpu,
        ..ToolchainRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmake_cli_driver_builds_logs_and_reports_progress() {
    let tree = tempfile::tempdir().unwrap();
    tiny_tree(tree.path());
    let tc = Toolchain::new(None).unwrap();
    let req = request(tree.path());
    let percents = Arc::new(Mutex::new(Vec::new()));
    let p = percents.clone();
    let progress: SharedProgress = Arc::new(move |e: ProgressEvent| {
        if let ProgressEvent::BuildPercent { percent, .. } = e {
            p.lock().unwrap().push(percent);
        }
    });
    let result = tc.ensure(&req, &progress).await;
    let installed = result.unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(&installed.llama_server).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "version: 0 (tiny)\n");
    assert!(installed.rpc_server.as_ref().unwrap().is_file());
    assert_eq!(
        installed.source_dir.as_deref(),
        Some(tree.path().canonicalize().unwrap().as_path())
    );
    assert!(percents.lock().unwrap().contains(&100));
    let log = std::fs::read_to_string(installed.entry_dir.join("build.log")).unwrap();
    assert!(
        log.contains("-DGGML_RPC=ON") && log.contains("--target llama-server ggml-rpc-server"),
        "{log}"
    );
    let state = lmcpp_toolchain::read_state(&installed.entry_dir)
        .unwrap()
        .unwrap();
    assert_eq!(state.status, EntryStatus::Ready);
    assert!(
        state
            .cmake_args
            .contains(&"-DBUILD_SHARED_LIBS=OFF".to_owned())
    );
    // `toolchain build` then `serve`: a build-or-install request for the same tree finds
    // the build-only entry.
    let either = ToolchainRequest {
        mode: Mode::BuildOrInstall,
        ..req.clone()
    };
    assert_eq!(tc.ensure_cached(&either).await.unwrap(), installed);
    assert!(tc.remove(&req, &no_progress()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_tree_builds_its_rpc_server_target_and_an_edited_tree_is_rebuilt() {
    let tree = tempfile::tempdir().unwrap();
    tiny_tree_with(tree.path(), "rpc-server");
    let tc = Toolchain::new(None).unwrap();
    let req = request(tree.path());
    let first = tc
        .ensure(&req, &no_progress())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(first.rpc_server.as_ref().unwrap().is_file());
    let log = std::fs::read_to_string(first.entry_dir.join("build.log")).unwrap();
    assert!(log.contains("--target llama-server rpc-server"), "{log}");

    // An edit makes a new entry, built from the edited tree.
    std::fs::write(
        tree.path().join("main.c"),
        "#include <stdio.h>\nint main(void) { puts(\"version: 0 (edited)\"); return 0; }\n",
    )
    .unwrap();
    let second = tc.ensure(&req, &no_progress()).await.unwrap();
    assert_ne!(second.entry_dir, first.entry_dir);
    let out = Command::new(&second.llama_server).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "version: 0 (edited)\n"
    );
    assert!(tc.remove(&req, &no_progress()).await.unwrap());
    assert!(
        tc.remove_fingerprint(&first.fingerprint, &no_progress())
            .await
            .unwrap()
    );
}

/// The child half of the build-script test: runs in a process that has the environment
/// cargo gives build scripts.
fn build_script_child(tree: &str) {
    let installed =
        lmcpp_toolchain::build_script::ensure_for_build_script(&request(Path::new(tree)))
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(installed.llama_server.is_file());
}

#[test]
fn cmake_crate_driver_builds_from_a_build_script_environment() {
    if let Ok(tree) = std::env::var(CHILD_ENV) {
        build_script_child(&tree);
        return;
    }
    let tree = tempfile::tempdir().unwrap();
    tiny_tree(tree.path());
    let scratch = tempfile::tempdir().unwrap();
    let triple = match (std::env::consts::ARCH, std::env::consts::OS) {
        (arch, "linux") => format!("{arch}-unknown-linux-gnu"),
        (arch, "macos") => format!("{arch}-apple-darwin"),
        (arch, os) => format!("{arch}-unknown-{os}"),
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "build::cmake_crate_driver_builds_from_a_build_script_environment",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_ENV, tree.path())
        .env("TARGET", &triple)
        .env("HOST", &triple)
        .env("OPT_LEVEL", "0")
        .env("PROFILE", "debug")
        .env("DEBUG", "false")
        .env("NUM_JOBS", "2")
        .env("OUT_DIR", scratch.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("cargo:rustc-env=LMCPP_LLAMA_SERVER="),
        "{text}"
    );
    // The runtime path finds what the build script made: same fingerprint, same entry.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tc = Toolchain::new(None).unwrap();
    let req = request(tree.path());
    let installed = rt.block_on(tc.ensure_cached(&req)).unwrap();
    let run = Command::new(&installed.llama_server).output().unwrap();
    assert!(run.status.success());
    assert!(rt.block_on(tc.remove(&req, &no_progress())).unwrap());
}
