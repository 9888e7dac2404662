//! GGUF model files: a strict reader, a writer, typed values, and a human-sized summary.
//!
//! GGUF is llama.cpp's model format: a header (`GGUF`, version, counts), typed metadata
//! key/values, tensor infos (name, shape, ggml type, offset), then the aligned tensor data.
//! Dimensions are stored innermost first (`ne0`), as ggml does.

pub(crate) mod error;
pub mod estimate;
mod reader;
mod summary;
mod value;
mod writer;

use std::collections::HashMap;
use std::ops::Range;

use serde::Serialize;

pub use error::Error;
pub(crate) use reader::check_regular;
pub use reader::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, read_gguf, read_gguf_async, read_gguf_bytes, read_gguf_from,
};
pub use summary::GgufSummary;
pub use value::{GgmlType, GgufArray, GgufValue, GgufValueType, file_type_name};
pub use writer::GgufWriter;

/// The parsed header, metadata and tensor infos of a GGUF file (not the tensor data).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GgufFile {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata key/values, in file order.
    pub metadata: GgufMetadata,
    /// Tensor infos, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of the data section and of every tensor offset.
    pub alignment: u64,
    /// Absolute file offset where tensor data starts.
    pub data_offset: u64,
    /// Size of the whole file in bytes.
    pub file_size: u64,
}

impl GgufFile {
    /// Absolute byte range of a tensor's data in the file.
    pub fn tensor_range(&self, tensor: &TensorInfo) -> Range<u64> {
        let start = self.data_offset + tensor.offset;
        start..start + tensor.size
    }

    /// The tensor with this name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A short description of the model: architecture, sizes, tokenizer, template.
    pub fn summary(&self) -> GgufSummary {
        GgufSummary::from_file(self)
    }
}

/// One tensor's info record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Shape, innermost dimension first (ggml `ne[0]`, `ne[1]`, ...).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes, derived from the shape and type.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements (product of the dimensions).
    pub fn element_count(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Metadata key/values in file order, with lookup by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufMetadata {
    entries: Vec<(String, GgufValue)>,
    index: HashMap<String, usize>,
}

impl GgufMetadata {
    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// The string value for `key`, if present and a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(GgufValue::as_str)
    }

    /// The integer value for `key`, if present and a non-negative integer.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(GgufValue::as_u64)
    }

    /// Iterates over the entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &GgufValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `key`, replacing an existing value in place or appending a new entry.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<GgufValue>) {
        let key = key.into();
        let value = value.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => self.push(key, value),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<GgufValue> {
        let i = self.index.remove(key)?;
        let (_, value) = self.entries.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(value)
    }

    /// Appends without checking for duplicates (the reader checks first).
    fn push(&mut self, key: String, value: GgufValue) {
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
    }
}
