//! GGUF reader and writer: real vocab files, the demo model, round trips, malformed input.

use std::path::{Path, PathBuf};

use lmcpp_toolchain::Error;
use lmcpp_toolchain::demo::{DemoOptions, write_demo_model};
use lmcpp_toolchain::gguf::Error as GgufError;
use lmcpp_toolchain::gguf::{
    GgmlType, GgufArray, GgufValue, GgufWriter, read_gguf, read_gguf_async, read_gguf_bytes,
};

fn vocab_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ggml-vocab-llama-spm.gguf")
}

#[test]
fn reads_the_llama_spm_vocab() {
    let file = read_gguf(&vocab_fixture()).unwrap();
    assert_eq!(file.version, 3);
    assert!(file.tensors.is_empty());
    assert_eq!(
        file.data_offset, file.file_size,
        "vocab-only files end after metadata"
    );
    let s = file.summary();
    assert_eq!(s.architecture.as_deref(), Some("llama"));
    assert_eq!(s.tokenizer_model.as_deref(), Some("llama"));
    assert_eq!(s.vocab_size, Some(32000));
    assert_eq!(s.parameter_count, 0);
    assert_eq!(s.file_size, 723_869);
    let tokens = match file.metadata.get("tokenizer.ggml.tokens") {
        Some(GgufValue::Array(GgufArray::String(t))) => t,
        other => panic!("unexpected tokens value {other:?}"),
    };
    assert_eq!(tokens[15043], "\u{2581}Hello");
    assert_eq!(tokens[3186], "\u{2581}world");
}

#[tokio::test]
async fn async_reader_matches_sync_reader() {
    let a = read_gguf(&vocab_fixture()).unwrap();
    let b = read_gguf_async(&vocab_fixture()).await.unwrap();
    assert_eq!(a, b);
}

#[test]
fn demo_model_has_the_llama_shape_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.gguf");
    let b = dir.path().join("b.gguf");
    let c = dir.path().join("c.gguf");
    let model = write_demo_model(&vocab_fixture(), &a, &DemoOptions::default()).unwrap();
    write_demo_model(&vocab_fixture(), &b, &DemoOptions::default()).unwrap();
    write_demo_model(&vocab_fixture(), &c, &DemoOptions::with_seed(99)).unwrap();
    assert_eq!(model.vocab_size, 32000);
    assert_eq!(model.size, std::fs::metadata(&a).unwrap().len());
    let bytes_a = std::fs::read(&a).unwrap();
    assert_eq!(bytes_a, std::fs::read(&b).unwrap(), "same seed, same bytes");
    assert_ne!(
        bytes_a,
        std::fs::read(&c).unwrap(),
        "another seed, other weights"
    );
    // Nothing but the three models is left in the directory (the temp file was renamed).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);

    let file = read_gguf(&a).unwrap();
    let s = file.summary();
    assert_eq!(s.architecture.as_deref(), Some("llama"));
    assert_eq!(s.embedding_length, Some(64));
    assert_eq!(s.block_count, Some(2));
    assert_eq!(s.head_count, Some(4));
    assert_eq!(s.context_length, Some(2048));
    assert_eq!(s.vocab_size, Some(32000));
    assert_eq!(s.quantization.as_deref(), Some("F32"));
    assert!(s.chat_template.unwrap().contains("<|im_start|>"));
    assert_eq!(s.tensor_count, 3 + 2 * 9);
    let per_block = 64 + 4 * 64 * 64 + 64 + 3 * 64 * 128;
    assert_eq!(s.parameter_count, 2 * 64 * 32000 + 64 + 2 * per_block);
    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims, vec![64, 32000]);
    let down = file.tensor("blk.1.ffn_down.weight").unwrap();
    assert_eq!(down.dims, vec![128, 64]);
    assert_eq!(
        file.tensor_range(file.tensors.last().unwrap()).end,
        file.file_size
    );

    // The tokenizer came over unchanged.
    let vocab = read_gguf(&vocab_fixture()).unwrap();
    for (key, value) in vocab
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer.ggml"))
    {
        assert_eq!(file.metadata.get(key), Some(value), "{key}");
    }
}

