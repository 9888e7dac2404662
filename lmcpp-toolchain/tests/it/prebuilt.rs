//! Prebuilt installs of release archives shaped like real ones: a versioned top-level
//! folder, a `llama-server` that finds its shared libraries through `$ORIGIN`, library
//! aliases as symlinks, digests from the release listing.

use crate::fixtures::{prebuilt_request, toolchain};
use crate::server::{Route, TestServer};

/// Releases with a real ELF binary and shared library, built here with `cc`: what a
/// Linux release holds.
#[cfg(target_os = "linux")]
mod elf {
    use std::path::Path;
    use std::process::Command;

    use lmcpp_toolchain::{Error, no_progress};

    use crate::download::sha;
    use crate::fixtures::{
        Item, TAG, asset_path, host_asset, prebuilt_request, serve_listing, tar_gz, toolchain,
    };
    use crate::server::{Route, TestServer};

    /// A real ELF `llama-server` linked against `libllama-fake.so.0` with an `$ORIGIN` rpath,
    /// answering `--version` and `--help` like llama-server does; returns (server, library).
    fn compile_fake_release(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        let lib_c = dir.join("lib.c");
        std::fs::write(
            &lib_c,
            "const char *fake_version(void) { return \"version: 9999 (abcdef12)\"; }\n",
        )
        .unwrap();
        let main_c = dir.join("main.c");
        std::fs::write(
            &main_c,
            r#"#include <stdio.h>
    #include <string.h>
    const char *fake_version(void);
    int main(int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "--help") == 0) {
            puts("-c,    --ctx-size N                     size of the prompt context");
            return 0;
        }
        fprintf(stderr, "%s\nbuilt with cc for x86_64\n", fake_version());
        return 0;
    }
    "#,
        )
        .unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("cc")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "cc {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libllama-fake.so.0",
            "-o",
            "libllama-fake.so.0.1.0",
            "lib.c",
        ]);
        std::os::unix::fs::symlink("libllama-fake.so.0.1.0", dir.join("libllama-fake.so")).unwrap();
        run(&[
            "-o",
            "llama-server",
            "main.c",
            "-L.",
            "-lllama-fake",
            "-Wl,-rpath,$ORIGIN",
        ]);
        (
            std::fs::read(dir.join("llama-server")).unwrap(),
            std::fs::read(dir.join("libllama-fake.so.0.1.0")).unwrap(),
        )
    }

    fn release(server_bin: &[u8], lib: Option<&[u8]>) -> Vec<u8> {
        let top = host_asset().replace(".tar.gz", "");
        let dir = format!("{top}/");
        let server = format!("{top}/llama-server");
        let real = format!("{top}/libllama-fake.so.0.1.0");
        let alias = format!("{top}/libllama-fake.so.0");
        let mut items = vec![
            Item::Dir(&dir),
            Item::File(&server, server_bin.to_vec(), 0o755),
        ];
        if let Some(lib) = lib {
            items.push(Item::File(&real, lib.to_vec(), 0o755));
            items.push(Item::Symlink(&alias, "libllama-fake.so.0.1.0"));
        }
        tar_gz(&items)
    }

    /// A loopback "GitHub" serving `archive` as the host's asset of [`TAG`], listed with
    /// `listed_size` and, when `digest`, its SHA-256.
    async fn serve(archive: &[u8], listed_size: u64, digest: bool) -> TestServer {
        let server = TestServer::start().await;
        server.route(&asset_path(), Route::file(archive.to_vec()));
        let sha = digest.then(|| sha(archive));
        serve_listing(&server, &[(host_asset(), listed_size, sha)]);
        server
    }

    #[tokio::test]
    async fn a_real_shaped_release_is_verified_started_and_published_with_its_libraries() {
        let build = tempfile::tempdir().unwrap();
        let (bin, lib) = compile_fake_release(build.path());
        let archive = release(&bin, Some(&lib));
        let server = serve(&archive, archive.len() as u64, true).await;
        let root = tempfile::tempdir().unwrap();
        let tc = toolchain(root.path());
        let req = prebuilt_request(&server);
        let i = tc.ensure(&req, &no_progress()).await.unwrap();
        // The libraries came along (the alias as a link), so the binary runs from the cache.
        let bin_dir = i.entry_dir.join("bin");
        assert!(bin_dir.join("libllama-fake.so.0.1.0").is_file());
        assert!(
            std::fs::symlink_metadata(bin_dir.join("libllama-fake.so.0"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let out = Command::new(&i.llama_server)
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success());
        // What the binary says about itself is recorded, and its flags were captured.
        let v = i.version.clone().unwrap();
        assert_eq!((v.build_number, v.commit.as_str()), (9999, "abcdef12"));
        let help = std::fs::read_to_string(i.help.as_ref().unwrap()).unwrap();
        assert!(help.contains("--ctx-size"), "{help}");
        let listed = tc.list().unwrap();
        assert_eq!(listed[0].obtained.as_deref(), Some("b9999 (abcdef12)"));
        assert_eq!(listed[0].version, TAG);
        assert_eq!(listed[0].origin, Some(lmcpp_toolchain::Origin::Prebuilt));
    }

    #[tokio::test]
    async fn a_release_whose_binary_does_not_start_is_never_published() {
        let build = tempfile::tempdir().unwrap();
        let (bin, _) = compile_fake_release(build.path());
        // The archive lacks the library the binary needs: `--version` fails to load it.
        let archive = release(&bin, None);
        let server = serve(&archive, archive.len() as u64, true).await;
        let root = tempfile::tempdir().unwrap();
        let tc = toolchain(root.path());
        let req = prebuilt_request(&server);
        let err = tc.ensure(&req, &no_progress()).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::AllSourcesFailed { .. }), "{msg}");
        assert!(msg.contains("libllama-fake.so.0"), "{msg}");
        let (_, entry) = tc.entry_for(&req).await.unwrap();
        assert!(!entry.join("bin").exists());
    }

    #[tokio::test]
    async fn a_listing_size_that_does_not_match_is_refused() {
        let build = tempfile::tempdir().unwrap();
        let (bin, lib) = compile_fake_release(build.path());
        let archive = release(&bin, Some(&lib));
        // No digest listed (older releases), and a size that is not the file's.
        let server = serve(&archive, archive.len() as u64 + 1, false).await;
        let root = tempfile::tempdir().unwrap();
        let tc = toolchain(root.path());
        let err = tc
            .ensure(&prebuilt_request(&server), &no_progress())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("release listing says"), "{err}");
    }
}

#[tokio::test]
async fn latest_is_resolved_through_the_release_listing_and_offline_says_what_to_do() {
    let server = TestServer::start().await;
    server.route(
        "/api/repos/ggml-org/llama.cpp/releases/latest",
        Route::file(br#"{"tag_name": "b11312", "assets": []}"#.to_vec()),
    );
    let root = tempfile::tempdir().unwrap();
    let tc = toolchain(root.path());
    let req = prebuilt_request(&server);
    // A known tag comes back with every pin of the table (commit, sdist, digests).
    let v = tc.latest_version(&req).await.unwrap();
    assert_eq!(v, lmcpp_toolchain::LlamaVersion::pinned());

    let mut offline = req.clone();
    offline.github_api = "http://127.0.0.1:9/api".into();
    let err = tc.latest_version(&offline).await.unwrap_err().to_string();
    assert!(
        err.contains("latest") && err.contains("name a version"),
        "{err}"
    );
}
