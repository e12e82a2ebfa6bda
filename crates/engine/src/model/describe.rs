//! What a loaded model is, in words: its architecture and the features that change its forward
//! pass or its prompts (rope layout and scaling, fused tensors, layers without rope, sliding
//! windows, thinking delimiters). `thinkscope-cli info` prints it; the UI can show it.

use std::fmt;

use serde::Serialize;

use super::config::{Activation, RopeStyle};
use super::rope::{RopeFactors, RopeScalingType};
use super::Model;

/// A model's architecture and features, each as one readable line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelDescription {
    /// `general.architecture`.
    pub architecture: String,
    /// Rotary layout: pairing, rotated dimensions, base.
    pub rope: String,
    /// Rotary scaling, or "none".
    pub rope_scaling: String,
    /// Matrices stored fused in the file and split at load.
    pub fused_tensors: Vec<String>,
    /// Layers (0-based) that attend without rotary embeddings.
    pub no_rope_layers: Vec<usize>,
    /// The sliding window and the layers that use it, when there is one.
    pub sliding_window: Option<String>,
    /// The thinking delimiters and what the template does with them.
    pub thinking: Option<String>,
    /// Other layout details: biases, norms, activation, embedding scale.
    pub features: Vec<String>,
}

impl Model {
    /// The architecture and features of this model.
    pub fn describe(&self) -> ModelDescription {
        let c = &self.config;
        let s = &c.rope_scaling;
        let pairing = match c.rope_style {
            RopeStyle::Interleaved => "interleaved pairs",
            RopeStyle::Neox => "NeoX halves",
        };
        let dims = if c.rope_dim == c.head_dim {
            format!("all {} dims", c.head_dim)
        } else {
            format!("{} of {} dims", c.rope_dim, c.head_dim)
        };
        let mut rope = format!("{pairing}, {dims}, base {}", c.rope_base);
        if c.sliding_window.is_some() {
            rope += &format!(" (sliding-window layers: {})", c.rope_base_local);
        }
        let scaled_layers = if c.sliding_window.is_some() {
            " on the global layers"
        } else {
            ""
        };
        let mut scaling = match (s.kind, &s.factors) {
            (_, RopeFactors::Freqs(f)) => format!(
                "Llama 3 frequency factors (rope_freqs, {} values, {:.2} to {:.2})",
                f.len(),
                f.iter().copied().fold(f32::MAX, f32::min),
                f.iter().copied().fold(f32::MIN, f32::max)
            ),
            (_, RopeFactors::LongShort { .. }) => format!(
                "LongRoPE, {} factors (context {} {} original {})",
                if s.uses_long_factors(c.context_length) {
                    "long"
                } else {
                    "short"
                },
                c.context_length,
                if s.uses_long_factors(c.context_length) {
                    ">"
                } else {
                    "<="
                },
                s.original_context
            ),
            (RopeScalingType::Yarn, _) => format!(
                "YaRN x{} from an original context of {} (q and k magnitude {:.4})",
                s.factor,
                s.original_context,
                s.yarn_attn_factor * (1.0 + 0.1 * s.factor.ln())
            ),
            (RopeScalingType::None, _) => "none".to_owned(),
            (RopeScalingType::Linear | RopeScalingType::LongRope, _) if s.factor != 1.0 => {
                format!("linear x{}{scaled_layers}", s.factor)
            }
            _ => "none".to_owned(),
        };
        if s.attn_factor != 1.0 {
            scaling += &format!(", attention factor {:.4}", s.attn_factor);
        }

        let mut fused_tensors = Vec::new();
        if c.fused_qkv {
            fused_tensors.push("attn_qkv split into q, k, v".to_owned());
        }
        if c.fused_gate_up {
            fused_tensors.push("ffn_up split into gate, up".to_owned());
        }
        let no_rope_layers = (0..c.n_layer).filter(|&l| !c.layer_uses_rope(l)).collect();
        let sliding_window = c.sliding_window.map(|w| {
            let (local, global): (Vec<usize>, Vec<usize>) =
                (0..c.n_layer).partition(|&l| c.layer_window(l).is_some());
            format!("{w} tokens on layers {local:?}; global layers {global:?}")
        });
        let thinking = self.thinking.as_ref().map(|t| {
            let mut d = format!(
                "{} (id {}) ... {} (id {})",
                t.open, t.open_id, t.close, t.close_id
            );
            if t.switchable {
                d += "; the template switches it with enable_thinking";
            }
            if t.prompt_opens {
                d += "; the prompt opens it";
            }
            d
        });
        let mut features = Vec::new();
        if c.qkv_bias {
            features.push("q/k/v biases".to_owned());
        }
        if c.qk_norm {
            features.push("q/k RMS norms".to_owned());
        }
        if c.post_norms {
            features.push("norms after attention and MLP".to_owned());
        }
        features.push(
            match c.activation {
                Activation::Silu => "SwiGLU",
                Activation::GeluTanh => "GeGLU (tanh)",
            }
            .to_owned(),
        );
        if c.embed_scale != 1.0 {
            features.push(format!("embeddings scaled by {:.3}", c.embed_scale));
        }
        if c.n_kv_head != c.n_head {
            features.push(format!(
                "grouped-query attention ({} query heads, {} kv heads)",
                c.n_head, c.n_kv_head
            ));
        }
        ModelDescription {
            architecture: c.arch.name().to_owned(),
            rope,
            rope_scaling: scaling,
            fused_tensors,
            no_rope_layers,
            sliding_window,
            thinking,
            features,
        }
    }
}

impl fmt::Display for ModelDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "architecture: {}", self.architecture)?;
        writeln!(f, "rope: {}", self.rope)?;
        writeln!(f, "rope scaling: {}", self.rope_scaling)?;
        if !self.fused_tensors.is_empty() {
            writeln!(f, "fused tensors: {}", self.fused_tensors.join("; "))?;
        }
        if !self.no_rope_layers.is_empty() {
            writeln!(f, "layers without rope: {:?}", self.no_rope_layers)?;
        }
        if let Some(w) = &self.sliding_window {
            writeln!(f, "sliding window: {w}")?;
        }
        if let Some(t) = &self.thinking {
            writeln!(f, "thinking: {t}")?;
        }
        write!(f, "features: {}", self.features.join(", "))
    }
}
