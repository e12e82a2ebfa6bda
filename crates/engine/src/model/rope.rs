//! Rotary position embeddings as a GGUF file asks for them: the base, the scaling type and factor
//! (`rope.scaling.*`), YaRN's ramp and magnitude, Llama 3's `rope_freqs` and LongRoPE's
//! `rope_factors_long`/`_short` tensors, all computed the way llama.cpp's `ggml_rope_ext` does.
//!
//! Every variant is the same function of the position: pair `i` of a head turns by
//! `pos * inv_freq[i]`, and both rotated coordinates are multiplied by `mscale`. The variants only
//! build that table differently, so it is built here once per layer at load ([`RopeTable`]) and a
//! backend (the CPU loop, a shader) needs nothing else.

use serde::Serialize;

use super::gguf::GgufFile;
use crate::error::{EngineError, Result};

/// `rope.scaling.type`, as llama.cpp names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeScalingType {
    /// Never scale, whatever the factor says.
    None,
    /// Positions divided by the factor (llama.cpp's default when the key is absent).
    Linear,
    /// YaRN: interpolate the low frequencies, keep the high ones, scale the magnitude.
    Yarn,
    /// LongRoPE (Phi-3.5 / Phi-4): per-frequency factors from tensors.
    LongRope,
}

impl RopeScalingType {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "none" => Self::None,
            "linear" => Self::Linear,
            "yarn" => Self::Yarn,
            "longrope" => Self::LongRope,
            other => {
                return Err(EngineError::InvalidMetadata(format!(
                    "unknown rope.scaling.type '{other}' (none, linear, yarn, longrope)"
                )))
            }
        })
    }
}

/// Per-frequency divisors carried as tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RopeFactors {
    /// None.
    #[default]
    None,
    /// `rope_freqs.weight` (Llama 3.1/3.2's `llama3` scaling, baked in by the converter): used
    /// by every layer.
    Freqs(Vec<f32>),
    /// `rope_factors_long.weight` / `rope_factors_short.weight` (LongRoPE): llama.cpp takes the
    /// long ones when the context it runs with exceeds the original one. thinkscope always runs
    /// with the model's trained context, so that choice is made once at load.
    LongShort {
        /// For contexts beyond the original.
        long: Vec<f32>,
        /// For contexts within it.
        short: Vec<f32>,
    },
}

/// Everything about rotary scaling a file says, with llama.cpp's defaults filled in.
#[derive(Clone, Debug, Serialize)]
pub struct RopeScaling {
    /// `rope.scaling.type`.
    pub kind: RopeScalingType,
    /// `rope.scaling.factor` (or the older `rope.scale_linear`); 1 when absent.
    pub factor: f32,
    /// `rope.scaling.original_context_length`; the trained context when absent.
    pub original_context: usize,
    /// `rope.scaling.attn_factor`: extra magnitude on q and k (LongRoPE writes it).
    pub attn_factor: f32,
    /// YaRN's extrapolation mix: 1 for YaRN, 0 otherwise.
    pub yarn_ext_factor: f32,
    /// YaRN's magnitude factor (1; YaRN's own `1 + 0.1 ln(factor)` comes on top).
    pub yarn_attn_factor: f32,
    /// YaRN's fast correction boundary, in rotations over the original context (32).
    pub yarn_beta_fast: f32,
    /// YaRN's slow correction boundary (1).
    pub yarn_beta_slow: f32,
    /// Factor tensors, read at load.
    #[serde(skip)]
    pub factors: RopeFactors,
}

/// The rotary embedding of one layer: pair `i` of every head turns by `pos * inv_freq[i]`, and
/// both rotated coordinates are multiplied by `mscale` (dimensions past `2 * inv_freq.len()`
/// are left as they are).
#[derive(Clone, Debug, PartialEq)]
pub struct RopeTable {
    /// Angle per position of each rotated pair.
    pub inv_freq: Vec<f32>,
    /// Magnitude applied to the rotated coordinates.
    pub mscale: f32,
}

