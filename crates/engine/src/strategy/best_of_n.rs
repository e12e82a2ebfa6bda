//! Best-of-N: sample N answers, keep the one the scorer likes best.

use serde::{Deserialize, Serialize};

use super::{check_range, conclude, Ctx, Scorer, StopRule};
use crate::answer::answers_match;
use crate::error::Result;

/// Best-of-N parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BestOfNParams {
    /// Number of samples.
    pub n: usize,
    /// How candidates are ranked.
    pub scorer: Scorer,
}

impl Default for BestOfNParams {
    fn default() -> Self {
        Self {
            n: 4,
            scorer: Scorer::MeanLogprob,
        }
    }
}

impl BestOfNParams {
    pub(super) fn validate(&self) -> Result<()> {
        check_range("samples", self.n, 1, 64)
    }
}

pub(super) const HELP: &[(&str, &str)] = &[
    ("n", "How many answers to sample from the same prompt."),
    ("scorer", "mean-logprob (confidence), self-verify (the model judges) or exact (check the known answer)."),
];

pub(super) fn run(ctx: &mut Ctx, p: &BestOfNParams) -> Result<()> {
    let root = ctx.start(true, false)?;
    let mut samples = ctx.fork(&root, p.n, false, |i| format!("sample {}", i + 1))?;
    let max = ctx.config().max_tokens;
    ctx.generate(&mut samples, &StopRule::to_end(max))?;
    let mut scored = Vec::new();
    for b in samples {
        let (last, answer) = conclude(ctx, b)?;
        let confidence = ctx
            .path_mean_logprob(last.node)
            .unwrap_or(f32::NEG_INFINITY);
        let value = match (p.scorer, &ctx.config().expected_answer) {
            (Scorer::SelfVerify, _) => ctx.verify(&last)?,
            (Scorer::Exact, Some(expected)) => f32::from(u8::from(
                answer
                    .as_deref()
                    .is_some_and(|a| answers_match(a, expected)),
            )),
            _ => confidence,
        };
        let mut scores = ctx.tree().nodes[last.node].scores.clone();
        scores.value = Some(value);
        ctx.set_scores(last.node, scores);
        scored.push((value, confidence, last, answer));
    }
    // Highest value; ties go to the more confident sample, then the earlier one.
    let best = scored
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)).then(j.cmp(i)))
        .map(|(i, _)| i);
    match best {
        Some(i) => {
            let (_, _, b, answer) = &scored[i];
            let (node, answer) = (b.node, answer.clone());
            ctx.choose(Some(node), answer, Default::default());
        }
        None => ctx.choose(None, None, Default::default()),
    }
    Ok(())
}
