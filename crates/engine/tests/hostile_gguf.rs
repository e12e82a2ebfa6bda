//! Hostile GGUF headers: each class of malformed file is refused with a typed error before
//! anything is allocated or read from a wrong place. Headers are written byte by byte here, so
//! they can say what no honest writer would.

use std::io::Cursor;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use thinkscope_engine::model::gguf::GgufFile;
use thinkscope_engine::tiny::{write_tiny_model, TinySpec};
use thinkscope_engine::{EngineError, Model};

/// A GGUF image written field by field.
#[derive(Default)]
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
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.str(key).u32(8).str(v)
    }
    /// A tensor info: dims innermost first, ggml type number, data offset.
    fn tensor(&mut self, name: &str, ne: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(ne.len() as u32);
        for &d in ne {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pad to `align` and append `n` bytes of data.
    fn data(&mut self, align: usize, n: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self.0.extend(std::iter::repeat_n(0x3c, n));
        self
    }
    fn parse(&self) -> Result<(), EngineError> {
        GgufFile::from_reader(
            Path::new("hostile.gguf"),
            Cursor::new(&self.0),
            self.0.len() as u64,
        )
        .map(|_| ())
    }
}

#[track_caller]
fn corrupt(r: &Raw, needle: &str) {
    match r.parse() {
        Err(EngineError::Corrupt { reason, .. }) => {
            assert!(reason.contains(needle), "expected '{needle}' in: {reason}")
        }
        Err(e) => panic!("expected a Corrupt error with '{needle}', got {e}"),
        Ok(()) => panic!("accepted a header that should fail with '{needle}'"),
    }
}

#[track_caller]
fn not_gguf(r: &Raw, needle: &str) {
    match r.parse() {
        Err(EngineError::NotGguf { reason, .. }) => {
            assert!(reason.contains(needle), "expected '{needle}' in: {reason}")
        }
        Err(e) => panic!("expected NotGguf with '{needle}', got {e}"),
        Ok(()) => panic!("accepted"),
    }
}

/// Candle's own reader on the same bytes: whether it panics.
fn candle_panics(r: &Raw) -> bool {
    let bytes = r.0.clone();
    std::panic::catch_unwind(move || {
        let _ = gguf_file::Content::read(&mut Cursor::new(bytes));
    })
    .is_err()
}

#[test]
fn a_well_formed_raw_header_parses() {
    // The builder itself is right: one F32 tensor of 8 values, 32-byte aligned.
    let mut r = Raw::header(3, 1, 1);
    r.kv_str("general.architecture", "llama")
        .tensor("w", &[8], 0, 0)
        .data(32, 32);
    r.parse().expect("valid header");
}

#[test]
fn bad_magic_and_versions_are_not_gguf() {
    not_gguf(&Raw(b"GGML\x03\0\0\0".to_vec()), "magic");
    not_gguf(&Raw(b"GG".to_vec()), "magic");
    not_gguf(&Raw::header(1, 0, 0), "version 1");
    not_gguf(&Raw::header(0x0300_0000, 0, 0), "byte-swapped");
    not_gguf(&Raw::header(9, 0, 0), "version 9");
}

#[test]
fn duplicate_metadata_keys_are_refused() {
    let mut r = Raw::header(3, 0, 3);
    r.kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 2)
        .kv_str("general.architecture", "gemma3");
    corrupt(&r, "'general.architecture' appears twice");
    // Candle keeps one of them silently.
    let content = gguf_file::Content::read(&mut Cursor::new(&r.0)).expect("candle reads it");
    assert_eq!(content.metadata.len(), 2);
}

#[test]
fn duplicate_tensor_names_are_refused() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("blk.0.attn_norm.weight", &[8], 0, 0)
        .tensor("blk.0.attn_norm.weight", &[8], 0, 32)
        .data(32, 64);
    corrupt(&r, "'blk.0.attn_norm.weight' appears twice");
}

#[test]
fn duplicates_written_by_candle_are_refused_by_the_loader() {
    // A whole model with a duplicated key, through Model::load.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("tiny.gguf");
    write_tiny_model(&src, &TinySpec::llama()).expect("tiny");
    let mut f = std::fs::File::open(&src).expect("open");
    let content = gguf_file::Content::read(&mut f).expect("read");
    let mut meta: Vec<(String, Value)> = content.metadata.clone().into_iter().collect();
    meta.push(("llama.block_count".into(), Value::U32(1)));
    let t = QTensor::quantize(
        &Tensor::ones(64, candle_core::DType::F32, &Device::Cpu).expect("t"),
        candle_core::quantized::GgmlDType::F32,
    )
    .expect("q");
    let dup = dir.path().join("dup.gguf");
    let mut w = std::fs::File::create(&dup).expect("create");
    let m: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(
        &mut w,
        &m,
        &[("output_norm.weight", &t), ("output_norm.weight", &t)],
    )
    .expect("write");
    match Model::load(&dup, &Device::Cpu) {
        Err(EngineError::Corrupt { reason, .. }) => assert!(reason.contains("twice"), "{reason}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("loaded an ambiguous file"),
    }
}

#[test]
fn alignment_must_be_a_power_of_two_u32() {
    let with_alignment = |write: &dyn Fn(&mut Raw)| {
        let mut r = Raw::header(3, 1, 1);
        write(&mut r);
        r.tensor("w", &[8], 0, 0).data(64, 64);
        r
    };
    let zero = with_alignment(&|r| {
        r.kv_u32("general.alignment", 0);
    });
    corrupt(&zero, "not a power of two");
    // Candle divides by it.
    assert!(candle_panics(&zero), "candle 0.11 panics on alignment 0");
    corrupt(
        &with_alignment(&|r| {
            r.kv_u32("general.alignment", 48);
        }),
        "not a power of two",
    );
    // A u64 alignment: candle silently uses 32 instead, so its offsets would be wrong.
    corrupt(
        &with_alignment(&|r| {
            r.str("general.alignment").u32(10).u64(64);
        }),
        "must be a u32",
    );
    let ok = with_alignment(&|r| {
        r.kv_u32("general.alignment", 64);
    });
    ok.parse().expect("alignment 64 is fine");
}

#[test]
fn overflowing_and_absurd_counts_are_refused_before_allocating() {
    corrupt(&Raw::header(3, u64::MAX, 0), "more than");
    corrupt(&Raw::header(3, 0, u64::MAX), "more than");
    // Plausible counts that the file is far too short for.
    corrupt(&Raw::header(3, 60_000, 60_000), "need at least");
    // Element counts whose product overflows, and byte sizes that do.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[1 << 40, 1 << 40], 0, 0).data(32, 32);
    corrupt(&r, "more elements than can be counted");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[1 << 31, 1 << 31], 0, 0).data(32, 32);
    corrupt(&r, "byte size that overflows");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[u64::MAX], 0, 0).data(32, 32);
    corrupt(&r, "more elements than can be counted");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[8, 0], 0, 0).data(32, 32);
    corrupt(&r, "zero-sized dimension");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[1, 1, 1, 1, 1], 0, 0).data(32, 32);
    corrupt(&r, "5 dimensions");
}

