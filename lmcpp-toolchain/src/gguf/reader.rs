//! Strict GGUF parser: header, metadata and tensor infos, never trusting a length it reads.
//!
//! Every count and length in the file is checked against hard limits and against the bytes
//! that remain in the file *before* anything is allocated, so a hostile or truncated file
//! produces a typed error, never a panic or a huge allocation. Only the header, metadata and
//! tensor infos are read; tensor data is never loaded.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result, join_error};

use super::value::{GgmlType, GgufArray, GgufValue, GgufValueType};
use super::{GgufFile, GgufMetadata, TensorInfo};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Longest string value accepted (chat templates are a few KiB; 16 MiB is absurd).
const MAX_STRING_LEN: u64 = 16 << 20;
/// Most elements accepted in one metadata array (vocabularies are well under a million).
const MAX_ARRAY_LEN: u64 = 1 << 25;
/// Most metadata entries accepted.
const MAX_KV_COUNT: u64 = 1 << 20;
/// Most tensors accepted.
const MAX_TENSOR_COUNT: u64 = 1 << 20;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// ggml's `GGML_MAX_NAME`: tensor names must be shorter than this.
const MAX_TENSOR_NAME: u64 = 64;
/// Largest alignment accepted (ggml only requires a power of two; 1 GiB is absurd).
const MAX_ALIGNMENT: u64 = 1 << 30;
/// Smallest possible size of one tensor info: name length, n_dims, type, offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;
/// Smallest possible size of one metadata entry: key length, type, one byte of value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;

/// Reads the header, metadata and tensor infos of the GGUF file at `path`.
///
/// Reads through a buffered reader; tensor data is not loaded, so this is cheap for
/// multi-GB models. Blocking: use [`read_gguf_async`] from async code.
pub fn read_gguf(path: &Path) -> Result<GgufFile> {
    check_regular(path)?;
    let file = File::open(path).ctx("open", path)?;
    let len = file.metadata().ctx("stat", path)?.len();
    read_gguf_from(BufReader::with_capacity(64 << 10, file), len, path)
}

/// Refuses a path that is not a regular file before anything opens it (opening a FIFO
/// blocks; Windows refuses to open a directory with an unrelated error).
pub(crate) fn check_regular(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).ctx("stat", path)?;
    if meta.is_file() {
        return Ok(());
    }
    let kind = if meta.is_dir() {
        "a directory"
    } else {
        special_kind(&meta)
    };
    Err(crate::gguf::error::Error::NotAFile {
        path: path.to_path_buf(),
        kind,
    }
    .into())
}

#[cfg(unix)]
fn special_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::Metadata) -> &'static str {
    "a special file"
}

/// [`read_gguf`] on the blocking thread pool.
pub async fn read_gguf_async(path: &Path) -> Result<GgufFile> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || read_gguf(&owned))
        .await
        .map_err(join_error)?
}

/// Parses a GGUF stream of `len` bytes. `path` is used in error messages only.
///
/// `len` must be the total length of the stream (the file size); it bounds every
/// allocation and is the reference for "tensor data beyond end of file".
pub fn read_gguf_from<R: Read>(reader: R, len: u64, path: &Path) -> Result<GgufFile> {
    let mut src = Source {
        inner: reader,
        pos: 0,
        len,
        path: path.to_path_buf(),
    };
    src.parse()
}

/// Parses an in-memory GGUF image (handy for tests and fuzzing).
pub fn read_gguf_bytes(bytes: &[u8]) -> Result<GgufFile> {
    read_gguf_from(bytes, bytes.len() as u64, Path::new("<memory>"))
}

struct Source<R> {
    inner: R,
    pos: u64,
    len: u64,
    path: PathBuf,
}

