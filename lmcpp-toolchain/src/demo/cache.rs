//! The demo model in the model cache: where the generated demo model of a seed lives
//! (`<root>/models/demo/demo-<seed>.gguf`) and writing it there once, with the vocabulary
//! of a llama.cpp source tree. The GGUF itself is written by the module above ([`crate::demo`]).

use std::path::{Path, PathBuf};

use super::{DEMO_VOCAB, DemoOptions, write_demo_model};
use crate::cache::CacheLayout;
use crate::error::{Error, IoContext, Result};

/// Where the model cache at `layout` keeps the demo model whose weights come from `seed`.
pub fn demo_model_path(layout: &CacheLayout, seed: u64) -> PathBuf {
    layout
        .models()
        .join("demo")
        .join(format!("demo-{seed:x}.gguf"))
}

/// The demo model with weights from `seed`, written to `out`, or by default to
/// [`demo_model_path`], where a file already there is reused as is. Its vocabulary is
/// [`DEMO_VOCAB`] of the llama.cpp source tree at `source_dir`. The file is published
/// with one rename, so a reader never sees it half-written.
pub async fn ensure_demo_model(
    layout: &CacheLayout,
    source_dir: &Path,
    seed: u64,
    out: Option<&Path>,
) -> Result<PathBuf> {
    let path = match out {
        Some(out) => out.to_path_buf(),
        None => {
            let cached = demo_model_path(layout, seed);
            if cached.is_file() {
                return Ok(cached);
            }
            cached
        }
    };
    let target = path.clone();
    let vocab = source_dir.join(DEMO_VOCAB);
    let written = tokio::task::spawn_blocking(move || {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).ctx("create directory", dir)?;
        }
        write_demo_model(&vocab, &target, &DemoOptions::with_seed(seed))
    })
    .await
    .map_err(|e| Error::io("write the demo model", &path, std::io::Error::other(e)))??;
    Ok(written.path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A source tree holding only the vocabulary the demo model takes.
    fn source_tree(dir: &Path) -> PathBuf {
        let source = dir.join("llama.cpp");
        let vocab = source.join(DEMO_VOCAB);
        std::fs::create_dir_all(vocab.parent().unwrap()).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(Path::new(DEMO_VOCAB).file_name().unwrap());
        std::fs::copy(fixture, vocab).unwrap();
        source
    }

    #[tokio::test]
    async fn the_demo_model_is_written_once_per_seed_into_the_model_cache() {
        let dir = tempfile::tempdir().unwrap();
        let layout = CacheLayout::new(dir.path().join("home"));
        let source = source_tree(dir.path());
        let seed = DemoOptions::default().seed;

        let path = ensure_demo_model(&layout, &source, seed, None)
            .await
            .unwrap();
        assert_eq!(path, demo_model_path(&layout, seed));
        assert_eq!(
            path,
            layout
                .models()
                .join("demo")
                .join(format!("demo-{seed:x}.gguf"))
        );
        let first = std::fs::read(&path).unwrap();
        // Reused as is: the vocabulary is no longer needed.
        std::fs::remove_dir_all(&source).unwrap();
        assert_eq!(
            ensure_demo_model(&layout, &source, seed, None)
                .await
                .unwrap(),
            path
        );
        assert_eq!(std::fs::read(&path).unwrap(), first);
        // Another seed is another file, and without the vocabulary an error naming it.
        let err = ensure_demo_model(&layout, &source, seed + 1, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ggml-vocab-llama-spm"), "{err}");
        assert!(!demo_model_path(&layout, seed + 1).exists());

        // An explicit destination is written whatever is in the cache, with the same bytes.
        let source = source_tree(dir.path());
        let out = dir.path().join("elsewhere.gguf");
        let written = ensure_demo_model(&layout, &source, seed, Some(&out))
            .await
            .unwrap();
        assert_eq!(written, out);
        assert_eq!(std::fs::read(&out).unwrap(), first);
    }
}
