//! GGUF writer: metadata and tensors in memory, written in one pass and published atomically.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

use super::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC};
use super::value::{GgmlType, GgufArray, GgufValue};
use super::{GgufMetadata, TensorInfo};

/// Builds a GGUF (version 3) file from metadata and tensors held in memory.
///
/// Meant for small files (the demo model, test fixtures): tensor data is kept in memory
/// until [`GgufWriter::write_file`] or [`GgufWriter::write_to`] runs.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: GgufMetadata,
    tensors: Vec<(TensorInfo, Vec<u8>)>,
}

impl GgufWriter {
    /// An empty file: no metadata, no tensors.
    pub fn new() -> Self {
        Self::default()
    }

    /// The metadata to write, for inspection or editing.
    pub fn metadata_mut(&mut self) -> &mut GgufMetadata {
        &mut self.metadata
    }

    /// Sets a metadata key (replacing a previous value in place).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<GgufValue>) -> &mut Self {
        self.metadata.insert(key, value);
        self
    }

    /// Adds a tensor with raw data; `dims` are innermost first. The data length must match
    /// the shape and type exactly.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self> {
        let invalid = |reason: String| {
            crate::gguf::error::Error::Write {
                reason: format!("tensor '{name}': {reason}"),
            }
            .into()
        };
        if name.len() >= 64 {
            return Err(invalid("name is 64 bytes or longer".into()));
        }
        if dims.is_empty() || dims.len() > 4 {
            return Err(invalid(format!(
                "{} dimensions (1 to 4 allowed)",
                dims.len()
            )));
        }
        if self.tensors.iter().any(|(t, _)| t.name == name) {
            return Err(invalid("added twice".into()));
        }
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| invalid("too many elements".into()))?;
        if !dims[0].is_multiple_of(ggml_type.block_elements()) {
            return Err(invalid(format!(
                "row length {} is not a multiple of the block size {}",
                dims[0],
                ggml_type.block_elements()
            )));
        }
        let size = elements / ggml_type.block_elements() * ggml_type.block_bytes();
        if data.len() as u64 != size {
            return Err(invalid(format!(
                "data is {} bytes, the shape needs {size}",
                data.len()
            )));
        }
        self.tensors.push((
            TensorInfo {
                name: name.to_owned(),
                dims: dims.to_vec(),
                ggml_type,
                offset: 0,
                size,
            },
            data,
        ));
        Ok(self)
    }

    /// Adds an `F32` tensor.
    pub fn add_f32_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        values: &[f32],
    ) -> Result<&mut Self> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_tensor(name, dims, GgmlType::F32, data)
    }

    fn alignment(&self) -> u64 {
        match self.metadata.get("general.alignment") {
            Some(GgufValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// Writes the file to `out`; returns the number of bytes written.
    pub fn write_to<W: Write>(&self, out: W) -> io::Result<u64> {
        let mut w = Counter {
            inner: BufWriter::with_capacity(256 << 10, out),
            written: 0,
        };
        let alignment = self.alignment();

        w.write_all(&GGUF_MAGIC)?;
        w.write_all(&3u32.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in self.metadata.iter() {
            write_string(&mut w, key)?;
            w.write_all(&value.value_type().tag().to_le_bytes())?;
            write_value(&mut w, value)?;
        }

        let mut offset = 0u64;
        for (info, _) in &self.tensors {
            write_string(&mut w, &info.name)?;
            w.write_all(&(info.dims.len() as u32).to_le_bytes())?;
            for d in &info.dims {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&info.ggml_type.tag().to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            offset = (offset + info.size).next_multiple_of(alignment);
        }

        if !self.tensors.is_empty() {
            pad(&mut w, alignment)?;
        }
        for (_, data) in &self.tensors {
            w.write_all(data)?;
            pad(&mut w, alignment)?;
        }
        w.inner.flush()?;
        Ok(w.written)
    }

    /// Writes the file to `path` atomically: a temporary file in the same directory is
    /// written, synced, and renamed over `path`, so readers never see a partial file.
    pub fn write_file(&self, path: &Path) -> Result<u64> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).ctx("create directory", dir)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".gguf-").suffix(".tmp");
        // Temporary files are private by default; a model is an ordinary file (the umask
        // still applies).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o644));
        }
        let mut tmp = builder
            .tempfile_in(dir)
            .ctx("create temporary file in", dir)?;
        let written = self.write_to(tmp.as_file_mut()).ctx("write", tmp.path())?;
        tmp.as_file().sync_all().ctx("sync", tmp.path())?;
        tmp.persist(path)
            .map_err(|e| Error::io("rename into", path, e.error))?;
        Ok(written)
    }
}

struct Counter<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(w: &mut Counter<W>, alignment: u64) -> io::Result<()> {
    let target = w.written.next_multiple_of(alignment);
    let zeros = vec![0u8; (target - w.written) as usize];
    w.write_all(&zeros)
}

fn write_string<W: Write>(w: &mut W, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value<W: Write>(w: &mut W, value: &GgufValue) -> io::Result<()> {
    match value {
        GgufValue::U8(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::I8(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::U16(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::I16(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::U32(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::I32(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::F32(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::Bool(v) => w.write_all(&[u8::from(*v)]),
        GgufValue::String(s) => write_string(w, s),
        GgufValue::U64(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::I64(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::F64(v) => w.write_all(&v.to_le_bytes()),
        GgufValue::Array(a) => write_array(w, a),
    }
}

fn write_array<W: Write>(w: &mut W, array: &GgufArray) -> io::Result<()> {
    w.write_all(&array.element_type().tag().to_le_bytes())?;
    w.write_all(&(array.len() as u64).to_le_bytes())?;
    macro_rules! each {
        ($v:expr) => {{
            for x in $v {
                w.write_all(&x.to_le_bytes())?;
            }
            Ok(())
        }};
    }
    match array {
        GgufArray::U8(v) => w.write_all(v),
        GgufArray::I8(v) => each!(v),
        GgufArray::U16(v) => each!(v),
        GgufArray::I16(v) => each!(v),
        GgufArray::U32(v) => each!(v),
        GgufArray::I32(v) => each!(v),
        GgufArray::F32(v) => each!(v),
        GgufArray::Bool(v) => {
            let bytes: Vec<u8> = v.iter().map(|b| u8::from(*b)).collect();
            w.write_all(&bytes)
        }
        GgufArray::String(v) => {
            for s in v {
                write_string(w, s)?;
            }
            Ok(())
        }
        GgufArray::U64(v) => each!(v),
        GgufArray::I64(v) => each!(v),
        GgufArray::F64(v) => each!(v),
    }
}
