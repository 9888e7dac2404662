//! `lmcpp model rm` and `model verify` on a store filled from local files: digests and
//! their prefixes name models, and unknown names are errors that touch nothing.

use std::path::Path;

use super::lmcpp;

/// Pulls a local GGUF-looking file into the store and returns its sha256.
fn pull(dir: &Path, name: &str, fill: u8) -> String {
    let file = dir.join(name);
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(std::iter::repeat_n(fill, 5000));
    std::fs::write(&file, bytes).unwrap();
    let url = lmcpp_test_support::file_url(&file);
    let out = lmcpp(dir, &["--json", "model", "pull", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["sha256"].as_str().unwrap().to_owned()
}

fn blob(dir: &Path, sha: &str) -> std::path::PathBuf {
    dir.join("home/models/blobs").join(sha)
}

#[test]
fn rm_and_verify_take_a_digest_or_its_prefix_and_refuse_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let a = pull(dir.path(), "a.gguf", 1);
    let b = pull(dir.path(), "b.gguf", 2);
    // Corrupt b: only a verification that names b may delete it.
    std::fs::write(blob(dir.path(), &b), b"GGUF corrupt").unwrap();

    let unknown = "f".repeat(64);
    for args in [
        vec!["model", "verify", unknown.as_str()],
        vec!["model", "rm", unknown.as_str()],
        vec!["model", "verify", "owner/none:Q4_K_M"],
    ] {
        let out = lmcpp(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no cached model matches"), "{args:?}: {err}");
    }
    assert!(
        blob(dir.path(), &b).exists(),
        "verify of an unknown name touched b"
    );

    let out = lmcpp(dir.path(), &["model", "verify", &a[..16]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 verified, 0 bad"));
    assert!(blob(dir.path(), &b).exists());

    let out = lmcpp(dir.path(), &["--json", "model", "rm", &a[..12]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sha256"], a.as_str());
    assert!(!blob(dir.path(), &a).exists());
    let out = lmcpp(dir.path(), &["model", "rm", &a]);
    assert_eq!(out.status.code(), Some(2));

    let out = lmcpp(dir.path(), &["model", "verify", &b]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a corrupt model fails verification"
    );
    assert!(!blob(dir.path(), &b).exists());
}

#[test]
fn pulling_something_that_is_not_gguf_is_bad_input_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.gguf");
    std::fs::write(&page, "<!doctype html><p>sign in</p>").unwrap();
    let url = lmcpp_test_support::file_url(&page);
    let out = lmcpp(dir.path(), &["model", "pull", &url]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a GGUF model"), "{err}");
    let blobs = dir.path().join("home/models/blobs");
    assert_eq!(std::fs::read_dir(blobs).unwrap().count(), 0);
}