/// A writer exercising every value type, a few tensor types and a non-default alignment.
fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "test")
        .set("general.alignment", 64u32)
        .set("u8", GgufValue::U8(200))
        .set("i8", GgufValue::I8(-100))
        .set("u16", GgufValue::U16(60_000))
        .set("i16", GgufValue::I16(-30_000))
        .set("u32", GgufValue::U32(4_000_000_000))
        .set("i32", GgufValue::I32(-2_000_000_000))
        .set("f32", GgufValue::F32(1.5))
        .set("bool", GgufValue::Bool(true))
        .set("string", "h\u{e9}llo")
        .set("u64", GgufValue::U64(u64::MAX))
        .set("i64", GgufValue::I64(i64::MIN))
        .set("f64", GgufValue::F64(-2.25))
        .set("arr.u8", GgufArray::U8(vec![1, 2, 3]))
        .set("arr.i8", GgufArray::I8(vec![-1]))
        .set("arr.u16", GgufArray::U16(vec![7, 8]))
        .set("arr.i16", GgufArray::I16(vec![-7]))
        .set("arr.u32", GgufArray::U32(vec![]))
        .set("arr.i32", GgufArray::I32(vec![i32::MAX]))
        .set("arr.f32", GgufArray::F32(vec![0.5, -0.5]))
        .set("arr.bool", GgufArray::Bool(vec![true, false]))
        .set(
            "arr.str",
            GgufArray::String(vec!["a".into(), String::new(), "ccc".into()]),
        )
        .set("arr.u64", GgufArray::U64(vec![1 << 40]))
        .set("arr.i64", GgufArray::I64(vec![-(1 << 40)]))
        .set("arr.f64", GgufArray::F64(vec![1e300]));
    w.add_f32_tensor("a", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    w.add_tensor("q", &[64], GgmlType::Q8_0, (0..68).collect())
        .unwrap();
    w.add_tensor("h", &[5], GgmlType::F16, vec![9; 10]).unwrap();
    w
}

pub(crate) fn sample_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    sample_writer().write_to(&mut out).unwrap();
    out
}

#[test]
fn writer_round_trips_every_value_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.gguf");
    let w = sample_writer();
    let size = w.write_file(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(bytes, sample_bytes(), "file and in-memory writes agree");

    let file = read_gguf(&path).unwrap();
    assert_eq!(file.alignment, 64);
    assert_eq!(file.data_offset % 64, 0);
    let mut expected = sample_writer();
    let expected_md = expected.metadata_mut().clone();
    assert_eq!(file.metadata, expected_md);

    let names: Vec<_> = file.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "q", "h"]);
    let a = file.tensor("a").unwrap();
    let range = file.tensor_range(a);
    let data = &bytes[range.start as usize..range.end as usize];
    let floats: Vec<f32> = data
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let q = file.tensor("q").unwrap();
    assert_eq!(
        (q.ggml_type, q.size, q.offset % 64),
        (GgmlType::Q8_0, 68, 0)
    );
    let range = file.tensor_range(q);
    assert_eq!(
        &bytes[range.start as usize..range.end as usize],
        (0..68).collect::<Vec<u8>>()
    );
    assert_eq!(file.summary().parameter_count, 6 + 64 + 5);

    // Rewriting what was read gives the same bytes.
    let mut again = GgufWriter::new();
    for (k, v) in file.metadata.iter() {
        again.set(k, v.clone());
    }
    for t in &file.tensors {
        let r = file.tensor_range(t);
        again
            .add_tensor(
                &t.name,
                &t.dims,
                t.ggml_type,
                bytes[r.start as usize..r.end as usize].to_vec(),
            )
            .unwrap();
    }
    let mut rewritten = Vec::new();
    again.write_to(&mut rewritten).unwrap();
    assert_eq!(rewritten, bytes);
}

#[test]
fn writer_rejects_inconsistent_tensors() {
    let mut w = GgufWriter::new();
    let long_name = "x".repeat(64);
    let cases: Vec<(&str, Vec<u64>, GgmlType, usize)> = vec![
        ("short", vec![4], GgmlType::F32, 15),
        ("blocks", vec![33], GgmlType::Q8_0, 34),
        ("dims", vec![1, 1, 1, 1, 1], GgmlType::F32, 4),
        ("none", vec![], GgmlType::F32, 4),
        (&long_name, vec![1], GgmlType::F32, 4),
    ];
    for (name, dims, ty, len) in cases {
        let err = w.add_tensor(name, &dims, ty, vec![0; len]).unwrap_err();
        assert!(
            matches!(err, Error::Gguf(GgufError::Write { .. })),
            "{name}: {err}"
        );
    }
    w.add_f32_tensor("t", &[1], &[0.0]).unwrap();
    let err = w.add_f32_tensor("t", &[1], &[0.0]).unwrap_err();
    assert!(matches!(err, Error::Gguf(GgufError::Write { .. })), "{err}");
}