#[test]
fn huge_strings_and_arrays_are_refused_before_allocating() {
    // A key claiming an exabyte, a string value claiming a terabyte, an array claiming 2^60
    // elements: refused from their lengths alone.
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX).u64(0).u64(0);
    corrupt(&r, "metadata key 0 is 18446744073709551615 bytes long");
    let mut r = Raw::header(3, 0, 1);
    r.str("tokenizer.chat_template").u32(8).u64(1 << 40);
    corrupt(&r, "'tokenizer.chat_template' is 1099511627776 bytes long");
    let mut r = Raw::header(3, 0, 1);
    r.str("tokenizer.ggml.tokens").u32(9).u32(8).u64(1 << 60);
    corrupt(&r, "more than");
    // Below the cap but more than the file holds.
    let mut r = Raw::header(3, 0, 1);
    r.str("tokenizer.ggml.scores").u32(9).u32(6).u64(1 << 20);
    corrupt(&r, "bytes left");
    let mut r = Raw::header(3, 0, 1);
    r.str("general.name").u32(8).u64(5000);
    corrupt(&r, "bytes left");
    // Nested arrays and unknown types.
    let mut r = Raw::header(3, 0, 1);
    r.str("x").u32(9).u32(9).u64(1);
    corrupt(&r, "array of arrays");
    let mut r = Raw::header(3, 0, 1);
    r.str("x").u32(77);
    corrupt(&r, "unknown type 77");
    let mut r = Raw::header(3, 0, 1);
    r.str("x").u32(7);
    r.0.push(2);
    corrupt(&r, "not 0 or 1");
    // Tensor names longer than ggml allows.
    let mut r = Raw::header(3, 1, 0);
    r.tensor(&"n".repeat(64), &[8], 0, 0).data(32, 32);
    corrupt(&r, "more than 63");
}

#[test]
fn tensor_offsets_must_lie_in_order_inside_the_file() {
    // Offset past the end of the file.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[8], 0, 1 << 40).data(32, 32);
    corrupt(&r, "expected 0");
    // A second tensor pointing back at the first one's data (candle would read it silently).
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0)
        .tensor("b", &[8], 0, 0)
        .data(32, 64);
    corrupt(&r, "tensor 'b' has data offset 0, expected 32");
    // Shifted by one alignment unit: inside the file, but not where the layout puts it.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[8], 0, 32).data(32, 96);
    corrupt(&r, "expected 0");
    // Data cut short.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[64], 0, 0).data(32, 100);
    corrupt(&r, "needs 256 bytes");
    // The data section itself would start past the end.
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 1 << 31)
        .tensor("w", &[8], 0, 0);
    corrupt(&r, "past the end");
}

#[test]
fn rows_must_be_whole_blocks_and_types_known() {
    // Q8_0 (type 8) blocks are 32 values: 2 rows of 48 hold 96 = 3 blocks, which candle accepts
    // though no row is made of whole blocks.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[48, 2], 8, 0).data(32, 3 * 34);
    corrupt(&r, "not a multiple of its type's block size 32");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[256], 16, 0).data(32, 256);
    corrupt(&r, "IQ2_XXS");
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[256], 1000, 0).data(32, 256);
    corrupt(&r, "type 1000 (unknown)");
}

#[test]
fn every_truncation_of_a_real_header_is_an_error() {
    // Cutting the tiny model anywhere in its header or data gives an error, never a panic.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("tiny.gguf");
    write_tiny_model(&src, &TinySpec::llama()).expect("tiny");
    let bytes = std::fs::read(&src).expect("read");
    let header_end = 12_000.min(bytes.len());
    for cut in (0..header_end).step_by(97).chain([bytes.len() - 1]) {
        let b = &bytes[..cut];
        let r = GgufFile::from_reader(Path::new("cut.gguf"), Cursor::new(b), b.len() as u64);
        assert!(r.is_err(), "cut at {cut} parsed");
    }
}
