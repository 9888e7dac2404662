//! How much memory `llama-server` needs for a model, estimated from its GGUF metadata alone.
//!
//! The estimate is weights + KV cache + compute buffers:
//!
//! - **Weights**: the sum of the tensor data sizes (what llama.cpp maps or loads).
//! - **KV cache**: `cells × Σ_layers (n_head_kv · head_dim_k · bytes(type_k) + n_head_kv ·
//!   head_dim_v · bytes(type_v))`, f16 unless another cache type is given. The number of
//!   cells is the *total* context, because llama-server does not give every slot its own
//!   `--ctx-size`: it splits one cache of `--ctx-size` cells across `--parallel` slots (checked
//!   against llama.cpp b11312, `src/llama-context.cpp` and `tools/server/server.cpp`):
//!   - without `--parallel`, the server runs 4 slots on one unified cache of `--ctx-size`
//!     cells (`kv_unified = true`);
//!   - with `--parallel N` (and no `--kv-unified`), each slot gets `ctx / N` cells rounded
//!     up to 256 and the cache holds `N ×` that;
//!   - without `--ctx-size` (or `0`), the context is the model's trained context
//!     (`<arch>.context_length`); with an explicit non-unified `--parallel N`, llama.cpp's
//!     default `--fit` makes that `N ×` the trained context, so every slot can use all of it;
//!   - the total is padded to a multiple of 256 cells.
//!
//!   Sliding-window layers and MLA caches are counted as full attention layers and recurrent
//!   state as nothing more: an over-estimate for those models, never an under-estimate of
//!   the attention cache.
//! - **Compute**: llama.cpp reserves graph buffers whose size depends on the backend and
//!   the version; this counts what dominates them on the CPU with flash attention
//!   (llama.cpp's default where the backend has it), taking the larger of what the versions
//!   seen reserve: the attention mask (`cells × n_ubatch` f16), activations
//!   (`n_ubatch × (8·n_embd + 3·n_ff)` f32), logits for a whole batch (`n_vocab × n_ubatch`
//!   f32; llama.cpp 4227c9b reserves them, b11312 only per slot) and the output buffer
//!   (`n_vocab × slots` f32). For the demo model this is 66.7 MiB where llama-server reports
//!   63.0 MiB (4227c9b) and 3.5 MiB (b11312) of compute and output buffers.
//!
//! The file is untrusted: every product is checked, an overflow saturates at `u64::MAX` (a
//! model that size fits no budget), and a missing key is replaced by a documented fallback
//! that is noted in [`MemoryEstimate::assumptions`]. Nothing here panics.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::GgufFile;
use super::value::{GgmlType, GgufArray, GgufValue};
use crate::error::Result;

/// Cells llama.cpp pads the context to (`GGML_PAD(n_ctx, 256)`).
const CTX_PAD: u64 = 256;
/// Slots llama-server runs when `--parallel` is not given (on one unified cache).
pub const AUTO_SLOTS: u64 = 4;
/// llama.cpp's default `--ubatch-size`.
pub const DEFAULT_UBATCH: u64 = 512;
/// The context assumed when the model states none (llama.cpp would refuse to start then).
const FALLBACK_CTX: u64 = 4096;

/// A KV cache element type, as `--cache-type-k` / `--cache-type-v` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[allow(missing_docs)] // The variants are llama.cpp's own cache type names.
pub enum KvCacheType {
    F32,
    #[default]
    F16,
    Bf16,
    Q8_0,
    Q4_0,
    Q4_1,
    Iq4Nl,
    Q5_0,
    Q5_1,
}

impl KvCacheType {
    /// Every type llama-server accepts for its cache, with its flag value.
    const ALL: [(Self, &'static str, GgmlType); 9] = [
        (Self::F32, "f32", GgmlType::F32),
        (Self::F16, "f16", GgmlType::F16),
        (Self::Bf16, "bf16", GgmlType::BF16),
        (Self::Q8_0, "q8_0", GgmlType::Q8_0),
        (Self::Q4_0, "q4_0", GgmlType::Q4_0),
        (Self::Q4_1, "q4_1", GgmlType::Q4_1),
        (Self::Iq4Nl, "iq4_nl", GgmlType::IQ4NL),
        (Self::Q5_0, "q5_0", GgmlType::Q5_0),
        (Self::Q5_1, "q5_1", GgmlType::Q5_1),
    ];

    /// The type a `--cache-type-k` value names (case-insensitive), if llama-server knows it.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .iter()
            .find(|(_, name, _)| name.eq_ignore_ascii_case(s))
            .map(|(ty, _, _)| *ty)
    }

