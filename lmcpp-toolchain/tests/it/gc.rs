//! Cache garbage collection on a temp cache root: what is old and unlocked goes, what is
//! young, locked, referenced or a blob stays; a dry run removes nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lmcpp_toolchain::gc::{GcKind, GcOptions, GcReport, collect};
use lmcpp_toolchain::{CacheLayout, LockGuard, lock_exclusive, no_progress};

fn write(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Sets the modification time of `path` and everything below it two days back.
fn age(path: &Path) {
    let then = SystemTime::now() - Duration::from_secs(48 * 3600);
    if path.is_symlink() {
        return;
    }
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            age(&e.unwrap().path());
        }
    }
    open_for_times(path).set_modified(then).unwrap();
}

/// A handle that may set `path`'s times, a folder's included.
#[cfg(unix)]
fn open_for_times(path: &Path) -> std::fs::File {
    std::fs::File::open(path).unwrap()
}

/// A handle that may set `path`'s times: Windows needs the right to write attributes, and
/// a folder opens only with backup semantics.
#[cfg(windows)]
fn open_for_times(path: &Path) -> std::fs::File {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_WRITE_ATTRIBUTES: u32 = 0x100;
    const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
    std::fs::OpenOptions::new()
        .access_mode(FILE_WRITE_ATTRIBUTES)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
        .unwrap()
}

async fn hold(path: &Path) -> LockGuard {
    lock_exclusive(path, Duration::from_secs(5), &no_progress())
        .await
        .unwrap()
}

/// A cache root with one leftover of every kind, some of them in use.
struct Fixture {
    dir: tempfile::TempDir,
    _held: Vec<LockGuard>,
}

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "downloads/k1-llama.tar.gz", &[1; 1000]);
    write(root, "downloads/k2-llama.tar.gz.part", &[2; 500]);
    write(root, "downloads/k2-llama.tar.gz.part.meta", b"{}");
    write(root, "downloads/.tmpAbc/x.tar.gz", &[3; 10]);
    write(
        root,
        "downloads/pypi/llama_cpp_python-0.3.36.tar.gz",
        &[4; 300],
    );
    write(root, "downloads/pypi/llama_cpp_python-0.3.36.lock", b"");
    write(
        root,
        "models/blobs/{SHA}".replace("{SHA}", SHA).as_str(),
        b"GGUF blob",
    );
    write(root, &format!("models/blobs/{SHA}.part"), &[5; 700]);
    write(root, "models/downloads/key.gguf", b"GGUF orphan");
    write(root, "models/downloads/busy.gguf.part", b"GGUF busy");
    write(root, "models/locks/key.lock", b"");
    write(root, "models/locks/held.lock", b"");
    write(root, "sources/used/CMakeLists.txt", b"x");
    write(root, "sources/unused/CMakeLists.txt", &[6; 100]);
    write(root, "sources/.tmp-half/CMakeLists.txt", b"x");
    write(root, "sources/unused.lock", b"");
    write(root, "toolchains/.fp9.4242.scratch/build/x.o", &[7; 50]);
    write(root, "toolchains/fp1.lock", b"");
    write(root, "tools/cmake-pip.tmp/cmake/x", &[9; 30]);
    write(root, "models/refs/kept.json", b"{}");
    write(root, "models/refs/.tmp-Xy12", b"{");
    std::fs::create_dir_all(root.join("models/by-name/kept")).unwrap();
    std::fs::create_dir_all(root.join("models/by-name/gone")).unwrap();
    for key in ["kept", "gone"] {
        let entry = root.join(format!("models/by-name/{key}/m.gguf"));
        #[cfg(unix)]
        std::os::unix::fs::symlink(format!("../../blobs/{SHA}"), entry).unwrap();
        // The store makes no links on Windows; a file stands in for the entry.
        #[cfg(windows)]
        std::fs::write(entry, b"m").unwrap();
    }
    let used = root.join("sources/used");
    write(
        root,
        "toolchains/fp1/state.json",
        serde_json::json!({ "status": "ready", "source_dir": used })
            .to_string()
            .as_bytes(),
    );
    for top in ["downloads", "models", "sources", "toolchains", "tools"] {
        age(&root.join(top));
    }
    // Young: a download that is being written right now.
    write(root, "downloads/k3-fresh.tar.gz.part", &[8; 10]);
    let held = vec![
        hold(&root.join("downloads/pypi/llama_cpp_python-0.3.36.lock")).await,
        hold(&root.join("models/downloads/busy.gguf.lock")).await,
        hold(&root.join("models/locks/held.lock")).await,
    ];
    Fixture { dir, _held: held }
}

fn set(report_items: &[lmcpp_toolchain::gc::GcItem], root: &Path) -> BTreeSet<(GcKind, String)> {
    report_items
        .iter()
        .map(|i| {
            (
                i.kind,
                i.path
                    .strip_prefix(root)
                    .unwrap()
                    .display()
                    .to_string()
                    .replace('\\', "/"),
            )
        })
        .collect()
}

fn expected_removed() -> BTreeSet<(GcKind, String)> {
    use GcKind::*;
    [
        (Download, "downloads/k1-llama.tar.gz".to_owned()),
        (Partial, "downloads/k2-llama.tar.gz.part".to_owned()),
        (Partial, "downloads/k2-llama.tar.gz.part.meta".to_owned()),
        (Scratch, "downloads/.tmpAbc".to_owned()),
        (Partial, format!("models/blobs/{SHA}.part")),
        (Download, "models/downloads/key.gguf".to_owned()),
        (Lock, "models/locks/key.lock".to_owned()),
        (Source, "sources/unused".to_owned()),
        (Scratch, "sources/.tmp-half".to_owned()),
        (Lock, "sources/unused.lock".to_owned()),
        (Scratch, "toolchains/.fp9.4242.scratch".to_owned()),
        (Lock, "toolchains/fp1.lock".to_owned()),
        (Scratch, "tools/cmake-pip.tmp".to_owned()),
        (Scratch, "models/refs/.tmp-Xy12".to_owned()),
        (Link, "models/by-name/gone".to_owned()),
    ]
    .into_iter()
    .collect()
}

