//! The CPU backend: the project's own quantized matmul kernels (candle's for formats they don't
//! cover), attention over paged f16 blocks in host memory, one ragged batched pass.
//!
//! One forward pass takes any mix of sequences, each with any number of new tokens at its own
//! position: a prompt prefill, one token for each of sixteen branches, or both. Linear layers run
//! as one quantized matmul over all rows of the batch; attention runs per row against that row's
//! own block table, so sequences of different lengths never need padding.

use std::any::Any;
use std::io::Read;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use super::attention;
use super::config::{Activation, ModelConfig, RopeStyle};
use super::gguf::GgufFile;
use super::math::{fast_exp, gelu_tanh};
use super::rope::RopeTable;
use crate::backend::{
    BackendInfo, BlockId, ForwardBackend, ForwardBatch, KvLayout, KvStorage, LogitsWanted,
    BLOCK_TOKENS,
};
use crate::error::{EngineError, Result};
use crate::kernels::{self, Isa, PackError, PackedMatrix, Source};

/// A weight matrix `[out, in]`: our own kernels for the formats they cover, candle's otherwise.
enum Linear {
    Candle { weight: QMatMul, out_dim: usize },
    Own(PackedMatrix),
}

/// The GGML types the own kernels take.
fn own_source(dtype: GgmlDType) -> Option<Source> {
    Some(match dtype {
        GgmlDType::Q4_0 => Source::Q4_0,
        GgmlDType::Q4_1 => Source::Q4_1,
        GgmlDType::Q5_0 => Source::Q5_0,
        GgmlDType::Q5_1 => Source::Q5_1,
        GgmlDType::Q8_0 => Source::Q8_0,
        GgmlDType::Q4K => Source::Q4K,
        GgmlDType::Q5K => Source::Q5K,
        GgmlDType::Q6K => Source::Q6K,
        _ => return None,
    })
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Option<Vec<f32>>,
}

/// Weights in host memory and the kernels that multiply them.
pub(crate) struct CpuBackend {
    config: ModelConfig,
    device: Device,
    /// Token embeddings, unless the tied LM head's own-kernel matrix serves them.
    embed: Option<QTensor>,
    output: Linear,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// Per layer: the rotary embedding (`None`: the layer has none).
    rope: Vec<Option<RopeTable>>,
    /// Instruction set of the own kernels.
    isa: Isa,
    /// Threads for the forward pass (as many as the global pool has: `RAYON_NUM_THREADS`).
    pool: rayon::ThreadPool,
}

/// KV blocks in host memory, f16, indexed by block id.
pub(crate) struct CpuKv {
    layout: KvLayout,
    blocks: Vec<Box<[f16]>>,
}

impl KvStorage for CpuKv {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl CpuKv {
    pub(crate) fn new(layout: KvLayout) -> Self {
        Self {
            layout,
            blocks: Vec::new(),
        }
    }

    /// Hold exactly `n` blocks: new ones zeroed, unused ones from the top given back.
    pub(crate) fn resize(&mut self, n: usize) {
        let values = self.layout.block_values();
        self.blocks
            .resize_with(n, || vec![f16::ZERO; values].into_boxed_slice());
    }

    fn copy(&mut self, src: BlockId, dst: BlockId) -> Result<()> {
        let (s, d) = (src as usize, dst as usize);
        if s >= self.blocks.len() || d >= self.blocks.len() || s == d {
            return Err(EngineError::Failed(format!(
                "KV block copy {src} -> {dst} outside the {} blocks held",
                self.blocks.len()
            )));
        }
        let data = self.blocks[s].clone();
        self.blocks[d] = data;
        Ok(())
    }

    /// Store K and V of one layer at `pos` of a sequence with block table `table`.
    pub(crate) fn write(
        &mut self,
        table: &[BlockId],
        layer: usize,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) {
        let layout = self.layout;
        let hd = layout.head_dim;
        let Some(block) = table
            .get(pos / BLOCK_TOKENS)
            .and_then(|&b| self.blocks.get_mut(b as usize))
        else {
            // The engine reserved every written position; a missing block is a logic error
            // that must not corrupt another sequence's cache.
            tracing::error!("KV write outside the block table at position {pos}");
            return;
        };
        let slot = pos % BLOCK_TOKENS;
        for h in 0..layout.n_kv_head {
            let ko = layout.offset(layer, 0, h, slot);
            block[ko..ko + hd].convert_from_f32_slice(&k[h * hd..(h + 1) * hd]);
            let vo = layout.offset(layer, 1, h, slot);
            block[vo..vo + hd].convert_from_f32_slice(&v[h * hd..(h + 1) * hd]);
        }
    }