    /// The flag value (`f16`, `q8_0`).
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The names llama-server accepts, for error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|(_, name, _)| *name)
    }

    fn row(self) -> &'static (Self, &'static str, GgmlType) {
        // Every variant has a row; the unit test `every_cache_type_parses` keeps it so.
        Self::ALL
            .iter()
            .find(|row| row.0 == self)
            .unwrap_or(&Self::ALL[1])
    }

    /// Bytes of a row of `n` elements (ggml's `ggml_row_size`, rounded up to whole blocks).
    fn row_bytes(self, n: u64) -> Option<u64> {
        let ty = self.row().2;
        n.div_ceil(ty.block_elements())
            .checked_mul(ty.block_bytes())
    }
}

impl std::fmt::Display for KvCacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The server settings the estimate depends on (llama-server's flags and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EstimateOptions {
    /// `--ctx-size`; `None` or `0` is the model's trained context.
    pub ctx_size: Option<u64>,
    /// `--parallel`; `None` is llama-server's auto: [`AUTO_SLOTS`] slots on a unified cache.
    pub parallel: Option<u64>,
    /// `--kv-unified`: one cache shared by all slots (implied when `parallel` is `None`).
    pub kv_unified: bool,
    /// `--cache-type-k`.
    pub cache_type_k: KvCacheType,
    /// `--cache-type-v`.
    pub cache_type_v: KvCacheType,
    /// `--ubatch-size`.
    pub ubatch: u64,
}

impl Default for EstimateOptions {
    fn default() -> Self {
        Self {
            ctx_size: None,
            parallel: None,
            kv_unified: false,
            cache_type_k: KvCacheType::F16,
            cache_type_v: KvCacheType::F16,
            ubatch: DEFAULT_UBATCH,
        }
    }
}

impl EstimateOptions {
    /// The defaults with `--ctx-size ctx_size`.
    pub fn with_ctx_size(ctx_size: u64) -> Self {
        Self {
            ctx_size: Some(ctx_size),
            ..Self::default()
        }
    }
}

/// How much memory a model needs in llama-server, in bytes, with how it was counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemoryEstimate {
    /// Weights + KV cache + compute.
    pub total_bytes: u64,
    /// Tensor data.
    pub weights_bytes: u64,
    /// The KV cache for `ctx_size` cells.
    pub kv_cache_bytes: u64,
    /// Compute and output buffers (see the module docs for the formula).
    pub compute_bytes: u64,
    /// Total context (KV cells) after llama.cpp's rounding.
    pub ctx_size: u64,
    /// Context each slot can use.
    pub ctx_per_slot: u64,
    /// Number of slots (`--parallel`, or the server's automatic choice).
    pub slots: u64,
    /// Whether the slots share one cache.
    pub kv_unified: bool,
    /// K cache type.
    pub cache_type_k: KvCacheType,
    /// V cache type.
    pub cache_type_v: KvCacheType,
    /// Fallbacks taken for missing or implausible metadata, one sentence each (empty when
    /// every key was there).
    pub assumptions: Vec<String>,
}

/// Estimates what `file` needs in llama-server run with `opts`. Never fails: missing keys
/// are replaced by the fallbacks listed in [`MemoryEstimate::assumptions`].
///
/// For a split model, `file` is the first part and only its tensors are counted; see
/// [`estimate_path`] for the whole model.
pub fn estimate(file: &GgufFile, opts: &EstimateOptions) -> MemoryEstimate {
    estimate_parts(file, &[], opts)
}

