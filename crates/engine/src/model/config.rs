//! Hyper-parameters of a transformer, read from GGUF metadata per architecture.

use serde::Serialize;

use super::gguf::GgufFile;
use super::rope::{RopeScaling, RopeTable};
use crate::error::{EngineError, Result};

/// Model families the forward pass implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama 2/3, SmolLM, TinyLlama, Mistral-style dense models.
    Llama,
    /// Qwen 2 / 2.5: llama with q/k/v biases and NeoX rotary layout.
    Qwen2,
    /// Qwen 3: NeoX rotary layout and per-head q/k RMS norms.
    Qwen3,
    /// Gemma 3: q/k norms, sandwich norms, GELU, sliding-window layers, scaled embeddings.
    Gemma3,
    /// Phi-3 / Phi-3.5 / Phi-4-mini: fused q/k/v and gate/up matrices, NeoX rotary layout
    /// (often partial), LongRoPE factors.
    Phi3,
    /// SmolLM3: llama with every fourth layer attending without rotary embeddings.
    Smollm3,
}

impl Arch {
    /// Every architecture the forward pass implements.
    pub const ALL: [Self; 6] = [
        Self::Llama,
        Self::Qwen2,
        Self::Qwen3,
        Self::Gemma3,
        Self::Phi3,
        Self::Smollm3,
    ];

    /// Parse `general.architecture`.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| EngineError::UnsupportedArchitecture(name.to_owned()))
    }

    /// The name used as a GGUF metadata prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma3 => "gemma3",
            Self::Phi3 => "phi3",
            Self::Smollm3 => "smollm3",
        }
    }

    /// The supported names, comma separated (for error messages).
    pub fn supported() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): llama.cpp's "normal" rope; GGUF llama weights are permuted for it.
    Interleaved,
    /// Halves (i, i + d/2): GPT-NeoX style, used by Qwen and Gemma.
    Neox,
}

/// The feed-forward gate activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Activation {
    /// SiLU (SwiGLU).
    Silu,
    /// GELU, tanh approximation (GeGLU).
    GeluTanh,
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Clone, Debug, Serialize)]
pub struct ModelConfig {
    /// Model family.
    pub arch: Arch,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Residual stream width.
    pub hidden: usize,
    /// Feed-forward inner width.
    pub ffn: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_kv_head: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab: usize,
    /// Trained context window in tokens.
    pub context_length: usize,
    /// RMS norm epsilon.
    pub rms_eps: f32,
    /// Rotary base for global-attention layers.
    pub rope_base: f32,
    /// Rotary base for sliding-window layers (Gemma 3).
    pub rope_base_local: f32,
    /// Number of head dimensions that are rotated.
    pub rope_dim: usize,
    /// Pairing of rotated dimensions.
    pub rope_style: RopeStyle,
    /// Attention window for sliding-window layers.
    pub sliding_window: Option<usize>,
    /// Every `swa_period`-th layer is global, the others slide (Gemma 3: 6).
    pub swa_period: usize,
    /// Softmax scale applied to q·k.
    pub attn_scale: f32,
    /// Multiplier on token embeddings (Gemma: sqrt(hidden)).
    pub embed_scale: f32,
    /// Gate activation.
    pub activation: Activation,
    /// Per-head RMS norm on q and k.
    pub qk_norm: bool,
    /// Extra norms after attention and after the MLP (Gemma).
    pub post_norms: bool,
    /// Biases on the q/k/v projections.
    pub qkv_bias: bool,
    /// Rotary scaling (type, factor, YaRN, factor tensors).
    pub rope_scaling: RopeScaling,
    /// Every `no_rope_period`-th layer (1-based) attends without rotary embeddings (SmolLM3: 4).
    pub no_rope_period: Option<usize>,
    /// q, k and v are one `attn_qkv` matrix in the file (Phi-3), split at load.
    pub fused_qkv: bool,
    /// Gate and up are one `ffn_up` matrix of twice the width, gate rows first (Phi-3), split at
    /// load.
    pub fused_gate_up: bool,
}