    pub(crate) fn view<'a>(&'a self, table: &'a [BlockId]) -> SeqView<'a> {
        SeqView { kv: self, table }
    }
}

/// One sequence's cached keys and values, read through its block table.
#[derive(Clone, Copy)]
pub(crate) struct SeqView<'a> {
    kv: &'a CpuKv,
    table: &'a [BlockId],
}

impl SeqView<'_> {
    /// Key vector of (layer, head) at `pos`.
    #[inline]
    pub(super) fn key(&self, layout: &KvLayout, layer: usize, head: usize, pos: usize) -> &[f16] {
        let o = layout.offset(layer, 0, head, pos % BLOCK_TOKENS);
        &self.kv.blocks[self.table[pos / BLOCK_TOKENS] as usize][o..o + layout.head_dim]
    }

    /// Value vector of (layer, head) at `pos`.
    #[inline]
    pub(super) fn value(&self, layout: &KvLayout, layer: usize, head: usize, pos: usize) -> &[f16] {
        let o = layout.offset(layer, 1, head, pos % BLOCK_TOKENS);
        &self.kv.blocks[self.table[pos / BLOCK_TOKENS] as usize][o..o + layout.head_dim]
    }
}

impl ForwardBackend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            device: crate::device::describe(&self.device),
            kernels: self.kernel_summary(),
            gpu: !self.device.is_cpu(),
        }
    }

    fn new_kv(&self, layout: KvLayout) -> Result<Box<dyn KvStorage>> {
        Ok(Box::new(CpuKv::new(layout)))
    }

    fn forward(
        &self,
        kv: &mut dyn KvStorage,
        batch: &ForwardBatch<'_>,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let kv = kv
            .as_any_mut()
            .downcast_mut::<CpuKv>()
            .ok_or_else(|| EngineError::Failed("KV storage of another backend".into()))?;
        if kv.layout != self.kv_layout() {
            return Err(EngineError::Failed("KV storage of another model".into()));
        }
        kv.resize(batch.blocks_in_use);
        for c in batch.copies {
            kv.copy(c.src, c.dst)?;
        }
        // Run on the model's own pool: the kernels' parallel loops then start from a pool thread,
        // which takes a share of the work itself instead of waking the pool and sleeping.
        self.pool.install(|| self.forward_inner(kv, batch))
    }
}

