//! Reading GGUF files as untrusted input.
//!
//! The header is parsed here, not by candle: candle's reader keeps one of two duplicate keys or
//! tensor names (a `HashMap`), divides by a zero `general.alignment`, accepts alignments that are
//! not powers of two, lets element counts overflow and never checks where tensor data lies. The
//! checks of llama.cpp's `gguf_init_from_file_impl` are the floor: version 2 or 3, counts and
//! lengths bounded before anything is allocated, duplicate keys and tensor names refused,
//! `general.alignment` a power of two, at most four dimensions whose element count and byte
//! size do not overflow, rows made of whole blocks, and tensor data laid out back to back in
//! header order, each padded to the alignment and inside the file, so no offset can point
//! anywhere else. Candle's tensor reader then runs on the checked header.
//!
//! Every metadata value goes through one typed helper that fails on a missing key or a wrong
//! type, and every tensor is checked against the shape the metadata implies before it is used.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::error::{candle_message, EngineError, Result};

/// Most tensors a header may declare (real models have hundreds to a few thousand).
pub const MAX_TENSORS: u64 = 1 << 16;
/// Most metadata entries a header may declare (real models have a few dozen).
pub const MAX_METADATA: u64 = 1 << 16;
/// Longest metadata key, in bytes.
pub const MAX_KEY_LEN: u64 = 1 << 16;
/// Longest string value (a chat template is the longest real one, tens of KiB).
pub const MAX_STRING_LEN: u64 = 16 << 20;
/// Most elements of one array (vocabularies and merge lists are the longest, under a million;
/// the tokenizer takes at most 2^22).
pub const MAX_ARRAY_LEN: u64 = 1 << 22;
/// Longest tensor name: ggml's `GGML_MAX_NAME` minus its terminating NUL.
pub const MAX_TENSOR_NAME_LEN: u64 = 63;
/// Most dimensions of a tensor (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Most memory the parsed header may take (strings and values), checked before each allocation:
/// hundreds of times what the largest real vocabulary needs.
pub const MAX_HEADER_MEMORY: u64 = 1 << 30;
/// `general.alignment` when the key is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// An opened GGUF file: its parsed header and a reader for tensor data.
pub struct GgufFile<R = BufReader<File>> {
    path: PathBuf,
    content: Content,
    /// Metadata keys and tensor names in file order.
    key_order: Vec<String>,
    tensor_order: Vec<String>,
    alignment: u64,
    reader: R,
    file_len: u64,
}

impl GgufFile {
    /// Open and parse the header, mapping every failure to a user-facing error.
    pub fn open(path: &Path) -> Result<Self> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EngineError::ModelNotFound {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(EngineError::io(path, e)),
        };
        let meta = file.metadata().map_err(|e| EngineError::io(path, e))?;
        if !meta.is_file() {
            return Err(EngineError::NotGguf {
                path: path.to_owned(),
                reason: "not a regular file".into(),
            });
        }
        Self::from_reader(path, BufReader::new(file), meta.len())
    }
}

impl<R: Read + Seek> GgufFile<R> {
    /// Parse the header from `reader`, positioned at the start of a GGUF image of `file_len`
    /// bytes. `path` names the file in messages.
    pub fn from_reader(path: &Path, mut reader: R, file_len: u64) -> Result<Self> {
        let header = Header::read(&mut reader, file_len).map_err(|e| match e {
            ParseError::NotGguf(reason) => EngineError::NotGguf {
                path: path.to_owned(),
                reason,
            },
            ParseError::Corrupt(reason) => EngineError::Corrupt {
                path: path.to_owned(),
                reason,
            },
            ParseError::Io(e) => EngineError::Corrupt {
                path: path.to_owned(),
                reason: format!("the header ends early ({e})"),
            },
        })?;
        Ok(Self {
            path: path.to_owned(),
            content: header.content,
            key_order: header.key_order,
            tensor_order: header.tensor_order,
            alignment: header.alignment,
            reader,
            file_len,
        })
    }
}

impl<R> GgufFile<R> {
    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All metadata.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// `general.alignment` (or the default): tensor data starts at multiples of it.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where tensor data starts: the header's length, padded to the alignment.
    pub fn data_offset(&self) -> u64 {
        self.content.tensor_data_offset
    }

    /// A tensor's data offset as the header gives it (relative to [`Self::data_offset`]).
    pub fn tensor_offset(&self, name: &str) -> Option<u64> {
        self.content.tensor_infos.get(name).map(|t| t.offset)
    }

    /// Metadata keys in file order.
    pub fn keys(&self) -> &[String] {
        &self.key_order
    }

