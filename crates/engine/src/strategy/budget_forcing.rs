//! Budget forcing (s1): when the model ends its thinking before the minimum budget, append
//! "Wait" and let it continue; at the maximum budget, cut the thinking and ask for the answer.
//!
//! On a thinking model the end of thinking is its closing delimiter (`</think>`): generation
//! stops *before* that token is appended, so below the minimum it is never written and "Wait"
//! takes its place, and at the maximum the strategy writes the delimiter itself and asks for the
//! answer. A model without delimiters ends its thinking by ending its turn, and the same rules
//! apply to its end-of-text token.

use super::{
    conclude, Branch, BranchStop, Ctx, Knob, KnobValue, LabMode, Params, PromptThinking, Role,
    StopRule, StrategyDef,
};
use crate::error::{EngineError, Result};
use crate::model::thinking::ThinkingFormat;

/// The budget forcing knobs of one run.
struct Budget<'a> {
    min_thinking: usize,
    max_thinking: usize,
    max_waits: usize,
    wait_text: &'a str,
}

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
        let budget = Budget {
            min_thinking: p.count("min_thinking")?,
            max_thinking: p.count("max_thinking")?,
            max_waits: p.count("max_waits")?,
            wait_text: p.text("wait_text")?,
        };
        let root = ctx.start(true, false)?;
        let delimiters = match ctx.prompt_thinking() {
            PromptThinking::Open | PromptThinking::Ahead => ctx.thinking().cloned(),
            // Thinking switched off, or no delimiters: the end of the turn ends the thinking.
            PromptThinking::Closed | PromptThinking::Plain => None,
        };
        match delimiters {
            Some(format) => think_between_delimiters(ctx, root, &format, &budget),
            None => think_to_end_of_text(ctx, root, &budget),
        }
    }
}

/// s1 on a thinking model: `</think>` is held back before the minimum ("Wait" goes in its
/// place) and written by the strategy at the maximum.
fn think_between_delimiters(
    ctx: &mut Ctx,
    root: Branch,
    format: &ThinkingFormat,
    budget: &Budget<'_>,
) -> Result<()> {
    let mut from = root;
    if ctx.prompt_thinking() == PromptThinking::Ahead {
        // Open the thinking for the model, so every token it writes counts against the budget.
        from = ctx.force(&from, &format!("{}\n", format.open), "think")?;
    }
    let mut b = ctx.continue_in_new_node(&from, "thinking");
    let start = b.len;
    let mut waits = 0;
    loop {
        let remaining = budget.max_thinking.saturating_sub(b.len - start);
        if remaining == 0 {
            break;
        }
        let rule = StopRule::to_end(remaining).stopping_before([format.close_id]);
        let mut one = [b];
        ctx.generate(&mut one, &rule)?;
        let [done] = one;
        b = done;
        let tried_to_stop = matches!(
            b.stop,
            Some(BranchStop::StopToken { .. } | BranchStop::EndOfText)
        );
        if !tried_to_stop {
            break;
        }
        if b.len - start < budget.min_thinking && waits < budget.max_waits {
            ctx.finish(&b);
            let forced = ctx.force(&b, budget.wait_text, "Wait")?;
            waits += 1;
            b = ctx.continue_in_new_node(&forced, &format!("thinking {}", waits + 1));
            continue;
        }
        if matches!(b.stop, Some(BranchStop::StopToken { .. })) {
            // Long enough: the model's own `</think>` goes in, and it answers.
            ctx.accept_stop_token(&mut b)?;
            ctx.finish(&b);
            let mut a = [ctx.continue_in_new_node(&b, "answer")];
            let max_answer = ctx.config().max_tokens;
            ctx.generate(&mut a, &StopRule::to_end(max_answer))?;
            let [a] = a;
            let (last, answer) = conclude(ctx, a)?;
            ctx.choose(Some(last.node), answer, Default::default());
            return Ok(());
        }
        // It ended its turn inside the thinking: close the thinking for it, as at the budget.
        break;
    }
    if b.ended() && b.stop != Some(BranchStop::EndOfText) {
        // The run's budget or the context is spent: nothing more can be written.
        let answer = ctx.finish(&b);
        ctx.choose(Some(b.node), answer, Default::default());
        return Ok(());
    }
    ctx.finish(&b);
    let cue = format!("\n{}\n\nThe answer is", format.close);
    let forced = ctx.force(&b, &cue, "budget reached")?;
    ask_for_the_answer(ctx, &forced)
}

/// Let the model complete the forced answer cue in one short line, and choose it.
fn ask_for_the_answer(ctx: &mut Ctx, forced: &Branch) -> Result<()> {
    let mut a = [ctx.continue_in_new_node(forced, "answer")];
    a[0].stop = None;
    ctx.generate(&mut a, &StopRule::one_step(24))?;
    let [a] = a;
    let answer = ctx.finish(&a);
    ctx.choose(Some(a.node), answer, Default::default());
    Ok(())
}

/// s1 on a model without thinking delimiters: its end of text before the minimum becomes
/// "Wait"; at the maximum the thinking is cut and the answer asked for.
fn think_to_end_of_text(ctx: &mut Ctx, root: Branch, budget: &Budget<'_>) -> Result<()> {
    let mut b = ctx.continue_in_new_node(&root, "thinking");
    let start = b.len;
    let mut waits = 0;
    loop {
        let thought = b.len - start;
        let remaining = budget.max_thinking.saturating_sub(thought);
        if remaining == 0 {
            break;
        }
        let mut one = [b];
        ctx.generate(&mut one, &StopRule::to_end(remaining))?;
        let [done] = one;
        b = done;
        let thought = b.len - start;
        if b.stop == Some(BranchStop::EndOfText)
            && thought < budget.min_thinking
            && waits < budget.max_waits
        {
            ctx.finish(&b);
            let forced = ctx.force(&b, budget.wait_text, "Wait")?;
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
        return ask_for_the_answer(ctx, &forced);
    }
    let (last, answer) = conclude(ctx, b)?;
    ctx.choose(Some(last.node), answer, Default::default());
    Ok(())
}
