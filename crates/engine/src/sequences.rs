//! Sequences that fork for free and decode together.
//!
//! [`Engine`] owns a model and the KV caches of many sequences. Forking copies a list of block
//! pointers, never recomputes a prefix token, and the counters prove it: every token is counted
//! once as computed (prompt or decode) or as reused from cache.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::{ForwardBatch, ForwardItem, KvStorage, LogitsWanted};
use crate::error::{EngineError, Result};
use crate::kv::{KvPool, SeqKv};
use crate::model::sampling::{Sampler, TokenInfo};
use crate::model::Model;

pub use crate::service::SeqId;

/// Work counters: what was computed and what was reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Prompt (prefill) tokens run through the model.
    pub prompt_tokens_computed: u64,
    /// Tokens whose KV came from a cache instead of being computed (forks, shared prefixes).
    pub tokens_reused: u64,
    /// Tokens run through the model one step at a time (decode).
    pub decode_tokens_computed: u64,
    /// Tokens chosen by a sampler.
    pub generated_tokens: u64,
    /// Forward passes (one per prefill call or batched decode step).
    pub forward_passes: u64,
    /// Forks made.
    pub forks: u64,
}

impl Counters {
    /// Difference `self - earlier`, for per-run figures from a shared engine.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            prompt_tokens_computed: self.prompt_tokens_computed - earlier.prompt_tokens_computed,
            tokens_reused: self.tokens_reused - earlier.tokens_reused,
            decode_tokens_computed: self.decode_tokens_computed - earlier.decode_tokens_computed,
            generated_tokens: self.generated_tokens - earlier.generated_tokens,
            forward_passes: self.forward_passes - earlier.forward_passes,
            forks: self.forks - earlier.forks,
        }
    }
}

struct Sequence {
    kv: SeqKv,
    tokens: Vec<u32>,
}

/// A model plus the live sequences decoding on it.
pub struct Engine {
    model: Arc<Model>,
    pool: KvPool,
    /// The backend's block storage for every sequence of this engine.
    storage: Box<dyn KvStorage>,
    seqs: HashMap<SeqId, Sequence>,
    next_id: u64,
    counters: Counters,
}

/// Default KV budget: 2 GiB.
pub const DEFAULT_KV_BUDGET_BYTES: usize = 2 << 30;

impl Engine {
    /// An engine whose KV caches may use at most `kv_budget_bytes` (or what the backend's device
    /// can hold, if that is less).
    pub fn new(model: Arc<Model>, kv_budget_bytes: usize) -> Result<Self> {
        let backend = model.backend();
        let budget = backend
            .kv_budget_limit()
            .map_or(kv_budget_bytes, |limit| limit.min(kv_budget_bytes));
        let pool = KvPool::new(model.kv_layout(), budget);
        let storage = backend.new_kv(model.kv_layout())?;
        Ok(Self {
            model,
            pool,
            storage,
            seqs: HashMap::new(),
            next_id: 1,
            counters: Counters::default(),
        })
    }

