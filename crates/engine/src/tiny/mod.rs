//! Tiny random-weight GGUF models, written on demand, for fast deterministic engine tests.
//!
//! [`TinySpec::llama`] and [`TinySpec::gemma3`] are the engine tests' models: every byte plus a
//! few merges and ChatML markup, Q8_0 matmul weights and f32 norms. [`oracle_specs`] lists one
//! model per architecture and rope variant, each in its family's layout (fused tensors, biases,
//! norms, rope factor tensors), with its family's kind of vocabulary (trained on a fixed corpus,
//! see `vocab.rs`), pre-tokenizer name and chat template: llama.cpp runs the same files to give
//! the reference logits and token ids in `tests/data/oracle/`.

mod chat;
mod vocab;

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

pub use self::chat::TinyChat;
use self::vocab::Vocabulary;
pub use self::vocab::CORPUS;
use crate::atomic::AtomicFile;
use crate::error::Result;
use crate::model::config::Arch;
use crate::model::sampling::Rng;
pub use crate::quantize::rewrite_gguf;

/// Widths of the tiny model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TinyShape {
    /// Residual width.
    pub hidden: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Head width.
    pub head_dim: usize,
    /// Rotated dimensions of a head.
    pub rope_dim: usize,
}

impl TinyShape {
    const DEFAULT: Self = Self {
        hidden: 64,
        ffn: 128,
        n_head: 4,
        n_kv_head: 2,
        head_dim: 32,
        rope_dim: 32,
    };
}

/// Which vocabulary the file carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TinyVocab {
    /// Every byte, eight merges, then the chat style's markup (`smollm` pre-tokenizer): the
    /// engine tests' vocabulary.
    Basic,
    /// Byte-level BPE (`tokenizer.ggml.model = "gpt2"`) trained on [`CORPUS`], with this
    /// `tokenizer.ggml.pre`.
    Bpe {
        /// The pre-tokenizer name llama.cpp maps to its regexes.
        pre: &'static str,
    },
    /// SentencePiece BPE (`tokenizer.ggml.model = "llama"`) trained on [`CORPUS`], with byte
    /// fallback.
    Spm {
        /// `tokenizer.ggml.add_space_prefix`.
        add_space_prefix: bool,
    },
}

/// How the file asks for rotary scaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TinyRope {
    /// No scaling keys.
    Plain,
    /// `rope.scaling.type = linear`: positions divided by `factor`.
    Linear {
        /// `rope.scaling.factor`.
        factor: f32,
    },
    /// `rope.scaling.type = yarn`.
    Yarn {
        /// `rope.scaling.factor`.
        factor: f32,
        /// `rope.scaling.original_context_length`.
        original_context: usize,
        /// `rope.scaling.yarn_beta_fast`, when written (llama.cpp ignores it for these
        /// architectures, and so must thinkscope).
        beta_fast: Option<f32>,
    },
    /// Llama 3.x: a `rope_freqs.weight` tensor of per-frequency divisors, computed as
    /// `convert_hf_to_gguf.py` computes it from the `llama3` rope parameters.
    Llama3 {
        /// `factor`.
        factor: f32,
        /// `low_freq_factor`.
        low_freq_factor: f32,
        /// `high_freq_factor`.
        high_freq_factor: f32,
        /// `original_max_position_embeddings`.
        original_context: usize,
    },
    /// Phi-3.5 / Phi-4-mini LongRoPE: `rope_factors_long`/`rope_factors_short` tensors, the
    /// original context and the attention factor the converter derives from it.
    LongRope {
        /// `rope.scaling.original_context_length`.
        original_context: usize,
    },
}

/// Shape, layout, vocabulary and template of a tiny model.
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
    /// Widths.
    pub shape: TinyShape,
    /// Vocabulary kind.
    pub vocab: TinyVocab,
    /// Chat template and its special tokens.
    pub chat: TinyChat,
    /// Rotary scaling.
    pub rope: TinyRope,
    /// `rope.freq_base`.
    pub rope_base: f32,
    /// `rope.freq_base_swa` (sliding-window layers), when written.
    pub rope_base_swa: Option<f32>,
    /// Type of the weight matrices (norms, biases and factors are always f32).
    pub weights: GgmlDType,
    /// A token the model is made to favour wherever it is (`None` for the oracle models).
    pub favour: Option<TinyFavour>,
}

