//! The generated demo model and the vocab GGUFs of the llama.cpp source tree: the demo is
//! written from the vocab, reads back, and is pulled through the model store; every vocab
//! reads and round-trips. (Serving the demo model is lmcpp-server's e2e `demo_model`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use lmcpp_test_support::PreparedPaths;
use lmcpp_toolchain::demo::{DemoOptions, write_demo_model};
use lmcpp_toolchain::gguf::read_gguf;
use lmcpp_toolchain::models::{ModelStore, ModelStoreOptions, PullOptions};

/// The test prerequisites written by `cargo xtask prepare`.
fn paths() -> PreparedPaths {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    PreparedPaths::load(root).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_model_written_from_the_vocab_is_pulled_through_the_store() {
    let p = paths();
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo.gguf");
    let written = write_demo_model(&p.vocab_gguf, &demo, &DemoOptions::default()).unwrap();
    let summary = read_gguf(&demo).unwrap().summary();
    assert_eq!(summary.architecture.as_deref(), Some("llama"));
    assert_eq!(summary.file_size, written.size);

    // Through the store, as users get models: a file:// URL, hashed while copied, then
    // found at its by-name path with the same bytes.
    let store =
        ModelStore::new(ModelStoreOptions::with_cache_root(dir.path().join("cache"))).unwrap();
    let url = lmcpp_test_support::file_url(&demo);
    let pulled = store.pull_str(&url, &PullOptions::default()).await.unwrap();
    assert_eq!(pulled.size, written.size);
    assert_eq!(pulled.path.file_name().unwrap(), "demo.gguf");
    assert_eq!(read_gguf(&pulled.path).unwrap().summary(), summary);
    assert!(std::fs::read(&pulled.path).unwrap() == std::fs::read(&demo).unwrap());
}

/// Every vocab GGUF of the llama.cpp source tree parses, summarises, and rewrites to the
/// same bytes (they have no tensors, so metadata is all there is).
#[test]
fn every_vocab_in_the_source_tree_reads_and_round_trips() {
    let p = paths();
    let dir = p
        .source_dir
        .as_ref()
        .map(|d| d.join("models"))
        .filter(|d| d.is_dir())
        .or_else(|| p.vocab_gguf.parent().map(Path::to_path_buf))
        .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("ggml-vocab-") && name.ends_with(".gguf")
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no ggml-vocab-*.gguf in {}",
        dir.display()
    );
    for path in &files {
        let file = read_gguf(path).unwrap_or_else(|e| panic!("{e}"));
        let s = file.summary();
        assert!(s.tokenizer_model.is_some(), "{}", path.display());
        assert!(s.vocab_size.unwrap_or(0) > 0, "{}", path.display());

        let mut w = lmcpp_toolchain::gguf::GgufWriter::new();
        for (k, v) in file.metadata.iter() {
            w.set(k, v.clone());
        }
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        let original = std::fs::read(path).unwrap();
        assert!(file.tensors.is_empty(), "{}", path.display());
        // The writer always writes version 3; versions 2 and 3 differ only in that field.
        out[4..8].copy_from_slice(&file.version.to_le_bytes());
        assert!(out == original, "{} does not round-trip", path.display());
    }
}