impl CpuBackend {
    /// Load every weight of `config`'s architecture from `gguf`.
    pub(crate) fn load(gguf: &mut GgufFile, config: &ModelConfig, device: &Device) -> Result<Self> {
        let c = config;
        let (embed_dims, _) = gguf.tensor_info("token_embd.weight")?;
        if embed_dims != [c.vocab, c.hidden] {
            return Err(EngineError::InvalidTensor(format!(
                "token_embd.weight has shape {embed_dims:?}, expected [{}, {}] (vocabulary x width)",
                c.vocab, c.hidden
            )));
        }
        let (embed, output) = if gguf.has_tensor("output.weight") {
            let embed = gguf.tensor("token_embd.weight", &[c.vocab, c.hidden], &Device::Cpu)?;
            let output = linear(gguf, "output.weight", c.vocab, c.hidden, device)?;
            (Some(embed), output)
        } else {
            // Tied embeddings: the LM head is the embedding matrix. When our own kernel holds it,
            // embedding rows are read from the same bytes, so the matrix is in memory once.
            let output = linear(gguf, "token_embd.weight", c.vocab, c.hidden, device)?;
            let embed = match output {
                Linear::Own(_) => None,
                Linear::Candle { .. } => {
                    Some(gguf.tensor("token_embd.weight", &[c.vocab, c.hidden], &Device::Cpu)?)
                }
            };
            (embed, output)
        };
        let output_norm = gguf.vector("output_norm.weight", c.hidden)?;

        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let name = |t: &str| format!("blk.{i}.{t}");
            let opt_vec = |gguf: &mut GgufFile, t: &str, len: usize| -> Result<Option<Vec<f32>>> {
                let n = name(t);
                if gguf.has_tensor(&n) {
                    gguf.vector(&n, len).map(Some)
                } else {
                    Ok(None)
                }
            };
            let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
            let [wq, wk, wv] = if c.fused_qkv {
                let [q, k, v] = linears(
                    gguf,
                    &name("attn_qkv.weight"),
                    [q_dim, kv_dim, kv_dim],
                    c.hidden,
                    device,
                )?;
                [q, k, v]
            } else {
                [
                    linear(gguf, &name("attn_q.weight"), q_dim, c.hidden, device)?,
                    linear(gguf, &name("attn_k.weight"), kv_dim, c.hidden, device)?,
                    linear(gguf, &name("attn_v.weight"), kv_dim, c.hidden, device)?,
                ]
            };
            let [gate, up] = if c.fused_gate_up {
                // llama.cpp's SWIGLU: the first half of the rows gates the second.
                linears(
                    gguf,
                    &name("ffn_up.weight"),
                    [c.ffn, c.ffn],
                    c.hidden,
                    device,
                )?
            } else {
                [
                    linear(gguf, &name("ffn_gate.weight"), c.ffn, c.hidden, device)?,
                    linear(gguf, &name("ffn_up.weight"), c.ffn, c.hidden, device)?,
                ]
            };
            let layer = Layer {
                attn_norm: gguf.vector(&name("attn_norm.weight"), c.hidden)?,
                wq,
                wk,
                wv,
                wo: linear(gguf, &name("attn_output.weight"), c.hidden, q_dim, device)?,
                bq: opt_vec(gguf, "attn_q.bias", q_dim)?,
                bk: opt_vec(gguf, "attn_k.bias", kv_dim)?,
                bv: opt_vec(gguf, "attn_v.bias", kv_dim)?,
                q_norm: if c.qk_norm {
                    Some(gguf.vector(&name("attn_q_norm.weight"), c.head_dim)?)
                } else {
                    None
                },
                k_norm: if c.qk_norm {
                    Some(gguf.vector(&name("attn_k_norm.weight"), c.head_dim)?)
                } else {
                    None
                },
                post_attn_norm: if c.post_norms {
                    Some(gguf.vector(&name("post_attention_norm.weight"), c.hidden)?)
                } else {
                    None
                },
                ffn_norm: gguf.vector(&name("ffn_norm.weight"), c.hidden)?,
                gate,
                up,
                down: linear(gguf, &name("ffn_down.weight"), c.hidden, c.ffn, device)?,
                post_ffn_norm: if c.post_norms {
                    Some(gguf.vector(&name("post_ffw_norm.weight"), c.hidden)?)
                } else {
                    None
                },
            };
            if c.qkv_bias && (layer.bq.is_none() || layer.bk.is_none() || layer.bv.is_none()) {
                return Err(EngineError::InvalidTensor(format!(
                    "layer {i} lacks the q/k/v biases its architecture needs"
                )));
            }
            layers.push(layer);
        }