impl ModelConfig {
    /// Read and validate the hyper-parameters for the file's architecture.
    pub fn from_gguf<R>(gguf: &GgufFile<R>) -> Result<Self> {
        let arch = Arch::from_name(&gguf.string("general.architecture")?)?;
        let p = arch.name();
        let key = |k: &str| format!("{p}.{k}");
        let n_layer = gguf.usize(&key("block_count"))?;
        let hidden = gguf.usize(&key("embedding_length"))?;
        let ffn = gguf.usize(&key("feed_forward_length"))?;
        let n_head = gguf.usize(&key("attention.head_count"))?;
        let n_kv_head = gguf
            .usize_opt(&key("attention.head_count_kv"))?
            .unwrap_or(n_head);
        let head_dim = match gguf.usize_opt(&key("attention.key_length"))? {
            Some(d) => d,
            None if n_head > 0 => hidden / n_head,
            None => 0,
        };
        let context_length = gguf.usize(&key("context_length"))?;
        let rms_eps = gguf.f32(&key("attention.layer_norm_rms_epsilon"))?;
        let default_base = if arch == Arch::Gemma3 {
            1_000_000.0
        } else {
            10_000.0
        };
        let rope_base = gguf
            .f32_opt(&key("rope.freq_base"))?
            .unwrap_or(default_base);
        // Sliding-window layers' base: `rope.freq_base_swa` (llama.cpp's name), the older
        // `rope.local_freq_base`, or Gemma 3's 10000.
        let rope_base_local = match gguf.f32_opt(&key("rope.freq_base_swa"))? {
            Some(b) => b,
            None => gguf
                .f32_opt(&key("rope.local_freq_base"))?
                .unwrap_or(10_000.0),
        };
        let rope_dim = gguf
            .usize_opt(&key("rope.dimension_count"))?
            .unwrap_or(head_dim);
        let tokens = gguf.strings("tokenizer.ggml.tokens")?;
        let vocab = tokens.len();

        let (rope_style, activation, qk_norm, post_norms, qkv_bias) = match arch {
            Arch::Llama => (
                RopeStyle::Interleaved,
                Activation::Silu,
                false,
                false,
                false,
            ),
            Arch::Qwen2 => (RopeStyle::Neox, Activation::Silu, false, false, true),
            Arch::Qwen3 => (RopeStyle::Neox, Activation::Silu, true, false, false),
            Arch::Gemma3 => (RopeStyle::Neox, Activation::GeluTanh, true, true, false),
            Arch::Phi3 => (RopeStyle::Neox, Activation::Silu, false, false, false),
            Arch::Smollm3 => (
                RopeStyle::Interleaved,
                Activation::Silu,
                false,
                false,
                false,
            ),
        };
        let sliding_window = if arch == Arch::Gemma3 {
            gguf.usize_opt(&key("attention.sliding_window"))?
        } else {
            None
        };
        let swa_period = gguf
            .usize_opt(&key("attention.sliding_window_pattern"))?
            .unwrap_or(6);
        let embed_scale = if arch == Arch::Gemma3 {
            (hidden as f32).sqrt()
        } else {
            1.0
        };
        // llama.cpp scales Gemma 3 27B (62 layers) by the width per head, not the head size.
        let attn_scale = if arch == Arch::Gemma3 && n_layer == 62 && n_head > 0 {
            1.0 / ((hidden / n_head).max(1) as f32).sqrt()
        } else {
            1.0 / (head_dim.max(1) as f32).sqrt()
        };
        let rope_scaling = RopeScaling::from_gguf(gguf, p, context_length)?;
        // llama.cpp hard-codes SmolLM3's pattern; no GGUF key names it.
        let no_rope_period = (arch == Arch::Smollm3).then_some(4);
        let fused_qkv = gguf.has_tensor("blk.0.attn_qkv.weight");
        let fused_gate_up = arch == Arch::Phi3 && !gguf.has_tensor("blk.0.ffn_gate.weight");

        let config = Self {
            arch,
            n_layer,
            hidden,
            ffn,
            n_head,
            n_kv_head,
            head_dim,
            vocab,
            context_length,
            rms_eps,
            rope_base,
            rope_base_local,
            rope_dim,
            rope_style,
            sliding_window,
            swa_period,
            attn_scale,
            embed_scale,
            activation,
            qk_norm,
            post_norms,
            qkv_bias,
            rope_scaling,
            no_rope_period,
            fused_qkv,
            fused_gate_up,
        };
        config.validate()?;
        Ok(config)
    }

