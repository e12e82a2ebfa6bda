//! The GPU backend: every weight of the file uploaded to a `thinkscope-gpu` model, and the whole
//! forward pass (embedding to logits) in WGSL compute shaders, one submission per pass, over a
//! paged f16 cache in GPU buffers. The block-table logic above (`kv.rs`) is the CPU's: this
//! backend only sees block ids and the copies it is told to make, which run on the device.

use std::any::Any;
use std::io::Read;
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use thinkscope_gpu::{
    Activation as GpuActivation, GpuContext, GpuError, GpuKv, GpuModel, GpuModelBuilder,
    GpuModelSpec, LayerSlot, RopeStyle as GpuRope, Slot, Source, WeightFormat,
};

use super::config::{Activation, ModelConfig, RopeStyle};
use super::gguf::GgufFile;
use crate::backend::{
    BackendInfo, ForwardBackend, ForwardBatch, KvLayout, KvStorage, LogitsWanted, BLOCK_TOKENS,
};
use crate::cost::EnergyMeter;
use crate::error::{EngineError, Result};

/// Weights on the device and the pass that runs them.
pub(crate) struct GpuBackend {
    model: GpuModel,
    config: ModelConfig,
    /// Most cache bytes: what the per-layer buffers can bind, and at most 80% of the device
    /// memory left free after the weights, where the platform reports it.
    kv_limit: usize,
}

/// The cache's blocks in GPU buffers.
struct GpuKvStore {
    layout: KvLayout,
    kv: GpuKv,
}