    /// Tensor names in file order (the order of their data).
    pub fn tensor_names(&self) -> &[String] {
        &self.tensor_order
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
        value_to_usize(key, self.get(key)?)
    }

    /// An optional unsigned integer value.
    pub fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        self.get_opt(key)
            .map(|v| value_to_usize(key, v))
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
}

impl<R: Read + Seek> GgufFile<R> {
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
    pub fn tensor_reader(&mut self, name: &str, dims: &[usize]) -> Result<(GgmlDType, &mut R)> {
        let (actual, dtype) = self.tensor_info(name)?;
        if actual != dims {
            return Err(EngineError::InvalidTensor(format!(
                "tensor '{name}' has shape {actual:?}, the metadata implies {dims:?}"
            )));
        }
        let offset = self
            .content
            .tensor_infos
            .get(name)
            .map_or(0, |info| info.offset);
        // Cannot overflow: the header check put every tensor's end inside the file.
        let at = self.content.tensor_data_offset + offset;
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

fn value_to_usize(key: &str, v: &Value) -> Result<usize> {
    let v = value_to_u64(key, v)?;
    usize::try_from(v)
        .map_err(|_| EngineError::InvalidMetadata(format!("'{key}' = {v} is too large")))
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

/// Why a header was refused, before it is tied to a path.
enum ParseError {
    NotGguf(String),
    Corrupt(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for ParseError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

type Parse<T> = std::result::Result<T, ParseError>;

fn corrupt<T>(reason: String) -> Parse<T> {
    Err(ParseError::Corrupt(reason))
}

/// GGUF value types (`gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// Fewest bytes one value takes in the file (a string: its length prefix).
    fn min_disk_size(self) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 12,
        }
    }
}

/// The ggml number of a tensor type (the inverse of [`ggml_dtype`]).
pub fn ggml_type_number(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

/// A ggml tensor type thinkscope can read, from its number; names the others in the error.
fn ggml_dtype(v: u32) -> std::result::Result<GgmlDType, String> {
    Ok(match v {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => {
            let name = match v {
                16 => "IQ2_XXS",
                17 => "IQ2_XS",
                18 => "IQ3_XXS",
                19 => "IQ1_S",
                20 => "IQ4_NL",
                21 => "IQ3_S",
                22 => "IQ2_S",
                23 => "IQ4_XS",
                24 => "I8",
                25 => "I16",
                26 => "I32",
                27 => "I64",
                28 => "F64",
                29 => "IQ1_M",
                34 => "TQ1_0",
                35 => "TQ2_0",
                39 => "MXFP4",
                _ => "unknown",
            };
            return Err(format!(
                "type {v} ({name}), which thinkscope cannot read \
                 (it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K quants)"
            ));
        }
    })
}

/// The checked header.
struct Header {
    content: Content,
    key_order: Vec<String>,
    tensor_order: Vec<String>,
    alignment: u64,
}

/// Reads the header front to back, tracking the position so every length can be compared with
/// what the file has left before it is allocated.
struct HeaderReader<'a, R> {
    reader: &'a mut R,
    pos: u64,
    file_len: u64,
    /// Bytes of memory the parsed values may still take.
    memory_left: u64,
}

impl<R: Read> HeaderReader<'_, R> {
    fn remaining(&self) -> u64 {
        self.file_len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self) -> Parse<[u8; N]> {
        let mut b = [0u8; N];
        self.reader.read_exact(&mut b)?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Parse<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Parse<u64> {
        self.bytes().map(u64::from_le_bytes)
    }

    /// Charge `bytes` of memory to the header's budget before allocating them.
    fn charge(&mut self, bytes: u64, what: &dyn Fn() -> String) -> Parse<()> {
        if bytes > self.memory_left {
            return corrupt(format!(
                "{} would take more than {MAX_HEADER_MEMORY} bytes of memory",
                what()
            ));
        }
        self.memory_left -= bytes;
        Ok(())
    }

    fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> Parse<String> {
        let len = self.u64()?;
        if len > max {
            return corrupt(format!("{} is {len} bytes long, more than {max}", what()));
        }
        if len > self.remaining() {
            return corrupt(format!(
                "{} is {len} bytes long but the file has {} bytes left",
                what(),
                self.remaining()
            ));
        }
        self.charge(len, what)?;
        let mut v = vec![0u8; len as usize];
        self.reader.read_exact(&mut v)?;
        self.pos += len;
        // As candle reads them: some writers NUL-terminate, a few write invalid UTF-8.
        while v.last() == Some(&0) {
            v.pop();
        }
        Ok(match String::from_utf8(v) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn value(&mut self, kind: Kind, key: &str) -> Parse<Value> {
        Ok(match kind {
            Kind::U8 => Value::U8(self.bytes::<1>()?[0]),
            Kind::I8 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            Kind::U16 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            Kind::I16 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            Kind::U32 => Value::U32(self.u32()?),
            Kind::I32 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            Kind::F32 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            Kind::U64 => Value::U64(self.u64()?),
            Kind::I64 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            Kind::F64 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            Kind::Bool => match self.bytes::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return corrupt(format!("'{key}' is a bool of value {b}, not 0 or 1")),
            },
            Kind::String => Value::String(self.string(MAX_STRING_LEN, &|| format!("'{key}'"))?),
            Kind::Array => {
                let raw = self.u32()?;
                let Some(item) = Kind::from_u32(raw) else {
                    return corrupt(format!("'{key}' is an array of unknown type {raw}"));
                };
                if item == Kind::Array {
                    // llama.cpp refuses nested arrays too: no model uses them.
                    return corrupt(format!("'{key}' is an array of arrays"));
                }
                let len = self.u64()?;
                if len > MAX_ARRAY_LEN {
                    return corrupt(format!(
                        "'{key}' has {len} elements, more than {MAX_ARRAY_LEN}"
                    ));
                }
                if len.saturating_mul(item.min_disk_size()) > self.remaining() {
                    return corrupt(format!(
                        "'{key}' has {len} elements but the file has {} bytes left",
                        self.remaining()
                    ));
                }
                let value_size = std::mem::size_of::<Value>() as u64;
                self.charge(len * value_size, &|| format!("'{key}' ({len} elements)"))?;
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(item, key)?);
                }
                Value::Array(items)
            }
        })
    }
}

impl Header {
    fn read<R: Read>(reader: &mut R, file_len: u64) -> Parse<Self> {
        let mut r = HeaderReader {
            reader,
            pos: 0,
            file_len,
            memory_left: MAX_HEADER_MEMORY,
        };
        let magic = match r.bytes::<4>() {
            Ok(m) => m,
            Err(_) => return Err(ParseError::NotGguf("shorter than the GGUF magic".into())),
        };
        if &magic != b"GGUF" {
            return Err(ParseError::NotGguf("missing GGUF magic bytes".into()));
        }
        let version = r.u32()?;
        let magic = match version {
            2 => VersionedMagic::GgufV2,
            3 => VersionedMagic::GgufV3,
            1 => {
                return Err(ParseError::NotGguf(
                    "GGUF version 1 is no longer supported; convert the model again".into(),
                ))
            }
            v if v & 0xFFFF == 0 => {
                return Err(ParseError::NotGguf(format!(
                    "GGUF version {v:#x} looks byte-swapped (a big-endian file?)"
                )))
            }
            v => {
                return Err(ParseError::NotGguf(format!(
                    "GGUF version {v} is not supported (2 and 3 are)"
                )))
            }
        };
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        if n_tensors > MAX_TENSORS {
            return corrupt(format!(
                "the header declares {n_tensors} tensors, more than {MAX_TENSORS}"
            ));
        }
        if n_kv > MAX_METADATA {
            return corrupt(format!(
                "the header declares {n_kv} metadata entries, more than {MAX_METADATA}"
            ));
        }
        // Smallest entries: key length + type + one byte; name length + dims + type + offset.
        let needed = n_kv * 13 + n_tensors * 24;
        if needed > r.remaining() {
            return corrupt(format!(
                "the header declares {n_tensors} tensors and {n_kv} metadata entries, which \
                 need at least {needed} bytes; the file has {} left",
                r.remaining()
            ));
        }

        let mut metadata: HashMap<String, Value> = HashMap::new();
        let mut key_order = Vec::new();
        for i in 0..n_kv {
            let key = r.string(MAX_KEY_LEN, &|| format!("metadata key {i}"))?;
            if metadata.contains_key(&key) {
                let first = key_order.iter().position(|k| *k == key).unwrap_or(0);
                return corrupt(format!(
                    "metadata key '{key}' appears twice (entries {first} and {i}): the file is \
                     ambiguous"
                ));
            }
            let raw = r.u32()?;
            let Some(kind) = Kind::from_u32(raw) else {
                return corrupt(format!("metadata '{key}' has unknown type {raw}"));
            };
            let value = r.value(kind, &key)?;
            r.charge(key.len() as u64 + 64, &|| "the metadata".into())?;
            key_order.push(key.clone());
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(Value::U32(a)) => {
                return corrupt(format!("general.alignment {a} is not a power of two"))
            }
            Some(v) => {
                return corrupt(format!(
                    "general.alignment must be a u32, found {:?}",
                    v.value_type()
                ))
            }
        };

        let mut tensor_infos: HashMap<String, TensorInfo> = HashMap::new();
        let mut tensor_order = Vec::new();
        let mut sizes = Vec::new();
        for i in 0..n_tensors {
            let name = r.string(MAX_TENSOR_NAME_LEN, &|| format!("the name of tensor {i}"))?;
            if tensor_infos.contains_key(&name) {
                let first = tensor_order.iter().position(|n| *n == name).unwrap_or(0);
                return corrupt(format!(
                    "tensor name '{name}' appears twice (tensors {first} and {i}): the file is \
                     ambiguous"
                ));
            }
            let n_dims = r.u32()?;
            if n_dims > MAX_DIMS {
                return corrupt(format!(
                    "tensor '{name}' has {n_dims} dimensions, more than {MAX_DIMS}"
                ));
            }
            // ggml order: innermost (row length) first.
            let mut ne = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                ne.push(r.u64()?);
            }
            let raw = r.u32()?;
            let dtype = ggml_dtype(raw).or_else(|m| corrupt(format!("tensor '{name}' has {m}")))?;
            let offset = r.u64()?;
            let bytes = tensor_bytes(&name, &ne, dtype)?;
            r.charge(name.len() as u64 + 128, &|| "the tensor list".into())?;
            let mut dims: Vec<usize> = ne.iter().map(|&d| d as usize).collect();
            dims.reverse();
            tensor_infos.insert(
                name.clone(),
                TensorInfo {
                    ggml_dtype: dtype,
                    shape: candle_core::Shape::from(dims),
                    offset,
                },
            );
            tensor_order.push(name);
            sizes.push(bytes);
        }

