//! Bad input is found where it enters and is exit 2 with what to write instead: files that
//! are not GGUF models (a FIFO, a directory, text, any truncation of a real model),
//! malformed `--rpc` entries and `--timeout` values. Also the two habits users bring:
//! `lmcpp logs <id>` of a server that failed to start, and curl's `--max-time` as
//! `--timeout`.

use std::path::{Path, PathBuf};

use super::{lmcpp, stderr};

/// A real GGUF file (llama.cpp's vocab-only model).
fn real_gguf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lmcpp-toolchain/tests/data/ggml-vocab-llama-spm.gguf")
}

fn assert_bad_input(dir: &Path, args: &[&str], says: &str) {
    let out = lmcpp(dir, args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
}

#[test]
fn what_is_not_a_gguf_file_is_refused_by_inspect_and_pull() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder.gguf");
    std::fs::create_dir(&folder).unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just some notes\n").unwrap();
    for cmd in ["inspect", "pull"] {
        let path = folder.to_str().unwrap();
        assert_bad_input(dir.path(), &["model", cmd, path], "not a regular file");
        let path = text.to_str().unwrap();
        assert_bad_input(dir.path(), &["model", cmd, path], "not a GGUF file");
    }
    // Nothing was stored for them.
    let blobs = dir.path().join("home/models/blobs");
    assert!(std::fs::read_dir(blobs).map_or(true, |mut d| d.next().is_none()));
}

/// Opening a FIFO for reading blocks until a writer comes: it is refused before.
#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_being_opened() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for cmd in ["inspect", "pull"] {
        assert_bad_input(
            dir.path(),
            &["model", cmd, fifo.to_str().unwrap()],
            "a FIFO",
        );
    }
}

/// Cut anywhere, a real model is a bad file, never a crash or a failure of lmcpp's.
#[test]
fn every_truncation_of_a_real_model_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(real_gguf()).unwrap();
    // Inside the magic, the header, the metadata (the vocab array), and just short of the end.
    let header_end = 24;
    for cut in [
        2,
        header_end - 3,
        header_end + 5,
        bytes.len() / 3,
        bytes.len() / 2 + 7,
        bytes.len() - 1,
    ] {
        let path = dir.path().join(format!("cut-{cut}.gguf"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let out = lmcpp(dir.path(), &["model", "inspect", path.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "cut at {cut}: {err}");
        assert!(
            err.contains("truncated") || err.contains("not a GGUF file"),
            "cut at {cut}: {err}"
        );
    }
    // The whole file is fine.
    let out = lmcpp(
        dir.path(),
        &["model", "inspect", real_gguf().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn malformed_rpc_entries_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let model = real_gguf();
    let model = model.to_str().unwrap();
    for bad in ["nohost", "h:0", "h:70000", "::1:50052", "good:1,bad"] {
        let out = lmcpp(dir.path(), &["serve", "--model", model, "--rpc", bad]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "--rpc {bad}: {err}");
        assert!(err.contains("host:port"), "--rpc {bad}: {err}");
        // Refused while parsing: no toolchain was looked for.
        assert!(!dir.path().join("home/toolchains").exists(), "--rpc {bad}");
    }
}

#[test]
fn the_log_of_a_server_that_failed_to_start_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir
        .path()
        .join("run")
        .join(lmcpp::server::private_dir_name());
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(
        registry.join("0123456789ab.log"),
        "loading model\nerror: failed to load model\n",
    )
    .unwrap();
    let out = lmcpp(dir.path(), &["logs", "0123456789ab", "--lines", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "error: failed to load model\n"
    );
    // An id with neither a record nor a log is still unknown.
    let out = lmcpp(dir.path(), &["logs", "ba9876543210"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `--timeout` bounds each request (curl's `--max-time`): a server that accepts and never
/// answers ends the command after that long, saying so; a value that is not a positive number
/// of seconds is bad input.
#[test]
fn timeout_bounds_a_request_to_a_server_that_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accepts every connection and holds it open without a byte of answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let out = lmcpp(
        dir.path(),
        &["complete", "--url", &url, "--timeout", "0.5", "hello"],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("timed out after 500ms"), "{err}");
    for bad in ["0", "-1", "soon", "inf"] {
        let arg = format!("--timeout={bad}");
        assert_bad_input(
            dir.path(),
            &["complete", "--url", &url, &arg, "hello"],
            "seconds",
        );
    }
}

/// A model reference is parsed where it enters: a bad one is exit 2 before any toolchain
/// is looked for or fetched.
#[test]
fn a_bad_model_reference_is_refused_before_anything_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["run", "--model", "just some words", "hello"][..],
        &["serve", "--model", "https://"],
    ] {
        let out = lmcpp(dir.path(), args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("model"), "{args:?}: {err}");
        assert!(!dir.path().join("home/toolchains").exists(), "{args:?}");
    }
}

/// `--draft` is parsed where it is given, and belongs to a single server: with several
/// models each gets its own in the config.
#[test]
fn a_draft_is_one_servers_and_parsed_where_given() {
    let dir = tempfile::tempdir().unwrap();
    assert_bad_input(
        dir.path(),
        &["serve", "--model", "demo", "--draft", "just some words"],
        "owner/repo",
    );
    assert_bad_input(
        dir.path(),
        &[
            "serve", "--model", "a=demo", "--model", "b=demo", "--draft", "demo",
        ],
        "`draft = \"MODEL\"`",
    );
    assert!(!dir.path().join("home/toolchains").exists());
}
