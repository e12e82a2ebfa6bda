//! Paged per-sequence KV cache tables with copy-on-write blocks.
//!
//! A sequence's cache is a list of fixed-size blocks behind `Arc`s. Forking clones the list (a few
//! pointer copies): parent and child share every block of the prefix. The first write into a
//! shared block gives the writer a new block and records a copy, so a fork costs at most one block
//! copy per branch, never a recomputation. Memory is accounted in a pool with a hard budget.
//!
//! This module never touches the keys and values themselves: it hands out block ids, and the
//! backend that runs the forward pass keeps the storage (host memory for the CPU kernels, buffers
//! for a GPU) and performs the copies it is told to (see [`crate::backend`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::backend::{BlockCopy, BlockId, KvLayout, BLOCK_TOKENS};
use crate::error::{EngineError, Result};

/// Bytes per cached value (keys and values are stored as f16, like llama.cpp's default cache).
pub const BYTES_PER_VALUE: usize = 2;

#[derive(Default)]
struct PoolState {
    /// Ids below `next` that nobody holds.
    free: BTreeSet<BlockId>,
    /// One past the highest id handed out and still held.
    next: BlockId,
    /// Blocks held.
    used: usize,
    /// Blocks copied because a shared block was written.
    copied: usize,
}

struct PoolInner {
    layout: KvLayout,
    budget_bytes: usize,
    state: Mutex<PoolState>,
}

impl PoolInner {
    fn state(&self) -> MutexGuard<'_, PoolState> {
        // Nothing is left half-updated under the lock, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn block_bytes(&self) -> usize {
        self.layout.block_values() * BYTES_PER_VALUE
    }

    fn budget_blocks(&self) -> usize {
        self.budget_bytes / self.block_bytes().max(1)
    }
}

/// Allocator and accountant for KV block ids.
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
                state: Mutex::new(PoolState::default()),
            }),
        }
    }

    /// Cache layout.
    pub fn layout(&self) -> KvLayout {
        self.inner.layout
    }

    /// Bytes held by live blocks.
    pub fn used_bytes(&self) -> usize {
        self.inner.state().used * self.block_bytes()
    }

    /// The configured budget.
    pub fn budget_bytes(&self) -> usize {
        self.inner.budget_bytes
    }

    /// Blocks copied because a shared block was written (copy-on-write).
    pub fn copied_blocks(&self) -> usize {
        self.inner.state().copied
    }

    /// Bytes of one block.
    pub fn block_bytes(&self) -> usize {
        self.inner.block_bytes()
    }

    /// Every id in use is below this: the storage a backend must hold.
    pub fn blocks_in_use(&self) -> usize {
        self.inner.state().next as usize
    }

    /// Blocks that may still be allocated under the budget.
    pub fn free_blocks(&self) -> usize {
        self.inner
            .budget_blocks()
            .saturating_sub(self.inner.state().used)
    }

    fn alloc(&self) -> Result<Arc<BlockRef>> {
        let mut s = self.inner.state();
        if s.used >= self.inner.budget_blocks() {
            let bytes = self.block_bytes();
            return Err(EngineError::KvBudgetExceeded {
                needed_bytes: bytes,
                used_bytes: s.used * bytes,
                budget_bytes: self.inner.budget_bytes,
            });
        }
        // The lowest free id first, so storage stays compact and can shrink from the top.
        let id = match s.free.pop_first() {
            Some(id) => id,
            None => {
                s.next += 1;
                s.next - 1
            }
        };
        s.used += 1;
        Ok(Arc::new(BlockRef {
            id,
            pool: self.inner.clone(),
        }))
    }
}

/// A held block id; dropping the last reference frees it.
struct BlockRef {
    id: BlockId,
    pool: Arc<PoolInner>,
}

impl Drop for BlockRef {
    fn drop(&mut self) {
        let mut s = self.pool.state();
        s.used -= 1;
        if self.id + 1 == s.next {
            s.next -= 1;
            while s.next > 0 {
                let top = s.next - 1;
                if !s.free.remove(&top) {
                    break;
                }
                s.next = top;
            }
        } else {
            s.free.insert(self.id);
        }
    }
}

/// What [`SeqKv::reserve`] replaced, kept until the pass it reserved for has succeeded.
#[derive(Default)]
#[must_use = "keep it until the pass is done, and undo it if the pass fails"]
pub struct Reserved {
    replaced: Vec<(usize, Arc<BlockRef>)>,
}