/// Section boundaries of the sample file: after the header fields, after each metadata
/// entry, after each tensor info, the padding, and inside the data.
#[test]
fn truncation_at_every_offset_is_a_typed_error() {
    let bytes = sample_bytes();
    let full = read_gguf_bytes(&bytes).unwrap();
    let data_end = full
        .tensors
        .iter()
        .map(|t| full.tensor_range(t).end)
        .max()
        .unwrap();
    assert!(
        data_end < bytes.len() as u64,
        "the writer pads after the last tensor"
    );
    for cut in 0..bytes.len() {
        let result = read_gguf_bytes(&bytes[..cut]);
        if cut as u64 >= data_end {
            // Only trailing padding is missing; every tensor is complete.
            assert!(result.is_ok(), "cut at {cut}: {result:?}");
            continue;
        }
        let err = result.unwrap_err();
        let ok = if (cut as u64) < full.data_offset {
            matches!(err, Error::Gguf(GgufError::Truncated { .. }))
        } else {
            matches!(err, Error::Gguf(GgufError::TensorOutOfBounds { .. }))
        };
        assert!(ok, "cut at {cut}: {err:?}");
        // Messages name the file and say what to do.
        assert!(err.to_string().contains("<memory>"), "{err}");
    }
}

#[test]
fn truncated_vocab_file_is_reported_as_truncated() {
    let bytes = std::fs::read(vocab_fixture()).unwrap();
    // Every boundary of the header, then a spread of offsets through the metadata.
    let mut cuts: Vec<usize> = (0..=24).collect();
    // A prime step lands at varied places inside keys, types, lengths and strings.
    cuts.extend((25..bytes.len()).step_by(7919));
    cuts.extend(bytes.len() - 40..bytes.len());
    for cut in cuts {
        let err = read_gguf_bytes(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::Gguf(GgufError::Truncated { .. })),
            "cut at {cut}: {err:?}"
        );
    }
}

/// Little-endian raw GGUF pieces for hand-made malformed files.
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.extend(std::iter::repeat_n(0, n));
        self
    }
}

/// One tensor info: name, dims, type, offset.
fn tensor_info(r: &mut Raw, name: &str, dims: &[u64], ty: u32, offset: u64) {
    r.str(name).u32(dims.len() as u32);
    for d in dims {
        r.u64(*d);
    }
    r.u32(ty).u64(offset);
}

