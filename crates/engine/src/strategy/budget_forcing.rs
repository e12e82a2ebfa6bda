//! Budget forcing (s1): when the model ends its thinking before the minimum budget, append
//! "Wait" and let it continue; at the maximum budget, cut the thinking and ask for the answer.

use super::{
    conclude, BranchStop, Ctx, Knob, KnobValue, LabMode, Params, Role, StopRule, StrategyDef,
};
use crate::error::{EngineError, Result};

/// Hold back the end of thinking and append "Wait".
pub(super) struct BudgetForcing;

impl StrategyDef for BudgetForcing {
    fn name(&self) -> &'static str {
        "budget-forcing"
    }

    fn title(&self) -> &'static str {
        "Budget forcing (\"Wait\")"
    }

    fn summary(&self) -> &'static str {
        "s1-style: when the model stops thinking too early, append \"Wait\" and let it go on; stop it at the budget."
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![
            Knob::int(
                "min_thinking",
                "Min thinking",
                "Thinking tokens before the model is allowed to stop; an earlier stop gets \"Wait\".",
                0,
                32_768,
                96,
            ),
            Knob::int(
                "max_thinking",
                "Thinking budget",
                "Thinking tokens at which thinking is cut off and the answer is asked for.",
                1,
                32_768,
                384,
            )
            .role(Role::Thinking),
            Knob::int("max_waits", "Max waits", "The most times \"Wait\" is inserted.", 0, 64, 3)
                .role(Role::Depth),
            Knob::text(
                "wait_text",
                "Wait text",
                "The text inserted when the model tries to stop early.",
                " Wait,",
            ),
        ]
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::Single
    }

    fn for_role(&self, role: Role, value: usize) -> Vec<(&'static str, KnobValue)> {
        match role {
            // A thinking budget: think at least half of it.
            Role::Thinking => vec![
                ("max_thinking", value.into()),
                ("min_thinking", (value / 2).into()),
            ],
            Role::Depth => vec![("max_waits", value.into())],
            Role::Samples => Vec::new(),
        }
    }

    fn check(&self, p: &Params) -> Result<()> {
        let (min, max) = (p.count("min_thinking")?, p.count("max_thinking")?);
        if min > max {
            return Err(EngineError::InvalidParameter(format!(
                "min thinking {min} is above max thinking {max}"
            )));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut Ctx, p: &Params) -> Result<()> {
        let (min_thinking, max_thinking) = (p.count("min_thinking")?, p.count("max_thinking")?);
        let (max_waits, wait_text) = (p.count("max_waits")?, p.text("wait_text")?);
        let root = ctx.start(true, false)?;
        let mut b = ctx.continue_in_new_node(&root, "thinking");
        let start = b.len;
        let mut waits = 0;
        loop {
            let thought = b.len - start;
            let remaining = max_thinking.saturating_sub(thought);
            if remaining == 0 {
                break;
            }
            let mut one = [b];
            ctx.generate(&mut one, &StopRule::to_end(remaining))?;
            let [done] = one;
            b = done;
            let thought = b.len - start;
            if b.stop == Some(BranchStop::EndOfText) && thought < min_thinking && waits < max_waits
            {
                ctx.finish(&b);
                let forced = ctx.force(&b, wait_text, "Wait")?;
                waits += 1;
                b = ctx.continue_in_new_node(&forced, &format!("thinking {}", waits + 1));
                continue;
            }
            break;
        }
        if b.stop == Some(BranchStop::MaxTokens) {
            // Thinking hit the budget: cut it off and ask for the answer.
            ctx.finish(&b);
            let forced = ctx.force(&b, "\nTime is up. The answer is", "budget reached")?;
            let mut a = [ctx.continue_in_new_node(&forced, "answer")];
            a[0].stop = None;
            ctx.generate(&mut a, &StopRule::one_step(24))?;
            let [a] = a;
            let answer = ctx.finish(&a);
            ctx.choose(Some(a.node), answer, Default::default());
            return Ok(());
        }
        let (last, answer) = conclude(ctx, b)?;
        ctx.choose(Some(last.node), answer, Default::default());
        Ok(())
    }
}