impl<R: Read> Source<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn truncated(&self, what: &str, needed: u64) -> Error {
        crate::gguf::error::Error::Truncated {
            path: self.path.clone(),
            offset: self.pos,
            what: what.to_owned(),
            needed,
            available: self.remaining(),
        }
        .into()
    }

    fn implausible(&self, what: &str, value: u64, limit: u64) -> Error {
        crate::gguf::error::Error::Implausible {
            path: self.path.clone(),
            offset: self.pos,
            what: what.to_owned(),
            value,
            limit,
        }
        .into()
    }

    fn invalid(&self, offset: u64, reason: String) -> Error {
        crate::gguf::error::Error::Invalid {
            path: self.path.clone(),
            offset,
            reason,
        }
        .into()
    }

    /// Fails with "truncated" unless `n` more bytes exist.
    fn need(&self, n: u64, what: &str) -> Result<()> {
        if n > self.remaining() {
            return Err(self.truncated(what, n));
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.need(buf.len() as u64, what)?;
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            // The stream was shorter than its declared length (e.g. the file shrank).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.truncated(what, buf.len() as u64))
            }
            Err(source) => Err(Error::io("read", self.path.clone(), source)),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    /// Reads a count, rejecting values above `limit` or that could not fit in the rest of
    /// the file given each item takes at least `min_item_size` bytes.
    fn count(&mut self, what: &str, limit: u64, min_item_size: u64) -> Result<u64> {
        let n = self.u64(what)?;
        if n > limit {
            return Err(self.implausible(what, n, limit));
        }
        let bytes = n.saturating_mul(min_item_size);
        self.need(bytes, what)?;
        Ok(n)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        self.string_limited(what, MAX_STRING_LEN)
    }

    fn string_limited(&mut self, what: &str, limit: u64) -> Result<String> {
        let n = self.u64(what)?;
        if n > limit {
            return Err(self.implausible(what, n, limit));
        }
        self.need(n, what)?;
        // `n` is at most `limit` (16 MiB) and at most the bytes left in the file.
        let mut buf = vec![0u8; n as usize];
        self.fill(&mut buf, what)?;
        // GGUF strings are UTF-8 by specification; llama.cpp does not check, so neither do
        // we fail here: invalid sequences are replaced rather than rejecting a loadable file.
        Ok(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn value_type(&mut self, what: &str) -> Result<GgufValueType> {
        let at = self.pos;
        let tag = self.u32(what)?;
        GgufValueType::from_tag(tag)
            .ok_or_else(|| self.invalid(at, format!("{what} has unknown value type {tag}")))
    }

    fn value(&mut self, ty: GgufValueType, key: &str) -> Result<GgufValue> {
        Ok(match ty {
            GgufValueType::U8 => GgufValue::U8(self.array::<1>(key).map(u8::from_le_bytes)?),
            GgufValueType::I8 => GgufValue::I8(self.array::<1>(key).map(i8::from_le_bytes)?),
            GgufValueType::U16 => GgufValue::U16(self.array::<2>(key).map(u16::from_le_bytes)?),
            GgufValueType::I16 => GgufValue::I16(self.array::<2>(key).map(i16::from_le_bytes)?),
            GgufValueType::U32 => GgufValue::U32(self.array::<4>(key).map(u32::from_le_bytes)?),
            GgufValueType::I32 => GgufValue::I32(self.array::<4>(key).map(i32::from_le_bytes)?),
            GgufValueType::F32 => GgufValue::F32(self.array::<4>(key).map(f32::from_le_bytes)?),
            GgufValueType::Bool => GgufValue::Bool(self.array::<1>(key)?[0] != 0),
            GgufValueType::String => GgufValue::String(self.string(key)?),
            GgufValueType::U64 => GgufValue::U64(self.array::<8>(key).map(u64::from_le_bytes)?),
            GgufValueType::I64 => GgufValue::I64(self.array::<8>(key).map(i64::from_le_bytes)?),
            GgufValueType::F64 => GgufValue::F64(self.array::<8>(key).map(f64::from_le_bytes)?),
            GgufValueType::Array => GgufValue::Array(self.gguf_array(key)?),
        })
    }

    fn gguf_array(&mut self, key: &str) -> Result<GgufArray> {
        let at = self.pos;
        let ty = self.value_type(key)?;
        // Strings take at least their 8-byte length prefix.
        let min_size = ty.fixed_size().unwrap_or(8);
        let n = self.count(key, MAX_ARRAY_LEN, min_size)?;

        macro_rules! fixed {
            ($variant:ident, $t:ty, $size:literal) => {{
                let mut out = Vec::with_capacity(initial_capacity(n));
                for _ in 0..n {
                    out.push(<$t>::from_le_bytes(self.array::<$size>(key)?));
                }
                GgufArray::$variant(out)
            }};
        }

        Ok(match ty {
            GgufValueType::U8 => fixed!(U8, u8, 1),
            GgufValueType::I8 => fixed!(I8, i8, 1),
            GgufValueType::U16 => fixed!(U16, u16, 2),
            GgufValueType::I16 => fixed!(I16, i16, 2),
            GgufValueType::U32 => fixed!(U32, u32, 4),
            GgufValueType::I32 => fixed!(I32, i32, 4),
            GgufValueType::F32 => fixed!(F32, f32, 4),
            GgufValueType::U64 => fixed!(U64, u64, 8),
            GgufValueType::I64 => fixed!(I64, i64, 8),
            GgufValueType::F64 => fixed!(F64, f64, 8),
            GgufValueType::Bool => {
                let mut out = Vec::with_capacity(initial_capacity(n));
                for _ in 0..n {
                    out.push(self.array::<1>(key)?[0] != 0);
                }
                GgufArray::Bool(out)
            }
            GgufValueType::String => {
                let mut out = Vec::with_capacity(initial_capacity(n));
                for _ in 0..n {
                    out.push(self.string(key)?);
                }
                GgufArray::String(out)
            }
            GgufValueType::Array => {
                return Err(self.invalid(
                    at,
                    format!(
                        "metadata key '{key}' is a nested array, which llama.cpp does not support"
                    ),
                ));
            }
        })
    }

    fn parse(&mut self) -> Result<GgufFile> {
        let version = self.header()?;
        let n_tensors = self.count("tensor count", MAX_TENSOR_COUNT, MIN_TENSOR_INFO_SIZE)?;
        let n_kv = self.count("metadata count", MAX_KV_COUNT, MIN_KV_SIZE)?;
        let metadata = self.metadata(n_kv)?;
        let alignment = self.alignment(&metadata)?;

        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(initial_capacity(n_tensors));
        let mut names = std::collections::HashSet::new();
        for _ in 0..n_tensors {
            tensors.push(self.tensor_info(alignment, &mut names)?);
        }

        // The data section starts at the next multiple of the alignment, but only when
        // there are tensors (vocab-only files end right after their metadata).
        let data_offset = if n_tensors > 0 {
            let padded = self.pos.next_multiple_of(alignment);
            if padded > self.len {
                self.need(padded - self.pos, "padding before tensor data")?;
            }
            padded
        } else {
            self.pos
        };
        self.check_bounds(&tensors, data_offset)?;

        Ok(GgufFile {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_size: self.len,
        })
    }

    /// The magic and the version.
    fn header(&mut self) -> Result<u32> {
        let magic = self.array::<4>("magic")?;
        if magic != GGUF_MAGIC {
            return Err(crate::gguf::error::Error::BadMagic {
                path: self.path.clone(),
                found: magic,
            }
            .into());
        }
        let version = self.u32("version")?;
        if version != 2 && version != 3 {
            return Err(crate::gguf::error::Error::UnsupportedVersion {
                path: self.path.clone(),
                version,
            }
            .into());
        }
        Ok(version)
    }

    /// `n_kv` metadata key/values; a key may appear once.
    fn metadata(&mut self, n_kv: u64) -> Result<GgufMetadata> {
        let mut metadata = GgufMetadata::default();
        for _ in 0..n_kv {
            let at = self.pos;
            let key = self.string("metadata key")?;
            let ty = self.value_type(&key)?;
            let value = self.value(ty, &key)?;
            if metadata.get(&key).is_some() {
                return Err(self.invalid(at, format!("duplicate metadata key '{key}'")));
            }
            metadata.push(key, value);
        }
        Ok(metadata)
    }

    /// `general.alignment`, or the default when the file does not set it.
    fn alignment(&self, metadata: &GgufMetadata) -> Result<u64> {
        match metadata.get("general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some(GgufValue::U32(a)) if a.is_power_of_two() && u64::from(*a) <= MAX_ALIGNMENT => {
                Ok(u64::from(*a))
            }
            Some(other) => Err(self.invalid(
                8,
                format!("general.alignment must be a power-of-two u32, found {other:?}"),
            )),
        }
    }

    /// One tensor info (name, dimensions, type, offset), checked as it is read: a name
    /// seen before, too many or negative dimensions, an unknown type, a row that is not
    /// whole blocks, a size that overflows, an offset off the alignment.
    fn tensor_info(
        &mut self,
        alignment: u64,
        names: &mut std::collections::HashSet<String>,
    ) -> Result<TensorInfo> {
        let at = self.pos;
        let name = self.string_limited("tensor name", MAX_TENSOR_NAME - 1)?;
        if !names.insert(name.clone()) {
            return Err(self.invalid(at, format!("duplicate tensor name '{name}'")));
        }
        let dims_at = self.pos;
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(self.invalid(
                dims_at,
                format!("tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS})"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = self.u64("tensor dimension")?;
            if d > i64::MAX as u64 {
                return Err(
                    self.invalid(dims_at, format!("tensor '{name}' has a negative dimension"))
                );
            }
            dims.push(d);
        }
        let type_at = self.pos;
        let tag = self.u32("tensor type")?;
        let ggml_type = GgmlType::from_tag(tag).ok_or_else(|| {
            self.invalid(
                type_at,
                format!("tensor '{name}' has unknown ggml type {tag}"),
            )
        })?;
        let offset_at = self.pos;
        let offset = self.u64("tensor offset")?;

        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                self.invalid(dims_at, format!("tensor '{name}' has too many elements"))
            })?;
        let row = dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(ggml_type.block_elements()) {
            return Err(self.invalid(
                dims_at,
                format!(
                    "tensor '{name}' row of {row} elements is not a multiple of the {} block size {}",
                    ggml_type.name(),
                    ggml_type.block_elements()
                ),
            ));
        }
        let size = (elements / ggml_type.block_elements())
            .checked_mul(ggml_type.block_bytes())
            .ok_or_else(|| self.invalid(dims_at, format!("tensor '{name}' size overflows")))?;
        if !offset.is_multiple_of(alignment) {
            return Err(self.invalid(
                offset_at,
                format!(
                    "tensor '{name}' offset {offset} is not a multiple of the alignment {alignment}"
                ),
            ));
        }
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            size,
        })
    }

    /// Every tensor's data must end inside the file.
    fn check_bounds(&self, tensors: &[TensorInfo], data_offset: u64) -> Result<()> {
        for t in tensors {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|start| start.checked_add(t.size));
            match end {
                Some(end) if end <= self.len => {}
                _ => {
                    return Err(crate::gguf::error::Error::TensorOutOfBounds {
                        path: self.path.clone(),
                        tensor: t.name.clone(),
                        end: end.unwrap_or(u64::MAX),
                        file_size: self.len,
                    }
                    .into());
                }
            }
        }
        Ok(())
    }
}

/// Initial capacity for a collection of `n` items read from a file: the items are known to
/// fit in the file, but reserving all of them up front could still be large, so growth past
/// this point tracks the bytes actually read.
fn initial_capacity(n: u64) -> usize {
    n.min(1 << 16) as usize
}