#[test]
fn malformed_headers_and_lying_lengths_are_typed_errors() {
    type Check = fn(&Error) -> bool;
    let bad_magic: Check =
        |e| matches!(e, Error::Gguf(GgufError::BadMagic { found, .. }) if found == b"GGML");
    let version: Check = |e| matches!(e, Error::Gguf(GgufError::UnsupportedVersion { .. }));
    let truncated: Check = |e| matches!(e, Error::Gguf(GgufError::Truncated { .. }));
    let implausible: Check = |e| matches!(e, Error::Gguf(GgufError::Implausible { .. }));
    let invalid: Check = |e| matches!(e, Error::Gguf(GgufError::Invalid { .. }));
    let oob: Check = |e| matches!(e, Error::Gguf(GgufError::TensorOutOfBounds { .. }));

    let mut cases: Vec<(&str, Vec<u8>, Check)> = Vec::new();
    let mut magic = Raw::header(3, 0, 0);
    magic.0[..4].copy_from_slice(b"GGML");
    cases.push(("wrong magic", magic.0, bad_magic));
    cases.push(("version 1", Raw::header(1, 0, 0).0, version));
    cases.push(("version 4", Raw::header(4, 0, 0).0, version));
    cases.push((
        "big-endian v3",
        Raw::header(3u32.swap_bytes(), 0, 0).0,
        version,
    ));
    cases.push((
        "kv count u64::MAX",
        Raw::header(3, 0, u64::MAX).0,
        implausible,
    ));
    cases.push((
        "tensor count u64::MAX",
        Raw::header(3, u64::MAX, 0).0,
        implausible,
    ));
    cases.push(("kv count beyond file", Raw::header(3, 0, 1000).0, truncated));
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX).zeros(8);
    cases.push(("key length u64::MAX", r.0, implausible));
    let mut r = Raw::header(3, 0, 1);
    r.u64(1 << 20).zeros(10);
    cases.push(("key length beyond file", r.0, truncated));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(1 << 40);
    cases.push(("string value length huge", r.0, implausible));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(4).u64(u64::MAX);
    cases.push(("array count u64::MAX", r.0, implausible));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(10).u64(1 << 20).zeros(64);
    cases.push(("array count beyond file", r.0, truncated));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(9).u64(1).u32(0).u64(0);
    cases.push(("nested array", r.0, invalid));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).u32(0);
    cases.push(("unknown value type", r.0, invalid));
    let mut r = Raw::header(3, 0, 2);
    r.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    cases.push(("duplicate key", r.0, invalid));
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(4).u32(48);
    cases.push(("alignment not a power of two", r.0, invalid));
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(10).u64(32);
    cases.push(("alignment of the wrong type", r.0, invalid));

    // Tensor infos.
    let tensor_case = |name: &str, dims: &[u64], ty: u32, offset: u64, data: usize| {
        let mut r = Raw::header(3, 1, 0);
        tensor_info(&mut r, name, dims, ty, offset);
        let pad = r.0.len().next_multiple_of(32) - r.0.len();
        r.zeros(pad + data);
        r.0
    };
    cases.push(("valid baseline", tensor_case("t", &[4], 0, 0, 16), |_| {
        false
    }));
    cases.push((
        "5 dims",
        tensor_case("t", &[1, 1, 1, 1, 1], 0, 0, 16),
        invalid,
    ));
    cases.push((
        "negative dim",
        tensor_case("t", &[u64::MAX], 0, 0, 16),
        invalid,
    ));
    cases.push((
        "element overflow",
        tensor_case("t", &[1 << 40, 1 << 40], 0, 0, 16),
        invalid,
    ));
    cases.push((
        "unknown ggml type",
        tensor_case("t", &[4], 4, 0, 16),
        invalid,
    ));
    cases.push(("partial block", tensor_case("t", &[33], 8, 0, 64), invalid));
    cases.push((
        "misaligned offset",
        tensor_case("t", &[4], 0, 8, 32),
        invalid,
    ));
    cases.push(("data beyond eof", tensor_case("t", &[4], 0, 0, 15), oob));
    cases.push((
        "offset beyond eof",
        tensor_case("t", &[4], 0, 1 << 40, 16),
        oob,
    ));
    cases.push((
        "offset overflow",
        tensor_case("t", &[4], 0, u64::MAX - 31, 16),
        oob,
    ));
    cases.push((
        "long tensor name",
        tensor_case(&"n".repeat(64), &[4], 0, 0, 16),
        implausible,
    ));
    let mut r = Raw::header(3, 2, 0);
    tensor_info(&mut r, "t", &[4], 0, 0);
    tensor_info(&mut r, "t", &[4], 0, 32);
    r.zeros(128);
    cases.push(("duplicate tensor", r.0, invalid));

    for (name, bytes, check) in cases {
        match read_gguf_bytes(&bytes) {
            Ok(file) => assert_eq!(name, "valid baseline", "{name} parsed: {file:?}"),
            Err(e) => assert!(check(&e), "{name}: unexpected error {e:?}"),
        }
    }
}

#[test]
fn error_messages_name_the_problem_and_the_fix() {
    let mut bytes = b"GGML\x03\x00\x00\x00".to_vec();
    bytes.extend([0u8; 16]);
    let msg = read_gguf_bytes(&bytes).unwrap_err().to_string();
    assert!(msg.contains("starts with \"GGML\""), "{msg}");
    let msg = read_gguf_bytes(&sample_bytes()[..100])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("truncated") && msg.contains("pull it again"),
        "{msg}"
    );
    let msg = read_gguf(Path::new("/nonexistent/model.gguf"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("/nonexistent/model.gguf"), "{msg}");
}

#[test]
fn summary_prints_one_line_per_fact() {
    let text = read_gguf(&vocab_fixture()).unwrap().summary().to_string();
    let expected = "\
architecture     llama
name             llama-spm
parameters       0
quantization     F16
context length   4096
embedding length 4096
layers           32
attention heads  32
vocabulary       32000 tokens (llama tokenizer)
chat template    none
tensors          0
file size        706.9 KiB
gguf version     3";
    assert_eq!(text, expected);
}