    /// [`Self::from_gguf`] plus the rope factor tensors the file carries: what loading a model
    /// uses.
    pub fn load(gguf: &mut GgufFile) -> Result<Self> {
        let mut config = Self::from_gguf(gguf)?;
        // llama.cpp hands factor tensors to the rotary embedding only in these graphs (llama's
        // `rope_freqs`, phi3's long/short factors); the others pass none, whatever the file has.
        if matches!(config.arch, Arch::Llama | Arch::Phi3) {
            config.rope_scaling.read_factors(gguf, config.rope_dim)?;
        } else if ["rope_freqs.weight", "rope_factors_long.weight"]
            .iter()
            .any(|t| gguf.has_tensor(t))
        {
            tracing::warn!(
                "{} ignores rope factor tensors, as llama.cpp does",
                config.arch.name()
            );
        }
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidMetadata(m));
        // Bounds chosen far above any real model and far below overflow, so hostile metadata cannot
        // make us allocate absurd buffers.
        let limits = [
            ("block_count", self.n_layer, 1, 1024),
            ("embedding_length", self.hidden, 1, 1 << 16),
            ("feed_forward_length", self.ffn, 1, 1 << 18),
            ("attention.head_count", self.n_head, 1, 1024),
            ("attention.head_count_kv", self.n_kv_head, 1, 1024),
            ("attention.key_length", self.head_dim, 2, 1024),
            ("vocabulary size", self.vocab, 2, 1 << 22),
            ("context_length", self.context_length, 1, 1 << 24),
        ];
        for (name, value, lo, hi) in limits {
            if value < lo || value > hi {
                return bad(format!("{name} = {value} is outside [{lo}, {hi}]"));
            }
        }
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(format!(
                "head_count {} is not a multiple of head_count_kv {}",
                self.n_head, self.n_kv_head
            ));
        }
        if self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return bad(format!(
                "rope.dimension_count {} must be even and at most the head size {}",
                self.rope_dim, self.head_dim
            ));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0 && self.rms_eps < 1.0) {
            return bad(format!("rms epsilon {} is not in (0, 1)", self.rms_eps));
        }
        let base_ok = |b: f32| b.is_finite() && b > 1.0;
        if !base_ok(self.rope_base) || !base_ok(self.rope_base_local) {
            return bad(format!("rope base {} must be > 1", self.rope_base));
        }
        if self.swa_period == 0 {
            return bad("sliding_window_pattern must be at least 1".into());
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window must be at least 1".into());
        }
        Ok(())
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Attention window of a layer: `None` for global attention.
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        let window = self.sliding_window?;
        // Gemma 3: every `swa_period`-th layer (1-based) is global.
        (!(layer + 1).is_multiple_of(self.swa_period)).then_some(window)
    }

    /// Rotary base of a layer.
    pub fn layer_rope_base(&self, layer: usize) -> f32 {
        if self.layer_window(layer).is_some() {
            self.rope_base_local
        } else {
            self.rope_base
        }
    }

    /// Whether a layer applies rotary embeddings (SmolLM3 leaves every fourth one out).
    pub fn layer_uses_rope(&self, layer: usize) -> bool {
        self.no_rope_period
            .is_none_or(|p| !(layer + 1).is_multiple_of(p))
    }

    /// The rotary embedding of a layer, or `None` where it has none. Scaling (linear, YaRN,
    /// factor tensors) applies to global layers; llama.cpp runs Gemma 3's sliding-window layers
    /// at their own base, unscaled. The context is the trained one, which thinkscope runs with.
    pub fn layer_rope(&self, layer: usize) -> Option<RopeTable> {
        if !self.layer_uses_rope(layer) {
            return None;
        }
        let sliding = self.layer_window(layer).is_some();
        Some(self.rope_scaling.table(
            self.layer_rope_base(layer),
            self.rope_dim,
            self.context_length,
            !sliding,
        ))
    }

    /// Approximate parameter count of the transformer (used for FLOP estimates).
    pub fn param_count(&self) -> u64 {
        let h = self.hidden as u64;
        let attn = h * (self.q_dim() as u64) * 2 + h * (self.kv_dim() as u64) * 2;
        let mlp = 3 * h * self.ffn as u64;
        self.n_layer as u64 * (attn + mlp) + self.vocab as u64 * h
    }

    /// Bytes of KV cache (f16) one token occupies across all layers.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.n_layer * 2 * self.kv_dim() * 2
    }
}
