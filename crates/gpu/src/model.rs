//! A transformer's forward pass on the device, over a paged f16 KV cache.
//!
//! The engine describes the model in a plain [`GpuModelSpec`] and feeds every tensor through
//! [`GpuModelBuilder`] (GGML bytes, format and shape), so this crate knows nothing of GGUF files.
//! [`GpuModel::forward`] takes a ragged batch (each item its own block table, start position and
//! new tokens) and records every operation of the pass (embedding, norms, matmuls, q/k norms,
//! RoPE, cache writes, attention, MLP, residuals, output norm and LM head) into one compute pass
//! and one queue submission; only the logits rows asked for are read back. Batches of more rows
//! than the scratch buffers hold are run as several such passes, rows in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::context::{GpuContext, Tier};
use crate::error::GpuError;
use crate::format::WeightFormat;
use crate::kv::GpuKv;
use crate::matrix::{
    qacts_words, record_matmul, record_quantize, uses_dot8, Acts, GpuMatrix, QActs,
};
use crate::pipelines::{f, Binder, Buf, KernelSpec, Recorder, Sig, NONE};

/// Tokens per KV block (the engine's block tables count in these).
pub const BLOCK_TOKENS: usize = 16;
/// Most rows one pass takes; larger batches run as several passes.
const MAX_PASS_ROWS: usize = 512;

/// How rotary embeddings pair the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1).
    Interleaved,
    /// Halves (i, i + rope_dim/2).
    Neox,
}

/// The gate activation of the MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU).
    Silu,
    /// GELU, tanh form (GeGLU).
    GeluTanh,
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Clone, Debug)]
pub struct GpuModelSpec {
    /// Residual width.
    pub hidden: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Width of a head (even, at most 256).
    pub head_dim: usize,
    /// MLP inner width.
    pub ffn: usize,
    /// Vocabulary (rows of the embedding and LM head).
    pub vocab: usize,
    /// Longest sequence.
    pub context_length: usize,
    /// RMS norm epsilon.
    pub rms_eps: f32,
    /// Pairing of rotated dimensions.
    pub rope_style: RopeStyle,
    /// Per layer, the inverse frequencies of the rotated pairs (rope_dim / 2 of them; rope
    /// scaling is just other frequencies; none for a layer without RoPE).
    pub inv_freq: Vec<Vec<f32>>,
    /// Per layer, the factor on both rotated coordinates (YaRN and LongRoPE magnitudes; 1).
    pub rope_mscale: Vec<f32>,
    /// Per layer, the sliding window (positions a query sees, itself included), if any.
    pub window: Vec<Option<usize>>,
    /// Softmax scale on q·k.
    pub attn_scale: f32,
    /// Multiplier on token embeddings (Gemma: sqrt(hidden)).
    pub embed_scale: f32,
    /// MLP activation.
    pub activation: Activation,
    /// Per-head RMS norms on q and k.
    pub qk_norm: bool,
    /// Norms after attention and after the MLP (Gemma 3).
    pub post_norms: bool,
    /// Biases on the q/k/v projections.
    pub qkv_bias: bool,
}

impl GpuModelSpec {
    fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    fn validate(&self) -> Result<(), GpuError> {
        let bad = |m: String| Err(GpuError::Invalid(m));
        if self.n_layer == 0 || self.hidden == 0 || self.ffn == 0 || self.vocab == 0 {
            return bad("empty model".into());
        }
        if self.head_dim == 0 || self.head_dim > 256 || !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head width {} (the GPU takes even widths up to 256)",
                self.head_dim
            ));
        }
        if self.n_kv_head == 0 || !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(format!(
                "{} heads over {} key/value heads",
                self.n_head, self.n_kv_head
            ));
        }
        for (name, w) in [
            ("hidden", self.hidden),
            ("ffn", self.ffn),
            ("q width", self.q_dim()),
        ] {
            if !w.is_multiple_of(32) {
                return bad(format!("{name} {w} is not a multiple of 32"));
            }
        }
        if self.inv_freq.len() != self.n_layer
            || self.window.len() != self.n_layer
            || self.rope_mscale.len() != self.n_layer
        {
            return bad("per-layer rope and window lists must have one entry a layer".into());
        }
        for f in &self.inv_freq {
            if 2 * f.len() > self.head_dim || f.iter().any(|v| !v.is_finite()) {
                return bad(format!(
                    "{} rotated pairs for heads of {}",
                    f.len(),
                    self.head_dim
                ));
            }
        }
        if self.window.contains(&Some(0)) {
            return bad("a sliding window of 0".into());
        }
        Ok(())
    }
}