/// Make a random-weight model favour one token: every embedding shares a component along one
/// direction, which survives the few random layers into the final hidden state, and the
/// favoured token's (tied) output row points that way `strength` times as far. The token then
/// comes up often at any position, not always: how a tiny thinking model is made to try to end
/// its thinking, so budget forcing has something to suppress.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TinyFavour {
    /// The favoured token (a piece of the vocabulary).
    pub piece: &'static str,
    /// The shared component added to every embedding.
    pub offset: f32,
    /// How much further the favoured token's row points along it.
    pub strength: f32,
}

impl TinySpec {
    /// A two-layer llama.
    pub fn llama() -> Self {
        Self {
            arch: Arch::Llama,
            seed: 7,
            n_layer: 2,
            context_length: 256,
            shape: TinyShape::DEFAULT,
            vocab: TinyVocab::Basic,
            chat: TinyChat::ChatMl,
            rope: TinyRope::Plain,
            rope_base: 10_000.0,
            rope_base_swa: None,
            weights: GgmlDType::Q8_0,
            favour: None,
        }
    }

    /// A four-layer gemma3 whose first three layers use a sliding window of 8.
    pub fn gemma3() -> Self {
        Self {
            arch: Arch::Gemma3,
            seed: 11,
            n_layer: 4,
            ..Self::llama()
        }
    }
}

const QWEN2_SHAPE: TinyShape = TinyShape {
    head_dim: 16,
    rope_dim: 16,
    ..TinyShape::DEFAULT
};

/// Number of merges (or learned pieces) of the oracle vocabularies.
const ORACLE_MERGES: usize = 240;

/// One tiny model per architecture and rope variant, by name: the files the llama.cpp oracle
/// (`tests/data/oracle/make_oracle.py`) ran. Changing one changes its bytes, so its committed
/// reference must be regenerated.
pub fn oracle_specs() -> Vec<(&'static str, TinySpec)> {
    let base = |arch, seed, vocab, chat| TinySpec {
        arch,
        seed,
        n_layer: 2,
        context_length: 256,
        shape: TinyShape::DEFAULT,
        vocab,
        chat,
        rope: TinyRope::Plain,
        rope_base: 10_000.0,
        rope_base_swa: None,
        // f32 weights: llama.cpp and thinkscope then both multiply in f32 (no 8-bit activations
        // to round differently), which leaves the f16 KV cache as the main difference.
        weights: GgmlDType::F32,
        favour: None,
    };
    let bpe = |pre| TinyVocab::Bpe { pre };
    vec![
        // SmolLM2: llama layout, StarCoder-style digit splitting.
        (
            "llama",
            base(Arch::Llama, 101, bpe("smollm"), TinyChat::ChatMl),
        ),
        // Llama 3.2: the rope_freqs factors, Llama 3 regex and whole-word lookup.
        (
            "llama3",
            TinySpec {
                rope: TinyRope::Llama3 {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_context: 64,
                },
                rope_base: 500_000.0,
                ..base(Arch::Llama, 102, bpe("llama-bpe"), TinyChat::Llama3)
            },
        ),
        (
            "llama-linear",
            TinySpec {
                rope: TinyRope::Linear { factor: 4.0 },
                ..base(Arch::Llama, 103, bpe("llama-bpe"), TinyChat::Llama3)
            },
        ),
        // Qwen2.5: q/k/v biases, NeoX rope, single digits (llama.cpp's qwen2 wants q as wide as
        // the residual).
        (
            "qwen2",
            TinySpec {
                shape: QWEN2_SHAPE,
                ..base(Arch::Qwen2, 104, bpe("qwen2"), TinyChat::ChatMl)
            },
        ),
        // DeepSeek-R1-Distill-Qwen: qwen2 layout, its own pre-tokenizer name, a template that
        // opens the thinking.
        (
            "r1-distill-qwen",
            TinySpec {
                shape: QWEN2_SHAPE,
                ..base(
                    Arch::Qwen2,
                    105,
                    bpe("deepseek-r1-qwen"),
                    TinyChat::R1Distill,
                )
            },
        ),
        // Qwen3: q/k norms, thinking delimiters and the enable_thinking switch.
        (
            "qwen3",
            base(Arch::Qwen3, 106, bpe("qwen2"), TinyChat::Qwen3),
        ),
        (
            "qwen3-yarn",
            TinySpec {
                rope: TinyRope::Yarn {
                    factor: 4.0,
                    original_context: 4096,
                    beta_fast: Some(8.0),
                },
                ..base(Arch::Qwen3, 107, bpe("qwen2"), TinyChat::Qwen3)
            },
        ),
        // Gemma 3 4B-style: sliding-window layers, linear scaling on the global ones only,
        // SentencePiece without a space prefix.
        (
            "gemma3",
            TinySpec {
                n_layer: 4,
                rope: TinyRope::Linear { factor: 8.0 },
                rope_base: 1_000_000.0,
                rope_base_swa: Some(20_000.0),
                ..base(
                    Arch::Gemma3,
                    108,
                    TinyVocab::Spm {
                        add_space_prefix: false,
                    },
                    TinyChat::Gemma,
                )
            },
        ),
        // Gemma 3 27B's layer count, which llama.cpp gives another attention scale.
        (
            "gemma3-27b",
            TinySpec {
                n_layer: 62,
                rope_base: 1_000_000.0,
                ..base(
                    Arch::Gemma3,
                    111,
                    TinyVocab::Spm {
                        add_space_prefix: false,
                    },
                    TinyChat::Gemma,
                )
            },
        ),
        // Phi-4-mini: fused qkv and gate/up, partial rotary, LongRoPE factors, gpt-4o regex.
        (
            "phi3",
            oracle_phi3(base(Arch::Phi3, 109, bpe("gpt-4o"), TinyChat::Phi4)),
        ),
        // The same Phi-4-mini in Q8_0: the fused matrices split for thinkscope's own kernels.
        (
            "phi3-q8",
            TinySpec {
                weights: GgmlDType::Q8_0,
                ..oracle_phi3(base(Arch::Phi3, 109, bpe("gpt-4o"), TinyChat::Phi4))
            },
        ),
        // SmolLM3: every fourth layer without rope.
        (
            "smollm3",
            TinySpec {
                n_layer: 4,
                ..base(Arch::Smollm3, 110, bpe("smaug-bpe"), TinyChat::Smollm3)
            },
        ),
    ]
}