/// [`estimate`] of a split model: the metadata of `first`, the tensors of every part.
pub fn estimate_parts(
    first: &GgufFile,
    others: &[GgufFile],
    opts: &EstimateOptions,
) -> MemoryEstimate {
    let mut notes = Notes::default();
    let hp = Hparams::read(first, &mut notes);
    let (ctx_size, ctx_per_slot, slots, kv_unified) = context(&hp, opts, &mut notes);

    let weights_bytes = std::iter::once(first)
        .chain(others)
        .flat_map(|f| &f.tensors)
        .try_fold(0u64, |sum, t| sum.checked_add(t.size))
        .unwrap_or_else(|| notes.overflow("the tensor sizes"));

    let per_cell = hp
        .kv_bytes_per_cell(opts.cache_type_k, opts.cache_type_v)
        .unwrap_or_else(|| notes.overflow("the KV cache per cell"));
    let kv_cache_bytes = per_cell
        .checked_mul(ctx_size)
        .unwrap_or_else(|| notes.overflow("the KV cache"));

    let compute_bytes = compute(&hp, ctx_size, slots, opts.ubatch.max(1))
        .unwrap_or_else(|| notes.overflow("the compute buffers"));

    let total_bytes = weights_bytes
        .checked_add(kv_cache_bytes)
        .and_then(|s| s.checked_add(compute_bytes))
        .unwrap_or_else(|| notes.overflow("the total"));

    MemoryEstimate {
        total_bytes,
        weights_bytes,
        kv_cache_bytes,
        compute_bytes,
        ctx_size,
        ctx_per_slot,
        slots,
        kv_unified,
        cache_type_k: opts.cache_type_k,
        cache_type_v: opts.cache_type_v,
        assumptions: notes.0,
    }
}

/// Reads the GGUF file at `path` and estimates it; a split model's first part
/// (`<name>-00001-of-00003.gguf`) brings its other parts, found by name next to it, as
/// llama.cpp finds them. Blocking reads run on the blocking pool.
pub async fn estimate_path(path: &Path, opts: &EstimateOptions) -> Result<MemoryEstimate> {
    let first = super::read_gguf_async(path).await?;
    let mut others = Vec::new();
    for part in split_siblings(path, &first) {
        others.push(super::read_gguf_async(&part).await?);
    }
    Ok(estimate_parts(&first, &others, opts))
}

/// The other parts of a split model whose first part is `path`: `split.count` says how
/// many, the file name says how they are called. Empty for a single file.
fn split_siblings(path: &Path, first: &GgufFile) -> Vec<PathBuf> {
    let count = first.metadata.get_u64("split.count").unwrap_or(1);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    // `<prefix>-00001-of-NNNNN.gguf`, where NNNNN is the count; llama.cpp caps parts
    // at 99999, so anything larger is not a split model's name.
    let suffix = format!("-00001-of-{count:05}.gguf");
    let Some(prefix) = name.strip_suffix(&suffix) else {
        return Vec::new();
    };
    if !(2..=99_999).contains(&count) {
        return Vec::new();
    }
    (2..=count)
        .map(|i| path.with_file_name(format!("{prefix}-{i:05}-of-{count:05}.gguf")))
        .collect()
}

/// The fallbacks taken, in the order they were taken, each once.
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    fn note(&mut self, text: String) {
        if !self.0.contains(&text) {
            self.0.push(text);
        }
    }

    /// Notes an overflow and returns the saturated value.
    fn overflow(&mut self, what: &str) -> u64 {
        self.note(format!(
            "{what} overflow 64 bits; counted as the largest size"
        ));
        u64::MAX
    }
}

/// A per-layer count: one value for every layer, or one per layer (llama.cpp accepts both).
enum PerLayer<'a> {
    All(u64),
    Each(&'a GgufArray),
}

/// The hyperparameters the estimate reads, with fallbacks applied.
struct Hparams<'a> {
    n_ctx_train: Option<u64>,
    n_layer: u64,
    n_embd: u64,
    n_ff: u64,
    n_vocab: u64,
    /// Heads of the query, per layer (the divisor of the default head size).
    n_head: PerLayer<'a>,
    n_head_kv: PerLayer<'a>,
    head_dim_k: Option<u64>,
    head_dim_v: Option<u64>,
}