    /// The KV budget in force, in bytes.
    pub fn kv_budget_bytes(&self) -> usize {
        self.pool.budget_bytes()
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Work done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Bytes of KV cache in use.
    pub fn kv_used_bytes(&self) -> usize {
        self.pool.used_bytes()
    }

    /// KV blocks copied on write after forks.
    pub fn kv_copied_blocks(&self) -> usize {
        self.pool.copied_blocks()
    }

    /// Live sequences.
    pub fn sequence_count(&self) -> usize {
        self.seqs.len()
    }

    /// A new, empty sequence.
    pub fn new_sequence(&mut self) -> SeqId {
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.seqs.insert(
            id,
            Sequence {
                kv: SeqKv::default(),
                tokens: Vec::new(),
            },
        );
        id
    }

    fn seq(&self, id: SeqId) -> Result<&Sequence> {
        self.seqs.get(&id).ok_or(EngineError::UnknownSequence(id))
    }

    /// Tokens of a sequence so far.
    pub fn tokens(&self, id: SeqId) -> Result<&[u32]> {
        Ok(&self.seq(id)?.tokens)
    }

    /// Length of a sequence in tokens.
    pub fn len(&self, id: SeqId) -> Result<usize> {
        Ok(self.seq(id)?.tokens.len())
    }

    /// A sequence continuing from `parent`'s state, sharing its cache. Nothing is recomputed.
    pub fn fork(&mut self, parent: SeqId) -> Result<SeqId> {
        let p = self.seq(parent)?;
        let child = Sequence {
            kv: p.kv.fork(),
            tokens: p.tokens.clone(),
        };
        self.counters.tokens_reused += child.tokens.len() as u64;
        self.counters.forks += 1;
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.seqs.insert(id, child);
        Ok(id)
    }

    /// Forget everything from position `len` on (rollback).
    pub fn truncate(&mut self, id: SeqId, len: usize) -> Result<()> {
        let s = self
            .seqs
            .get_mut(&id)
            .ok_or(EngineError::UnknownSequence(id))?;
        s.kv.truncate(len);
        s.tokens.truncate(len);
        Ok(())
    }

    /// Drop a sequence and free its unshared cache blocks.
    pub fn release(&mut self, id: SeqId) {
        self.seqs.remove(&id);
    }

    /// Append `tokens` to a sequence in one forward pass; returns the logits after the last.
    pub fn prefill(&mut self, id: SeqId, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut out = self.run(&[(id, tokens)], LogitsWanted::Last)?;
        self.counters.prompt_tokens_computed += tokens.len() as u64;
        Ok(out.pop().and_then(|mut v| v.pop()).unwrap_or_default())
    }

    /// Append `tokens` and return the logits after every one of them (for scoring text).
    pub fn score(&mut self, id: SeqId, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let mut out = self.run(&[(id, tokens)], LogitsWanted::All)?;
        self.counters.prompt_tokens_computed += tokens.len() as u64;
        Ok(out.pop().unwrap_or_default())
    }

    /// Start a sequence holding `prompt`, reusing the longest cached prefix of any live sequence.
    /// Returns the sequence and the logits after the prompt.
    pub fn prefill_shared(&mut self, prompt: &[u32]) -> Result<(SeqId, Vec<f32>)> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidParameter("empty prompt".into()));
        }
        let best = self
            .seqs
            .iter()
            .map(|(&id, s)| {
                let common = s
                    .tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (common, id)
            })
            .max();
        let (id, start) = match best {
            // Keep at least one token to compute, so the logits after the prompt come back.
            Some((common, parent)) if common > 0 => {
                let reuse = common.min(prompt.len() - 1);
                let parent_tokens = self.seq(parent)?.tokens.len();
                let child = self.fork(parent)?;
                // `fork` counted the parent's whole length as reused; count only the prefix kept.
                self.counters.tokens_reused -= (parent_tokens - reuse) as u64;
                self.truncate(child, reuse)?;
                (child, reuse)
            }
            _ => (self.new_sequence(), 0),
        };
        match self.prefill(id, &prompt[start..]) {
            Ok(logits) => Ok((id, logits)),
            Err(e) => {
                self.release(id);
                Err(e)
            }
        }
    }

    /// Append tokens to several sequences in one forward pass (a ragged batch); per sequence, the
    /// logits after each of its new tokens. They count as prompt tokens computed.
    pub fn extend(&mut self, items: &[(SeqId, &[u32])]) -> Result<Vec<Vec<Vec<f32>>>> {
        let out = self.run(items, LogitsWanted::All)?;
        self.counters.prompt_tokens_computed +=
            items.iter().map(|(_, t)| t.len() as u64).sum::<u64>();
        Ok(out)
    }

    /// One batched decode step: append one token to each sequence, in a single forward pass.
    /// Returns the next-token logits of each, in order.
    pub fn decode(&mut self, steps: &[(SeqId, u32)]) -> Result<Vec<Vec<f32>>> {
        let items: Vec<(SeqId, &[u32])> = steps
            .iter()
            .map(|(id, t)| (*id, std::slice::from_ref(t)))
            .collect();
        let out = self.run(&items, LogitsWanted::Last)?;
        self.counters.decode_tokens_computed += steps.len() as u64;
        Ok(out
            .into_iter()
            .map(|mut v| v.pop().unwrap_or_default())
            .collect())
    }

    /// Choose the next token with `sampler` and count it as generated.
    pub fn sample(&mut self, logits: &[f32], sampler: &mut Sampler) -> TokenInfo {
        self.counters.generated_tokens += 1;
        sampler.sample(logits, &self.model.tokenizer)
    }

    fn run(
        &mut self,
        items: &[(SeqId, &[u32])],
        wanted: LogitsWanted,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        // Take the sequences out of the map so each can be borrowed mutably.
        let mut taken: Vec<(SeqId, Sequence)> = Vec::with_capacity(items.len());
        for (id, _) in items {
            match self.seqs.remove(id) {
                Some(s) => taken.push((*id, s)),
                None => {
                    let duplicate = taken.iter().any(|(t, _)| t == id);
                    self.seqs.extend(taken);
                    return Err(if duplicate {
                        EngineError::InvalidParameter(format!(
                            "sequence {id} appears twice in one batch"
                        ))
                    } else {
                        EngineError::UnknownSequence(*id)
                    });
                }
            }
        }
        let result = self.run_taken(&mut taken, items, wanted);
        self.seqs.extend(taken);
        result
    }

    fn run_taken(
        &mut self,
        taken: &mut [(SeqId, Sequence)],
        items: &[(SeqId, &[u32])],
        wanted: LogitsWanted,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let (context, vocab) = (self.model.config.context_length, self.model.config.vocab);
        let mut needed = 0;
        for ((_, s), (_, toks)) in taken.iter().zip(items) {
            if toks.is_empty() {
                return Err(EngineError::InvalidParameter(
                    "a batch item has no tokens".into(),
                ));
            }
            if let Some(&id) = toks.iter().find(|&&t| t as usize >= vocab) {
                return Err(EngineError::InvalidToken { id, vocab });
            }
            if s.tokens.len() + toks.len() > context {
                return Err(EngineError::ContextOverflow {
                    tokens: s.tokens.len() + toks.len(),
                    context,
                });
            }
            needed += s.kv.blocks_needed(toks.len());
        }
        // The whole batch fits or nothing changes: a refused pass leaves every table as it was.
        if needed > self.pool.free_blocks() {
            let block = self.pool.block_bytes();
            return Err(EngineError::KvBudgetExceeded {
                needed_bytes: needed * block,
                used_bytes: self.pool.used_bytes(),
                budget_bytes: self.pool.budget_bytes(),
            });
        }
        let mut copies = Vec::new();
        let mut reserved = Vec::with_capacity(taken.len());
        for ((_, s), (_, toks)) in taken.iter_mut().zip(items) {
            match s.kv.reserve(&self.pool, toks.len(), &mut copies) {
                Ok(r) => reserved.push(r),
                Err(e) => {
                    undo(taken, reserved);
                    return Err(e);
                }
            }
        }
        let tables: Vec<Vec<u32>> = taken.iter().map(|(_, s)| s.kv.block_ids()).collect();
        let forward_items: Vec<ForwardItem<'_>> = taken
            .iter()
            .zip(items)
            .zip(&tables)
            .map(|(((_, s), (_, toks)), blocks)| ForwardItem {
                blocks,
                start: s.kv.len(),
                tokens: toks,
                logits: wanted,
            })
            .collect();
        let batch = ForwardBatch {
            items: &forward_items,
            copies: &copies,
            blocks_in_use: self.pool.blocks_in_use(),
        };
        let out = match self.model.backend().forward(&mut *self.storage, &batch) {
            Ok(out) => out,
            Err(e) => {
                // A failed pass leaves no half-written positions and no uncopied blocks behind.
                drop(forward_items);
                undo(taken, reserved);
                return Err(e);
            }
        };
        drop(reserved);
        for ((_, s), (_, toks)) in taken.iter_mut().zip(items) {
            s.kv.advance(toks.len());
            s.tokens.extend_from_slice(toks);
        }
        self.counters.forward_passes += 1;
        Ok(out)
    }
}

/// Put back what a batch's reservations replaced (the first `reserved.len()` sequences).
fn undo(taken: &mut [(SeqId, Sequence)], reserved: Vec<crate::kv::Reserved>) {
    for ((_, s), r) in taken.iter_mut().zip(reserved) {
        s.kv.undo(r);
    }
}