        let rope = (0..c.n_layer).map(|l| c.layer_rope(l)).collect();
        Ok(Self {
            config: config.clone(),
            device: device.clone(),
            embed,
            output,
            output_norm,
            layers,
            rope,
            isa: kernels::detect(),
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(rayon::current_num_threads())
                .thread_name(|i| format!("thinkscope-kernel-{i}"))
                .build()
                .map_err(|e| EngineError::InvalidParameter(format!("starting threads: {e}")))?,
        })
    }

    fn kv_layout(&self) -> KvLayout {
        KvLayout {
            n_layer: self.config.n_layer,
            n_kv_head: self.config.n_kv_head,
            head_dim: self.config.head_dim,
        }
    }

    fn forward_inner(
        &self,
        kv: &mut CpuKv,
        batch: &ForwardBatch<'_>,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let items = batch.items;
        let _span = tracing::trace_span!("forward", items = items.len()).entered();
        let c = &self.config;
        let layout = self.kv_layout();
        // Row bookkeeping: which item and position every row belongs to.
        let mut row_item = Vec::new();
        let mut row_pos = Vec::new();
        let mut ids = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if item.tokens.is_empty() {
                return Err(EngineError::InvalidParameter(
                    "a batch item has no tokens".into(),
                ));
            }
            let start = item.start;
            if item.blocks.len() * BLOCK_TOKENS < start + item.tokens.len() {
                return Err(EngineError::Failed(format!(
                    "a batch item's block table holds {} positions, not {}",
                    item.blocks.len() * BLOCK_TOKENS,
                    start + item.tokens.len()
                )));
            }
            if let Some(&b) = item
                .blocks
                .iter()
                .find(|&&b| b as usize >= batch.blocks_in_use)
            {
                return Err(EngineError::Failed(format!(
                    "KV block {b} is outside the {} blocks in use",
                    batch.blocks_in_use
                )));
            }
            if start + item.tokens.len() > c.context_length {
                return Err(EngineError::ContextOverflow {
                    tokens: start + item.tokens.len(),
                    context: c.context_length,
                });
            }
            for (j, &t) in item.tokens.iter().enumerate() {
                if t as usize >= c.vocab {
                    return Err(EngineError::InvalidToken {
                        id: t,
                        vocab: c.vocab,
                    });
                }
                row_item.push(i);
                row_pos.push(start + j);
                ids.push(t);
            }
        }
        let rows = ids.len();
        if rows == 0 {
            return Ok(Vec::new());
        }

        let mut x: Vec<f32> = match (&self.embed, &self.output) {
            (Some(embed), _) => {
                let ids_t = Tensor::new(ids.as_slice(), &Device::Cpu)?;
                embed.embedding(&ids_t)?.flatten_all()?.to_vec1()?
            }
            (None, Linear::Own(m)) => {
                let mut x = vec![0f32; rows * c.hidden];
                for (row, &id) in x.chunks_mut(c.hidden).zip(&ids) {
                    m.dequantize_row(id as usize, row);
                }
                x
            }
            (None, Linear::Candle { .. }) => {
                return Err(EngineError::InvalidTensor(
                    "no token embedding loaded".into(),
                ))
            }
        };
        if c.embed_scale != 1.0 {
            x.iter_mut().for_each(|v| *v *= c.embed_scale);
        }

        let (hd, q_dim, kv_dim) = (c.head_dim, c.q_dim(), c.kv_dim());
        let mut xn = vec![0f32; rows * c.hidden];
        for (l, layer) in self.layers.iter().enumerate() {
            rms_norm_rows(&x, &mut xn, &layer.attn_norm, c.hidden, c.rms_eps);
            let [mut q, mut k, mut v] =
                self.matmul_many([&layer.wq, &layer.wk, &layer.wv], &xn, rows)?;
            for (buf, bias, width) in [
                (&mut q, &layer.bq, q_dim),
                (&mut k, &layer.bk, kv_dim),
                (&mut v, &layer.bv, kv_dim),
            ] {
                if let Some(bias) = bias {
                    buf.chunks_mut(width)
                        .for_each(|r| r.iter_mut().zip(bias).for_each(|(a, b)| *a += b));
                }
            }
            if let Some(w) = &layer.q_norm {
                rms_norm_in_place(&mut q, w, hd, c.rms_eps);
            }
            if let Some(w) = &layer.k_norm {
                rms_norm_in_place(&mut k, w, hd, c.rms_eps);
            }
            // Rotary embedding: the angles of a position once, for every head of q and k.
            if let Some(rope) = &self.rope[l] {
                let style = c.rope_style;
                q.par_chunks_mut(q_dim)
                    .zip(k.par_chunks_mut(kv_dim))
                    .zip(row_pos.par_iter())
                    .for_each(|((qr, kr), &pos)| {
                        let angles: Vec<(f32, f32)> = rope
                            .inv_freq
                            .iter()
                            .map(|f| {
                                let (sin, cos) = (pos as f32 * f).sin_cos();
                                (sin * rope.mscale, cos * rope.mscale)
                            })
                            .collect();
                        rope_row(qr, hd, &angles, style);
                        rope_row(kr, hd, &angles, style);
                    });
            }
            for r in 0..rows {
                kv.write(
                    items[row_item[r]].blocks,
                    l,
                    row_pos[r],
                    &k[r * kv_dim..(r + 1) * kv_dim],
                    &v[r * kv_dim..(r + 1) * kv_dim],
                );
            }
            let window = c.layer_window(l);
            let mut attn = vec![0f32; rows * q_dim];
            {
                let caches: Vec<SeqView<'_>> = items.iter().map(|b| kv.view(b.blocks)).collect();
                let heads = attention::Heads {
                    n_head: c.n_head,
                    n_kv_head: c.n_kv_head,
                    head_dim: hd,
                    scale: c.attn_scale,
                    window,
                };
                attention::attention(
                    &caches, &layout, l, &row_item, &row_pos, &q, &heads, &mut attn,
                );
            }
            let mut o = self.matmul(&layer.wo, &attn, rows)?;
            if let Some(w) = &layer.post_attn_norm {
                rms_norm_in_place(&mut o, w, c.hidden, c.rms_eps);
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);

            rms_norm_rows(&x, &mut xn, &layer.ffn_norm, c.hidden, c.rms_eps);
            let [mut g, u] = self.matmul_many([&layer.gate, &layer.up], &xn, rows)?;
            let act = c.activation;
            g.par_chunks_mut(c.ffn)
                .zip(u.par_chunks(c.ffn))
                .for_each(|(g, u)| match act {
                    Activation::Silu => g
                        .iter_mut()
                        .zip(u)
                        .for_each(|(a, b)| *a = *a / (1.0 + fast_exp(-*a)) * b),
                    Activation::GeluTanh => g
                        .iter_mut()
                        .zip(u)
                        .for_each(|(a, b)| *a = gelu_tanh(*a) * b),
                });
            let mut d = self.matmul(&layer.down, &g, rows)?;
            if let Some(w) = &layer.post_ffn_norm {
                rms_norm_in_place(&mut d, w, c.hidden, c.rms_eps);
            }
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }

        // Logits only for the rows that were asked for.
        let mut wanted = Vec::new();
        let mut offset = 0;
        for item in items {
            let n = item.tokens.len();
            match item.logits {
                LogitsWanted::Last => wanted.push(offset + n - 1),
                LogitsWanted::All => wanted.extend(offset..offset + n),
            }
            offset += n;
        }
        let mut h = Vec::with_capacity(wanted.len() * c.hidden);
        for &r in &wanted {
            h.extend_from_slice(&x[r * c.hidden..(r + 1) * c.hidden]);
        }
        let mut hn = vec![0f32; h.len()];
        rms_norm_rows(&h, &mut hn, &self.output_norm, c.hidden, c.rms_eps);
        let logits = self.matmul(&self.output, &hn, wanted.len())?;
        let mut rows_iter = logits.chunks(c.vocab).map(<[f32]>::to_vec);
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let n = match item.logits {
                LogitsWanted::Last => 1,
                LogitsWanted::All => item.tokens.len(),
            };
            out.push(rows_iter.by_ref().take(n).collect());
        }
        Ok(out)
    }

    fn matmul(&self, w: &Linear, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        match w {
            Linear::Own(m) => Ok(m.matmul(x, rows, self.isa)),
            Linear::Candle { weight, out_dim } => {
                let in_dim = x.len() / rows.max(1);
                let xt = Tensor::from_slice(x, (rows, in_dim), &self.device)?;
                let y = weight.forward(&xt)?;
                debug_assert_eq!(y.dims(), [rows, *out_dim]);
                Ok(y.flatten_all()?.to_vec1()?)
            }
        }
    }

    /// Matrices that read the same input: one quantization of `x` and one parallel loop when the
    /// own kernels hold them all.
    fn matmul_many<const N: usize>(
        &self,
        ws: [&Linear; N],
        x: &[f32],
        rows: usize,
    ) -> Result<[Vec<f32>; N]> {
        let own: Vec<&PackedMatrix> = ws
            .iter()
            .filter_map(|w| match w {
                Linear::Own(m) => Some(m),
                Linear::Candle { .. } => None,
            })
            .collect();
        if own.len() < N {
            let mut out: [Vec<f32>; N] = std::array::from_fn(|_| Vec::new());
            for (o, w) in out.iter_mut().zip(ws) {
                *o = self.matmul(w, x, rows)?;
            }
            return Ok(out);
        }
        let acts = kernels::quantize_acts(x, rows, own[0].cols());
        let mut out: [Vec<f32>; N] = std::array::from_fn(|i| vec![0f32; rows * own[i].rows()]);
        let mut ys: Vec<&mut [f32]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
        kernels::matmul_many(&own, &acts, self.isa, &mut ys);
        Ok(out)
    }

    /// Which kernels run the matmuls, for benchmarks and the UI.
    pub(super) fn kernel_summary(&self) -> String {
        let own = self
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down])
            .chain(std::iter::once(&self.output))
            .filter(|l| matches!(l, Linear::Own(_)))
            .count();
        let total = self.layers.len() * 7 + 1;
        let mut s = format!(
            "{own} of {total} weight matrices on thinkscope's {} kernels",
            self.isa.name()
        );
        if own < total {
            s += &format!(", {} on candle's", total - own);
        }
        s
    }
}