impl<'a> Hparams<'a> {
    fn read(file: &'a GgufFile, notes: &mut Notes) -> Self {
        let md = &file.metadata;
        let arch = md.get_str("general.architecture").unwrap_or_default();
        if arch.is_empty() {
            notes.note("no general.architecture; per-model keys cannot be found".to_owned());
        }
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let scalar = |suffix: &str| md.get_u64(&key(suffix));

        // The token embedding's shape is [n_embd, n_vocab], innermost first.
        let token_embd = file.tensor("token_embd.weight");
        let n_embd = scalar("embedding_length")
            .or_else(|| {
                let v = token_embd.and_then(|t| t.dims.first().copied());
                if v.is_some() {
                    notes.note(format!(
                        "no {arch}.embedding_length; taken from token_embd.weight"
                    ));
                }
                v
            })
            .unwrap_or_else(|| {
                notes.note(format!(
                    "no {arch}.embedding_length and no token_embd.weight; activations and the \
                     KV cache counted as zero-width"
                ));
                0
            });
        let n_layer = scalar("block_count").unwrap_or_else(|| {
            let counted = layers_named(file);
            notes.note(format!(
                "no {arch}.block_count; {counted} layers counted from the tensor names"
            ));
            counted
        });
        let n_ff = match md.get(&key("feed_forward_length")) {
            Some(v) => max_count(v).unwrap_or(0),
            None => {
                notes.note(format!(
                    "no {arch}.feed_forward_length; 4 × n_embd assumed for activations"
                ));
                n_embd.saturating_mul(4)
            }
        };
        let n_vocab = scalar("vocab_size")
            .or_else(|| md.get("tokenizer.ggml.tokens").map(count_of))
            .or_else(|| token_embd.and_then(|t| t.dims.get(1).copied()))
            .unwrap_or(0);

        let n_head = match md.get(&key("attention.head_count")).and_then(per_layer) {
            Some(h) => h,
            None => {
                notes.note(format!(
                    "no {arch}.attention.head_count; the KV cache counted as n_embd per layer \
                     for keys and for values (full multi-head attention)"
                ));
                PerLayer::All(1)
            }
        };
        let n_head_kv = match md.get(&key("attention.head_count_kv")).and_then(per_layer) {
            Some(h) => h,
            // llama.cpp's own default: as many KV heads as query heads.
            None => match &n_head {
                PerLayer::All(n) => PerLayer::All(*n),
                PerLayer::Each(a) => PerLayer::Each(a),
            },
        };
        // With no head count at all, one "head" of n_embd is full attention.
        let head_dim_k = scalar("attention.key_length");
        let head_dim_v = scalar("attention.value_length");
        Self {
            n_ctx_train: scalar("context_length").filter(|&c| c > 0),
            n_layer,
            n_embd,
            n_ff,
            n_vocab,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
        }
    }

    /// KV bytes one cell takes over all layers.
    fn kv_bytes_per_cell(&self, type_k: KvCacheType, type_v: KvCacheType) -> Option<u64> {
        // Layers beyond a per-layer array's end take its last value (llama.cpp refuses such
        // a file; the estimate stays conservative instead).
        let per_layer = |count: &PerLayer<'_>, il: u64| -> u64 {
            match count {
                PerLayer::All(n) => *n,
                PerLayer::Each(a) => nth(a, il)
                    .or_else(|| nth(a, (a.len() as u64).checked_sub(1)?))
                    .unwrap_or(0),
            }
        };
        let layer_bytes = |il: u64| -> Option<u64> {
            let n_head = per_layer(&self.n_head, il);
            let n_head_kv = per_layer(&self.n_head_kv, il);
            // llama.cpp's default head size is n_embd / n_head.
            let default_dim = self.n_embd.checked_div(n_head).unwrap_or(self.n_embd);
            let k = n_head_kv.checked_mul(self.head_dim_k.unwrap_or(default_dim))?;
            let v = n_head_kv.checked_mul(self.head_dim_v.unwrap_or(default_dim))?;
            type_k.row_bytes(k)?.checked_add(type_v.row_bytes(v)?)
        };
        let arrays = [&self.n_head, &self.n_head_kv]
            .iter()
            .filter_map(|c| match c {
                PerLayer::Each(a) => Some(a.len() as u64),
                PerLayer::All(_) => None,
            })
            .max();
        match arrays {
            // Uniform layers: one product, however many layers the file claims.
            None => layer_bytes(0)?.checked_mul(self.n_layer),
            // Per-layer arrays: each listed layer once (arrays are capped by the reader),
            // the rest as the last listed one.
            Some(listed) => {
                let listed = listed.min(self.n_layer);
                let mut sum = 0u64;
                for il in 0..listed {
                    sum = sum.checked_add(layer_bytes(il)?)?;
                }
                let rest = self.n_layer - listed;
                if rest > 0 {
                    let last = layer_bytes(listed.saturating_sub(1))?;
                    sum = sum.checked_add(last.checked_mul(rest)?)?;
                }
                Some(sum)
            }
        }
    }
}

