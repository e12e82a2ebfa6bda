//! System 1: answer at once, greedily, with no reasoning prompt.

use super::{Ctx, Knob, LabMode, Params, StopRule, StrategyDef};
use crate::error::Result;

/// Greedy answer, no reasoning prompt: the fast, intuitive baseline.
pub(super) struct System1;

impl StrategyDef for System1 {
    fn name(&self) -> &'static str {
        "system1"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["greedy"]
    }

    fn title(&self) -> &'static str {
        "System 1 (greedy)"
    }

    fn summary(&self) -> &'static str {
        "Answer at once, greedily, with no reasoning prompt: the fast, intuitive baseline."
    }

    fn reasoning(&self) -> bool {
        false
    }

    fn knobs(&self) -> Vec<Knob> {
        Vec::new()
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::Single
    }

    fn run(&self, ctx: &mut Ctx, _p: &Params) -> Result<()> {
        let root = ctx.start(false, true)?;
        let mut b = [ctx.continue_in_new_node(&root, "answer")];
        let max = ctx.config().max_tokens;
        ctx.generate(&mut b, &StopRule::to_end(max))?;
        let answer = ctx.finish(&b[0]);
        ctx.choose(Some(b[0].node), answer, Default::default());
        Ok(())
    }
}
