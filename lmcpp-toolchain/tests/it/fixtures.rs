//! Shared fixtures: fake release archives, toolchains on temp roots, prebuilt requests.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use lmcpp_toolchain::backend::Probes;
use lmcpp_toolchain::{Backend, LlamaVersion, Mode, Source, Toolchain, ToolchainRequest};

use crate::download::downloader;
use crate::server::TestServer;

/// A `llama-server` stand-in that answers `--version` like the real one (Unix).
pub const FAKE_SERVER: &str = "#!/bin/sh\necho 'version: 1 (fake)' >&2\nexit 0\n";

/// The Windows stand-in: a program that prints the same (see `tests/data/README.md`).
pub const FAKE_SERVER_EXE: &[u8] = include_bytes!("../data/fake-llama-server.exe");

/// This OS's `llama-server` stand-in: [`FAKE_SERVER`], or [`FAKE_SERVER_EXE`] on Windows.
pub fn fake_server() -> Vec<u8> {
    if cfg!(windows) {
        FAKE_SERVER_EXE.to_vec()
    } else {
        FAKE_SERVER.as_bytes().to_vec()
    }
}

/// A program's file name on this OS (`llama-server.exe` on Windows).
pub fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// The file name of a shared library on this OS (`libggml.so`, `ggml.dll`).
pub fn dylib(name: &str) -> String {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    format!("{prefix}{name}{suffix}")
}

/// Makes the `llama-server` of [`release_items`] fail as one that cannot start on this
/// machine does, printing `why` and exiting 1.
pub fn break_server(items: &mut Vec<(String, Vec<u8>, u32)>, why: &str) {
    if cfg!(windows) {
        let top = items[0]
            .0
            .rsplit_once('/')
            .map_or("", |(top, _)| top)
            .to_owned();
        items.push((
            format!("{top}/fake-failure.txt"),
            why.as_bytes().to_vec(),
            0o644,
        ));
    } else {
        items[0].1 = format!("#!/bin/sh\necho '{why}' >&2\nexit 1\n").into_bytes();
    }
}

/// One entry of a test archive.
pub enum Item<'a> {
    File(&'a str, Vec<u8>, u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// The files of a prebuilt release under one top-level folder.
pub fn release_items(top: &str, extra_files: usize) -> Vec<(String, Vec<u8>, u32)> {
    let mut v = vec![
        (
            format!("{top}/{}", exe("llama-server")),
            fake_server(),
            0o755,
        ),
        (format!("{top}/{}", exe("rpc-server")), fake_server(), 0o755),
        (format!("{top}/{}", dylib("ggml")), vec![7u8; 1000], 0o644),
    ];
    // Pseudo-random content, so compression cannot make the archive trivially small.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..extra_files {
        let body: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        v.push((format!("{top}/share/f{i}.bin"), body, 0o644));
    }
    v
}