impl RopeScaling {
    /// Read the scaling keys of architecture prefix `p` (tensors come later, in
    /// [`Self::read_factors`]). `context_length` is the trained context.
    pub(crate) fn from_gguf<R>(gguf: &GgufFile<R>, p: &str, context_length: usize) -> Result<Self> {
        let key = |k: &str| format!("{p}.{k}");
        let kind = match gguf.get_opt(&key("rope.scaling.type")) {
            Some(_) => RopeScalingType::parse(&gguf.string(&key("rope.scaling.type"))?)?,
            None => RopeScalingType::Linear,
        };
        let factor = match gguf.f32_opt(&key("rope.scaling.factor"))? {
            Some(f) => f,
            None => gguf.f32_opt(&key("rope.scale_linear"))?.unwrap_or(0.0),
        };
        let factor = if factor == 0.0 { 1.0 } else { factor };
        let original_context = gguf
            .usize_opt(&key("rope.scaling.original_context_length"))?
            .unwrap_or(context_length);
        let attn_factor = gguf
            .f32_opt(&key("rope.scaling.attn_factor"))?
            .unwrap_or(1.0);
        // llama.cpp reads `rope.scaling.yarn_*` only for a few architectures (none of these: the
        // oracle's Qwen3 YaRN file carries a `yarn_beta_fast` that llama.cpp ignores), so the
        // defaults of `llama_hparams` hold: YaRN mixes fully, beta 32 and 1.
        let scaling = Self {
            kind,
            factor,
            original_context,
            attn_factor,
            yarn_ext_factor: if kind == RopeScalingType::Yarn {
                1.0
            } else {
                0.0
            },
            yarn_attn_factor: 1.0,
            yarn_beta_fast: 32.0,
            yarn_beta_slow: 1.0,
            factors: RopeFactors::None,
        };
        scaling.validate()?;
        Ok(scaling)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidMetadata(m));
        let positive = |v: f32| v.is_finite() && v > 0.0;
        for (name, v) in [
            ("rope.scaling.factor", self.factor),
            ("rope.scaling.attn_factor", self.attn_factor),
            ("rope.scaling.yarn_attn_factor", self.yarn_attn_factor),
            ("rope.scaling.yarn_beta_fast", self.yarn_beta_fast),
            ("rope.scaling.yarn_beta_slow", self.yarn_beta_slow),
        ] {
            if !positive(v) || v > 1e6 {
                return bad(format!("{name} = {v} must be positive and finite"));
            }
        }
        if !(self.yarn_ext_factor.is_finite() && (0.0..=1e3).contains(&self.yarn_ext_factor)) {
            return bad(format!(
                "rope.scaling.yarn_ext_factor = {} is out of range",
                self.yarn_ext_factor
            ));
        }
        if self.original_context == 0 || self.original_context > 1 << 24 {
            return bad(format!(
                "rope.scaling.original_context_length = {} is out of range",
                self.original_context
            ));
        }
        Ok(())
    }

    /// Read the factor tensors the file carries (`rope_freqs`, `rope_factors_long/short`),
    /// each `rope_dim / 2` positive values.
    pub(crate) fn read_factors(&mut self, gguf: &mut GgufFile, rope_dim: usize) -> Result<()> {
        let half = rope_dim / 2;
        let mut read = |name: &str| -> Result<Option<Vec<f32>>> {
            if !gguf.has_tensor(name) {
                return Ok(None);
            }
            let v = gguf.vector(name, half)?;
            if let Some(x) = v.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                return Err(EngineError::InvalidTensor(format!(
                    "{name} holds {x}; rope factors must be positive and finite"
                )));
            }
            Ok(Some(v))
        };
        let freqs = read("rope_freqs.weight")?;
        let long = read("rope_factors_long.weight")?;
        let short = read("rope_factors_short.weight")?;
        self.factors = match (freqs, long, short) {
            (Some(f), _, _) => RopeFactors::Freqs(f),
            (None, Some(long), Some(short)) => RopeFactors::LongShort { long, short },
            (None, Some(long), None) => RopeFactors::LongShort {
                short: vec![1.0; long.len()],
                long,
            },
            (None, None, Some(short)) => RopeFactors::LongShort {
                long: vec![1.0; short.len()],
                short,
            },
            (None, None, None) => RopeFactors::None,
        };
        Ok(())
    }

    /// Whether the long LongRoPE factors apply at a context of `context` tokens (llama.cpp:
    /// `n_ctx_seq > n_ctx_orig_yarn`).
    pub fn uses_long_factors(&self, context: usize) -> bool {
        context > self.original_context
    }

    /// The position scale llama.cpp applies: `1 / factor`, or 1 when the type is `none`.
    pub fn freq_scale(&self) -> f32 {
        if self.kind == RopeScalingType::None {
            1.0
        } else {
            1.0 / self.factor
        }
    }

    /// The table of a layer with rotary base `base` over `rope_dim` dimensions, at a context of
    /// `context` tokens; `scaled`: false for layers llama.cpp runs with a frequency scale of 1 and
    /// no factor tensors (Gemma 3's sliding-window layers).
    pub fn table(&self, base: f32, rope_dim: usize, context: usize, scaled: bool) -> RopeTable {
        let half = rope_dim / 2;
        let ones;
        let factors: &[f32] = match (&self.factors, scaled) {
            (RopeFactors::Freqs(f), true) => f,
            (RopeFactors::LongShort { long, short }, true) => {
                if self.uses_long_factors(context) {
                    long
                } else {
                    short
                }
            }
            _ => {
                ones = vec![1.0; half];
                &ones
            }
        };
        // An unscaled layer still gets the magnitude factors: llama.cpp passes them to every
        // layer, only the frequency scale is the layer's own (with a scale of 1 YaRN's mix and
        // its log term are identities).
        let freq_scale = if scaled { self.freq_scale() } else { 1.0 };
        let ext = self.yarn_ext_factor;
        let mut mscale = self.yarn_attn_factor * self.attn_factor;
        if ext != 0.0 {
            mscale *= 1.0 + 0.1 * (1.0 / freq_scale).ln();
        }
        let (low, high) = yarn_corr_dims(
            rope_dim,
            self.original_context,
            base,
            self.yarn_beta_fast,
            self.yarn_beta_slow,
        );
        let theta_scale = base.powf(-2.0 / rope_dim as f32);
        let mut theta = 1.0f32;
        let inv_freq = (0..half)
            .map(|i| {
                let extrap = theta / factors.get(i).copied().unwrap_or(1.0);
                theta *= theta_scale;
                let interp = freq_scale * extrap;
                if ext == 0.0 {
                    interp
                } else {
                    let y = (i as f32 - low) / (high - low).max(0.001);
                    let ramp = (1.0 - y.clamp(0.0, 1.0)) * ext;
                    interp * (1.0 - ramp) + extrap * ramp
                }
            })
            .collect();
        RopeTable { inv_freq, mscale }
    }
}

