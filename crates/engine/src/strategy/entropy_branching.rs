//! Entropy-triggered branching: decode greedily, and branch only where the model is unsure.

use serde::{Deserialize, Serialize};

use super::self_consistency::vote;
use super::{check_range, conclude, Branch, BranchStop, Ctx, StopRule};
use crate::error::{EngineError, Result};
use crate::model::sampling::top_k_ids;

/// Entropy branching parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EntropyParams {
    /// Next-token entropy (nats) above which decoding branches.
    pub threshold: f32,
    /// Branches at each split (the top tokens).
    pub branches: usize,
    /// Most splits in the whole run.
    pub max_splits: usize,
}

impl Default for EntropyParams {
    fn default() -> Self {
        Self {
            threshold: 2.5,
            branches: 2,
            max_splits: 3,
        }
    }
}

impl EntropyParams {
    pub(super) fn validate(&self) -> Result<()> {
        check_range("branches", self.branches, 2, 8)?;
        check_range("max splits", self.max_splits, 0, 64)?;
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(EngineError::InvalidParameter(
                "entropy threshold must be > 0".into(),
            ));
        }
        Ok(())
    }
}

pub(super) const HELP: &[(&str, &str)] = &[
    (
        "threshold",
        "Entropy in nats above which the model counts as unsure and decoding branches.",
    ),
    (
        "branches",
        "How many of the most likely tokens start a branch at each split.",
    ),
    ("max_splits", "The most splits in the whole run."),
];

pub(super) fn run(ctx: &mut Ctx, p: &EntropyParams) -> Result<()> {
    let root = ctx.start(true, true)?;
    let mut frontier: Vec<Branch> = vec![ctx.continue_in_new_node(&root, "greedy")];
    let mut splits = 0;
    let mut done: Vec<Branch> = Vec::new();
    let max = ctx.config().max_tokens;
    while !frontier.is_empty() {
        let rule = StopRule {
            max_tokens: max,
            step_end: false,
            entropy_above: (splits < p.max_splits).then_some(p.threshold),
        };
        ctx.generate(&mut frontier, &rule)?;
        let mut next = Vec::new();
        for b in frontier {
            if b.stop == Some(BranchStop::HighEntropy) && splits < p.max_splits {
                splits += 1;
                ctx.finish(&b);
                let tokens = top_k_ids(&b.logits, p.branches);
                let kids = ctx.fork_with_tokens(&b, &tokens, true, |i| {
                    format!("split {splits} · {}", i + 1)
                })?;
                ctx.release(&b);
                next.extend(kids);
            } else {
                done.push(b);
            }
        }
        frontier = next;
    }
    let mut leaves = Vec::new();
    for mut b in done {
        if b.stop == Some(BranchStop::HighEntropy) {
            b.stop = Some(BranchStop::MaxTokens);
        }
        let (last, answer) = conclude(ctx, b)?;
        leaves.push((last.node, answer));
    }
    let (tally, winner) = vote(ctx, &leaves);
    let (node, answer) = winner.unzip();
    ctx.choose(node, answer, tally);
    Ok(())
}
