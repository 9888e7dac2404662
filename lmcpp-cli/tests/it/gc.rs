//! `lmcpp gc` on a temp cache root and runtime dir: old leftovers and logs of servers that
//! are not running go, young ones stay, and `--dry-run` removes nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::lmcpp;

fn old_file(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    let then = SystemTime::now() - Duration::from_secs(48 * 3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(then)
        .unwrap();
    path.to_path_buf()
}

/// lmcpp's private subdirectory of the runtime dir the test helper passes.
#[cfg(unix)]
fn registry_dir(dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(dir).unwrap().uid();
    dir.join("run").join(format!("lmcpp-{uid}"))
}

/// lmcpp's private subdirectory of the runtime dir the test helper passes (named after the
/// user on Windows, which has no uid).
#[cfg(windows)]
fn registry_dir(dir: &Path) -> PathBuf {
    let user = std::env::var("USERNAME").unwrap();
    dir.join("run").join(format!("lmcpp-{user}"))
}

/// `lmcpp --json gc ARGS`, which must succeed, as JSON.
fn gc_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let all = [&["--json", "gc"][..], args].concat();
    let out = lmcpp(dir, &all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn gc_lists_with_dry_run_then_removes_old_leftovers_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let part = old_file(&home.join("downloads/k-x.tar.gz.part"), &[1; 2048]);
    let fresh = home.join("downloads/k-y.tar.gz.part");
    std::fs::write(&fresh, b"being written").unwrap();
    let lock = old_file(&home.join("models/locks/k.lock"), b"");
    let log = old_file(
        &registry_dir(dir.path()).join("0123456789ab.log"),
        b"old log\n",
    );
    let new_log = registry_dir(dir.path()).join("ba9876543210.log");
    std::fs::write(&new_log, b"recent log\n").unwrap();

    let v = gc_json(dir.path(), &["--dry-run"]);
    assert_eq!(v["dry_run"], true);
    let listed: Vec<(String, String)> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (kind, path) in [("partial", &part), ("lock", &lock), ("log", &log)] {
        assert!(
            listed
                .iter()
                .any(|(k, p)| k == kind && std::path::Path::new(p) == path),
            "{kind} {} not listed in {listed:?}",
            path.display()
        );
    }
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        part.exists() && lock.exists() && log.exists(),
        "a dry run removed something"
    );

    let out = lmcpp(dir.path(), &["gc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("removed 3 item(s)"), "{text}");
    assert!(!part.exists() && !lock.exists() && !log.exists());
    assert!(
        fresh.exists() && new_log.exists(),
        "young files were removed"
    );

    let out = lmcpp(dir.path(), &["gc", "--older-than", "0"]);
    assert!(out.status.success());
    assert!(!fresh.exists() && !new_log.exists());
}

/// The KV caches a proxy saved are its own (`<home>/kv/<proxy id>`): one killed before it
/// could remove them leaves them behind, and `gc` removes them once they are old enough
/// and no running proxy has that id.
#[test]
fn a_dead_proxys_kv_caches_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let kv = dir.path().join("home/kv/p0123456789ab");
    std::fs::create_dir_all(kv.join("chat-0011")).unwrap();
    std::fs::write(kv.join("chat-0011/slot-0.bin"), [7u8; 4096]).unwrap();

    // Just written: kept by the default age.
    let v = gc_json(dir.path(), &["--dry-run"]);
    assert!(
        !v["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "kv-cache"),
        "{v}"
    );

    let v = gc_json(dir.path(), &["--older-than", "0"]);
    let kv_items: Vec<&serde_json::Value> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "kv-cache")
        .collect();
    assert_eq!(kv_items.len(), 1, "{v}");
    assert_eq!(
        std::path::Path::new(kv_items[0]["path"].as_str().unwrap()),
        kv
    );
    assert!(!kv.exists());
}