/// YaRN's correction range in rotated-pair indices (`ggml_rope_yarn_corr_dims`): pairs below
/// `low` turn more than `beta_fast` times over the original context and keep their frequency,
/// pairs above `high` turn less than `beta_slow` times and are interpolated.
fn yarn_corr_dims(
    rope_dim: usize,
    original_context: usize,
    base: f32,
    beta_fast: f32,
    beta_slow: f32,
) -> (f32, f32) {
    let n = rope_dim as f32;
    let dim = |rotations: f32| {
        n * (original_context as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    let low = dim(beta_fast).floor().max(0.0);
    let high = dim(beta_slow).ceil().min(n - 1.0);
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> RopeScaling {
        RopeScaling {
            kind: RopeScalingType::Linear,
            factor: 1.0,
            original_context: 4096,
            attn_factor: 1.0,
            yarn_ext_factor: 0.0,
            yarn_attn_factor: 1.0,
            yarn_beta_fast: 32.0,
            yarn_beta_slow: 1.0,
            factors: RopeFactors::None,
        }
    }

    #[test]
    fn unscaled_table_is_the_classic_one() {
        let t = plain().table(10_000.0, 64, 4096, true);
        for (i, f) in t.inv_freq.iter().enumerate() {
            let want = 10_000f64.powf(-2.0 * i as f64 / 64.0) as f32;
            assert!((f - want).abs() <= 1e-5 * want, "pair {i}: {f} vs {want}");
        }
        assert_eq!(t.mscale, 1.0);
    }

    #[test]
    fn linear_divides_every_frequency() {
        let s = RopeScaling {
            factor: 4.0,
            ..plain()
        };
        let (a, b) = (plain().table(1e4, 32, 64, true), s.table(1e4, 32, 64, true));
        for (x, y) in a.inv_freq.iter().zip(&b.inv_freq) {
            assert!((x / 4.0 - y).abs() <= 1e-7 * x.abs().max(1.0));
        }
        // Unscaled layers (Gemma's sliding ones) keep the plain table.
        assert_eq!(s.table(1e4, 32, 64, false), a);
    }

    #[test]
    fn yarn_keeps_fast_pairs_and_interpolates_slow_ones() {
        let s = RopeScaling {
            kind: RopeScalingType::Yarn,
            factor: 4.0,
            original_context: 64,
            yarn_ext_factor: 1.0,
            ..plain()
        };
        let (a, b) = (
            plain().table(1e4, 32, 256, true),
            s.table(1e4, 32, 256, true),
        );
        assert_eq!(
            a.inv_freq[0], b.inv_freq[0],
            "the fastest pair is not scaled"
        );
        let last = a.inv_freq.len() - 1;
        assert!((a.inv_freq[last] / 4.0 - b.inv_freq[last]).abs() < 1e-9);
        let want = 1.0 + 0.1 * 4f32.ln();
        assert!((b.mscale - want).abs() < 1e-6);
    }

    #[test]
    fn long_factors_apply_beyond_the_original_context() {
        let s = RopeScaling {
            original_context: 32,
            factors: RopeFactors::LongShort {
                long: vec![2.0; 4],
                short: vec![1.0; 4],
            },
            ..plain()
        };
        assert!(s.uses_long_factors(33) && !s.uses_long_factors(32));
        let (short, long) = (s.table(1e4, 8, 32, true), s.table(1e4, 8, 256, true));
        for (x, y) in short.inv_freq.iter().zip(&long.inv_freq) {
            assert_eq!(x / 2.0, *y);
        }
    }
}
