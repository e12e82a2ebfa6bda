//! Entropy-triggered branching: decode greedily, and branch only where the model is unsure.

use super::self_consistency::vote;
use super::{
    conclude, Branch, BranchStop, Ctx, Knob, LabMode, Params, Role, StopRule, StrategyDef,
};
use crate::error::Result;

/// Greedy decoding that branches where entropy is high.
pub(super) struct EntropyBranching;

impl StrategyDef for EntropyBranching {
    fn name(&self) -> &'static str {
        "entropy-branching"
    }

    fn title(&self) -> &'static str {
        "Entropy-triggered branching"
    }

    fn summary(&self) -> &'static str {
        "Decode greedily and branch only where the model is unsure (next-token entropy above a threshold)."
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![
            Knob::float(
                "threshold",
                "Entropy threshold",
                "Entropy in nats above which the model counts as unsure and decoding branches.",
                0.01,
                20.0,
                2.5,
            ),
            Knob::int(
                "branches",
                "Branches",
                "How many of the most likely tokens start a branch at each split.",
                2,
                8,
                2,
            )
            .role(Role::Samples),
            Knob::int(
                "max_splits",
                "Max splits",
                "The most splits in the whole run.",
                0,
                64,
                3,
            )
            .role(Role::Depth),
        ]
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::PerBudget { knob: "branches" }
    }

    fn run(&self, ctx: &mut Ctx, p: &Params) -> Result<()> {
        let (threshold, branches, max_splits) = (
            p.real("threshold")?,
            p.count("branches")?,
            p.count("max_splits")?,
        );
        let root = ctx.start(true, true)?;
        let mut frontier: Vec<Branch> = vec![ctx.continue_in_new_node(&root, "greedy")];
        let mut splits = 0;
        let mut done: Vec<Branch> = Vec::new();
        let max = ctx.config().max_tokens;
        while !frontier.is_empty() {
            let rule = StopRule {
                entropy_above: (splits < max_splits).then_some(threshold),
                ..StopRule::to_end(max)
            };
            ctx.generate(&mut frontier, &rule)?;
            let mut next = Vec::new();
            for b in frontier {
                if b.stop == Some(BranchStop::HighEntropy) && splits < max_splits {
                    splits += 1;
                    ctx.finish(&b);
                    let tokens: Vec<u32> = b.next.top.iter().take(branches).map(|a| a.id).collect();
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
}