/// Builds a `.tar.gz` with raw (unchecked) names, so tests can craft hostile archives.
pub fn tar_gz(items: &[Item<'_>]) -> Vec<u8> {
    let enc = GzEncoder::new(Vec::new(), Compression::fast());
    let mut b = tar::Builder::new(enc);
    for item in items {
        let mut h = tar::Header::new_gnu();
        let (name, data, kind, mode, link): (&str, &[u8], tar::EntryType, u32, Option<&str>) =
            match item {
                Item::File(n, d, m) => (n, d, tar::EntryType::Regular, *m, None),
                Item::Dir(n) => (n, &[], tar::EntryType::Directory, 0o755, None),
                Item::Symlink(n, t) => (n, &[], tar::EntryType::Symlink, 0o777, Some(t)),
                Item::HardLink(n, t) => (n, &[], tar::EntryType::Link, 0o644, Some(t)),
            };
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        if let Some(l) = link {
            h.set_link_name_literal(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A `.tar.gz` of regular files.
pub fn tar_gz_files(files: &[(String, Vec<u8>, u32)]) -> Vec<u8> {
    let items: Vec<Item<'_>> = files
        .iter()
        .map(|(n, d, m)| Item::File(n, d.clone(), *m))
        .collect();
    tar_gz(&items)
}

/// Builds a `.zip`.
pub fn zip(items: &[Item<'_>]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for item in items {
        match item {
            Item::File(n, d, m) => {
                let o = zip::write::SimpleFileOptions::default().unix_permissions(*m);
                w.start_file(*n, o).unwrap();
                w.write_all(d).unwrap();
            }
            Item::Dir(n) => {
                w.add_directory(*n, zip::write::SimpleFileOptions::default())
                    .unwrap();
            }
            Item::Symlink(n, t) => {
                w.add_symlink(*n, *t, zip::write::SimpleFileOptions::default())
                    .unwrap();
            }
            Item::HardLink(..) => unreachable!("zip has no hard links"),
        }
    }
    w.finish().unwrap().into_inner()
}

/// A toolchain on `root` with fast retries, short lock waits and fixed CPU-only probes.
pub fn toolchain(root: &Path) -> Toolchain {
    Toolchain::new(Some(root))
        .unwrap()
        .with_downloader(downloader(0))
        .with_lock_timeout(Duration::from_secs(120))
        .with_probes(Probes::default())
}

/// Release tag used by the fake releases.
pub const TAG: &str = "b9999";

/// The host's CPU asset name for [`TAG`].
pub fn host_asset() -> String {
    lmcpp_toolchain::plan::prebuilt_assets(
        TAG,
        std::env::consts::OS,
        std::env::consts::ARCH,
        Backend::Cpu,
        "12.4",
    )
    .unwrap()
    .remove(0)
}

/// Server path of the host's CPU asset.
pub fn asset_path() -> String {
    format!(
        "/ggml-org/llama.cpp/releases/download/{TAG}/{}",
        host_asset()
    )
}

/// Serves a fake CPU release for the host at [`asset_path`], listed with its digest.
pub fn serve_release(server: &TestServer, extra_files: usize) -> Vec<u8> {
    let bytes = release_archive(extra_files);
    server.route(
        &asset_path(),
        crate::server::Route::file(bytes.clone()).etag("rel-1"),
    );
    let digest = crate::download::sha(&bytes);
    serve_listing(server, &[(host_asset(), bytes.len() as u64, Some(digest))]);
    bytes
}

/// Lists `bytes` as the host's CPU asset of [`TAG`] (with its digest).
pub fn list_release(server: &TestServer, bytes: &[u8]) {
    let digest = crate::download::sha(bytes);
    serve_listing(server, &[(host_asset(), bytes.len() as u64, Some(digest))]);
}

/// Path of the release listing of [`TAG`].
pub fn listing_path() -> String {
    format!("/api/repos/ggml-org/llama.cpp/releases/tags/{TAG}")
}

/// Serves the release listing of [`TAG`]: (asset name, size, sha256) each, with download
/// URLs under `releases/download/`, shaped like the real API's answer.
pub fn serve_listing(server: &TestServer, assets: &[(String, u64, Option<String>)]) {
    let assets: Vec<_> = assets
        .iter()
        .map(|(name, size, sha)| {
            serde_json::json!({
                "name": name,
                "size": size,
                "digest": sha.as_ref().map(|s| format!("sha256:{s}")),
                "content_type": "application/gzip",
                "browser_download_url": server.url(
                    &format!("/ggml-org/llama.cpp/releases/download/{TAG}/{name}")
                ),
            })
        })
        .collect();
    let body = serde_json::json!({
        "tag_name": TAG,
        "name": TAG,
        "draft": false,
        "prerelease": false,
        "assets": assets,
    });
    server.route(
        &listing_path(),
        crate::server::Route::file(body.to_string().into_bytes()),
    );
}

/// The fake CPU release archive for the host, in the host asset's format.
pub fn release_archive(extra_files: usize) -> Vec<u8> {
    let top = host_asset().replace(".tar.gz", "").replace(".zip", "");
    archive_files(&host_asset(), &release_items(&top, extra_files))
}

/// An archive of regular files in the format `name` says (`.zip`, else `.tar.gz`).
pub fn archive_files(name: &str, files: &[(String, Vec<u8>, u32)]) -> Vec<u8> {
    if name.ends_with(".zip") {
        let items: Vec<Item<'_>> = files
            .iter()
            .map(|(n, d, m)| Item::File(n, d.clone(), *m))
            .collect();
        zip(&items)
    } else {
        tar_gz_files(files)
    }
}

/// An install-only CPU request for [`TAG`] from the loopback "GitHub".
pub fn prebuilt_request(server: &TestServer) -> ToolchainRequest {
    prebuilt_request_for(&server.base())
}

/// Like [`prebuilt_request`] for a server base URL (used by child processes).
pub fn prebuilt_request_for(base: &str) -> ToolchainRequest {
    ToolchainRequest {
        version: LlamaVersion::tag(TAG),
        sources: vec![Source::GithubRelease],
        backend: Backend::Cpu,
        mode: Mode::InstallOnly,
        github_repo: format!("{base}/ggml-org/llama.cpp"),
        github_api: format!("{base}/api/repos/ggml-org/llama.cpp"),
        ..ToolchainRequest::default()
    }
}