impl KvStorage for GpuKvStore {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

fn gpu_err(e: GpuError) -> EngineError {
    EngineError::Failed(format!("GPU: {e}"))
}

/// The GGML types the GPU kernels take.
fn format_of(dtype: GgmlDType) -> Option<WeightFormat> {
    Some(WeightFormat::Quant(match dtype {
        GgmlDType::Q4_0 => Source::Q4_0,
        GgmlDType::Q4_1 => Source::Q4_1,
        GgmlDType::Q5_0 => Source::Q5_0,
        GgmlDType::Q5_1 => Source::Q5_1,
        GgmlDType::Q8_0 => Source::Q8_0,
        GgmlDType::Q4K => Source::Q4K,
        GgmlDType::Q5K => Source::Q5K,
        GgmlDType::Q6K => Source::Q6K,
        GgmlDType::F16 => return Some(WeightFormat::F16),
        GgmlDType::F32 => return Some(WeightFormat::F32),
        _ => return None,
    }))
}

/// The model's shape as the GPU crate wants it.
fn spec(c: &ModelConfig) -> GpuModelSpec {
    let ropes: Vec<_> = (0..c.n_layer).map(|l| c.layer_rope(l)).collect();
    GpuModelSpec {
        hidden: c.hidden,
        n_layer: c.n_layer,
        n_head: c.n_head,
        n_kv_head: c.n_kv_head,
        head_dim: c.head_dim,
        ffn: c.ffn,
        vocab: c.vocab,
        context_length: c.context_length,
        rms_eps: c.rms_eps,
        rope_style: match c.rope_style {
            RopeStyle::Interleaved => GpuRope::Interleaved,
            RopeStyle::Neox => GpuRope::Neox,
        },
        // The CPU backend's rotary tables, to the bit: no pairs for a layer without RoPE.
        inv_freq: ropes
            .iter()
            .map(|r| r.as_ref().map_or_else(Vec::new, |r| r.inv_freq.clone()))
            .collect(),
        rope_mscale: ropes
            .iter()
            .map(|r| r.as_ref().map_or(1.0, |r| r.mscale))
            .collect(),
        window: (0..c.n_layer).map(|l| c.layer_window(l)).collect(),
        attn_scale: c.attn_scale,
        embed_scale: c.embed_scale,
        activation: match c.activation {
            Activation::Silu => GpuActivation::Silu,
            Activation::GeluTanh => GpuActivation::GeluTanh,
        },
        qk_norm: c.qk_norm,
        post_norms: c.post_norms,
        qkv_bias: c.qkv_bias,
    }
}

/// The GGML bytes and format of a `[rows, cols]` tensor.
fn read_tensor(
    gguf: &mut GgufFile,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<(WeightFormat, Vec<u8>)> {
    let path = gguf.path().to_owned();
    let (dtype, reader) = gguf.tensor_reader(name, &[rows, cols])?;
    let Some(format) = format_of(dtype) else {
        return Err(EngineError::InvalidTensor(format!(
            "tensor '{name}' is {dtype:?}, which the GPU kernels do not take (Q4_0, Q4_1, Q5_0, \
             Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16, F32); the CPU kernels may (--device cpu)"
        )));
    };
    if !cols.is_multiple_of(format.block_elems().max(32)) {
        return Err(EngineError::InvalidTensor(format!(
            "tensor '{name}' has rows of {cols}, not whole blocks of 32"
        )));
    }
    let mut bytes = vec![0u8; rows * format.row_bytes(cols)];
    reader
        .read_exact(&mut bytes)
        .map_err(|e| EngineError::Corrupt {
            path,
            reason: format!("reading tensor '{name}': {e}"),
        })?;
    Ok((format, bytes))
}

fn matrix(
    b: &mut GpuModelBuilder,
    gguf: &mut GgufFile,
    name: &str,
    slot: Slot,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let (format, bytes) = read_tensor(gguf, name, rows, cols)?;
    b.matrix(slot, format, rows, cols, &bytes).map_err(gpu_err)
}

/// A tensor that stacks several of a layer's matrices along its rows (Phi-3's `attn_qkv`, a
/// gate/up pair): each part is a contiguous run of whole rows.
fn stacked(
    b: &mut GpuModelBuilder,
    gguf: &mut GgufFile,
    name: &str,
    layer: usize,
    parts: &[(LayerSlot, usize)],
    cols: usize,
) -> Result<()> {
    let rows: usize = parts.iter().map(|p| p.1).sum();
    let (format, bytes) = read_tensor(gguf, name, rows, cols)?;
    let row_bytes = format.row_bytes(cols);
    let mut at = 0;
    for &(slot, n) in parts {
        let part = &bytes[at * row_bytes..(at + n) * row_bytes];
        b.matrix(Slot::Layer(layer, slot), format, n, cols, part)
            .map_err(gpu_err)?;
        at += n;
    }
    Ok(())
}

impl GpuBackend {
    /// Upload every weight of `config`'s architecture from `gguf` to `ctx`.
    pub(crate) fn load(
        gguf: &mut GgufFile,
        config: &ModelConfig,
        ctx: Arc<GpuContext>,
    ) -> Result<Self> {
        let _span = tracing::info_span!("load_gpu", adapter = %ctx.adapter().name).entered();
        let c = config;
        let mut b = GpuModelBuilder::new(ctx, spec(c)).map_err(gpu_err)?;
        let (h, q, kv) = (c.hidden, c.q_dim(), c.kv_dim());
        matrix(&mut b, gguf, "token_embd.weight", Slot::Embed, c.vocab, h)?;
        if gguf.has_tensor("output.weight") {
            matrix(&mut b, gguf, "output.weight", Slot::Output, c.vocab, h)?;
        }
        let vector = |b: &mut GpuModelBuilder, gguf: &mut GgufFile, name: &str, slot, len| {
            let v = gguf.vector(name, len)?;
            b.vector(slot, &v).map_err(gpu_err)
        };
        vector(&mut b, gguf, "output_norm.weight", Slot::OutputNorm, h)?;
        for l in 0..c.n_layer {
            let n = |t: &str| format!("blk.{l}.{t}");
            let s = |x| Slot::Layer(l, x);
            if c.fused_qkv {
                let parts = [(LayerSlot::Q, q), (LayerSlot::K, kv), (LayerSlot::V, kv)];
                stacked(&mut b, gguf, &n("attn_qkv.weight"), l, &parts, h)?;
            } else {
                for (t, slot, rows) in [
                    ("attn_q.weight", LayerSlot::Q, q),
                    ("attn_k.weight", LayerSlot::K, kv),
                    ("attn_v.weight", LayerSlot::V, kv),
                ] {
                    matrix(&mut b, gguf, &n(t), s(slot), rows, h)?;
                }
            }
            if c.fused_gate_up {
                // llama.cpp's SWIGLU: the first half of the rows gates the second.
                let parts = [(LayerSlot::Gate, c.ffn), (LayerSlot::Up, c.ffn)];
                stacked(&mut b, gguf, &n("ffn_up.weight"), l, &parts, h)?;
            } else {
                matrix(
                    &mut b,
                    gguf,
                    &n("ffn_gate.weight"),
                    s(LayerSlot::Gate),
                    c.ffn,
                    h,
                )?;
                matrix(
                    &mut b,
                    gguf,
                    &n("ffn_up.weight"),
                    s(LayerSlot::Up),
                    c.ffn,
                    h,
                )?;
            }
            matrix(
                &mut b,
                gguf,
                &n("attn_output.weight"),
                s(LayerSlot::O),
                h,
                q,
            )?;
            matrix(
                &mut b,
                gguf,
                &n("ffn_down.weight"),
                s(LayerSlot::Down),
                h,
                c.ffn,
            )?;
            vector(
                &mut b,
                gguf,
                &n("attn_norm.weight"),
                s(LayerSlot::AttnNorm),
                h,
            )?;
            vector(
                &mut b,
                gguf,
                &n("ffn_norm.weight"),
                s(LayerSlot::FfnNorm),
                h,
            )?;
            if c.qkv_bias {
                for (t, slot, len) in [
                    ("attn_q.bias", LayerSlot::QBias, q),
                    ("attn_k.bias", LayerSlot::KBias, kv),
                    ("attn_v.bias", LayerSlot::VBias, kv),
                ] {
                    if !gguf.has_tensor(&n(t)) {
                        return Err(EngineError::InvalidTensor(format!(
                            "layer {l} lacks the q/k/v biases its architecture needs"
                        )));
                    }
                    vector(&mut b, gguf, &n(t), s(slot), len)?;
                }
            }
            if c.qk_norm {
                vector(
                    &mut b,
                    gguf,
                    &n("attn_q_norm.weight"),
                    s(LayerSlot::QNorm),
                    c.head_dim,
                )?;
                vector(
                    &mut b,
                    gguf,
                    &n("attn_k_norm.weight"),
                    s(LayerSlot::KNorm),
                    c.head_dim,
                )?;
            }
            if c.post_norms {
                let pa = s(LayerSlot::PostAttnNorm);
                vector(&mut b, gguf, &n("post_attention_norm.weight"), pa, h)?;
                vector(
                    &mut b,
                    gguf,
                    &n("post_ffw_norm.weight"),
                    s(LayerSlot::PostFfnNorm),
                    h,
                )?;
            }
        }
        let model = b.finish().map_err(gpu_err)?;
        let by_binding = model.kv_max_blocks() * model.kv_block_bytes();
        let memory = thinkscope_gpu::power::device_memory(model.context());
        let kv_limit = match memory {
            Some(m) => by_binding.min((m.free_bytes as f64 * 0.8) as usize),
            None => by_binding,
        };
        tracing::info!(
            device = %model.description(),
            weight_mb = model.weight_bytes() / (1 << 20),
            kv_limit_mb = kv_limit / (1 << 20),
            memory_known = memory.is_some(),
            "weights on the GPU"
        );
        Ok(Self {
            model,
            config: config.clone(),
            kv_limit,
        })
    }

    fn kv_layout(&self) -> KvLayout {
        KvLayout {
            n_layer: self.config.n_layer,
            n_kv_head: self.config.n_kv_head,
            head_dim: self.config.head_dim,
        }
    }

    /// The same typed errors as the CPU backend, before anything reaches the device.
    fn check(&self, batch: &ForwardBatch<'_>) -> Result<()> {
        let c = &self.config;
        for item in batch.items {
            if item.tokens.is_empty() {
                return Err(EngineError::InvalidParameter(
                    "a batch item has no tokens".into(),
                ));
            }
            let end = item.start + item.tokens.len();
            if item.blocks.len() * BLOCK_TOKENS < end {
                return Err(EngineError::Failed(format!(
                    "a batch item's block table holds {} positions, not {end}",
                    item.blocks.len() * BLOCK_TOKENS
                )));
            }
            if end > c.context_length {
                return Err(EngineError::ContextOverflow {
                    tokens: end,
                    context: c.context_length,
                });
            }
            if let Some(&t) = item.tokens.iter().find(|&&t| t as usize >= c.vocab) {
                return Err(EngineError::InvalidToken {
                    id: t,
                    vocab: c.vocab,
                });
            }
        }
        Ok(())
    }
}

impl ForwardBackend for GpuBackend {
    fn info(&self) -> BackendInfo {
        let n = self.model.matrix_count();
        BackendInfo {
            device: self.model.description(),
            kernels: format!(
                "{n} of {n} weight matrices in GPU shaders (WGSL, {}; {})",
                self.model.tier().name(),
                self.model.format_summary()
            ),
            gpu: true,
        }
    }

    fn new_kv(&self, layout: KvLayout) -> Result<Box<dyn KvStorage>> {
        if layout != self.kv_layout() {
            return Err(EngineError::Failed("KV layout of another model".into()));
        }
        Ok(Box::new(GpuKvStore {
            layout,
            kv: self.model.new_kv(),
        }))
    }

    fn kv_budget_limit(&self) -> Option<usize> {
        Some(self.kv_limit)
    }

    fn energy_meter(&self) -> Option<EnergyMeter> {
        let ctx = self.model.context();
        Some(if ctx.adapter().software {
            // A software adapter computes on the CPU: the CPU's meter, with every thread busy.
            EnergyMeter::detect(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                false,
            )
        } else {
            let discrete = ctx.adapter().is_discrete();
            EnergyMeter::for_gpu(thinkscope_gpu::power::GpuPower::detect(ctx), discrete)
        })
    }

    fn forward(
        &self,
        kv: &mut dyn KvStorage,
        batch: &ForwardBatch<'_>,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let store = kv
            .as_any_mut()
            .downcast_mut::<GpuKvStore>()
            .ok_or_else(|| EngineError::Failed("KV storage of another backend".into()))?;
        if store.layout != self.kv_layout() {
            return Err(EngineError::Failed("KV storage of another model".into()));
        }
        self.check(batch)?;
        let items: Vec<thinkscope_gpu::ForwardItem<'_>> = batch
            .items
            .iter()
            .map(|i| thinkscope_gpu::ForwardItem {
                blocks: i.blocks,
                start: i.start,
                tokens: i.tokens,
                all_logits: i.logits == LogitsWanted::All,
            })
            .collect();
        let copies: Vec<(u32, u32)> = batch.copies.iter().map(|c| (c.src, c.dst)).collect();
        self.model
            .forward(
                &mut store.kv,
                &thinkscope_gpu::ForwardBatch {
                    items: &items,
                    copies: &copies,
                    blocks_in_use: batch.blocks_in_use,
                },
            )
            .map_err(gpu_err)
    }
}