/// Load a weight matrix: repacked for the own kernels (streamed from the file, sixteen rows at
/// a time, so the GGML copy is never held whole), or as a candle tensor.
fn linear(
    gguf: &mut GgufFile,
    name: &str,
    out_dim: usize,
    in_dim: usize,
    device: &Device,
) -> Result<Linear> {
    let (_, dtype) = gguf.tensor_info(name)?;
    let own = device.is_cpu() && std::env::var("THINKSCOPE_KERNELS").as_deref() != Ok("candle");
    if let (Some(source), true) = (own_source(dtype), own) {
        let path = gguf.path().to_owned();
        let (_, reader) = gguf.tensor_reader(name, &[out_dim, in_dim])?;
        match PackedMatrix::pack(source, out_dim, in_dim, |buf: &mut [u8]| {
            reader.read_exact(buf)
        }) {
            Ok(m) => return Ok(Linear::Own(m)),
            Err(PackError::Read(e)) => {
                return Err(EngineError::Corrupt {
                    path,
                    reason: format!("reading tensor '{name}': {e}"),
                })
            }
            // Rows that are not whole blocks: candle's kernels handle what they can.
            Err(PackError::Shape { .. }) => {}
        }
    }
    let t = gguf.tensor(name, &[out_dim, in_dim], device)?;
    Ok(Linear::Candle {
        weight: QMatMul::from_qtensor(t)?,
        out_dim,
    })
}

