//! Self-consistency: N reasoning samples, majority vote over their answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_range, conclude, Ctx, StopRule};
use crate::answer::normalize;
use crate::error::Result;

/// Self-consistency parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelfConsistencyParams {
    /// Number of reasoning samples.
    pub n: usize,
}

impl Default for SelfConsistencyParams {
    fn default() -> Self {
        Self { n: 5 }
    }
}

impl SelfConsistencyParams {
    pub(super) fn validate(&self) -> Result<()> {
        check_range("samples", self.n, 1, 64)
    }
}

pub(super) const HELP: &[(&str, &str)] =
    &[("n", "How many reasoning traces to sample and vote over.")];

pub(super) fn run(ctx: &mut Ctx, p: &SelfConsistencyParams) -> Result<()> {
    let root = ctx.start(true, false)?;
    let mut samples = ctx.fork(&root, p.n, false, |i| format!("sample {}", i + 1))?;
    let max = ctx.config().max_tokens;
    ctx.generate(&mut samples, &StopRule::to_end(max))?;
    let mut leaves = Vec::new();
    for b in samples {
        let (last, answer) = conclude(ctx, b)?;
        leaves.push((last.node, answer));
    }
    let (tally, winner) = vote(ctx, &leaves);
    for (node, answer) in &leaves {
        let mut scores = ctx.tree().nodes[*node].scores.clone();
        scores.votes = answer
            .as_ref()
            .map(|a| tally.get(&normalize(a)).copied().unwrap_or(0));
        ctx.set_scores(*node, scores);
    }
    let (node, answer) = winner.unzip();
    ctx.choose(node, answer, tally);
    Ok(())
}

/// Majority vote over normalised answers; ties go to the answer whose samples are more
/// confident (higher summed mean log-probability). Returns the tally and a node of the winner.
pub(super) fn vote(
    ctx: &Ctx,
    leaves: &[(usize, Option<String>)],
) -> (BTreeMap<String, u32>, Option<(usize, String)>) {
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    let mut confidence: BTreeMap<String, f32> = BTreeMap::new();
    for (node, answer) in leaves {
        if let Some(a) = answer {
            let key = normalize(a);
            *tally.entry(key.clone()).or_default() += 1;
            *confidence.entry(key).or_default() +=
                ctx.path_mean_logprob(*node).unwrap_or(-10.0).exp();
        }
    }
    let best = tally
        .iter()
        .max_by(|a, b| {
            a.1.cmp(b.1)
                .then(confidence[a.0].total_cmp(&confidence[b.0]))
        })
        .map(|(k, _)| k.clone());
    let winner = best.and_then(|key| {
        leaves
            .iter()
            .find(|(_, a)| a.as_deref().is_some_and(|a| normalize(a) == key))
            .map(|(n, a)| (*n, a.clone().unwrap_or(key)))
    });
    (tally, winner)
}
