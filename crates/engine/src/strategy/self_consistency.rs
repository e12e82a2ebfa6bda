//! Self-consistency: N reasoning samples, majority vote over their answers.

use std::collections::BTreeMap;

use super::{conclude, Ctx, Knob, LabMode, Params, PoolRule, Role, StopRule, StrategyDef};
use crate::answer::normalize;
use crate::error::Result;
use crate::tree::NodeId;

/// N reasoning samples, majority vote.
pub(super) struct SelfConsistency;

impl StrategyDef for SelfConsistency {
    fn name(&self) -> &'static str {
        "self-consistency"
    }

    fn title(&self) -> &'static str {
        "Self-consistency"
    }

    fn summary(&self) -> &'static str {
        "Sample N reasoning traces, extract each answer, and take the majority vote."
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![
            Knob::int(
                "n",
                "Samples",
                "How many reasoning traces to sample and vote over.",
                1,
                64,
                5,
            )
            .role(Role::Samples),
            Knob::flag(
                "verify",
                "Verify samples",
                "Also ask the model whether each sample's answer is correct and keep P(yes) as its score (the vote is unchanged; the lab's verifier curves read it).",
                false,
            ),
        ]
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::Pool {
            rule: PoolRule::Majority,
        }
    }

    fn run(&self, ctx: &mut Ctx, p: &Params) -> Result<()> {
        let (n, verify) = (p.count("n")?, p.flag("verify")?);
        let root = ctx.start(true, false)?;
        let mut samples = ctx.fork(&root, n, false, |i| format!("sample {}", i + 1))?;
        let max = ctx.config().max_tokens;
        ctx.generate(&mut samples, &StopRule::to_end(max))?;
        let mut leaves = Vec::new();
        let mut verified = Vec::new();
        for b in samples {
            let (last, answer) = conclude(ctx, b)?;
            verified.push(if verify {
                Some(ctx.verify(&last)?)
            } else {
                None
            });
            leaves.push((last.node, answer));
        }
        let (tally, winner) = vote(ctx, &leaves);
        for ((node, answer), value) in leaves.iter().zip(verified) {
            let mut scores = ctx.tree().nodes[*node].scores.clone();
            scores.value = value.or(scores.value);
            scores.votes = answer
                .as_ref()
                .map(|a| tally.get(&normalize(a)).copied().unwrap_or(0));
            ctx.set_scores(*node, scores);
        }
        let (node, answer) = winner.unzip();
        ctx.choose(node, answer, tally);
        Ok(())
    }
}

/// Majority vote over normalised answers; ties go to the answer whose samples are more
/// confident (higher summed mean log-probability). Returns the tally and a node of the winner.
pub(super) fn vote(
    ctx: &Ctx,
    leaves: &[(NodeId, Option<String>)],
) -> (BTreeMap<String, u32>, Option<(NodeId, String)>) {
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
