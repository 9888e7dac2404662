//! Readable names and whole models on the command line, against the stand-in llama-server:
//! `serve` starts the server under an alias (the model as given, or `--alias`), passes the
//! multimodal projector pulled with a Hugging Face model (unless `--no-mmproj`), keeps the
//! web UI off unless `--webui`, and `ps`/`--json` show the alias.

use std::path::Path;
use std::process::Output;

use crate::stand_in::{lmcpp, stand_in};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Places `files` of `repo` in a hub cache at `hub`, as `huggingface_hub` would. The blob
/// names stand for digests (a lookup trusts them; `lmcpp model verify` re-hashes).
fn place(hub: &Path, repo: &str, files: &[(&str, &[u8])]) {
    let dir = hub.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    std::fs::create_dir_all(dir.join("snapshots").join(COMMIT)).unwrap();
    std::fs::write(dir.join("refs/main"), COMMIT).unwrap();
    for (i, (name, body)) in files.iter().enumerate() {
        let digest = format!("{i:x}").repeat(64);
        std::fs::write(dir.join("blobs").join(&digest), body).unwrap();
        std::os::unix::fs::symlink(
            format!("../../blobs/{digest}"),
            dir.join("snapshots").join(COMMIT).join(name),
        )
        .unwrap();
    }
}

/// Runs `lmcpp serve --detach --json …` with the stand-in and returns the printed record;
/// stops the server again.
fn serve(dir: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let (script, _, _) = stand_in(dir);
    let out: Output = lmcpp(dir)
        .env("HF_HUB_CACHE", dir.join("hub"))
        .env("HF_HUB_OFFLINE", "1")
        .arg("--json")
        .arg("--llama-server")
        .arg(&script)
        .arg("serve")
        .arg("--detach")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // `ps --json` shows the same alias.
    let ps = lmcpp(dir).args(["--json", "ps"]).output().unwrap();
    let ps: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(ps[0]["alias"], record["alias"], "{ps}");
    let stop = lmcpp(dir).args(["stop", "--all"]).output().unwrap();
    assert!(stop.status.success());
    (record, stderr)
}

fn args_of(record: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(record["args"].clone()).unwrap()
}

fn value_of(args: &[String], flag: &str) -> Option<String> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

#[test]
fn a_path_is_served_under_its_file_stem_or_the_alias_given() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.gguf");
    let (record, _) = serve(dir.path(), &["--model", model.to_str().unwrap()]);
    assert_eq!(record["alias"], "model");
    let args = args_of(&record);
    assert_eq!(value_of(&args, "--alias").as_deref(), Some("model"));
    // The web UI is off unless asked for.
    assert!(args.iter().any(|a| a == "--no-ui"), "{args:?}");

    let (record, _) = serve(
        dir.path(),
        &["--model", model.to_str().unwrap(), "--alias", "chat"],
    );
    assert_eq!(record["alias"], "chat");
    // An alias among the pass-through arguments is not given twice.
    let (record, _) = serve(
        dir.path(),
        &["--model", model.to_str().unwrap(), "--", "--alias", "mine"],
    );
    let args = args_of(&record);
    assert_eq!(
        args.iter().filter(|a| *a == "--alias").count(),
        1,
        "{args:?}"
    );
    assert_eq!(record["alias"], "mine");
}

#[test]
fn webui_turns_the_ui_on_and_prints_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.gguf");
    let (record, stderr) = serve(
        dir.path(),
        &["--model", model.to_str().unwrap(), "--http", "--webui"],
    );
    let args = args_of(&record);
    assert!(args.iter().any(|a| a == "--ui"), "{args:?}");
    let port = record["endpoint"]["port"].as_u64().unwrap();
    assert!(
        stderr.contains(&format!("web UI at http://127.0.0.1:{port}/")),
        "{stderr}"
    );
    // Only with --http.
    let out = lmcpp(dir.path())
        .args(["serve", "--model", model.to_str().unwrap(), "--webui"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_hugging_face_model_in_the_hub_cache_is_served_with_its_projector_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let (model, mmproj) = (
        b"GGUF\x03\0\0\0model".as_slice(),
        b"GGUF\x03\0\0\0proj".as_slice(),
    );
    place(
        &dir.path().join("hub"),
        "org/vision",
        &[("v-Q4_K_M.gguf", model), ("mmproj-v-f16.gguf", mmproj)],
    );
    let snapshot = dir
        .path()
        .join("hub/models--org--vision/snapshots")
        .join(COMMIT);
    let (record, _) = serve(dir.path(), &["--model", "org/vision:Q4_K_M"]);
    assert_eq!(record["alias"], "org/vision:Q4_K_M");
    let args = args_of(&record);
    assert_eq!(
        value_of(&args, "--mmproj").map(std::path::PathBuf::from),
        Some(snapshot.join("mmproj-v-f16.gguf")),
        "{args:?}"
    );
    assert_eq!(
        record["model"].as_str().map(Path::new),
        Some(snapshot.join("v-Q4_K_M.gguf").as_path())
    );
    let (record, _) = serve(dir.path(), &["--model", "org/vision", "--no-mmproj"]);
    assert_eq!(record["alias"], "org/vision");
    assert!(!args_of(&record).iter().any(|a| a == "--mmproj"));
}