        // The data section starts at the next multiple of the alignment.
        let data_offset = r
            .pos
            .checked_next_multiple_of(alignment)
            .filter(|&o| o <= file_len || n_tensors == 0)
            .map_or_else(
                || {
                    corrupt(format!(
                        "the tensor data would start past the end of the file ({file_len} bytes)"
                    ))
                },
                Ok,
            )?;
        // Tensors lie back to back in header order, each padded to the alignment (llama.cpp
        // refuses any other layout, so no offset can overlap or point elsewhere).
        let mut expected = 0u64;
        for (name, bytes) in tensor_order.iter().zip(&sizes) {
            let offset = tensor_infos.get(name).map_or(0, |t| t.offset);
            if offset != expected {
                return corrupt(format!(
                    "tensor '{name}' has data offset {offset}, expected {expected} (tensors \
                     must follow each other in header order, aligned to {alignment} bytes)"
                ));
            }
            let end = data_offset
                .checked_add(offset)
                .and_then(|o| o.checked_add(*bytes));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return corrupt(format!(
                        "tensor '{name}' needs {bytes} bytes at offset {} but the file has {file_len} bytes",
                        data_offset.saturating_add(offset)
                    ))
                }
            }
            expected = bytes
                .checked_next_multiple_of(alignment)
                .and_then(|padded| expected.checked_add(padded))
                .map_or_else(
                    || corrupt(format!("tensor '{name}': the data section size overflows")),
                    Ok,
                )?;
        }

        Ok(Self {
            content: Content {
                magic,
                metadata,
                tensor_infos,
                tensor_data_offset: data_offset,
            },
            key_order,
            tensor_order,
            alignment,
        })
    }
}

