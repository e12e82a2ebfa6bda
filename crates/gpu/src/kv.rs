//! The paged KV cache in GPU memory: one buffer per layer, each an array of blocks of
//! `2 (k, v) × kv heads × 16 slots × head_dim` f16 values, the same order within a block as the
//! CPU cache (`((is_v · n_kv + head) · 16 + slot) · head_dim + d`, per layer). Block ids come
//! from the engine's block tables; the buffers grow (copying what they hold) up to what the
//! device's binding limit allows.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::model::{GpuModelSpec, BLOCK_TOKENS};
use crate::pipelines::Buf;

/// Block storage of one sequence set (an engine).
pub struct GpuKv {
    layers: Vec<Buf>,
    cap: usize,
    max: usize,
    n_layer: usize,
    words: usize,
}

impl std::fmt::Debug for GpuKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuKv({} of {} blocks)", self.cap, self.max)
    }
}

impl GpuKv {
    pub(crate) fn new(spec: &GpuModelSpec, max_blocks: usize) -> Self {
        Self {
            layers: Vec::new(),
            cap: 0,
            max: max_blocks,
            n_layer: spec.n_layer,
            words: 2 * spec.n_kv_head * BLOCK_TOKENS * spec.head_dim / 2,
        }
    }

    /// Blocks the buffers hold now.
    pub fn capacity_blocks(&self) -> usize {
        self.cap
    }

    /// Most blocks the device can hold.
    pub fn max_blocks(&self) -> usize {
        self.max
    }

    /// GPU bytes held.
    pub fn bytes(&self) -> u64 {
        self.layers.iter().map(|b| b.bytes).sum()
    }

    pub(crate) fn layers(&self) -> &[Buf] {
        &self.layers
    }

    /// u32 words of one block in one layer's buffer.
    pub(crate) fn words_per_block(&self) -> usize {
        self.words
    }

    /// Room for `blocks` blocks; growing records the copy of the old contents into `enc`.
    /// Returns whether the buffers were replaced.
    pub(crate) fn ensure(
        &mut self,
        ctx: &GpuContext,
        blocks: usize,
        enc: &mut wgpu::CommandEncoder,
    ) -> Result<bool, GpuError> {
        let blocks = blocks.max(1);
        if blocks <= self.cap {
            return Ok(false);
        }
        if blocks > self.max {
            return Err(GpuError::Invalid(format!(
                "{blocks} cache blocks asked for, the device holds {}",
                self.max
            )));
        }
        let cap = blocks.max(2 * self.cap).max(16).min(self.max);
        let bytes = (cap * self.words * 4) as u64;
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let mut layers = Vec::with_capacity(self.n_layer);
        for _ in 0..self.n_layer {
            layers.push(ctx.buffer("KV cache", bytes, usage)?);
        }
        for (old, new) in self.layers.iter().zip(&layers) {
            enc.copy_buffer_to_buffer(&old.raw, 0, &new.raw, 0, old.bytes);
        }
        self.layers = layers;
        self.cap = cap;
        Ok(true)
    }

    /// The f16 bits of one block of one layer (tests and debugging).
    pub fn read_block(
        &self,
        ctx: &GpuContext,
        layer: usize,
        block: usize,
    ) -> Result<Vec<u16>, GpuError> {
        let Some(buf) = self.layers.get(layer) else {
            return Err(GpuError::Invalid(format!("no layer {layer} in the cache")));
        };
        if block >= self.cap {
            return Err(GpuError::Invalid(format!("no block {block} in the cache")));
        }
        let bytes = (self.words * 4) as u64;
        let raw = ctx.read(buf, block as u64 * bytes, bytes)?;
        Ok(raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }
}