/// Where a tensor goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Token embedding `[vocab, hidden]`.
    Embed,
    /// LM head `[vocab, hidden]`; absent when tied to the embedding.
    Output,
    /// Final norm `[hidden]`.
    OutputNorm,
    /// A tensor of layer `l`.
    Layer(usize, LayerSlot),
}

/// The tensors of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum LayerSlot {
    AttnNorm,
    Q,
    K,
    V,
    O,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    PostAttnNorm,
    FfnNorm,
    Gate,
    Up,
    Down,
    PostFfnNorm,
}

/// Collects a model's tensors, then uploads the small vectors and checks nothing is missing.
pub struct GpuModelBuilder {
    ctx: Arc<GpuContext>,
    spec: GpuModelSpec,
    mats: HashMap<Slot, GpuMatrix>,
    vecs: HashMap<Slot, Vec<f32>>,
    tier: Tier,
}

impl GpuModelBuilder {
    /// Start a model of `spec` on `ctx`.
    pub fn new(ctx: Arc<GpuContext>, spec: GpuModelSpec) -> Result<Self, GpuError> {
        spec.validate()?;
        Ok(Self {
            tier: ctx.tier(),
            ctx,
            spec,
            mats: HashMap::new(),
            vecs: HashMap::new(),
        })
    }

    /// Run on `tier` rather than the device's (tests of each tier); features the adapter lacks
    /// are dropped.
    pub fn with_tier(mut self, tier: Tier) -> Self {
        self.tier = tier.min(self.ctx.available());
        self
    }

    fn matrix_shape(&self, slot: Slot) -> Option<(usize, usize)> {
        let s = &self.spec;
        let (q, kv, h) = (s.q_dim(), s.kv_dim(), s.hidden);
        Some(match slot {
            Slot::Embed | Slot::Output => (s.vocab, h),
            Slot::Layer(_, LayerSlot::Q) => (q, h),
            Slot::Layer(_, LayerSlot::K | LayerSlot::V) => (kv, h),
            Slot::Layer(_, LayerSlot::O) => (h, q),
            Slot::Layer(_, LayerSlot::Gate | LayerSlot::Up) => (s.ffn, h),
            Slot::Layer(_, LayerSlot::Down) => (h, s.ffn),
            _ => return None,
        })
    }

    fn vector_len(&self, slot: Slot) -> Option<usize> {
        let s = &self.spec;
        Some(match slot {
            Slot::OutputNorm => s.hidden,
            Slot::Layer(
                _,
                LayerSlot::AttnNorm
                | LayerSlot::FfnNorm
                | LayerSlot::PostAttnNorm
                | LayerSlot::PostFfnNorm,
            ) => s.hidden,
            Slot::Layer(_, LayerSlot::QBias) => s.q_dim(),
            Slot::Layer(_, LayerSlot::KBias | LayerSlot::VBias) => s.kv_dim(),
            Slot::Layer(_, LayerSlot::QNorm | LayerSlot::KNorm) => s.head_dim,
            _ => return None,
        })
    }

    fn check_layer(&self, slot: Slot) -> Result<(), GpuError> {
        match slot {
            Slot::Layer(l, _) if l >= self.spec.n_layer => Err(GpuError::Invalid(format!(
                "layer {l} of a {}-layer model",
                self.spec.n_layer
            ))),
            _ => Ok(()),
        }
    }