/// Resolves the context as llama-server b11312 does: `(total cells, cells per slot, slots,
/// unified)`.
fn context(hp: &Hparams<'_>, opts: &EstimateOptions, notes: &mut Notes) -> (u64, u64, u64, bool) {
    let (slots, unified) = match opts.parallel {
        None => (AUTO_SLOTS, true),
        Some(n) => (n.max(1), opts.kv_unified),
    };
    let mut trained = || {
        hp.n_ctx_train.unwrap_or_else(|| {
            notes.note(format!(
                "the model states no trained context; {FALLBACK_CTX} assumed (pass --ctx-size)"
            ));
            FALLBACK_CTX
        })
    };
    let requested = match opts.ctx_size.filter(|&c| c > 0) {
        Some(c) => c,
        // `--fit` (on by default) gives every non-unified slot the whole trained context.
        None if !unified => trained().saturating_mul(slots),
        None => trained(),
    };
    let total = pad(requested);
    if unified {
        (total, total, slots, true)
    } else {
        let per_slot = pad(total / slots).max(CTX_PAD);
        (per_slot.saturating_mul(slots), per_slot, slots, false)
    }
}

/// Rounds up to a multiple of [`CTX_PAD`], saturating.
fn pad(n: u64) -> u64 {
    n.div_ceil(CTX_PAD).saturating_mul(CTX_PAD)
}

/// Compute and output buffers (see the module docs).
fn compute(hp: &Hparams<'_>, ctx: u64, slots: u64, ubatch: u64) -> Option<u64> {
    let mask = ctx.checked_mul(ubatch)?.checked_mul(2)?;
    let width = hp
        .n_embd
        .checked_mul(8)?
        .checked_add(hp.n_ff.checked_mul(3)?)?;
    let activations = ubatch.checked_mul(width)?.checked_mul(4)?;
    let logits = hp.n_vocab.checked_mul(ubatch)?.checked_mul(4)?;
    let output = hp.n_vocab.checked_mul(slots)?.checked_mul(4)?;
    mask.checked_add(activations)?
        .checked_add(logits)?
        .checked_add(output)
}

/// One past the highest `blk.N.` in the tensor names.
fn layers_named(file: &GgufFile) -> u64 {
    file.tensors
        .iter()
        .filter_map(|t| {
            let rest = t.name.strip_prefix("blk.")?;
            rest.split('.').next()?.parse::<u64>().ok()
        })
        .max()
        .map_or(0, |n| n.saturating_add(1))
}

/// A count that is one integer or one per layer.
fn per_layer(v: &GgufValue) -> Option<PerLayer<'_>> {
    match v {
        GgufValue::Array(a) if !a.is_empty() && nth(a, 0).is_some() => Some(PerLayer::Each(a)),
        other => other.as_u64().map(PerLayer::All),
    }
}

/// The largest count of a value that is one integer or one per layer.
fn max_count(v: &GgufValue) -> Option<u64> {
    match v {
        GgufValue::Array(a) => (0..a.len() as u64).filter_map(|i| nth(a, i)).max(),
        other => other.as_u64(),
    }
}

