//! System 1: answer at once, greedily, without a reasoning prompt.

use serde::{Deserialize, Serialize};

use super::{Ctx, StopRule};
use crate::error::Result;

/// No parameters: System 1 is the baseline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct System1Params {}

pub(super) const HELP: &[(&str, &str)] = &[];

pub(super) fn run(ctx: &mut Ctx, _p: &System1Params) -> Result<()> {
    let root = ctx.start(false, true)?;
    let mut b = [ctx.continue_in_new_node(&root, "answer")];
    let max = ctx.config().max_tokens;
    ctx.generate(&mut b, &StopRule::to_end(max))?;
    let answer = ctx.finish(&b[0]);
    ctx.choose(Some(b[0].node), answer, Default::default());
    Ok(())
}