fn oracle_phi3(base: TinySpec) -> TinySpec {
    TinySpec {
        shape: TinyShape {
            n_head: 2,
            n_kv_head: 1,
            rope_dim: 24,
            ..TinyShape::DEFAULT
        },
        rope: TinyRope::LongRope {
            original_context: 32,
        },
        ..base
    }
}

/// Thinking models that often try to end their thinking, for budget forcing's tests and demos:
/// the oracle models of the thinking families (`qwen3`, `r1-distill-qwen`, `smollm3`) with
/// their closing delimiter favoured ([`TinyFavour`]), named `<family>-thinker`.
pub fn thinker_specs() -> Vec<(&'static str, TinySpec)> {
    [
        ("qwen3-thinker", "qwen3"),
        ("r1-distill-qwen-thinker", "r1-distill-qwen"),
        ("smollm3-thinker", "smollm3"),
    ]
    .into_iter()
    .filter_map(|(name, base)| {
        let spec = oracle_spec(base)?;
        Some((
            name,
            TinySpec {
                favour: Some(TinyFavour {
                    piece: "</think>",
                    offset: 2.0,
                    strength: 3.0,
                }),
                ..spec
            },
        ))
    })
    .collect()
}

/// The tiny model spec called `name` in [`oracle_specs`] or [`thinker_specs`].
pub fn oracle_spec(name: &str) -> Option<TinySpec> {
    oracle_specs()
        .into_iter()
        .chain(if name.ends_with("-thinker") {
            thinker_specs()
        } else {
            Vec::new()
        })
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s)
}

const BASIC_MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("Ġ", "s"),
];

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

/// The engine tests' vocabulary ([`TinyVocab::Basic`] with ChatML), in id order.
pub fn vocabulary() -> Vec<String> {
    basic_vocabulary(&TinyChat::ChatMl.specials()).tokens
}