/// Load a matrix that stacks `N` matrices along its rows (a fused `attn_qkv`, a gate/up pair)
/// as `N` separate ones: with the own kernels each part is packed straight from the file, one
/// after the other; otherwise the parts' rows are cut from the one tensor (rows are whole
/// quantization blocks, so each part is a contiguous run of bytes).
fn linears<const N: usize>(
    gguf: &mut GgufFile,
    name: &str,
    outs: [usize; N],
    in_dim: usize,
    device: &Device,
) -> Result<[Linear; N]> {
    let total: usize = outs.iter().sum();
    let (_, dtype) = gguf.tensor_info(name)?;
    let own = device.is_cpu() && std::env::var("THINKSCOPE_KERNELS").as_deref() != Ok("candle");
    if let (Some(source), true) = (own_source(dtype), own) {
        let path = gguf.path().to_owned();
        let (_, reader) = gguf.tensor_reader(name, &[total, in_dim])?;
        let mut parts = Vec::with_capacity(N);
        for &out in &outs {
            match PackedMatrix::pack(source, out, in_dim, |buf: &mut [u8]| reader.read_exact(buf)) {
                Ok(m) => parts.push(Linear::Own(m)),
                Err(PackError::Read(e)) => {
                    return Err(EngineError::Corrupt {
                        path,
                        reason: format!("reading tensor '{name}': {e}"),
                    })
                }
                Err(PackError::Shape { .. }) => break,
            }
        }
        if let Ok(parts) = <[Linear; N]>::try_from(parts) {
            return Ok(parts);
        }
    }
    let t = gguf.tensor(name, &[total, in_dim], &Device::Cpu)?;
    let data = t.data()?;
    let row_bytes = data.len() / total;
    let mut start = 0;
    let mut parts = Vec::with_capacity(N);
    for &out in &outs {
        let bytes = &data[start * row_bytes..(start + out) * row_bytes];
        let storage = QStorage::from_data(std::borrow::Cow::Borrowed(bytes), device, dtype)?;
        let part = QTensor::new(storage, (out, in_dim))?;
        parts.push(Linear::Candle {
            weight: QMatMul::from_qtensor(part)?,
            out_dim: out,
        });
        start += out;
    }
    <[Linear; N]>::try_from(parts)
        .map_err(|_| EngineError::InvalidTensor(format!("splitting '{name}'")))
}

fn rms_norm_rows(x: &[f32], out: &mut [f32], w: &[f32], width: usize, eps: f32) {
    for (xr, or) in x.chunks(width).zip(out.chunks_mut(width)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

fn rms_norm_in_place(x: &mut [f32], w: &[f32], width: usize, eps: f32) {
    for r in x.chunks_mut(width) {
        let ms = r.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        r.iter_mut().zip(w).for_each(|(v, g)| *v = *v * scale * g);
    }
}

/// Rotate every head of one row in place by the `(sin, cos)` of each frequency.
fn rope_row(row: &mut [f32], head_dim: usize, angles: &[(f32, f32)], style: RopeStyle) {
    let half = angles.len();
    for head in row.chunks_mut(head_dim) {
        for (i, &(sin, cos)) in angles.iter().enumerate() {
            let (a, b) = match style {
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                RopeStyle::Neox => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cos - x1 * sin;
            head[b] = x0 * sin + x1 * cos;
        }
    }
}
