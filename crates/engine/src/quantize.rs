//! Writing GGUF files: re-quantized copies of a model (`thinkscope-cli quantize`) and edited
//! copies for tests.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::atomic::AtomicFile;
use crate::error::{EngineError, Result};
use crate::model::gguf::GgufFile;

/// The weight types `quantize` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantType {
    /// 8-bit, 32 per block, one f16 scale.
    Q8_0,
    /// 4-bit, 32 per block, one f16 scale.
    Q4_0,
    /// 4-bit, 32 per block, f16 scale and minimum.
    Q4_1,
    /// 5-bit, 32 per block, one f16 scale.
    Q5_0,
    /// 5-bit, 32 per block, f16 scale and minimum.
    Q5_1,
    /// Half precision, unquantized.
    F16,
}

impl QuantType {
    fn ggml(self) -> GgmlDType {
        match self {
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q5_0 => GgmlDType::Q5_0,
            Self::Q5_1 => GgmlDType::Q5_1,
            Self::F16 => GgmlDType::F16,
        }
    }

    /// llama.cpp's `LLAMA_FTYPE` number for a file of this type.
    fn file_type(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 7,
            Self::Q5_0 => 8,
            Self::Q5_1 => 9,
        }
    }
}

impl std::str::FromStr for QuantType {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "q8_0" => Self::Q8_0,
            "q4_0" => Self::Q4_0,
            "q4_1" => Self::Q4_1,
            "q5_0" => Self::Q5_0,
            "q5_1" => Self::Q5_1,
            "f16" => Self::F16,
            other => {
                return Err(EngineError::InvalidParameter(format!(
                    "unknown type '{other}' (q8_0, q4_0, q4_1, q5_0, q5_1 or f16)"
                )))
            }
        })
    }
}

/// Copy a GGUF file, letting `edit` change its metadata and tensor list (for bad-input tests).
/// The source is read with the loader's checks; the copy is written atomically (a failure
/// never leaves part of a file under `dst`), in the source's order, with tensor data aligned to
/// candle's 32 bytes (so a `general.alignment` of the source is dropped).
pub fn rewrite_gguf(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<(String, QTensor)>),
) -> Result<()> {
    rewrite_checked(src, dst, |meta, tensors| {
        edit(meta, tensors);
        Ok(())
    })
}

/// [`rewrite_gguf`] whose edit can fail, leaving `dst` untouched.
fn rewrite_checked(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<(String, QTensor)>) -> Result<()>,
) -> Result<()> {
    let mut gguf = GgufFile::open(src)?;
    let mut meta: Vec<(String, Value)> = gguf
        .keys()
        .iter()
        .filter(|k| k.as_str() != "general.alignment")
        .filter_map(|k| gguf.metadata().get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    let mut tensors = Vec::new();
    for name in gguf.tensor_names().to_vec() {
        let (dims, _) = gguf.tensor_info(&name)?;
        let t = gguf.tensor(&name, &dims, &Device::Cpu)?;
        tensors.push((name, t));
    }
    edit(&mut meta, &mut tensors)?;
    let mut out = AtomicFile::create(dst)?;
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut out, &meta_refs, &tensor_refs)?;
    out.commit()
}

/// Write a copy of a GGUF model with every 2-D weight matrix re-quantized to `dtype` (for
/// example Q8_0 from a Q4_1 file: each weight dequantized to f32, then quantized again; the
/// values keep the source's precision). Vectors (norms, biases) are copied unchanged and
/// `general.file_type` is updated.
pub fn requantize(src: &Path, dst: &Path, target: QuantType) -> Result<()> {
    let dtype = target.ggml();
    // The loader's checks (in `rewrite_gguf`): a missing, truncated or corrupt file gets its
    // usual clear error. The copy is written atomically: a failure never leaves half a model.
    rewrite_checked(src, dst, |meta, tensors| {
        for (name, t) in tensors.iter_mut() {
            let dims = t.shape().dims().to_vec();
            if dims.len() != 2 || dims[1] % dtype.block_size() != 0 || t.dtype() == dtype {
                continue;
            }
            *t = t
                .dequantize(&Device::Cpu)
                .and_then(|f| QTensor::quantize(&f, dtype))
                .map_err(|e| EngineError::InvalidTensor(format!("re-quantizing {name}: {e}")))?;
        }
        meta.retain(|(k, _)| k != "general.file_type");
        meta.push(("general.file_type".into(), Value::U32(target.file_type())));
        Ok(())
    })
}