fn basic_vocabulary(specials: &[(&str, i32)]) -> Vocabulary {
    let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
    tokens.extend(BASIC_MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    let mut types = vec![vocab::NORMAL; tokens.len()];
    for (piece, ty) in specials {
        tokens.push((*piece).to_owned());
        types.push(*ty);
    }
    Vocabulary {
        tokens,
        types,
        merges: Some(
            BASIC_MERGES
                .iter()
                .map(|(a, b)| format!("{a} {b}"))
                .collect(),
        ),
        scores: None,
    }
}

/// The rope factors `convert_hf_to_gguf.py` writes for Llama 3 (`LlamaModel.generate_extra_tensors`).
fn llama3_factors(spec: &TinySpec, factor: f32, low: f32, high: f32, orig: usize) -> Vec<f32> {
    let dim = spec.shape.rope_dim;
    let (low, high, factor, orig) = (low as f64, high as f64, factor as f64, orig as f64);
    let (low_wavelen, high_wavelen) = (orig / low, orig / high);
    (0..dim / 2)
        .map(|i| {
            let freq = 1.0 / (spec.rope_base as f64).powf(2.0 * i as f64 / dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (orig / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// Write the tiny model to `path`.
pub fn write_tiny_model(path: &Path, spec: &TinySpec) -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(spec.seed);
    let s = spec.shape;
    let specials = spec.chat.specials();
    let vocab = match spec.vocab {
        TinyVocab::Basic => basic_vocabulary(&specials),
        TinyVocab::Bpe { .. } => vocab::byte_level_bpe(ORACLE_MERGES, &specials),
        TinyVocab::Spm { add_space_prefix } => {
            vocab::sentencepiece(ORACLE_MERGES, &specials, add_space_prefix)
        }
    };
    let n_vocab = vocab.tokens.len();
    let mut random = |shape: &[usize], scale: f32, offset: f32| -> Vec<f32> {
        let n: usize = shape.iter().product();
        (0..n)
            .map(|_| offset + scale * (2.0 * rng.next_f64() as f32 - 1.0))
            .collect()
    };
    let tensor = |data: Vec<f32>, shape: &[usize], dtype: GgmlDType| -> Result<QTensor> {
        Ok(QTensor::quantize(
            &Tensor::from_vec(data, shape, &dev)?,
            dtype,
        )?)
    };
    let q8 = |data: Vec<f32>, shape: &[usize]| tensor(data, shape, spec.weights);
    let f32t = |data: Vec<f32>| {
        let n = data.len();
        tensor(data, &[n], GgmlDType::F32)
    };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut embeddings = random(&[n_vocab, s.hidden], 0.25, 0.0);
    if let Some(f) = spec.favour {
        let Some(favoured) = vocab.id(f.piece) else {
            return Err(crate::error::EngineError::InvalidParameter(format!(
                "the tiny vocabulary has no '{}' to favour",
                f.piece
            )));
        };
        for row in embeddings.chunks_mut(s.hidden) {
            row[0] += f.offset;
        }
        // An output matrix of its own, so reading the favoured token does not favour it more.
        let mut output = embeddings.clone();
        output[favoured * s.hidden] += f.strength;
        tensors.push(("output.weight".into(), q8(output, &[n_vocab, s.hidden])?));
    }
    tensors.push((
        "token_embd.weight".into(),
        q8(embeddings, &[n_vocab, s.hidden])?,
    ));
    tensors.push((
        "output_norm.weight".into(),
        f32t(random(&[s.hidden], 0.1, 1.0))?,
    ));
    let (q_dim, kv_dim) = (s.n_head * s.head_dim, s.n_kv_head * s.head_dim);
    let fused = spec.arch == Arch::Phi3;
    for l in 0..spec.n_layer {
        let n = |t: &str| format!("blk.{l}.{t}");
        let w = 0.15;
        tensors.push((n("attn_norm.weight"), f32t(random(&[s.hidden], 0.1, 1.0))?));
        let q = random(&[q_dim, s.hidden], w, 0.0);
        let k = random(&[kv_dim, s.hidden], w, 0.0);
        let v = random(&[kv_dim, s.hidden], w, 0.0);
        if fused {
            let qkv: Vec<f32> = q.into_iter().chain(k).chain(v).collect();
            let rows = q_dim + 2 * kv_dim;
            tensors.push((n("attn_qkv.weight"), q8(qkv, &[rows, s.hidden])?));
        } else {
            tensors.push((n("attn_q.weight"), q8(q, &[q_dim, s.hidden])?));
            tensors.push((n("attn_k.weight"), q8(k, &[kv_dim, s.hidden])?));
            tensors.push((n("attn_v.weight"), q8(v, &[kv_dim, s.hidden])?));
        }
        tensors.push((
            n("attn_output.weight"),
            q8(random(&[s.hidden, q_dim], w, 0.0), &[s.hidden, q_dim])?,
        ));
        tensors.push((n("ffn_norm.weight"), f32t(random(&[s.hidden], 0.1, 1.0))?));
        let gate = random(&[s.ffn, s.hidden], w, 0.0);
        let up = random(&[s.ffn, s.hidden], w, 0.0);
        if fused {
            // llama.cpp's SWIGLU takes the gate from the first half of the rows.
            let gate_up: Vec<f32> = gate.into_iter().chain(up).collect();
            tensors.push((n("ffn_up.weight"), q8(gate_up, &[2 * s.ffn, s.hidden])?));
        } else {
            tensors.push((n("ffn_gate.weight"), q8(gate, &[s.ffn, s.hidden])?));
            tensors.push((n("ffn_up.weight"), q8(up, &[s.ffn, s.hidden])?));
        }
        tensors.push((
            n("ffn_down.weight"),
            q8(random(&[s.hidden, s.ffn], w, 0.0), &[s.hidden, s.ffn])?,
        ));
        if matches!(spec.arch, Arch::Gemma3 | Arch::Qwen3) {
            let qn = f32t(random(&[s.head_dim], 0.1, 1.0))?;
            tensors.push((n("attn_q_norm.weight"), qn));
            let kn = f32t(random(&[s.head_dim], 0.1, 1.0))?;
            tensors.push((n("attn_k_norm.weight"), kn));
        }
        if spec.arch == Arch::Gemma3 {
            let pa = f32t(random(&[s.hidden], 0.1, 1.0))?;
            tensors.push((n("post_attention_norm.weight"), pa));
            let pf = f32t(random(&[s.hidden], 0.1, 1.0))?;
            tensors.push((n("post_ffw_norm.weight"), pf));
        }
        if spec.arch == Arch::Qwen2 {
            tensors.push((n("attn_q.bias"), f32t(random(&[q_dim], 0.1, 0.0))?));
            tensors.push((n("attn_k.bias"), f32t(random(&[kv_dim], 0.1, 0.0))?));
            tensors.push((n("attn_v.bias"), f32t(random(&[kv_dim], 0.1, 0.0))?));
        }
    }

    let a = spec.arch.name();
    // llama.cpp sets Phi-3's special-token strip flags by `general.name` ("phi3", "phi-3"), which
    // Phi-4-mini files don't match: the tiny phi3 is named like those.
    let name = match spec.arch {
        Arch::Phi3 => "tiny-phi-4-mini".to_owned(),
        _ => format!("tiny-{a}"),
    };
    let u32v = |v: usize| Value::U32(v as u32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(name)),
        (format!("{a}.block_count"), u32v(spec.n_layer)),
        (format!("{a}.context_length"), u32v(spec.context_length)),
        (format!("{a}.embedding_length"), u32v(s.hidden)),
        (format!("{a}.feed_forward_length"), u32v(s.ffn)),
        (format!("{a}.attention.head_count"), u32v(s.n_head)),
        (format!("{a}.attention.head_count_kv"), u32v(s.n_kv_head)),
        (format!("{a}.attention.key_length"), u32v(s.head_dim)),
        (format!("{a}.attention.value_length"), u32v(s.head_dim)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (format!("{a}.rope.freq_base"), Value::F32(spec.rope_base)),
    ];
    if let Some(b) = spec.rope_base_swa {
        meta.push((format!("{a}.rope.freq_base_swa"), Value::F32(b)));
    }
    if s.rope_dim != s.head_dim {
        meta.push((format!("{a}.rope.dimension_count"), u32v(s.rope_dim)));
    }
    match spec.rope {
        TinyRope::Plain => {}
        TinyRope::Linear { factor } => {
            meta.push((
                format!("{a}.rope.scaling.type"),
                Value::String("linear".into()),
            ));
            meta.push((format!("{a}.rope.scaling.factor"), Value::F32(factor)));
        }
        TinyRope::Yarn {
            factor,
            original_context,
            beta_fast,
        } => {
            meta.push((
                format!("{a}.rope.scaling.type"),
                Value::String("yarn".into()),
            ));
            meta.push((format!("{a}.rope.scaling.factor"), Value::F32(factor)));
            meta.push((
                format!("{a}.rope.scaling.original_context_length"),
                u32v(original_context),
            ));
            if let Some(b) = beta_fast {
                meta.push((format!("{a}.rope.scaling.yarn_beta_fast"), Value::F32(b)));
            }
        }
        TinyRope::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } => {
            let f = llama3_factors(
                spec,
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            );
            tensors.push(("rope_freqs.weight".into(), f32t(f)?));
        }
        TinyRope::LongRope { original_context } => {
            let half = s.rope_dim / 2;
            let ramp = |i: usize| i as f32 / (half.max(2) - 1) as f32;
            let long: Vec<f32> = (0..half).map(|i| 1.0 + 3.0 * ramp(i)).collect();
            let short: Vec<f32> = (0..half).map(|i| 1.0 + 0.5 * ramp(i) * ramp(i)).collect();
            tensors.push(("rope_factors_long.weight".into(), f32t(long)?));
            tensors.push(("rope_factors_short.weight".into(), f32t(short)?));
            meta.push((
                format!("{a}.rope.scaling.original_context_length"),
                u32v(original_context),
            ));
            // As the converter computes it for `longrope`: sqrt(1 + ln(scale) / ln(original)).
            let scale = spec.context_length as f64 / original_context as f64;
            let attn = (1.0 + scale.ln() / (original_context as f64).ln()).sqrt();
            meta.push((
                format!("{a}.rope.scaling.attn_factor"),
                Value::F32(attn as f32),
            ));
        }
    }
    match spec.arch {
        Arch::Gemma3 => {
            meta.push((format!("{a}.attention.sliding_window"), u32v(8)));
            meta.push((format!("{a}.attention.sliding_window_pattern"), u32v(4)));
        }
        // Phi-4 writes a window of 0; llama.cpp runs every phi3 layer globally anyway.
        Arch::Phi3 => meta.push((format!("{a}.attention.sliding_window"), u32v(0))),
        _ => {}
    }

    let ids = spec.chat.special_ids(&vocab);
    let strings = |v: &[String]| Value::Array(v.iter().map(|t| Value::String(t.clone())).collect());
    let (model, pre) = match spec.vocab {
        TinyVocab::Basic => ("gpt2", Some("smollm")),
        TinyVocab::Bpe { pre } => ("gpt2", Some(pre)),
        TinyVocab::Spm { .. } => ("llama", None),
    };
    meta.push(("tokenizer.ggml.model".into(), Value::String(model.into())));
    if let Some(pre) = pre {
        meta.push(("tokenizer.ggml.pre".into(), Value::String(pre.into())));
    }
    meta.push(("tokenizer.ggml.tokens".into(), strings(&vocab.tokens)));
    if let Some(scores) = &vocab.scores {
        meta.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(scores.iter().map(|&x| Value::F32(x)).collect()),
        ));
    }
    meta.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(vocab.types.iter().map(|&t| Value::I32(t)).collect()),
    ));
    if let Some(merges) = &vocab.merges {
        meta.push(("tokenizer.ggml.merges".into(), strings(merges)));
    }
    if let Some(id) = ids.bos {
        meta.push(("tokenizer.ggml.bos_token_id".into(), u32v(id)));
    }
    if let Some(id) = ids.eos {
        meta.push(("tokenizer.ggml.eos_token_id".into(), u32v(id)));
    }
    if let Some(id) = ids.eot {
        meta.push(("tokenizer.ggml.eot_token_id".into(), u32v(id)));
    }
    meta.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(ids.add_bos),
    ));
    if let TinyVocab::Spm { add_space_prefix } = spec.vocab {
        meta.push((
            "tokenizer.ggml.add_space_prefix".into(),
            Value::Bool(add_space_prefix),
        ));
    }
    meta.push((
        "tokenizer.chat_template".into(),
        Value::String(spec.chat.template().into()),
    ));

    let mut w = AtomicFile::create(path)?;
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut w, &meta_refs, &tensor_refs)?;
    w.commit()
}
