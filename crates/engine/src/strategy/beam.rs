//! Beam search over reasoning steps (a step is one line).

use serde::{Deserialize, Serialize};

use super::{check_range, conclude, Branch, Ctx, Scorer, StopRule};
use crate::error::Result;

/// Beam search parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BeamParams {
    /// Partial solutions kept after each step.
    pub width: usize,
    /// Continuations sampled from each kept beam.
    pub expansions: usize,
    /// Most reasoning steps.
    pub depth: usize,
    /// Most tokens in one step.
    pub step_tokens: usize,
    /// How steps are scored: mean-logprob of the path so far, or self-verify.
    pub scorer: Scorer,
}

impl Default for BeamParams {
    fn default() -> Self {
        Self {
            width: 2,
            expansions: 2,
            depth: 4,
            step_tokens: 48,
            scorer: Scorer::MeanLogprob,
        }
    }
}

impl BeamParams {
    pub(super) fn validate(&self) -> Result<()> {
        check_range("beam width", self.width, 1, 16)?;
        check_range("expansions", self.expansions, 1, 8)?;
        check_range("depth", self.depth, 1, 32)?;
        check_range("step tokens", self.step_tokens, 4, 1024)
    }
}

pub(super) const HELP: &[(&str, &str)] = &[
    ("width", "How many partial solutions survive each step."),
    (
        "expansions",
        "How many next steps are sampled from each survivor.",
    ),
    (
        "depth",
        "The most reasoning steps before the answer is forced.",
    ),
    (
        "step_tokens",
        "The most tokens in one reasoning step (one line).",
    ),
    (
        "scorer",
        "mean-logprob (path confidence) or self-verify (the model judges each partial path).",
    ),
];

pub(super) fn run(ctx: &mut Ctx, p: &BeamParams) -> Result<()> {
    let root = ctx.start(true, false)?;
    let mut beams: Vec<(f32, Branch)> = vec![(0.0, root)];
    for depth in 0..p.depth {
        if ctx.budget_spent() {
            break;
        }
        let mut candidates: Vec<Branch> = Vec::new();
        let mut kept: Vec<(f32, Branch)> = Vec::new();
        for (score, b) in beams {
            if b.ended() {
                kept.push((score, b));
                continue;
            }
            let kids = ctx.fork(&b, p.expansions, false, |i| {
                format!("step {} · {}", depth + 1, i + 1)
            })?;
            candidates.extend(kids);
            if depth > 0 {
                ctx.release(&b);
            }
        }
        if candidates.is_empty() {
            beams = kept;
            break;
        }
        ctx.generate(&mut candidates, &StopRule::one_step(p.step_tokens))?;
        for b in candidates {
            let score = match p.scorer {
                Scorer::SelfVerify => ctx.verify(&b)?,
                _ => ctx.path_mean_logprob(b.node).unwrap_or(f32::NEG_INFINITY),
            };
            let mut scores = ctx.tree().nodes[b.node].scores.clone();
            scores.value = Some(score);
            scores.mean_logprob = ctx.path_mean_logprob(b.node);
            ctx.set_scores(b.node, scores);
            kept.push((score, b));
        }
        kept.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, b) in kept.drain(p.width.min(kept.len())..) {
            ctx.prune(b.node);
            ctx.release(&b);
        }
        beams = kept;
        if beams.iter().all(|(_, b)| b.ended()) {
            break;
        }
    }
    // The best beam finishes its reasoning and states the answer.
    let Some((_, mut best)) = beams.into_iter().next() else {
        ctx.choose(None, None, Default::default());
        return Ok(());
    };
    if !best.ended() && !ctx.budget_spent() {
        let mut rest = [ctx.continue_in_new_node(&best, "conclusion")];
        let max = ctx.config().max_tokens;
        ctx.generate(&mut rest, &StopRule::to_end(max))?;
        let [r] = rest;
        best = r;
    }
    let (last, answer) = conclude(ctx, best)?;
    ctx.choose(Some(last.node), answer, Default::default());
    Ok(())
}