fn expected_in_use() -> BTreeSet<(GcKind, String)> {
    use GcKind::*;
    [
        (
            Download,
            "downloads/pypi/llama_cpp_python-0.3.36.tar.gz".to_owned(),
        ),
        (
            Lock,
            "downloads/pypi/llama_cpp_python-0.3.36.lock".to_owned(),
        ),
        (Partial, "models/downloads/busy.gguf.part".to_owned()),
        (Lock, "models/downloads/busy.gguf.lock".to_owned()),
        (Lock, "models/locks/held.lock".to_owned()),
    ]
    .into_iter()
    .collect()
}

fn tree(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(p: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.clone());
            if p.is_dir() {
                walk(&p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, &mut out);
    out
}

fn check(report: &GcReport, root: &Path) {
    assert_eq!(set(&report.removed, root), expected_removed());
    assert_eq!(set(&report.in_use, root), expected_in_use());
    let freed: u64 = report.removed.iter().map(|i| i.bytes).sum();
    assert_eq!(report.freed, freed);
    assert!(freed >= 1000 + 500 + 700 + 100 + 50, "{freed}");
}

#[tokio::test]
async fn a_dry_run_lists_what_would_go_and_removes_nothing() {
    let f = fixture().await;
    let root = f.dir.path();
    let before = tree(root);
    let layout = CacheLayout::new(root);
    let report = collect(
        &layout,
        &GcOptions {
            dry_run: true,
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(report.dry_run);
    check(&report, root);
    assert_eq!(tree(root), before, "a dry run changed the cache");
}

#[tokio::test]
async fn gc_removes_old_unlocked_leftovers_and_keeps_what_is_used() {
    let f = fixture().await;
    let root = f.dir.path();
    let layout = CacheLayout::new(root);
    let report = collect(&layout, &GcOptions::default()).await.unwrap();
    check(&report, root);
    for (_, rel) in expected_removed() {
        assert!(!root.join(&rel).exists(), "{rel} is still there");
    }
    for kept in [
        format!("models/blobs/{SHA}"),
        "downloads/k3-fresh.tar.gz.part".to_owned(),
        "downloads/pypi/llama_cpp_python-0.3.36.tar.gz".to_owned(),
        "models/downloads/busy.gguf.part".to_owned(),
        "sources/used/CMakeLists.txt".to_owned(),
        "toolchains/fp1/state.json".to_owned(),
        "models/by-name/kept/m.gguf".to_owned(),
        "models/refs/kept.json".to_owned(),
    ] {
        assert!(root.join(&kept).exists(), "{kept} was removed");
    }
    // No lock file taken while deleting is left behind.
    let locks: Vec<PathBuf> = tree(root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".lock"))
        .collect();
    assert_eq!(locks.len(), 3, "{locks:?}");

    // Once the holders let go and enough time passes, the rest goes too.
    drop(f._held);
    let again = collect(
        &layout,
        &GcOptions {
            min_age: Duration::ZERO,
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(again.in_use.is_empty(), "{:?}", again.in_use);
    assert!(root.join(format!("models/blobs/{SHA}")).exists());
    assert!(!root.join("downloads/k3-fresh.tar.gz.part").exists());
}

#[tokio::test]
async fn probes_about_files_that_are_gone_or_changed_are_collected_and_current_ones_kept() {
    use lmcpp_toolchain::{FileIdentity, ProbeKind};
    let cache = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(cache.path());
    let record = |name: &str| {
        let file = write(files.path(), name, name.as_bytes());
        let id = FileIdentity::of(&file).unwrap();
        layout
            .write_probe(&id, ProbeKind::ArchiveSha256, "abc")
            .unwrap();
        (file, id)
    };
    let (_, kept) = record("kept.tar.gz");
    let (changed, _) = record("changed.tar.gz");
    let (gone, _) = record("gone.tar.gz");
    std::fs::write(&changed, b"other bytes, another size").unwrap();
    std::fs::remove_file(&gone).unwrap();
    write(cache.path(), "probes/garbage.sha256.json", b"{not json");
    write(cache.path(), "probes/.tmp-half", b"");
    let probes: Vec<_> = std::fs::read_dir(layout.probes())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for p in &probes {
        age(p);
    }

    let opts = GcOptions {
        min_age: Duration::from_secs(3600),
        dry_run: false,
    };
    let report = collect(&layout, &opts).await.unwrap();
    let removed: Vec<_> = report
        .removed
        .iter()
        .map(|i| (i.kind, i.path.file_name().unwrap().to_owned()))
        .collect();
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert_eq!(
        removed.iter().filter(|(k, _)| *k == GcKind::Probe).count(),
        3,
        "{removed:?}"
    );
    assert!(removed.contains(&(GcKind::Scratch, ".tmp-half".into())));
    // The record about the unchanged file is still read back.
    assert_eq!(
        layout
            .read_probe(&kept, ProbeKind::ArchiveSha256)
            .as_deref(),
        Some("abc")
    );
    assert_eq!(std::fs::read_dir(layout.probes()).unwrap().count(), 1);
}