    /// Upload a weight matrix given as GGML bytes of `format`, `[rows, cols]`.
    pub fn matrix(
        &mut self,
        slot: Slot,
        format: WeightFormat,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<(), GpuError> {
        self.check_layer(slot)?;
        let Some(want) = self.matrix_shape(slot) else {
            return Err(GpuError::Invalid(format!("{slot:?} is not a matrix")));
        };
        if (rows, cols) != want {
            return Err(GpuError::Invalid(format!(
                "{slot:?} is {rows} x {cols}, expected {} x {}",
                want.0, want.1
            )));
        }
        let m = GpuMatrix::upload(&self.ctx, format, rows, cols, bytes)?;
        self.mats.insert(slot, m);
        Ok(())
    }

    /// Set a norm weight or bias vector.
    pub fn vector(&mut self, slot: Slot, values: &[f32]) -> Result<(), GpuError> {
        self.check_layer(slot)?;
        let Some(len) = self.vector_len(slot) else {
            return Err(GpuError::Invalid(format!("{slot:?} is not a vector")));
        };
        if values.len() != len {
            return Err(GpuError::Invalid(format!(
                "{slot:?} has {} values, expected {len}",
                values.len()
            )));
        }
        self.vecs.insert(slot, values.to_vec());
        Ok(())
    }

    /// Check every tensor the spec needs is there and build the model.
    pub fn finish(mut self) -> Result<GpuModel, GpuError> {
        let s = self.spec.clone();
        let mut flat: Vec<f32> = Vec::new();
        let mut put = |v: &[f32]| -> u32 {
            let at = flat.len() as u32;
            flat.extend_from_slice(v);
            // Keep offsets 4-float aligned.
            while !flat.len().is_multiple_of(4) {
                flat.push(0.0);
            }
            at
        };
        let take_vec = |vecs: &mut HashMap<Slot, Vec<f32>>,
                        slot: Slot,
                        needed: bool|
         -> Result<Option<Vec<f32>>, GpuError> {
            match vecs.remove(&slot) {
                Some(v) => Ok(Some(v)),
                None if needed => Err(GpuError::Invalid(format!("{slot:?} is missing"))),
                None => Ok(None),
            }
        };
        let mut take_mat = |slot: Slot| -> Result<GpuMatrix, GpuError> {
            self.mats
                .remove(&slot)
                .ok_or_else(|| GpuError::Invalid(format!("{slot:?} is missing")))
        };
        let embed = take_mat(Slot::Embed)?;
        let output = take_mat(Slot::Output).ok();
        let output_norm = take_vec(&mut self.vecs, Slot::OutputNorm, true)?.unwrap_or_default();
        let output_norm = put(&output_norm);
        let mut layers = Vec::with_capacity(s.n_layer);
        for l in 0..s.n_layer {
            let sl = |x| Slot::Layer(l, x);
            let mut v = |x: LayerSlot, needed: bool| take_vec(&mut self.vecs, sl(x), needed);
            let attn_norm = v(LayerSlot::AttnNorm, true)?.unwrap_or_default();
            let ffn_norm = v(LayerSlot::FfnNorm, true)?.unwrap_or_default();
            let bias = if s.qkv_bias {
                let mut b = v(LayerSlot::QBias, true)?.unwrap_or_default();
                b.extend(v(LayerSlot::KBias, true)?.unwrap_or_default());
                b.extend(v(LayerSlot::VBias, true)?.unwrap_or_default());
                Some(b)
            } else {
                None
            };
            let qn = v(LayerSlot::QNorm, s.qk_norm)?;
            let kn = v(LayerSlot::KNorm, s.qk_norm)?;
            let pa = v(LayerSlot::PostAttnNorm, s.post_norms)?;
            let pf = v(LayerSlot::PostFfnNorm, s.post_norms)?;
            let opt = |put: &mut dyn FnMut(&[f32]) -> u32, x: &Option<Vec<f32>>, on: bool| match x {
                Some(x) if on => put(x),
                _ => NONE,
            };
            let layer = Layer {
                attn_norm: put(&attn_norm),
                ffn_norm: put(&ffn_norm),
                bias: opt(&mut put, &bias, s.qkv_bias),
                q_norm: opt(&mut put, &qn, s.qk_norm),
                k_norm: opt(&mut put, &kn, s.qk_norm),
                post_attn: opt(&mut put, &pa, s.post_norms),
                post_ffn: opt(&mut put, &pf, s.post_norms),
                freq: put(&s.inv_freq[l]),
                q: take_mat(sl(LayerSlot::Q))?,
                k: take_mat(sl(LayerSlot::K))?,
                v: take_mat(sl(LayerSlot::V))?,
                o: take_mat(sl(LayerSlot::O))?,
                gate: take_mat(sl(LayerSlot::Gate))?,
                up: take_mat(sl(LayerSlot::Up))?,
                down: take_mat(sl(LayerSlot::Down))?,
            };
            layers.push(layer);
        }
        let vecs = self
            .ctx
            .upload("norms and biases", &crate::format::f32_bytes(&flat))?;
        let binder = Binder::new();
        let model = GpuModel {
            tier: self.tier,
            ctx: self.ctx.clone(),
            spec: s,
            embed,
            output,
            output_norm,
            layers,
            vecs,
            state: Mutex::new(State {
                binder,
                scratch: None,
            }),
        };
        model.ctx.check("uploading weights")?;
        Ok(model)
    }
}

struct Layer {
    attn_norm: u32,
    ffn_norm: u32,
    bias: u32,
    q_norm: u32,
    k_norm: u32,
    post_attn: u32,
    post_ffn: u32,
    freq: u32,
    q: GpuMatrix,
    k: GpuMatrix,
    v: GpuMatrix,
    o: GpuMatrix,
    gate: GpuMatrix,
    up: GpuMatrix,
    down: GpuMatrix,
}

/// Activation buffers for up to `rows` rows and `logit_rows` logits rows.
struct Scratch {
    rows: usize,
    logit_rows: usize,
    meta_words: usize,
    meta: Buf,
    x: Buf,
    xn: Buf,
    qkv: Buf,
    attn: Buf,
    o: Buf,
    gu: Buf,
    xq: Buf,
    hn: Buf,
    logits: Buf,
    staging: Buf,
}

struct State {
    binder: Binder,
    scratch: Option<Scratch>,
}

/// One sequence's share of a forward pass.
#[derive(Clone, Copy, Debug)]
pub struct ForwardItem<'a> {
    /// The sequence's block table (room reserved for the new tokens).
    pub blocks: &'a [u32],
    /// Position of the first new token (tokens already cached).
    pub start: usize,
    /// New tokens at positions `start ..`.
    pub tokens: &'a [u32],
    /// Logits after every new token (else after the last only).
    pub all_logits: bool,
}

