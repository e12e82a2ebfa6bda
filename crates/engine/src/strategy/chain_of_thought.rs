//! Chain of thought: one sampled reasoning trace, then the answer.

use serde::{Deserialize, Serialize};

use super::{conclude, Ctx, StopRule};
use crate::error::Result;

/// Chain-of-thought parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CotParams {
    /// Decode the trace greedily instead of sampling it.
    pub greedy: bool,
}

pub(super) const HELP: &[(&str, &str)] = &[(
    "greedy",
    "Decode the reasoning greedily instead of sampling it.",
)];

pub(super) fn run(ctx: &mut Ctx, p: &CotParams) -> Result<()> {
    let root = ctx.start(true, p.greedy)?;
    let mut b = [ctx.continue_in_new_node(&root, "reasoning")];
    let max = ctx.config().max_tokens;
    ctx.generate(&mut b, &StopRule::to_end(max))?;
    let [b] = b;
    let (last, answer) = conclude(ctx, b)?;
    ctx.choose(Some(last.node), answer, Default::default());
    Ok(())
}