/// The KV cache table of one sequence.
#[derive(Clone, Default)]
pub struct SeqKv {
    blocks: Vec<Arc<BlockRef>>,
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
        }
        self.blocks.truncate(self.len.div_ceil(BLOCK_TOKENS));
    }

    /// Blocks [`SeqKv::reserve`] would allocate for `n` more positions (new blocks and copies of
    /// shared ones), so a whole batch can be checked against the budget before anything changes.
    pub fn blocks_needed(&self, n: usize) -> usize {
        let first = self.len / BLOCK_TOKENS;
        let end = (self.len + n).div_ceil(BLOCK_TOKENS);
        (first..end)
            .filter(|&b| b >= self.blocks.len() || Arc::strong_count(&self.blocks[b]) > 1)
            .count()
    }

    /// Make room for positions `self.len .. self.len + n`: new blocks where the table ends, and a
    /// block of its own (with a copy recorded in `copies`) for every shared block that will be
    /// written. The copies must be performed before the pass writes; [`SeqKv::blocks_needed`]
    /// says beforehand whether this can succeed.
    ///
    /// Keep the returned [`Reserved`] until the pass is done: when the pass fails,
    /// [`SeqKv::undo`] puts the shared blocks back (the copies may never have been made).
    pub fn reserve(
        &mut self,
        pool: &KvPool,
        n: usize,
        copies: &mut Vec<BlockCopy>,
    ) -> Result<Reserved> {
        let end = self.len + n;
        let first = self.len / BLOCK_TOKENS;
        let mut reserved = Reserved::default();
        let copies_before = copies.len();
        for b in first..end.div_ceil(BLOCK_TOKENS) {
            let shared = b < self.blocks.len() && Arc::strong_count(&self.blocks[b]) > 1;
            if b < self.blocks.len() && !shared {
                continue;
            }
            let own = match pool.alloc() {
                Ok(own) => own,
                Err(e) => {
                    // All or nothing: the table is as it was.
                    copies.truncate(copies_before);
                    self.undo(reserved);
                    return Err(e);
                }
            };
            if shared {
                copies.push(BlockCopy {
                    src: self.blocks[b].id,
                    dst: own.id,
                });
                reserved
                    .replaced
                    .push((b, std::mem::replace(&mut self.blocks[b], own)));
            } else {
                self.blocks.push(own);
            }
        }
        pool.inner.state().copied += reserved.replaced.len();
        Ok(reserved)
    }

    /// Undo a reservation whose pass failed: the shared blocks come back, new ones go.
    pub fn undo(&mut self, reserved: Reserved) {
        for (b, old) in reserved.replaced {
            if let Some(slot) = self.blocks.get_mut(b) {
                *slot = old;
            }
        }
        self.truncate(self.len);
    }

    /// Mark `n` reserved positions as filled.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// The block table: position `p` lives in block `ids[p / BLOCK_TOKENS]`.
    pub fn block_ids(&self) -> Vec<BlockId> {
        self.blocks.iter().map(|b| b.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(blocks: usize) -> KvPool {
        let layout = KvLayout {
            n_layer: 1,
            n_kv_head: 1,
            head_dim: 8,
        };
        let bytes = layout.block_values() * BYTES_PER_VALUE;
        KvPool::new(layout, blocks * bytes)
    }

    #[test]
    fn forks_share_blocks_and_a_write_copies_only_the_shared_one() {
        let pool = pool(8);
        let mut a = SeqKv::default();
        let mut copies = Vec::new();
        drop(a.reserve(&pool, 20, &mut copies).expect("reserve"));
        a.advance(20);
        assert!(copies.is_empty());
        assert_eq!(a.block_ids(), vec![0, 1]);
        let mut b = a.fork();
        assert_eq!(
            pool.used_bytes(),
            2 * pool.block_bytes(),
            "a fork allocates nothing"
        );
        // Writing position 20 touches block 1, which both hold: b gets its own copy.
        assert_eq!(b.blocks_needed(1), 1);
        drop(b.reserve(&pool, 1, &mut copies).expect("reserve"));
        assert_eq!(copies, vec![BlockCopy { src: 1, dst: 2 }]);
        assert_eq!(b.block_ids(), vec![0, 2]);
        assert_eq!(a.block_ids(), vec![0, 1]);
        assert_eq!(pool.copied_blocks(), 1);
    }

    #[test]
    fn freed_ids_are_reused_lowest_first_and_storage_shrinks_from_the_top() {
        let pool = pool(8);
        let mut seqs: Vec<SeqKv> = (0..3)
            .map(|_| {
                let mut s = SeqKv::default();
                drop(s.reserve(&pool, 16, &mut Vec::new()).expect("reserve"));
                s.advance(16);
                s
            })
            .collect();
        assert_eq!(pool.blocks_in_use(), 3);
        seqs.remove(1);
        assert_eq!(pool.blocks_in_use(), 3, "id 2 is still held");
        let mut d = SeqKv::default();
        drop(d.reserve(&pool, 1, &mut Vec::new()).expect("reserve"));
        assert_eq!(d.block_ids(), vec![1], "the freed id comes back first");
        drop(d);
        seqs.pop();
        assert_eq!(
            pool.blocks_in_use(),
            1,
            "ids 1 and 2 are free: the top shrinks"
        );
        assert_eq!(pool.used_bytes(), pool.block_bytes());
    }

    #[test]
    fn undo_puts_shared_blocks_back_and_the_budget_holds() {
        let pool = pool(4);
        let mut a = SeqKv::default();
        drop(a.reserve(&pool, 20, &mut Vec::new()).expect("reserve"));
        a.advance(20);
        let mut b = a.fork();
        let mut copies = Vec::new();
        let r = b
            .reserve(&pool, 13, &mut copies)
            .expect("one copy and one new block");
        assert_eq!(b.block_ids().len(), 3);
        b.undo(r);
        assert_eq!(
            b.block_ids(),
            a.block_ids(),
            "the pass failed: b shares a's blocks again"
        );
        assert_eq!(pool.used_bytes(), 2 * pool.block_bytes());
        // Budget of 4 blocks, 2 used: a 3-block reservation fails whole, with a typed error.
        let mut copies = Vec::new();
        assert!(matches!(
            b.reserve(&pool, 30, &mut copies),
            Err(EngineError::KvBudgetExceeded { .. })
        ));
        assert!(copies.is_empty());
        assert_eq!(
            b.block_ids(),
            a.block_ids(),
            "a refused reservation changes nothing"
        );
        assert_eq!(pool.used_bytes(), 2 * pool.block_bytes());
    }
}
