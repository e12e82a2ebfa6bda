//! Reading GGUF files as untrusted input.
//!
//! Every metadata value goes through one typed helper that fails on a missing key or a wrong type,
//! and every tensor is checked against the shape the metadata implies before it is used.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::error::{candle_message, EngineError, Result};

/// An opened GGUF file: its parsed header and a reader for tensor data.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
    file_len: u64,
}

impl GgufFile {
    /// Open and parse the header, mapping every failure to a user-facing error.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::ModelNotFound {
                path: path.to_owned(),
            });
        }
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let mut reader = BufReader::new(file);
        let mut magic = [0u8; 4];
        if reader.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
            return Err(EngineError::NotGguf {
                path: path.to_owned(),
                reason: "missing GGUF magic bytes".into(),
            });
        }
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| EngineError::io(path, e))?;
        let content = Content::read(&mut reader).map_err(|e| {
            let reason = candle_message(&e);
            if reason.contains("unsupported magic") {
                EngineError::NotGguf {
                    path: path.to_owned(),
                    reason,
                }
            } else {
                EngineError::Corrupt {
                    path: path.to_owned(),
                    reason,
                }
            }
        })?;
        let gguf = Self {
            path: path.to_owned(),
            content,
            reader,
            file_len,
        };
        gguf.check_tensor_extents()?;
        Ok(gguf)
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All metadata.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// Every tensor's data must lie inside the file: a truncated download fails here, at open.
    fn check_tensor_extents(&self) -> Result<()> {
        for (name, info) in &self.content.tensor_infos {
            let elems = info.shape.elem_count();
            let block = info.ggml_dtype.block_size();
            if elems % block != 0 {
                return Err(self.corrupt(format!(
                    "tensor {name} has {elems} elements, not a multiple of its block size {block}"
                )));
            }
            let bytes = (elems / block) as u64 * info.ggml_dtype.type_size() as u64;
            let end = self
                .content
                .tensor_data_offset
                .saturating_add(info.offset)
                .saturating_add(bytes);
            if end > self.file_len {
                return Err(self.corrupt(format!(
                    "tensor {name} ends at byte {end} but the file has {} bytes",
                    self.file_len
                )));
            }
        }
        Ok(())
    }

    fn corrupt(&self, reason: String) -> EngineError {
        EngineError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    /// A metadata value, or an error naming the missing key.
    pub fn get(&self, key: &str) -> Result<&Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| EngineError::InvalidMetadata(format!("missing key '{key}'")))
    }

    /// A metadata value if present.
    pub fn get_opt(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// A string value.
    pub fn string(&self, key: &str) -> Result<String> {
        match self.get(key)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(wrong_type(key, "string", other)),
        }
    }

    /// An unsigned integer value of any width, as usize.
    pub fn usize(&self, key: &str) -> Result<usize> {
        value_to_u64(key, self.get(key)?).map(|v| v as usize)
    }

    /// An optional unsigned integer value.
    pub fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        self.get_opt(key)
            .map(|v| value_to_u64(key, v).map(|v| v as usize))
            .transpose()
    }

    /// A float value (f32 or f64).
    pub fn f32(&self, key: &str) -> Result<f32> {
        match self.get(key)? {
            Value::F32(v) => Ok(*v),
            Value::F64(v) => Ok(*v as f32),
            other => Err(wrong_type(key, "float", other)),
        }
    }

    /// An optional float value.
    pub fn f32_opt(&self, key: &str) -> Result<Option<f32>> {
        if self.get_opt(key).is_some() {
            self.f32(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional boolean value.
    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.get_opt(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(key, "bool", other)),
        }
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        let Value::Array(items) = self.get(key)? else {
            return Err(EngineError::InvalidMetadata(format!(
                "'{key}' is not an array"
            )));
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_type(key, "string array", other)),
            })
            .collect()
    }

    /// An optional array of floats.
    pub fn f32s_opt(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(v) = self.get_opt(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(wrong_type(key, "float array", v));
        };
        items
            .iter()
            .map(|v| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                other => Err(wrong_type(key, "float array", other)),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An optional array of integers.
    pub fn ints_opt(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(v) = self.get_opt(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(wrong_type(key, "integer array", v));
        };
        items
            .iter()
            .map(|v| value_to_i64(key, v))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Whether a tensor exists.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Shape and type of a tensor (dims outermost first, as candle orders them).
    pub fn tensor_info(&self, name: &str) -> Result<(Vec<usize>, GgmlDType)> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| EngineError::InvalidTensor(format!("missing tensor '{name}'")))?;
        Ok((info.shape.dims().to_vec(), info.ggml_dtype))
    }

    /// Read a tensor after checking that its shape is exactly `dims`.
    pub fn tensor(&mut self, name: &str, dims: &[usize], device: &Device) -> Result<QTensor> {
        let (actual, _) = self.tensor_info(name)?;
        if actual != dims {
            return Err(EngineError::InvalidTensor(format!(
                "tensor '{name}' has shape {actual:?}, the metadata implies {dims:?}"
            )));
        }
        let path = self.path.clone();
        self.content
            .tensor(&mut self.reader, name, device)
            .map_err(|e| EngineError::Corrupt {
                path,
                reason: format!("reading tensor '{name}': {}", candle_message(&e)),
            })
    }

    /// A reader positioned at the first byte of a tensor's data, after checking that its shape
    /// is exactly `dims`; with the tensor's type. The data's extent was checked at open.
    pub fn tensor_reader(
        &mut self,
        name: &str,
        dims: &[usize],
    ) -> Result<(GgmlDType, &mut BufReader<File>)> {
        let (actual, dtype) = self.tensor_info(name)?;
        if actual != dims {
            return Err(EngineError::InvalidTensor(format!(
                "tensor '{name}' has shape {actual:?}, the metadata implies {dims:?}"
            )));
        }
        let at = self.content.tensor_data_offset + self.content.tensor_infos[name].offset;
        self.reader
            .seek(SeekFrom::Start(at))
            .map_err(|e| self.corrupt(format!("seeking to tensor '{name}': {e}")))?;
        Ok((dtype, &mut self.reader))
    }

    /// Read a 1-D f32 vector (norm weights, biases), checking its length.
    pub fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.tensor(name, &[len], &Device::Cpu)?;
        Ok(t.dequantize(&Device::Cpu)?.to_vec1::<f32>()?)
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> EngineError {
    EngineError::InvalidMetadata(format!(
        "'{key}' should be a {expected}, found {:?}",
        got.value_type()
    ))
}

fn value_to_u64(key: &str, v: &Value) -> Result<u64> {
    let signed = match v {
        Value::U8(x) => return Ok(*x as u64),
        Value::U16(x) => return Ok(*x as u64),
        Value::U32(x) => return Ok(*x as u64),
        Value::U64(x) => return Ok(*x),
        Value::I8(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::I64(x) => *x,
        other => return Err(wrong_type(key, "integer", other)),
    };
    u64::try_from(signed)
        .map_err(|_| EngineError::InvalidMetadata(format!("'{key}' is negative ({signed})")))
}

fn value_to_i64(key: &str, v: &Value) -> Result<i64> {
    Ok(match v {
        Value::U8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::U64(x) => i64::try_from(*x)
            .map_err(|_| EngineError::InvalidMetadata(format!("'{key}' overflows")))?,
        Value::I8(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::I64(x) => *x,
        other => return Err(wrong_type(key, "integer", other)),
    })
}