/// Bytes a tensor's data takes, refusing shapes whose count or size overflows, zero dimensions
/// and rows that are not whole blocks.
fn tensor_bytes(name: &str, ne: &[u64], dtype: GgmlDType) -> Parse<u64> {
    let block = dtype.block_size() as u64;
    let type_size = dtype.type_size() as u64;
    if let Some(d) = ne.iter().position(|&d| d == 0) {
        return corrupt(format!("tensor '{name}' has a zero-sized dimension {d}"));
    }
    let mut elems: u64 = 1;
    for &d in ne {
        elems = match elems.checked_mul(d) {
            Some(e) if e <= i64::MAX as u64 && e <= usize::MAX as u64 => e,
            _ => {
                return corrupt(format!(
                    "tensor '{name}' with shape {ne:?} has more elements than can be counted"
                ))
            }
        };
    }
    let row = ne.first().copied().unwrap_or(1);
    if block == 0 || row % block != 0 {
        return corrupt(format!(
            "tensor '{name}' has rows of {row} elements, not a multiple of its type's block \
             size {block}"
        ));
    }
    (elems / block)
        .checked_mul(type_size)
        .filter(|&b| b <= i64::MAX as u64)
        .map_or_else(
            || {
                corrupt(format!(
                    "tensor '{name}' with shape {ne:?} has a byte size that overflows"
                ))
            },
            Ok,
        )
}
