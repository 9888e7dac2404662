//! The few facts about a GGUF model a user wants before loading it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::GgufFile;
use super::value::{GgufValue, file_type_name};

/// What a GGUF file contains, in the terms a user cares about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GgufSummary {
    /// GGUF format version.
    pub version: u32,
    /// `general.architecture` (e.g. `llama`).
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// Total number of weights, summed over all tensor shapes.
    pub parameter_count: u64,
    /// `general.file_type` as stored.
    pub file_type: Option<u32>,
    /// Quantisation name: from `general.file_type` when present, else the type holding the
    /// most tensor bytes (e.g. `Q4_K_M`, `F32`).
    pub quantization: Option<String>,
    /// Number of tensors of each ggml type.
    pub tensor_types: BTreeMap<String, usize>,
    /// `<arch>.context_length`: the context the model was trained with.
    pub context_length: Option<u64>,
    /// `<arch>.embedding_length`.
    pub embedding_length: Option<u64>,
    /// `<arch>.block_count`: number of layers.
    pub block_count: Option<u64>,
    /// `<arch>.attention.head_count`.
    pub head_count: Option<u64>,
    /// `<arch>.vocab_size`, else the length of `tokenizer.ggml.tokens`.
    pub vocab_size: Option<u64>,
    /// `tokenizer.ggml.model` (e.g. `llama`, `gpt2`).
    pub tokenizer_model: Option<String>,
    /// `tokenizer.chat_template`, the Jinja chat template, when present.
    pub chat_template: Option<String>,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Number of metadata entries.
    pub metadata_count: usize,
    /// Size of the file in bytes.
    pub file_size: u64,
}

impl GgufSummary {
    pub(super) fn from_file(file: &GgufFile) -> Self {
        let md = &file.metadata;
        let architecture = md.get_str("general.architecture").map(str::to_owned);
        let arch_u64 = |suffix: &str| {
            architecture
                .as_deref()
                .and_then(|arch| md.get_u64(&format!("{arch}.{suffix}")))
        };

        let mut tensor_types = BTreeMap::new();
        let mut bytes_by_type: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut parameter_count = 0u64;
        for t in &file.tensors {
            *tensor_types
                .entry(t.ggml_type.name().to_owned())
                .or_insert(0) += 1;
            *bytes_by_type.entry(t.ggml_type.name()).or_insert(0) += t.size;
            parameter_count = parameter_count.saturating_add(t.element_count());
        }

        let file_type = md
            .get_u64("general.file_type")
            .and_then(|v| u32::try_from(v).ok());
        let quantization = file_type
            .and_then(file_type_name)
            .map(str::to_owned)
            .or_else(|| {
                bytes_by_type
                    .iter()
                    .max_by_key(|(_, bytes)| **bytes)
                    .map(|(name, _)| (*name).to_owned())
            });

        let vocab_size = arch_u64("vocab_size").or_else(|| match md.get("tokenizer.ggml.tokens") {
            Some(GgufValue::Array(tokens)) => Some(tokens.len() as u64),
            _ => None,
        });

        Self {
            version: file.version,
            name: md.get_str("general.name").map(str::to_owned),
            parameter_count,
            file_type,
            quantization,
            tensor_types,
            context_length: arch_u64("context_length"),
            embedding_length: arch_u64("embedding_length"),
            block_count: arch_u64("block_count"),
            head_count: arch_u64("attention.head_count"),
            vocab_size,
            tokenizer_model: md.get_str("tokenizer.ggml.model").map(str::to_owned),
            chat_template: md.get_str("tokenizer.chat_template").map(str::to_owned),
            tensor_count: file.tensors.len(),
            metadata_count: md.len(),
            file_size: file.file_size,
            architecture,
        }
    }
}

/// `4200000` → `4.2M`.
fn human_count(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")];
    for (scale, unit) in UNITS {
        if n >= scale {
            return format!("{:.1}{unit}", n as f64 / scale as f64);
        }
    }
    n.to_string()
}

/// `17438336` → `16.6 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in UNITS {
        if n >= scale {
            return format!("{:.1} {unit}", n as f64 / scale as f64);
        }
    }
    format!("{n} B")
}

impl std::fmt::Display for GgufSummary {
    /// One `label  value` line per known fact, for terminals.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unknown = || "unknown".to_owned();
        let num = |v: Option<u64>| v.map_or_else(unknown, |v| v.to_string());
        let rows = [
            (
                "architecture",
                self.architecture.clone().unwrap_or_else(unknown),
            ),
            ("name", self.name.clone().unwrap_or_else(unknown)),
            ("parameters", human_count(self.parameter_count)),
            (
                "quantization",
                self.quantization.clone().unwrap_or_else(unknown),
            ),
            ("context length", num(self.context_length)),
            ("embedding length", num(self.embedding_length)),
            ("layers", num(self.block_count)),
            ("attention heads", num(self.head_count)),
            (
                "vocabulary",
                match (&self.vocab_size, &self.tokenizer_model) {
                    (Some(n), Some(m)) => format!("{n} tokens ({m} tokenizer)"),
                    (Some(n), None) => format!("{n} tokens"),
                    (None, Some(m)) => format!("{m} tokenizer"),
                    (None, None) => unknown(),
                },
            ),
            (
                "chat template",
                self.chat_template
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), |t| format!("yes ({} bytes)", t.len())),
            ),
            ("tensors", self.tensor_count.to_string()),
            ("file size", human_bytes(self.file_size)),
            ("gguf version", self.version.to_string()),
        ];
        for (i, (label, value)) in rows.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{label:<17}{value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_count(999), "999");
        assert_eq!(human_count(4_200_000), "4.2M");
        assert_eq!(human_count(7_241_732_096), "7.2B");
        assert_eq!(human_bytes(17_438_336), "16.6 MiB");
        assert_eq!(human_bytes(512), "512 B");
    }
}