/// A ragged batch.
#[derive(Clone, Copy, Debug)]
pub struct ForwardBatch<'a> {
    /// The items, each its own sequence.
    pub items: &'a [ForwardItem<'a>],
    /// Copy-on-write block copies `(src, dst)`, done before the pass.
    pub copies: &'a [(u32, u32)],
    /// Every block id is below this; the cache grows to it.
    pub blocks_in_use: usize,
}

/// A model whose weights live on the device.
pub struct GpuModel {
    ctx: Arc<GpuContext>,
    tier: Tier,
    spec: GpuModelSpec,
    embed: GpuMatrix,
    output: Option<GpuMatrix>,
    output_norm: u32,
    layers: Vec<Layer>,
    vecs: Buf,
    state: Mutex<State>,
}

impl std::fmt::Debug for GpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuModel({} layers on {})",
            self.spec.n_layer,
            self.ctx.description()
        )
    }
}

/// Rows of one pass, flattened.
struct Rows {
    ids: Vec<u32>,
    pos: Vec<u32>,
    item: Vec<u32>,
}

impl GpuModel {
    /// The device it runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// The tier its passes use.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The device line with this model's tier.
    pub fn description(&self) -> String {
        self.ctx.describe_tier(self.tier)
    }

    /// Its shape.
    pub fn spec(&self) -> &GpuModelSpec {
        &self.spec
    }

    /// Weight matrices in GPU shaders (7 a layer and the LM head; a tied head counts once).
    pub fn matrix_count(&self) -> usize {
        self.layers.len() * 7 + 1
    }

    /// GPU bytes of weights.
    pub fn weight_bytes(&self) -> u64 {
        let mut b = self.embed.bytes() + self.vecs.bytes;
        if let Some(o) = &self.output {
            b += o.bytes();
        }
        for l in &self.layers {
            for m in [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down] {
                b += m.bytes();
            }
        }
        b
    }

