//! Budget forcing (s1): when the model ends its thinking before the minimum budget, append
//! "Wait" and let it continue; at the maximum budget, cut the thinking and ask for the answer.

use serde::{Deserialize, Serialize};

use super::{check_range, conclude, BranchStop, Ctx, StopRule};
use crate::error::{EngineError, Result};

/// Budget forcing parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BudgetForcingParams {
    /// Thinking tokens before the model may stop.
    pub min_thinking: usize,
    /// Thinking tokens at which thinking is cut off.
    pub max_thinking: usize,
    /// Most "Wait" insertions.
    pub max_waits: usize,
    /// The text inserted when the model tries to stop early.
    pub wait_text: String,
}

impl Default for BudgetForcingParams {
    fn default() -> Self {
        Self {
            min_thinking: 96,
            max_thinking: 384,
            max_waits: 3,
            wait_text: " Wait,".into(),
        }
    }
}

impl BudgetForcingParams {
    pub(super) fn validate(&self) -> Result<()> {
        check_range("max thinking", self.max_thinking, 1, 32_768)?;
        check_range("max waits", self.max_waits, 0, 64)?;
        if self.min_thinking > self.max_thinking {
            return Err(EngineError::InvalidParameter(format!(
                "min thinking {} is above max thinking {}",
                self.min_thinking, self.max_thinking
            )));
        }
        if self.wait_text.trim().is_empty() {
            return Err(EngineError::InvalidParameter(
                "the wait text is empty".into(),
            ));
        }
        Ok(())
    }
}

pub(super) const HELP: &[(&str, &str)] = &[
    (
        "min_thinking",
        "Thinking tokens before the model is allowed to stop; an earlier stop gets \"Wait\".",
    ),
    (
        "max_thinking",
        "Thinking tokens at which thinking is cut off and the answer is asked for.",
    ),
    ("max_waits", "The most times \"Wait\" is inserted."),
    (
        "wait_text",
        "The text inserted when the model tries to stop early.",
    ),
];

pub(super) fn run(ctx: &mut Ctx, p: &BudgetForcingParams) -> Result<()> {
    let root = ctx.start(true, false)?;
    let mut b = ctx.continue_in_new_node(&root, "thinking");
    let start = b.len;
    let mut waits = 0;
    loop {
        let thought = b.len - start;
        let remaining = p.max_thinking.saturating_sub(thought);
        if remaining == 0 {
            break;
        }
        let mut one = [b];
        ctx.generate(&mut one, &StopRule::to_end(remaining))?;
        let [done] = one;
        b = done;
        let thought = b.len - start;
        if b.stop == Some(BranchStop::EndOfText) && thought < p.min_thinking && waits < p.max_waits
        {
            ctx.finish(&b);
            let forced = ctx.force(&b, &p.wait_text, "Wait")?;
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
