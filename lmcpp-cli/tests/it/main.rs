//! Fast tests of the `lmcpp` binary: argument errors, JSON output, nothing that needs a server.

#![allow(clippy::unwrap_used)]

// The stand-in llama-server is a shell script that `exec`s this binary and notes the Unix
// signal that stopped it; `alias` runs against it.
#[cfg(unix)]
mod alias;
mod bad_input;
mod docs;
mod gc;
mod library;
mod model;
mod proxy;
#[cfg(unix)]
mod stand_in;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `lmcpp` with its own cache root and runtime dir, so nothing touches `~`.
fn lmcpp(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lmcpp"))
        .arg("--home")
        .arg(dir.join("home"))
        .arg("--runtime-dir")
        .arg(dir.join("run"))
        .arg("--quiet")
        .args(args)
        .env_remove("LMCPP_HOME")
        .env_remove("LMCPP_SERVER_BIN")
        // The Hugging Face cache too: nothing is looked for or written in `~`.
        .env("HF_HUB_CACHE", dir.join("hub"))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        "toolchain",
        "model",
        "serve",
        "ps",
        "stop",
        "logs",
        "complete",
        "chat",
        "embed",
        "tokenize",
        "detokenize",
        "props",
        "health",
        "metrics",
        "run",
        "schema",
        "gc",
    ] {
        let out = lmcpp(dir.path(), &[cmd, "--help"]);
        assert!(
            out.status.success(),
            "{cmd} --help failed: {}",
            stderr(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{cmd}"
        );
    }
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let not_gguf = dir.path().join("notes.txt");
    std::fs::write(&not_gguf, "just text, not a model").unwrap();
    let fake_bin = dir.path().join("llama-server");
    std::fs::write(&fake_bin, "#!/bin/sh\nexit 1\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = fake_bin.to_str().unwrap();
    let missing = dir.path().join("missing.gguf");
    let gguf = dir.path().join("model.gguf");
    std::fs::write(&gguf, b"GGUF\x03\0\0\0").unwrap();
    let gguf = gguf.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["toolchain", "install", "--backend", "quantum"],
            "quantum",
        ),
        (vec!["stop", "0123456789ab"], "0123456789ab"),
        (vec!["logs", "0123456789ab"], "0123456789ab"),
        (vec!["stop", "../x"], "not a server id"),
        (vec!["logs", "../../etc/passwd"], "not a server id"),
        (vec!["logs", "a/b", "-f"], "not a server id"),
        (
            vec![
                "--llama-server",
                bin,
                "serve",
                "--model",
                missing.to_str().unwrap(),
            ],
            "missing.gguf",
        ),
        (
            vec![
                "--llama-server",
                bin,
                "serve",
                "--model",
                not_gguf.to_str().unwrap(),
            ],
            "notes.txt",
        ),
        (
            vec![
                "--llama-server",
                bin,
                "serve",
                "--model",
                gguf,
                "--http",
                "--",
                "--host=0.0.0.0",
            ],
            "`--host` is set by lmcpp",
        ),
        (
            vec![
                "--llama-server",
                bin,
                "serve",
                "--model",
                gguf,
                "--",
                "-m",
                "other.gguf",
            ],
            "`-m` is set by lmcpp",
        ),
        (
            vec!["serve", "--model", gguf, "--bind", "0.0.0.0"],
            "--http",
        ),
        (vec!["health"], "no server is running"),
        (vec!["schema", "NoSuchType"], "NoSuchType"),
        (vec!["health", "--url", "ftp://x"], "ftp://x"),
    ];
    for (args, needle) in cases {
        let out = lmcpp(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: stderr does not name {needle:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn json_outputs_parse() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expect_array) in [
        (vec!["--json", "toolchain", "list"], true),
        (vec!["--json", "model", "list"], true),
        (vec!["--json", "ps"], true),
        (vec!["--json", "schema"], true),
        (vec!["--json", "schema", "CompletionRequest"], false),
    ] {
        let out = lmcpp(dir.path(), &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {:?}", out.stdout));
        assert_eq!(v.is_array(), expect_array, "{args:?}: {v}");
    }
    let out = lmcpp(dir.path(), &["--json", "schema"]);
    let names: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        names.iter().any(|n| n == "ChatCompletionRequest"),
        "{names:?}"
    );
}

#[test]
fn toolchain_path_is_cache_only_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = lmcpp(dir.path(), &["toolchain", "path", "--backend", "cpu"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).to_lowercase().contains("install"),
        "{}",
        stderr(&out)
    );
    // Cache-only: nothing was built or downloaded.
    let entries = dir.path().join("home").join("toolchains");
    let built = std::fs::read_dir(&entries)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.path().join("bin").exists())
        })
        .unwrap_or(false);
    assert!(!built);
}
