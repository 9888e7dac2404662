//! A tiny, deterministic llama-architecture model for tests and the offline quickstart.
//!
//! No model weights can be downloaded in every environment, but llama.cpp ships vocab-only
//! GGUF files in its source tree. This module takes the tokenizer from one of them and adds
//! seeded random `F32` weights for a 2-layer, 64-wide llama, which `llama-server` loads in
//! well under a second and serves completion, chat and embeddings from (the output is
//! gibberish, which is all a test needs). With `--reranking` it also answers `/reranking`
//! (rank pooling without a classifier head scores by the last token's embedding). The
//! bytes depend only on the vocab file and [`DemoOptions`].

mod cache;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::gguf::{GgufValue, GgufWriter, read_gguf};

pub use cache::{demo_model_path, ensure_demo_model};

/// The vocab GGUF, relative to a llama.cpp source tree, that the demo model takes its
/// tokenizer from.
pub const DEMO_VOCAB: &str = "models/ggml-vocab-llama-spm.gguf";

/// A ChatML template, so `/v1/chat/completions` works and llama.cpp recognises the format.
pub const DEMO_CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Shape and seed of the demo model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// Seed of the weight generator; the same seed gives the same bytes.
    pub seed: u64,
    /// Embedding width (`n_embd`).
    pub embedding_length: u32,
    /// Number of transformer blocks.
    pub block_count: u32,
    /// Attention heads.
    pub head_count: u32,
    /// Key/value heads (equal to `head_count` for plain multi-head attention).
    pub head_count_kv: u32,
    /// Feed-forward width (`n_ff`).
    pub feed_forward_length: u32,
    /// Training context length written to the metadata.
    pub context_length: u32,
    /// `general.name`.
    pub name: String,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            seed: 0x1a3a_c99d,
            embedding_length: 64,
            block_count: 2,
            head_count: 4,
            head_count_kv: 4,
            feed_forward_length: 128,
            context_length: 2048,
            name: "lmcpp demo".to_owned(),
        }
    }
}

impl DemoOptions {
    /// The default options with another seed.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }
}

/// The result of [`write_demo_model`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DemoModel {
    /// Where the model was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Number of tokens in its vocabulary.
    pub vocab_size: u64,
}

