//! Seam 1, the forward pass: a batch of (sequence block table, start position, new tokens, which
//! logits) in, logits out.
//!
//! Everything above this trait — sequences, forks, copy-on-write, the KV budget, batching the
//! decode steps of many runs — is the same whatever runs the pass. Everything below it — weights,
//! kernels, where KV blocks live — belongs to one backend: the CPU kernels today, a GPU through
//! wgpu beside them. A backend sees only block ids: the block-table logic (`kv.rs`) decides which
//! block a position lives in, when a shared block must be copied before a write, and when memory
//! runs out; the backend owns the storage and performs the copies it is told to.

use std::any::Any;

use serde::Serialize;

use crate::error::Result;

/// Tokens per KV block.
pub const BLOCK_TOKENS: usize = 16;

/// Index of a KV block in a backend's storage. Ids are dense and reused: every id in use is
/// below [`ForwardBatch::blocks_in_use`].
pub type BlockId = u32;

/// Shape of the cache: one K and one V vector of `head_dim` values per layer, kv head and token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Width of a head.
    pub head_dim: usize,
}

impl KvLayout {
    /// Values in one block (K and V of every layer and kv head for [`BLOCK_TOKENS`] tokens).
    pub fn block_values(&self) -> usize {
        self.n_layer * 2 * self.n_kv_head * BLOCK_TOKENS * self.head_dim
    }

    /// Offset of (layer, K or V, kv head, slot) inside a block, in values.
    #[inline]
    pub fn offset(&self, layer: usize, is_v: usize, head: usize, slot: usize) -> usize {
        (((layer * 2 + is_v) * self.n_kv_head + head) * BLOCK_TOKENS + slot) * self.head_dim
    }
}

/// Copy block `src` into block `dst` before the pass writes anything (copy-on-write of a block
/// that a fork shares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCopy {
    /// The shared block.
    pub src: BlockId,
    /// The sequence's own new block.
    pub dst: BlockId,
}

/// Which logits a batch item wants back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsWanted {
    /// Only after the item's last token (generation).
    Last,
    /// After every token of the item (scoring a continuation).
    All,
}

/// One sequence's share of a forward pass.
#[derive(Clone, Copy, Debug)]
pub struct ForwardItem<'a> {
    /// The sequence's block table, with room reserved for the new tokens: position `p` lives in
    /// block `blocks[p / BLOCK_TOKENS]`, slot `p % BLOCK_TOKENS`.
    pub blocks: &'a [BlockId],
    /// Position of the first new token (the tokens already cached).
    pub start: usize,
    /// New tokens, at positions `start .. start + tokens.len()`.
    pub tokens: &'a [u32],
    /// Which logits to return.
    pub logits: LogitsWanted,
}

/// One forward pass over a ragged batch.
#[derive(Clone, Copy, Debug)]
pub struct ForwardBatch<'a> {
    /// The sequences, each with its own length and position.
    pub items: &'a [ForwardItem<'a>],
    /// Block copies to perform before anything is written.
    pub copies: &'a [BlockCopy],
    /// Every block id in use is below this: grow (or shrink) storage to it.
    pub blocks_in_use: usize,
}

impl ForwardBatch<'_> {
    /// Logits rows the batch asks for, in order.
    pub fn logits_rows(&self) -> usize {
        self.items
            .iter()
            .map(|i| match i.logits {
                LogitsWanted::Last => 1,
                LogitsWanted::All => i.tokens.len(),
            })
            .sum()
    }
}

/// What a backend tells the user about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BackendInfo {
    /// The device line: "CPU (2 threads)", "GPU: llvmpipe (Vulkan, software) · subgroup+f16".
    pub device: String,
    /// Which kernels run the weight matrices, for benchmarks and the status bar.
    pub kernels: String,
    /// Whether the pass runs on a GPU (for the energy model).
    pub gpu: bool,
}

/// Block storage owned by a backend: one per [`crate::Engine`]. A backend downcasts it to its
/// own type in [`ForwardBackend::forward`].
pub trait KvStorage: Send + Any {
    /// For the backend's downcast.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Runs forward passes for one loaded model.
pub trait ForwardBackend: Send + Sync {
    /// Device and kernels, for people.
    fn info(&self) -> BackendInfo;

    /// Fresh, empty block storage for a cache of this layout.
    fn new_kv(&self, layout: KvLayout) -> Result<Box<dyn KvStorage>>;

    /// The most bytes this device can give the cache, when it is smaller than any budget the
    /// user may set (GPU memory). `None`: limited by the budget alone.
    fn kv_budget_limit(&self) -> Option<usize> {
        None
    }

    /// How this device's energy is read or estimated; `None`: the CPU's meter (RAPL, else an
    /// estimate per thread).
    fn energy_meter(&self) -> Option<crate::cost::EnergyMeter> {
        None
    }

    /// Run one pass: perform `batch.copies`, write every new token's keys and values into its
    /// block slot, and return per item the logits rows it asked for (`Last`: one row, `All`: one
    /// per new token), each `vocab` long.
    fn forward(
        &self,
        kv: &mut dyn KvStorage,
        batch: &ForwardBatch<'_>,
    ) -> Result<Vec<Vec<Vec<f32>>>>;
}