/// The number of elements of an array value, or the value of an integer.
fn count_of(v: &GgufValue) -> u64 {
    match v {
        GgufValue::Array(a) => a.len() as u64,
        other => other.as_u64().unwrap_or(0),
    }
}

/// Element `i` of an integer array as a non-negative count.
fn nth(a: &GgufArray, i: u64) -> Option<u64> {
    let i = usize::try_from(i).ok()?;
    match a {
        GgufArray::U8(v) => v.get(i).map(|&x| u64::from(x)),
        GgufArray::U16(v) => v.get(i).map(|&x| u64::from(x)),
        GgufArray::U32(v) => v.get(i).map(|&x| u64::from(x)),
        GgufArray::U64(v) => v.get(i).copied(),
        GgufArray::I8(v) => v.get(i).and_then(|&x| u64::try_from(x).ok()),
        GgufArray::I16(v) => v.get(i).and_then(|&x| u64::try_from(x).ok()),
        GgufArray::I32(v) => v.get(i).and_then(|&x| u64::try_from(x).ok()),
        GgufArray::I64(v) => v.get(i).and_then(|&x| u64::try_from(x).ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::gguf::{GgufWriter, read_gguf_bytes};

    /// A llama-shaped model with the given metadata and one small tensor per layer.
    fn model(keys: &[(&str, GgufValue)], layers: u64) -> GgufFile {
        let mut w = GgufWriter::new();
        w.set("general.architecture", "llama");
        for (k, v) in keys {
            w.set(*k, v.clone());
        }
        for il in 0..layers {
            w.add_f32_tensor(&format!("blk.{il}.attn_norm.weight"), &[4], &[1.0; 4])
                .unwrap();
        }
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();
        read_gguf_bytes(&bytes).unwrap()
    }

    fn demo_like() -> GgufFile {
        model(
            &[
                ("llama.context_length", 2048u32.into()),
                ("llama.embedding_length", 64u32.into()),
                ("llama.block_count", 2u32.into()),
                ("llama.feed_forward_length", 128u32.into()),
                ("llama.attention.head_count", 4u32.into()),
                ("llama.attention.head_count_kv", 4u32.into()),
                ("llama.vocab_size", 32000u32.into()),
            ],
            2,
        )
    }

    #[test]
    fn every_cache_type_parses() {
        for (ty, name, _) in KvCacheType::ALL {
            assert_eq!(KvCacheType::parse(name), Some(ty));
            assert_eq!(KvCacheType::parse(&name.to_uppercase()), Some(ty));
            assert_eq!(ty.name(), name);
        }
        assert_eq!(KvCacheType::parse("q3_k"), None);
        // q8_0: 32 elements in 34 bytes.
        assert_eq!(KvCacheType::Q8_0.row_bytes(64), Some(68));
        assert_eq!(KvCacheType::F16.row_bytes(64), Some(128));
    }

    #[test]
    fn the_demo_shape_matches_what_llama_server_reports() {
        let file = demo_like();
        let e = estimate(&file, &EstimateOptions::default());
        // llama-server b11312 on the demo model: "n_slots = 4, n_ctx_slot = 2048, kv_unified
        // = 'true'" and "llama_kv_cache: size = 1.00 MiB (2048 cells, 2 layers, 4/1 seqs)".
        assert_eq!((e.ctx_size, e.ctx_per_slot, e.slots), (2048, 2048, 4));
        assert!(e.kv_unified);
        assert_eq!(e.kv_cache_bytes, 2 * 2048 * (64 + 64) * 2);
        assert_eq!(e.kv_cache_bytes, 1 << 20);
        assert_eq!(e.weights_bytes, 2 * 16);
        // mask 2048·512·2 + activations 512·(8·64 + 3·128)·4 + logits 32000·512·4
        // + output 32000·4·4
        assert_eq!(
            e.compute_bytes,
            2_097_152 + 1_835_008 + 65_536_000 + 512_000
        );
        assert_eq!(
            e.total_bytes,
            e.weights_bytes + e.kv_cache_bytes + e.compute_bytes
        );
        assert!(e.assumptions.is_empty(), "{:?}", e.assumptions);
    }

    #[test]
    fn contexts_resolve_as_llama_server_does() {
        let file = demo_like();
        let run = |ctx: Option<u64>, parallel: Option<u64>, unified: bool| {
            let e = estimate(
                &file,
                &EstimateOptions {
                    ctx_size: ctx,
                    parallel,
                    kv_unified: unified,
                    ..EstimateOptions::default()
                },
            );
            (e.ctx_size, e.ctx_per_slot, e.slots, e.kv_unified)
        };
        // (ctx, parallel, --kv-unified) → (cells, per slot, slots, unified)
        let table = [
            ((Some(1000), None, false), (1024, 1024, 4, true)),
            ((Some(0), None, false), (2048, 2048, 4, true)),
            ((Some(8192), Some(4), false), (8192, 2048, 4, false)),
            ((Some(1000), Some(3), false), (1536, 512, 3, false)),
            ((Some(8192), Some(4), true), (8192, 8192, 4, true)),
            ((None, Some(2), false), (4096, 2048, 2, false)),
            ((None, Some(2), true), (2048, 2048, 2, true)),
            ((Some(100), Some(1), false), (256, 256, 1, false)),
            ((Some(100), Some(0), false), (256, 256, 1, false)),
        ];
        for ((ctx, par, uni), want) in table {
            assert_eq!(run(ctx, par, uni), want, "{ctx:?} {par:?} {uni}");
        }
    }

    #[test]
    fn grouped_query_attention_and_explicit_head_sizes_count() {
        // 8 query heads of 128, 2 KV heads, key 192 / value 128 wide: per layer and cell
        // 2·192·2 + 2·128·2 bytes.
        let file = model(
            &[
                ("llama.context_length", 4096u32.into()),
                ("llama.embedding_length", 1024u32.into()),
                ("llama.block_count", 3u32.into()),
                ("llama.feed_forward_length", 4096u32.into()),
                ("llama.attention.head_count", 8u32.into()),
                ("llama.attention.head_count_kv", 2u32.into()),
                ("llama.attention.key_length", 192u32.into()),
                ("llama.attention.value_length", 128u32.into()),
            ],
            3,
        );
        let e = estimate(&file, &EstimateOptions::with_ctx_size(4096));
        assert_eq!(e.kv_cache_bytes, 4096 * 3 * (2 * 192 * 2 + 2 * 128 * 2));
        let q8 = estimate(
            &file,
            &EstimateOptions {
                cache_type_k: KvCacheType::Q8_0,
                cache_type_v: KvCacheType::Q8_0,
                ..EstimateOptions::with_ctx_size(4096)
            },
        );
        // q8_0 rows: 384 elements → 12 blocks of 34 bytes; 256 → 8 blocks.
        assert_eq!(q8.kv_cache_bytes, 4096 * 3 * (12 * 34 + 8 * 34));
    }

    #[test]
    fn per_layer_head_counts_are_summed_per_layer() {
        // A hybrid: layer 1 has no attention (0 KV heads).
        let file = model(
            &[
                ("llama.context_length", 256u32.into()),
                ("llama.embedding_length", 64u32.into()),
                ("llama.block_count", 3u32.into()),
                ("llama.feed_forward_length", 64u32.into()),
                ("llama.attention.head_count", 4u32.into()),
                (
                    "llama.attention.head_count_kv",
                    GgufArray::I32(vec![4, 0, 2]).into(),
                ),
            ],
            3,
        );
        let e = estimate(&file, &EstimateOptions::with_ctx_size(256));
        // Head size 16: layers of 4, 0 and 2 KV heads, K and V in f16.
        assert_eq!(e.kv_cache_bytes, 256 * (4 + 2) * 16 * 2 * 2);
    }

    #[tokio::test]
    async fn a_split_model_counts_every_part() {
        let dir = tempfile::tempdir().unwrap();
        let part = |i: u32, floats: usize| {
            let mut w = GgufWriter::new();
            w.set("general.architecture", "llama");
            w.set("split.count", 2u32);
            w.add_f32_tensor(&format!("t{i}"), &[floats as u64], &vec![0.0; floats])
                .unwrap();
            let path = dir.path().join(format!("m-{i:05}-of-00002.gguf"));
            w.write_file(&path).unwrap();
            path
        };
        let first = part(1, 8);
        part(2, 24);
        let e = estimate_path(&first, &EstimateOptions::with_ctx_size(256))
            .await
            .unwrap();
        assert_eq!(e.weights_bytes, (8 + 24) * 4);
        // A missing part is an error, not a smaller estimate.
        std::fs::remove_file(dir.path().join("m-00002-of-00002.gguf")).unwrap();
        assert!(
            estimate_path(&first, &EstimateOptions::default())
                .await
                .is_err()
        );
    }

    #[test]
    fn missing_keys_fall_back_and_say_so() {
        let file = model(&[], 5);
        let e = estimate(&file, &EstimateOptions::default());
        assert_eq!(e.ctx_size, FALLBACK_CTX);
        let text = e.assumptions.join("\n");
        for word in ["block_count", "head_count", "trained context"] {
            assert!(text.contains(word), "{word}: {text}");
        }
    }

    #[test]
    fn absurd_metadata_saturates_instead_of_overflowing() {
        let file = model(
            &[
                ("llama.context_length", GgufValue::U64(u64::MAX)),
                ("llama.embedding_length", GgufValue::U64(u64::MAX / 3)),
                ("llama.block_count", GgufValue::U64(u64::MAX)),
                ("llama.attention.head_count", 1u32.into()),
            ],
            1,
        );
        let e = estimate(&file, &EstimateOptions::default());
        assert_eq!(e.total_bytes, u64::MAX);
        assert!(
            e.assumptions.iter().any(|a| a.contains("overflow")),
            "{:?}",
            e.assumptions
        );
    }

    /// Any integer-ish value, or a string, as a metadata value.
    fn any_value() -> impl Strategy<Value = GgufValue> {
        prop_oneof![
            any::<u32>().prop_map(GgufValue::U32),
            any::<u64>().prop_map(GgufValue::U64),
            any::<i32>().prop_map(GgufValue::I32),
            any::<i64>().prop_map(GgufValue::I64),
            (0u64..1 << 20).prop_map(GgufValue::U64),
            "[a-z]{0,4}".prop_map(GgufValue::String),
            proptest::collection::vec(any::<i32>(), 0..8)
                .prop_map(|v| GgufValue::Array(GgufArray::I32(v))),
            proptest::collection::vec(any::<u64>(), 0..8)
                .prop_map(|v| GgufValue::Array(GgufArray::U64(v))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random metadata never panics, and the total is the saturating sum of its parts.
        #[test]
        fn random_metadata_never_panics(
            values in proptest::collection::vec(proptest::option::of(any_value()), 10),
            ctx in proptest::option::of(any::<u64>()),
            parallel in proptest::option::of(any::<u64>()),
            unified in any::<bool>(),
            ubatch in any::<u64>(),
        ) {
            let keys = [
                "llama.context_length", "llama.embedding_length", "llama.block_count",
                "llama.feed_forward_length", "llama.attention.head_count",
                "llama.attention.head_count_kv", "llama.attention.key_length",
                "llama.attention.value_length", "llama.vocab_size", "general.architecture",
            ];
            let mut w = GgufWriter::new();
            for (k, v) in keys.iter().zip(values) {
                if let Some(v) = v {
                    w.set(*k, v);
                }
            }
            let mut bytes = Vec::new();
            w.write_to(&mut bytes).unwrap();
            let file = read_gguf_bytes(&bytes).unwrap();
            let e = estimate(&file, &EstimateOptions {
                ctx_size: ctx,
                parallel,
                kv_unified: unified,
                ubatch,
                ..EstimateOptions::default()
            });
            let sum = e.weights_bytes.checked_add(e.kv_cache_bytes)
                .and_then(|s| s.checked_add(e.compute_bytes));
            prop_assert_eq!(e.total_bytes, sum.unwrap_or(u64::MAX));
            prop_assert!(e.ctx_size >= e.ctx_per_slot.min(e.ctx_size));
            prop_assert!(e.slots >= 1);
        }
    }
}
