//! Paged per-sequence KV cache with copy-on-write blocks.
//!
//! A sequence's cache is a list of fixed-size blocks behind `Arc`s. Forking clones the list (a few
//! pointer copies): parent and child share every block of the prefix. The first write into a
//! shared block copies that one block, so a fork costs at most one block copy per branch, never a
//! recomputation. Memory is accounted in a pool with a hard budget.
//!
//! Keys and values are stored as f16, like llama.cpp's default cache: half the memory of f32, and
//! the same rounding the reference engine applies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::error::{EngineError, Result};

/// Tokens per KV block.
pub const BLOCK_TOKENS: usize = 16;

/// Shape of the cache: one K and one V vector of `kv_dim` floats per layer and token.
#[derive(Clone, Copy, Debug)]
pub struct KvLayout {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Width of a head.
    pub head_dim: usize,
}

impl KvLayout {
    fn block_floats(&self) -> usize {
        self.n_layer * 2 * self.n_kv_head * BLOCK_TOKENS * self.head_dim
    }

    /// Offset of (layer, k-or-v, head, slot) inside a block.
    #[inline]
    fn offset(&self, layer: usize, is_v: usize, head: usize, slot: usize) -> usize {
        (((layer * 2 + is_v) * self.n_kv_head + head) * BLOCK_TOKENS + slot) * self.head_dim
    }
}

struct PoolInner {
    layout: KvLayout,
    budget_bytes: usize,
    used_bytes: AtomicUsize,
    copied_blocks: AtomicUsize,
}

/// Allocator and accountant for KV blocks.
#[derive(Clone)]
pub struct KvPool {
    inner: Arc<PoolInner>,
}

impl KvPool {
    /// A pool that refuses to grow past `budget_bytes`.
    pub fn new(layout: KvLayout, budget_bytes: usize) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                layout,
                budget_bytes,
                used_bytes: AtomicUsize::new(0),
                copied_blocks: AtomicUsize::new(0),
            }),
        }
    }

    /// Cache layout.
    pub fn layout(&self) -> KvLayout {
        self.inner.layout
    }

    /// Bytes held by live blocks.
    pub fn used_bytes(&self) -> usize {
        self.inner.used_bytes.load(Ordering::Relaxed)
    }

    /// The configured budget.
    pub fn budget_bytes(&self) -> usize {
        self.inner.budget_bytes
    }

    /// Blocks copied because a shared block was written (copy-on-write).
    pub fn copied_blocks(&self) -> usize {
        self.inner.copied_blocks.load(Ordering::Relaxed)
    }

    /// Bytes of one block.
    pub fn block_bytes(&self) -> usize {
        self.inner.layout.block_floats() * std::mem::size_of::<f16>()
    }

    fn alloc(&self, copy_of: Option<&KvBlock>) -> Result<KvBlock> {
        let bytes = self.block_bytes();
        let used = self.inner.used_bytes.fetch_add(bytes, Ordering::Relaxed);
        if used + bytes > self.inner.budget_bytes {
            self.inner.used_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return Err(EngineError::KvBudgetExceeded {
                needed_bytes: bytes,
                used_bytes: used,
                budget_bytes: self.inner.budget_bytes,
            });
        }
        let data = match copy_of {
            Some(src) => {
                self.inner.copied_blocks.fetch_add(1, Ordering::Relaxed);
                src.data.clone()
            }
            None => vec![f16::ZERO; self.inner.layout.block_floats()],
        };
        Ok(KvBlock {
            data,
            pool: self.inner.clone(),
        })
    }
}

struct KvBlock {
    data: Vec<f16>,
    pool: Arc<PoolInner>,
}

impl Drop for KvBlock {
    fn drop(&mut self) {
        let bytes = self.data.len() * std::mem::size_of::<f16>();
        self.pool.used_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The KV cache of one sequence.
#[derive(Clone, Default)]
pub struct SeqKv {
    blocks: Vec<Arc<KvBlock>>,
    len: usize,
}

impl SeqKv {
    /// Cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A cache sharing every block with `self`: O(number of blocks) pointer copies.
    pub fn fork(&self) -> Self {
        self.clone()
    }

    /// Forget positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.blocks.truncate(len.div_ceil(BLOCK_TOKENS));
        }
    }

    /// Make room for positions `self.len .. self.len + n`, copying shared blocks that will be
    /// written. After this, `write` at those positions cannot fail.
    pub fn reserve(&mut self, pool: &KvPool, n: usize) -> Result<()> {
        let end = self.len + n;
        let first = self.len / BLOCK_TOKENS;
        for b in first..end.div_ceil(BLOCK_TOKENS) {
            if b == self.blocks.len() {
                self.blocks.push(Arc::new(pool.alloc(None)?));
            } else if Arc::strong_count(&self.blocks[b]) > 1 {
                let copy = pool.alloc(Some(&self.blocks[b]))?;
                self.blocks[b] = Arc::new(copy);
            }
        }
        Ok(())
    }

    /// Mark `n` reserved positions as filled.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Store K and V of one layer at `pos` (reserved beforehand).
    pub fn write(&mut self, layout: &KvLayout, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = layout.head_dim;
        let Some(block) = self.blocks.get_mut(pos / BLOCK_TOKENS) else {
            return;
        };
        let Some(block) = Arc::get_mut(block) else {
            // `reserve` made every written block unique; a shared one here is a logic error that
            // must not corrupt another sequence's cache.
            tracing::error!("KV write into a shared block at position {pos}");
            return;
        };
        let slot = pos % BLOCK_TOKENS;
        for h in 0..layout.n_kv_head {
            let ko = layout.offset(layer, 0, h, slot);
            block.data[ko..ko + hd].convert_from_f32_slice(&k[h * hd..(h + 1) * hd]);
            let vo = layout.offset(layer, 1, h, slot);
            block.data[vo..vo + hd].convert_from_f32_slice(&v[h * hd..(h + 1) * hd]);
        }
    }

    /// Key vector of (layer, head) at `pos`.
    #[inline]
    pub fn key(&self, layout: &KvLayout, layer: usize, head: usize, pos: usize) -> &[f16] {
        let o = layout.offset(layer, 0, head, pos % BLOCK_TOKENS);
        &self.blocks[pos / BLOCK_TOKENS].data[o..o + layout.head_dim]
    }

    /// Value vector of (layer, head) at `pos`.
    #[inline]
    pub fn value(&self, layout: &KvLayout, layer: usize, head: usize, pos: usize) -> &[f16] {
        let o = layout.offset(layer, 1, head, pos % BLOCK_TOKENS);
        &self.blocks[pos / BLOCK_TOKENS].data[o..o + layout.head_dim]
    }
}
