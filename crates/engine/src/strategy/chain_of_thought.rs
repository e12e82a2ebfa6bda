//! Chain of thought: one reasoning trace ("think step by step"), then the answer.

use super::{conclude, Ctx, Knob, LabMode, Params, StopRule, StrategyDef};
use crate::error::Result;

/// One sampled reasoning trace, then the answer.
pub(super) struct ChainOfThought;

impl StrategyDef for ChainOfThought {
    fn name(&self) -> &'static str {
        "chain-of-thought"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["cot"]
    }

    fn title(&self) -> &'static str {
        "Chain of thought"
    }

    fn summary(&self) -> &'static str {
        "One sampled reasoning trace (\"think step by step\"), then the answer."
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![Knob::flag(
            "greedy",
            "Greedy trace",
            "Decode the reasoning greedily instead of sampling it.",
            false,
        )]
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::Single
    }

    fn run(&self, ctx: &mut Ctx, p: &Params) -> Result<()> {
        let root = ctx.start(true, p.flag("greedy")?)?;
        let mut b = [ctx.continue_in_new_node(&root, "reasoning")];
        let max = ctx.config().max_tokens;
        ctx.generate(&mut b, &StopRule::to_end(max))?;
        let [b] = b;
        let (last, answer) = conclude(ctx, b)?;
        ctx.choose(Some(last.node), answer, Default::default());
        Ok(())
    }
}
