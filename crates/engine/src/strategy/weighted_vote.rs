//! Verifier-weighted majority voting (Snell et al. 2024's "weighted best-of-N"): sample N
//! reasoning traces, score each answer with the self-verifier, and pick the answer whose samples'
//! scores add up to the most.

use std::collections::BTreeMap;

use super::{conclude, Ctx, Knob, LabMode, Params, PoolRule, Role, StopRule, StrategyDef};
use crate::answer::normalize;
use crate::error::Result;

/// N samples, each answer's vote weighted by the verifier.
pub(super) struct WeightedVote;

impl StrategyDef for WeightedVote {
    fn name(&self) -> &'static str {
        "weighted-vote"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["weighted-best-of-n"]
    }

    fn title(&self) -> &'static str {
        "Verifier-weighted vote"
    }

    fn summary(&self) -> &'static str {
        "Sample N reasoning traces, ask the model whether each answer is correct, and pick the answer with the largest summed P(yes) (weighted best-of-N)."
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![Knob::int(
            "n",
            "Samples",
            "How many reasoning traces to sample, verify and vote over.",
            1,
            64,
            4,
        )
        .role(Role::Samples)]
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::Pool {
            rule: PoolRule::WeightedMajority,
        }
    }

    fn run(&self, ctx: &mut Ctx, p: &Params) -> Result<()> {
        let n = p.count("n")?;
        let root = ctx.start(true, false)?;
        let mut samples = ctx.fork(&root, n, false, |i| format!("sample {}", i + 1))?;
        let max = ctx.config().max_tokens;
        ctx.generate(&mut samples, &StopRule::to_end(max))?;
        let mut leaves = Vec::new();
        for b in samples {
            let (last, answer) = conclude(ctx, b)?;
            let weight = ctx.verify(&last)?;
            leaves.push((last.node, answer, weight));
        }
        let ballots: Vec<(Option<&str>, f32)> =
            leaves.iter().map(|(_, a, w)| (a.as_deref(), *w)).collect();
        let tally = weighted_vote(&ballots);
        for (node, answer, weight) in &leaves {
            let mut scores = ctx.tree().nodes[*node].scores.clone();
            scores.value = Some(*weight);
            scores.votes = answer
                .as_ref()
                .and_then(|a| tally.votes.get(&normalize(a)).copied());
            ctx.set_scores(*node, scores);
        }
        // The winner's node: its most trusted sample.
        let chosen = tally.winner.as_ref().and_then(|key| {
            leaves
                .iter()
                .filter(|(_, a, _)| a.as_deref().is_some_and(|a| normalize(a) == *key))
                .max_by(|a, b| a.2.total_cmp(&b.2))
                .map(|(node, a, _)| (*node, a.clone()))
        });
        match chosen {
            Some((node, answer)) => ctx.choose(Some(node), answer, tally.votes),
            None => ctx.choose(None, None, tally.votes),
        }
        Ok(())
    }
}

/// The outcome of a weighted vote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightedTally {
    /// Summed verifier score per normalised answer.
    pub weights: BTreeMap<String, f64>,
    /// Samples per normalised answer.
    pub votes: BTreeMap<String, u32>,
    /// The normalised answer with the largest summed score; ties go to more votes, then to the
    /// answer seen first.
    pub winner: Option<String>,
}

/// Weighted majority over `(answer, verifier score)` ballots: each answer scores the sum of its
/// samples' scores (samples without an answer do not vote).
pub fn weighted_vote(ballots: &[(Option<&str>, f32)]) -> WeightedTally {
    let mut t = WeightedTally::default();
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (answer, weight)) in ballots.iter().enumerate() {
        let Some(a) = answer else { continue };
        let key = normalize(a);
        *t.weights.entry(key.clone()).or_default() += f64::from(*weight);
        *t.votes.entry(key.clone()).or_default() += 1;
        first.entry(key).or_insert(i);
    }
    t.winner = t
        .weights
        .iter()
        .max_by(|a, b| {
            a.1.total_cmp(b.1)
                .then(t.votes[a.0].cmp(&t.votes[b.0]))
                .then(first[b.0].cmp(&first[a.0]))
        })
        .map(|(k, _)| k.clone());
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three weak votes for 7 lose to one confident vote for 5: 0.9 > 0.4 + 0.3 + 0.1 = 0.8,
    /// although plain majority picks 7.
    #[test]
    fn a_hand_computed_weighted_vote() {
        let t = weighted_vote(&[
            (Some("7"), 0.4),
            (Some("5"), 0.9),
            (Some("7.0"), 0.3),
            (None, 1.0),
            (Some("7"), 0.1),
        ]);
        assert_eq!(t.winner.as_deref(), Some("5"));
        assert!((t.weights["7"] - 0.8).abs() < 1e-6);
        assert!((t.weights["5"] - 0.9).abs() < 1e-6);
        assert_eq!((t.votes["7"], t.votes["5"]), (3, 1));
        // Equal weights: the answer with more votes wins.
        let t = weighted_vote(&[(Some("1"), 0.5), (Some("2"), 0.25), (Some("2"), 0.25)]);
        assert_eq!(t.winner.as_deref(), Some("2"));
        assert_eq!(weighted_vote(&[(None, 1.0)]).winner, None);
    }
}
