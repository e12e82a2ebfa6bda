//! A tiny random-weight GGUF model, written on demand, for fast deterministic engine tests.
//!
//! It has a real byte-level BPE vocabulary (every byte plus a few merges and chat markup), a chat
//! template, Q8_0 matmul weights and f32 norms, in the llama or gemma3 layout.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::atomic::AtomicFile;
use crate::error::Result;
use crate::model::config::Arch;
use crate::model::sampling::Rng;
pub use crate::quantize::rewrite_gguf;

/// Shape of the tiny model.
#[derive(Clone, Debug)]
pub struct TinySpec {
    /// Layout to write.
    pub arch: Arch,
    /// Seed of the random weights.
    pub seed: u64,
    /// Layers.
    pub n_layer: usize,
    /// Context window.
    pub context_length: usize,
}

impl TinySpec {
    /// A two-layer llama.
    pub fn llama() -> Self {
        Self {
            arch: Arch::Llama,
            seed: 7,
            n_layer: 2,
            context_length: 256,
        }
    }

    /// A four-layer gemma3 whose first three layers use a sliding window of 8.
    pub fn gemma3() -> Self {
        Self {
            arch: Arch::Gemma3,
            seed: 11,
            n_layer: 4,
            context_length: 256,
        }
    }
}

const HIDDEN: usize = 64;
const FFN: usize = 128;
const N_HEAD: usize = 4;
const N_KV_HEAD: usize = 2;
const HEAD_DIM: usize = 32;
const MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("Ġ", "s"),
];
const SPECIALS: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// GPT-2's byte-to-character table.
pub fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in printable.iter().zip(&chars) {
        table[*b as usize] = char::from_u32(*c).unwrap_or('?');
    }
    table
}

/// The tiny model's vocabulary, in id order.
pub fn vocabulary() -> Vec<String> {
    let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens.extend(SPECIALS.iter().map(|s| s.to_string()));
    tokens
}

/// Write the tiny model to `path`.
pub fn write_tiny_model(path: &Path, spec: &TinySpec) -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(spec.seed);
    let tokens = vocabulary();
    let vocab = tokens.len();
    let mut random = |shape: &[usize], scale: f32, offset: f32| -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| offset + scale * (2.0 * rng.next_f64() as f32 - 1.0))
            .collect();
        Ok(Tensor::from_vec(data, shape, &dev)?)
    };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let q8 = |t: Tensor| QTensor::quantize(&t, GgmlDType::Q8_0);
    let f32t = |t: Tensor| QTensor::quantize(&t, GgmlDType::F32);
    tensors.push((
        "token_embd.weight".into(),
        q8(random(&[vocab, HIDDEN], 0.25, 0.0)?)?,
    ));
    tensors.push((
        "output_norm.weight".into(),
        f32t(random(&[HIDDEN], 0.1, 1.0)?)?,
    ));
    let (q_dim, kv_dim) = (N_HEAD * HEAD_DIM, N_KV_HEAD * HEAD_DIM);
    for l in 0..spec.n_layer {
        let n = |s: &str| format!("blk.{l}.{s}");
        let w = 0.15;
        tensors.push((n("attn_norm.weight"), f32t(random(&[HIDDEN], 0.1, 1.0)?)?));
        tensors.push((n("attn_q.weight"), q8(random(&[q_dim, HIDDEN], w, 0.0)?)?));
        tensors.push((n("attn_k.weight"), q8(random(&[kv_dim, HIDDEN], w, 0.0)?)?));
        tensors.push((n("attn_v.weight"), q8(random(&[kv_dim, HIDDEN], w, 0.0)?)?));
        tensors.push((
            n("attn_output.weight"),
            q8(random(&[HIDDEN, q_dim], w, 0.0)?)?,
        ));
        tensors.push((n("ffn_norm.weight"), f32t(random(&[HIDDEN], 0.1, 1.0)?)?));
        tensors.push((n("ffn_gate.weight"), q8(random(&[FFN, HIDDEN], w, 0.0)?)?));
        tensors.push((n("ffn_up.weight"), q8(random(&[FFN, HIDDEN], w, 0.0)?)?));
        tensors.push((n("ffn_down.weight"), q8(random(&[HIDDEN, FFN], w, 0.0)?)?));
        if spec.arch == Arch::Gemma3 {
            tensors.push((
                n("attn_q_norm.weight"),
                f32t(random(&[HEAD_DIM], 0.1, 1.0)?)?,
            ));
            tensors.push((
                n("attn_k_norm.weight"),
                f32t(random(&[HEAD_DIM], 0.1, 1.0)?)?,
            ));
            tensors.push((
                n("post_attention_norm.weight"),
                f32t(random(&[HIDDEN], 0.1, 1.0)?)?,
            ));
            tensors.push((
                n("post_ffw_norm.weight"),
                f32t(random(&[HIDDEN], 0.1, 1.0)?)?,
            ));
        }
    }

    let a = spec.arch.name();
    let u32v = |v: usize| Value::U32(v as u32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(format!("tiny-{a}"))),
        (format!("{a}.block_count"), u32v(spec.n_layer)),
        (format!("{a}.context_length"), u32v(spec.context_length)),
        (format!("{a}.embedding_length"), u32v(HIDDEN)),
        (format!("{a}.feed_forward_length"), u32v(FFN)),
        (format!("{a}.attention.head_count"), u32v(N_HEAD)),
        (format!("{a}.attention.head_count_kv"), u32v(N_KV_HEAD)),
        (format!("{a}.attention.key_length"), u32v(HEAD_DIM)),
        (format!("{a}.attention.value_length"), u32v(HEAD_DIM)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (format!("{a}.rope.freq_base"), Value::F32(10_000.0)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                (0..vocab)
                    .map(|i| Value::I32(if i >= vocab - SPECIALS.len() { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(
                MERGES
                    .iter()
                    .map(|(x, y)| Value::String(format!("{x} {y}")))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id".into(), u32v(vocab - 2)),
        ("tokenizer.ggml.eos_token_id".into(), u32v(vocab - 1)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            Value::String(TEMPLATE.into()),
        ),
    ];
    if spec.arch == Arch::Gemma3 {
        meta.push((format!("{a}.attention.sliding_window"), u32v(8)));
        meta.push((format!("{a}.attention.sliding_window_pattern"), u32v(4)));
    }

    let mut w = AtomicFile::create(path)?;
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut w, &meta_refs, &tensor_refs)?;
    w.commit()
}
