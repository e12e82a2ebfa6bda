//! Writing GGUF files: re-quantized copies of a model (`thinkscope-cli quantize`) and edited
//! copies for tests.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::error::{EngineError, Result};

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
pub fn rewrite_gguf(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<(String, QTensor)>),
) -> Result<()> {
    let mut file = File::open(src).map_err(|e| EngineError::io(src, e))?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut meta: Vec<(String, Value)> = content.metadata.clone().into_iter().collect();
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::new();
    for name in names {
        tensors.push((name.clone(), content.tensor(&mut file, name, &Device::Cpu)?));
    }
    edit(&mut meta, &mut tensors);
    let out = File::create(dst).map_err(|e| EngineError::io(dst, e))?;
    let mut w = BufWriter::new(out);
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut w, &meta_refs, &tensor_refs)?;
    Ok(())
}

/// Write a copy of a GGUF model with every 2-D weight matrix re-quantized to `dtype` (for
/// example Q8_0 from a Q4_1 file: each weight dequantized to f32, then quantized again; the
/// values keep the source's precision). Vectors (norms, biases) are copied unchanged and
/// `general.file_type` is updated.
pub fn requantize(src: &Path, dst: &Path, target: QuantType) -> Result<()> {
    let dtype = target.ggml();
    // The loader's checks first: a missing, truncated or corrupt file gets its usual clear error.
    crate::model::gguf::GgufFile::open(src)?;
    // Written beside the target and renamed at the end: a failure never leaves half a model.
    let mut part = dst.as_os_str().to_owned();
    part.push(".part");
    let part = std::path::PathBuf::from(part);
    let mut err = None;
    let written = rewrite_gguf(src, &part, |meta, tensors| {
        for (name, t) in tensors.iter_mut() {
            let dims = t.shape().dims().to_vec();
            if dims.len() != 2 || dims[1] % dtype.block_size() != 0 || t.dtype() == dtype {
                continue;
            }
            let converted = t
                .dequantize(&Device::Cpu)
                .and_then(|f| QTensor::quantize(&f, dtype));
            match converted {
                Ok(q) => *t = q,
                Err(e) => {
                    err = Some(EngineError::InvalidTensor(format!(
                        "re-quantizing {name}: {e}"
                    )));
                    return;
                }
            }
        }
        meta.retain(|(k, _)| k != "general.file_type");
        meta.push(("general.file_type".into(), Value::U32(target.file_type())));
    });
    let done = match (written, err) {
        (Err(e), _) | (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) => std::fs::rename(&part, dst).map_err(|e| EngineError::io(dst, e)),
    };
    if done.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    done
}