/// Writes a small llama model with the tokenizer of `vocab_gguf` to `out`, atomically.
///
/// `vocab_gguf` is a vocab-only GGUF such as `models/ggml-vocab-llama-spm.gguf` from the
/// llama.cpp source; every `tokenizer.*` key is copied and `tokenizer.chat_template` is set
/// to [`DEMO_CHAT_TEMPLATE`]. Blocking (hashing-free, ~17 MB of writes for the default shape).
pub fn write_demo_model(vocab_gguf: &Path, out: &Path, opts: &DemoOptions) -> Result<DemoModel> {
    let vocab = read_gguf(vocab_gguf)?;
    let n_vocab = match vocab.metadata.get("tokenizer.ggml.tokens") {
        Some(GgufValue::Array(tokens)) if !tokens.is_empty() => tokens.len() as u64,
        _ => {
            return Err(crate::gguf::error::Error::Write {
                reason: format!(
                    "{} has no tokenizer.ggml.tokens; pass a vocab GGUF such as models/ggml-vocab-llama-spm.gguf",
                    vocab_gguf.display()
                ),
            }.into());
        }
    };
    let invalid = |reason: &str| {
        crate::gguf::error::Error::Write {
            reason: format!("invalid demo options: {reason}"),
        }
        .into()
    };
    if opts.head_count == 0 || opts.head_count_kv == 0 || opts.block_count == 0 {
        return Err(invalid("head and block counts must be positive"));
    }
    if !opts.embedding_length.is_multiple_of(opts.head_count)
        || !opts.head_count.is_multiple_of(opts.head_count_kv)
    {
        return Err(invalid(
            "embedding_length must divide by head_count, and head_count by head_count_kv",
        ));
    }
    let head_dim = opts.embedding_length / opts.head_count;
    if !head_dim.is_multiple_of(2) {
        return Err(invalid("the head dimension must be even for rope"));
    }

    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama")
        .set("general.name", opts.name.as_str())
        // 0 is LLAMA_FTYPE_ALL_F32.
        .set("general.file_type", 0u32)
        .set("llama.vocab_size", n_vocab as u32)
        .set("llama.context_length", opts.context_length)
        .set("llama.embedding_length", opts.embedding_length)
        .set("llama.block_count", opts.block_count)
        .set("llama.feed_forward_length", opts.feed_forward_length)
        .set("llama.attention.head_count", opts.head_count)
        .set("llama.attention.head_count_kv", opts.head_count_kv)
        .set("llama.attention.layer_norm_rms_epsilon", 1e-5f32)
        .set("llama.rope.dimension_count", head_dim)
        .set("llama.rope.freq_base", 10_000f32);
    for (key, value) in vocab.metadata.iter() {
        if key.starts_with("tokenizer.") {
            w.set(key, value.clone());
        }
    }
    w.set("tokenizer.chat_template", DEMO_CHAT_TEMPLATE);

    let n_embd = u64::from(opts.embedding_length);
    let n_ff = u64::from(opts.feed_forward_length);
    let n_kv = n_embd / u64::from(opts.head_count) * u64::from(opts.head_count_kv);
    let mut rng = SplitMix64(opts.seed);
    let mut random = |w: &mut GgufWriter, name: &str, dims: &[u64]| -> Result<()> {
        let n: u64 = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.next_weight()).collect();
        w.add_f32_tensor(name, dims, &values).map(|_| ())
    };
    let ones = |w: &mut GgufWriter, name: &str, n: u64| -> Result<()> {
        w.add_f32_tensor(name, &[n], &vec![1.0; n as usize])
            .map(|_| ())
    };

    // Shapes as in llama.cpp's `src/models/llama.cpp`, innermost dimension first.
    random(&mut w, "token_embd.weight", &[n_embd, n_vocab])?;
    ones(&mut w, "output_norm.weight", n_embd)?;
    random(&mut w, "output.weight", &[n_embd, n_vocab])?;
    for i in 0..opts.block_count {
        ones(&mut w, &format!("blk.{i}.attn_norm.weight"), n_embd)?;
        random(&mut w, &format!("blk.{i}.attn_q.weight"), &[n_embd, n_embd])?;
        random(&mut w, &format!("blk.{i}.attn_k.weight"), &[n_embd, n_kv])?;
        random(&mut w, &format!("blk.{i}.attn_v.weight"), &[n_embd, n_kv])?;
        random(
            &mut w,
            &format!("blk.{i}.attn_output.weight"),
            &[n_embd, n_embd],
        )?;
        ones(&mut w, &format!("blk.{i}.ffn_norm.weight"), n_embd)?;
        random(&mut w, &format!("blk.{i}.ffn_gate.weight"), &[n_embd, n_ff])?;
        random(&mut w, &format!("blk.{i}.ffn_down.weight"), &[n_ff, n_embd])?;
        random(&mut w, &format!("blk.{i}.ffn_up.weight"), &[n_embd, n_ff])?;
    }

    let size = w.write_file(out)?;
    Ok(DemoModel {
        path: out.to_path_buf(),
        size,
        vocab_size: n_vocab,
    })
}

/// The splitmix64 generator: tiny, fast, and identical on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A weight uniform in [-0.1, 0.1), built from 24 random bits so it is exact in `f32`.
    fn next_weight(&mut self) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32;
        (unit * 2.0 - 1.0) * 0.1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn splitmix_matches_reference_values() {
        // First outputs of splitmix64 seeded with 0, as published with the algorithm.
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn weights_are_bounded() {
        let mut r = SplitMix64(7);
        for _ in 0..10_000 {
            let w = r.next_weight();
            assert!((-0.1..0.1).contains(&w), "{w}");
        }
    }
}