    /// Formats of the weight matrices in GPU shaders and how many of each, e.g. "Q4_1 ×210,
    /// Q8_0 ×1".
    pub fn format_summary(&self) -> String {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        let mats = self
            .layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down])
            .chain(std::iter::once(self.head()));
        for m in mats {
            let name = m.format().name();
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        counts
            .iter()
            .map(|(n, c)| format!("{n} ×{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn head(&self) -> &GpuMatrix {
        self.output.as_ref().unwrap_or(&self.embed)
    }

    /// Bytes of one KV block (all layers).
    pub fn kv_block_bytes(&self) -> usize {
        self.spec.n_layer * 2 * self.spec.kv_dim() * BLOCK_TOKENS * 2
    }

    /// Most KV blocks the device's buffers can hold (one buffer a layer, each within the
    /// binding limit).
    pub fn kv_max_blocks(&self) -> usize {
        let per_layer = (2 * self.spec.kv_dim() * BLOCK_TOKENS * 2) as u64;
        (self.ctx.max_binding / per_layer) as usize
    }

    /// An empty cache for this model.
    pub fn new_kv(&self) -> GpuKv {
        GpuKv::new(&self.spec, self.kv_max_blocks())
    }

    /// Run one forward pass. Returns per item the logits rows it asked for (one row, or one per
    /// new token). The cache must not be shared with a pass running at the same time.
    pub fn forward(
        &self,
        kv: &mut GpuKv,
        batch: &ForwardBatch<'_>,
    ) -> Result<Vec<Vec<Vec<f32>>>, GpuError> {
        let _span = tracing::trace_span!("gpu_forward", items = batch.items.len()).entered();
        self.validate(kv, batch)?;
        let mut state = self
            .state
            .lock()
            .map_err(|_| GpuError::Device("GPU model state poisoned".into()))?;
        let state = &mut *state;
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("forward"),
            });
        if kv.ensure(&self.ctx, batch.blocks_in_use, &mut enc)? {
            state.binder.clear();
        }
        // Rows in item order; passes take whole runs of rows, in order.
        let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); batch.items.len()];
        let total: usize = batch.items.iter().map(|i| i.tokens.len()).sum();
        let mut copies = batch.copies;
        let mut done = 0usize;
        let mut enc = Some(enc);
        while done < total {
            let take = (total - done).min(self.max_pass_rows());
            let rows = self.rows(batch, done, take);
            // Logits rows of this pass: (row index in the pass, item).
            let mut wanted: Vec<(u32, usize)> = Vec::new();
            for (r, &it) in rows.item.iter().enumerate() {
                let item = &batch.items[it as usize];
                let last = rows.pos[r] as usize == item.start + item.tokens.len() - 1;
                if item.all_logits || last {
                    wanted.push((r as u32, it as usize));
                }
            }
            let enc = enc.take().unwrap_or_else(|| {
                self.ctx
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("forward"),
                    })
            });
            let logits = self.pass(state, kv, batch, copies, &rows, &wanted, enc)?;
            copies = &[];
            for ((_, it), row) in wanted.iter().zip(logits) {
                out[*it].push(row);
            }
            done += take;
        }
        Ok(out)
    }

    fn validate(&self, kv: &GpuKv, batch: &ForwardBatch<'_>) -> Result<(), GpuError> {
        let s = &self.spec;
        let bad = |m: String| Err(GpuError::Invalid(m));
        if batch.blocks_in_use > kv.max_blocks() {
            return bad(format!(
                "{} cache blocks asked for, the device holds {}",
                batch.blocks_in_use,
                kv.max_blocks()
            ));
        }
        for (i, it) in batch.items.iter().enumerate() {
            if it.tokens.is_empty() {
                return bad(format!("batch item {i} has no tokens"));
            }
            let end = it.start + it.tokens.len();
            if end > s.context_length {
                return bad(format!(
                    "{end} tokens exceed the context of {}",
                    s.context_length
                ));
            }
            if let Some(&t) = it.tokens.iter().find(|&&t| t as usize >= s.vocab) {
                return bad(format!(
                    "token {t} is outside the vocabulary of {}",
                    s.vocab
                ));
            }
            if it.blocks.len() < end.div_ceil(BLOCK_TOKENS) {
                return bad(format!(
                    "item {i}: {} blocks for {end} positions",
                    it.blocks.len()
                ));
            }
            if let Some(b) = it
                .blocks
                .iter()
                .find(|&&b| b as usize >= batch.blocks_in_use)
            {
                return bad(format!(
                    "item {i}: block {b} is not below {}",
                    batch.blocks_in_use
                ));
            }
        }
        for &(a, b) in batch.copies {
            if a as usize >= batch.blocks_in_use || b as usize >= batch.blocks_in_use || a == b {
                return bad(format!("block copy {a} -> {b}"));
            }
        }
        Ok(())
    }

    /// Rows `from .. from + n` of the batch, flattened in item order.
    fn rows(&self, batch: &ForwardBatch<'_>, from: usize, n: usize) -> Rows {
        let mut r = Rows {
            ids: Vec::with_capacity(n),
            pos: Vec::with_capacity(n),
            item: Vec::with_capacity(n),
        };
        let mut at = 0usize;
        for (i, it) in batch.items.iter().enumerate() {
            for (j, &t) in it.tokens.iter().enumerate() {
                if at >= from && at < from + n {
                    r.ids.push(t);
                    r.pos.push((it.start + j) as u32);
                    r.item.push(i as u32);
                }
                at += 1;
            }
        }
        r
    }

    fn ensure_scratch(
        &self,
        state: &mut State,
        rows: usize,
        logit_rows: usize,
        meta_words: usize,
    ) -> Result<(), GpuError> {
        if let Some(s) = &state.scratch {
            if s.rows >= rows && s.logit_rows >= logit_rows && s.meta_words >= meta_words {
                return Ok(());
            }
        }
        let old = state.scratch.take();
        let grow = |want: usize, had: Option<usize>| want.max(had.unwrap_or(0)).next_power_of_two();
        let rows = grow(rows, old.as_ref().map(|s| s.rows)).min(self.max_pass_rows());
        let logit_rows = grow(logit_rows, old.as_ref().map(|s| s.logit_rows))
            .min(rows)
            .min(self.max_logit_rows());
        let meta_words = grow(meta_words, old.as_ref().map(|s| s.meta_words));
        let s = &self.spec;
        let ctx = &self.ctx;
        let st = wgpu::BufferUsages::STORAGE;
        let f4 = |n: usize| 4 * n as u64;
        let qkv_w = s.q_dim() + 2 * s.kv_dim();
        let widest = s.hidden.max(s.q_dim()).max(s.ffn);
        let scratch = Scratch {
            rows,
            logit_rows,
            meta_words,
            meta: ctx.buffer(
                "pass metadata",
                f4(meta_words),
                st | wgpu::BufferUsages::COPY_DST,
            )?,
            x: ctx.buffer("residual", f4(rows * s.hidden), st)?,
            xn: ctx.buffer("normed", f4(rows * s.hidden), st)?,
            qkv: ctx.buffer("qkv", f4(rows * qkv_w), st)?,
            attn: ctx.buffer("attention", f4(rows * s.q_dim()), st)?,
            o: ctx.buffer("projection", f4(rows * s.hidden), st)?,
            gu: ctx.buffer("gate and up", f4(rows * 2 * s.ffn), st)?,
            xq: ctx.buffer("8-bit activations", f4(qacts_words(rows, widest)), st)?,
            hn: ctx.buffer("output norm", f4(logit_rows * s.hidden), st)?,
            logits: ctx.buffer(
                "logits",
                f4(logit_rows * s.vocab),
                st | wgpu::BufferUsages::COPY_SRC,
            )?,
            staging: ctx.buffer(
                "logits readback",
                f4(logit_rows * s.vocab),
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?,
        };
        state.scratch = Some(scratch);
        state.binder.clear();
        Ok(())
    }

    /// Logits rows one pass can return (the logits buffer stays within the binding limit).
    fn max_logit_rows(&self) -> usize {
        ((self.ctx.max_binding / (4 * self.spec.vocab as u64)) as usize).clamp(1, MAX_PASS_ROWS)
    }

    /// Rows one pass takes: every activation buffer stays within the binding limit.
    fn max_pass_rows(&self) -> usize {
        let s = &self.spec;
        let widest = (2 * s.ffn).max(s.q_dim() + 2 * s.kv_dim()).max(s.hidden);
        ((self.ctx.max_binding / (4 * widest as u64)) as usize).clamp(1, MAX_PASS_ROWS)
    }

    #[allow(clippy::too_many_arguments)]
    fn pass(
        &self,
        state: &mut State,
        kv: &GpuKv,
        batch: &ForwardBatch<'_>,
        copies: &[(u32, u32)],
        rows: &Rows,
        wanted: &[(u32, usize)],
        mut enc: wgpu::CommandEncoder,
    ) -> Result<Vec<Vec<f32>>, GpuError> {
        let s = &self.spec;
        let ctx = &*self.ctx;
        let tier = self.tier;
        let n = rows.ids.len();
        // Metadata: ids, positions, items, per-item table starts, tables, copies, wanted rows.
        let mut meta: Vec<u32> = Vec::new();
        meta.extend(&rows.ids);
        meta.extend(&rows.pos);
        meta.extend(&rows.item);
        let table_off = meta.len();
        meta.resize(table_off + batch.items.len(), 0);
        for (i, it) in batch.items.iter().enumerate() {
            meta[table_off + i] = meta.len() as u32;
            meta.extend(it.blocks);
        }
        let copies_off = meta.len();
        for &(a, b) in copies {
            meta.extend([a, b]);
        }
        let wanted_off = meta.len();
        let chunk = self.max_logit_rows();
        let first_chunk = wanted.len().min(chunk);
        meta.extend(wanted.iter().map(|(r, _)| *r));
        self.ensure_scratch(state, n, first_chunk, meta.len())?;
        let (binder, Some(sc)) = (&mut state.binder, state.scratch.as_ref()) else {
            return Err(GpuError::Device("scratch buffers missing".into()));
        };
        let meta_bytes: Vec<u8> = meta.iter().flat_map(|v| v.to_le_bytes()).collect();
        ctx.queue.write_buffer(&sc.meta.raw, 0, &meta_bytes);

        let nn = n as u32;
        let (pos_off, item_off) = (nn, 2 * nn);
        let (hidden, q_dim, kv_dim) = (s.hidden as u32, s.q_dim() as u32, s.kv_dim() as u32);
        let qkv_w = q_dim + 2 * kv_dim;
        let ffn = s.ffn as u32;
        let eps = f(s.rms_eps);
        let mut rec = Recorder::default();
        let k = |shader: &'static str, reads: u8, writes: u8, tier: Tier| {
            ctx.kernel(&KernelSpec {
                shader,
                flags: vec![],
                consts: vec![],
                sig: Sig { reads, writes },
                tier,
            })
        };
        let plain = Tier {
            f16: false,
            int8: false,
            ..tier
        };

        // Copy-on-write block copies, layer by layer.
        if !copies.is_empty() {
            let kc = k("kv_copy.wgsl", 1, 1, Tier::F32)?;
            for buf in kv.layers() {
                let bind = binder.bind(ctx, &kc, &[&sc.meta, buf])?;
                let p = [
                    copies.len() as u32,
                    kv.words_per_block() as u32,
                    copies_off as u32,
                ];
                rec.dispatch_xy(&kc, bind, &p, (64, copies.len() as u32));
            }
        }

        // Embedding.
        let (flags, min_off) = self.embed.format().flags();
        let ke = ctx.kernel(&KernelSpec {
            shader: "embed.wgsl",
            flags,
            consts: vec![("MIN_OFFSET", min_off.to_owned())],
            sig: Sig {
                reads: 3,
                writes: 1,
            },
            tier: Tier::F32,
        })?;
        for part in &self.embed.parts {
            let bind = binder.bind(ctx, &ke, &[&part.codes, &part.scales, &sc.meta, &sc.x])?;
            let p = [
                nn,
                hidden,
                part.row0 as u32,
                part.rows as u32,
                part.hi_off,
                0,
                f(s.embed_scale),
            ];
            rec.dispatch(&ke, bind, &p, nn);
        }
        let kn = k("norm.wgsl", 3, 1, plain)?;
        let bind = binder.bind(ctx, &kn, &[&sc.x, &self.vecs, &sc.meta, &sc.xn])?;
        rec.dispatch(
            &kn,
            bind,
            &[nn, hidden, self.layers[0].attn_norm, NONE, eps],
            nn,
        );

        let kq = k("qkv.wgsl", 2, 2, plain)?;
        let ka = k(
            "attention.wgsl",
            3,
            1,
            Tier {
                int8: false,
                subgroup: false,
                ..tier
            },
        )?;
        let kr = k("residual.wgsl", 2, 2, plain)?;
        let kact = k("act.wgsl", 0, 1, Tier::F32)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let kvb = &kv.layers()[l];
            // q, k, v.
            let xn = Acts {
                buf: &sc.xn,
                off: 0,
                stride: hidden,
                n: nn,
            };
            let xq = self.maybe_quantize(
                binder,
                &mut rec,
                tier,
                &[&layer.q, &layer.k, &layer.v],
                xn,
                hidden,
                &sc.xq,
            )?;
            for (m, off) in [(&layer.q, 0), (&layer.k, q_dim), (&layer.v, q_dim + kv_dim)] {
                record_matmul(ctx, binder, &mut rec, tier, m, xn, xq, &sc.qkv, qkv_w, off)?;
            }
            // Biases, q/k norms, RoPE, cache writes.
            let bind = binder.bind(ctx, &kq, &[&self.vecs, &sc.meta, &sc.qkv, kvb])?;
            let p = [
                nn,
                s.n_head as u32,
                s.n_kv_head as u32,
                s.head_dim as u32,
                s.inv_freq[l].len() as u32,
                (s.rope_style == RopeStyle::Neox) as u32,
                qkv_w,
                layer.bias,
                layer.q_norm,
                layer.k_norm,
                layer.freq,
                pos_off,
                item_off,
                table_off as u32,
                eps,
                f(s.rope_mscale[l]),
            ];
            rec.dispatch(&kq, bind, &p, nn * (s.n_head + s.n_kv_head) as u32);
            // Attention.
            let bind = binder.bind(ctx, &ka, &[&sc.qkv, kvb, &sc.meta, &sc.attn])?;
            let p = [
                nn,
                s.n_head as u32,
                s.n_kv_head as u32,
                s.head_dim as u32,
                s.window[l].map_or(0, |w| w.min(u32::MAX as usize) as u32),
                qkv_w,
                pos_off,
                item_off,
                table_off as u32,
                f(s.attn_scale),
            ];
            rec.dispatch(&ka, bind, &p, nn * s.n_head as u32);
            // Output projection and the residual, with the MLP's norm.
            let at = Acts {
                buf: &sc.attn,
                off: 0,
                stride: q_dim,
                n: nn,
            };
            let aq = self.maybe_quantize(binder, &mut rec, tier, &[&layer.o], at, q_dim, &sc.xq)?;
            record_matmul(
                ctx, binder, &mut rec, tier, &layer.o, at, aq, &sc.o, hidden, 0,
            )?;
            let bind = binder.bind(ctx, &kr, &[&sc.o, &self.vecs, &sc.x, &sc.xn])?;
            rec.dispatch(
                &kr,
                bind,
                &[nn, hidden, layer.post_attn, layer.ffn_norm, eps],
                nn,
            );
            // MLP.
            let gq = self.maybe_quantize(
                binder,
                &mut rec,
                tier,
                &[&layer.gate, &layer.up],
                xn,
                hidden,
                &sc.xq,
            )?;
            record_matmul(
                ctx,
                binder,
                &mut rec,
                tier,
                &layer.gate,
                xn,
                gq,
                &sc.gu,
                2 * ffn,
                0,
            )?;
            record_matmul(
                ctx,
                binder,
                &mut rec,
                tier,
                &layer.up,
                xn,
                gq,
                &sc.gu,
                2 * ffn,
                ffn,
            )?;
            let bind = binder.bind(ctx, &kact, &[&sc.gu])?;
            let gelu = (s.activation == Activation::GeluTanh) as u32;
            rec.dispatch(&kact, bind, &[nn, ffn, gelu], (nn * ffn).div_ceil(64));
            let h = Acts {
                buf: &sc.gu,
                off: 0,
                stride: 2 * ffn,
                n: nn,
            };
            let hq = self.maybe_quantize(binder, &mut rec, tier, &[&layer.down], h, ffn, &sc.xq)?;
            record_matmul(
                ctx,
                binder,
                &mut rec,
                tier,
                &layer.down,
                h,
                hq,
                &sc.o,
                hidden,
                0,
            )?;
            let next = self.layers.get(l + 1).map_or(NONE, |n| n.attn_norm);
            let bind = binder.bind(ctx, &kr, &[&sc.o, &self.vecs, &sc.x, &sc.xn])?;
            rec.dispatch(&kr, bind, &[nn, hidden, layer.post_ffn, next, eps], nn);
        }

        // Output norm and LM head, for chunks of the wanted rows that fit the logits buffer;
        // the first chunk rides in the pass's own submission.
        let mut results = Vec::with_capacity(wanted.len());
        if wanted.is_empty() {
            binder.encode(ctx, &rec, &mut enc)?;
            let idx = ctx.queue.submit([enc.finish()]);
            ctx.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(idx),
                    timeout: None,
                })
                .map_err(|e| GpuError::Device(format!("waiting for the GPU: {e}")))?;
            ctx.check("forward pass")?;
            return Ok(results);
        }
        let head = self.head();
        let mut start = 0usize;
        while start < wanted.len() {
            let w = (wanted.len() - start).min(sc.logit_rows);
            let wn = w as u32;
            let bind = binder.bind(ctx, &kn, &[&sc.x, &self.vecs, &sc.meta, &sc.hn])?;
            let p = [
                wn,
                hidden,
                self.output_norm,
                (wanted_off + start) as u32,
                eps,
            ];
            rec.dispatch(&kn, bind, &p, wn);
            let hn = Acts {
                buf: &sc.hn,
                off: 0,
                stride: hidden,
                n: wn,
            };
            let hq = self.maybe_quantize(binder, &mut rec, tier, &[head], hn, hidden, &sc.xq)?;
            let vocab = s.vocab as u32;
            record_matmul(
                ctx, binder, &mut rec, tier, head, hn, hq, &sc.logits, vocab, 0,
            )?;
            binder.encode(ctx, &rec, &mut enc)?;
            let bytes = (w * s.vocab * 4) as u64;
            enc.copy_buffer_to_buffer(&sc.logits.raw, 0, &sc.staging.raw, 0, bytes);
            let idx = ctx.queue.submit([enc.finish()]);
            let raw = ctx.map_read(&sc.staging, bytes, idx)?;
            for row in raw.chunks_exact(s.vocab * 4) {
                results.push(
                    row.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                );
            }
            start += w;
            rec = Recorder::default();
            enc = ctx.device.create_command_encoder(&Default::default());
        }
        Ok(results)
    }

    /// Quantize `x` to 8 bits when any of `mats` will take it at this tier.
    #[allow(clippy::too_many_arguments)]
    fn maybe_quantize<'a>(
        &self,
        binder: &mut Binder,
        rec: &mut Recorder,
        tier: Tier,
        mats: &[&GpuMatrix],
        x: Acts<'_>,
        cols: u32,
        out: &'a Buf,
    ) -> Result<Option<QActs<'a>>, GpuError> {
        if mats.iter().any(|m| uses_dot8(m, tier)) {
            record_quantize(&self.ctx, binder, rec, x, cols, out).map(Some)
        } else {
            Ok(None)
        }
    }
}
