//! Beam search over reasoning steps (a step is one line).

use super::{conclude, Branch, Ctx, Knob, LabMode, Params, Role, Scorer, StopRule, StrategyDef};
use crate::error::Result;

/// Beam search over reasoning steps.
pub(super) struct Beam;

impl StrategyDef for Beam {
    fn name(&self) -> &'static str {
        "beam"
    }

    fn title(&self) -> &'static str {
        "Beam search over steps"
    }

    fn summary(&self) -> &'static str {
        "Grow reasoning one line at a time, keeping the best `width` partial solutions at each step."
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![
            Knob::int(
                "width",
                "Beam width",
                "How many partial solutions survive each step.",
                1,
                16,
                2,
            )
            .role(Role::Samples),
            Knob::int(
                "expansions",
                "Expansions",
                "How many next steps are sampled from each survivor.",
                1,
                8,
                2,
            ),
            Knob::int(
                "depth",
                "Depth (steps)",
                "The most reasoning steps before the answer is forced.",
                1,
                32,
                4,
            )
            .role(Role::Depth),
            Knob::int(
                "step_tokens",
                "Tokens per step",
                "The most tokens in one reasoning step (one line).",
                4,
                1024,
                48,
            ),
            Knob::choice(
                "scorer",
                "Step scorer",
                "How partial paths are ranked.",
                &[
                    (
                        "mean-logprob",
                        "path confidence: mean token log-probability",
                    ),
                    ("self-verify", "the model judges each partial path"),
                    (
                        "progress",
                        "consensus progress: K forced-answer probes from the step's end; keeps the steps whose probes agree with the run's majority answer (MRT)",
                    ),
                ],
                "mean-logprob",
            ),
        ]
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::PerBudget { knob: "width" }
    }

    fn run(&self, ctx: &mut Ctx, p: &Params) -> Result<()> {
        let (width, expansions, depth_max) =
            (p.count("width")?, p.count("expansions")?, p.count("depth")?);
        let (step_tokens, scorer) = (
            p.count("step_tokens")?,
            Scorer::from_knob(p.text("scorer")?)?,
        );
        let root = ctx.start(true, false)?;
        let mut beams: Vec<(f32, Branch)> = vec![(0.0, root)];
        for depth in 0..depth_max {
            if ctx.budget_spent() {
                break;
            }
            let mut candidates: Vec<Branch> = Vec::new();
            let mut kept: Vec<(f32, Branch)> = Vec::new();
            for (score, b) in beams {
                if b.ended() {
                    kept.push((score, b));
                    continue;
                }
                let kids = ctx.fork(&b, expansions, false, |i| {
                    format!("step {} · {}", depth + 1, i + 1)
                })?;
                candidates.extend(kids);
                if depth > 0 {
                    ctx.release(&b);
                }
            }
            if candidates.is_empty() {
                beams = kept;
                break;
            }
            ctx.generate(&mut candidates, &StopRule::one_step(step_tokens))?;
            for b in candidates {
                let score = match scorer {
                    Scorer::SelfVerify => ctx.verify(&b)?,
                    // p̂ moves in steps of 1/K; confidence (< 0.01) breaks ties between equal p̂.
                    Scorer::Progress => {
                        let p = ctx.progress_score(&b)?;
                        let confidence = ctx.path_mean_logprob(b.node).map_or(0.0, f32::exp);
                        p + 0.01 * confidence
                    }
                    _ => ctx.path_mean_logprob(b.node).unwrap_or(f32::NEG_INFINITY),
                };
                let mut scores = ctx.tree().nodes[b.node].scores.clone();
                scores.value = Some(score);
                scores.mean_logprob = ctx.path_mean_logprob(b.node);
                ctx.set_scores(b.node, scores);
                kept.push((score, b));
            }
            kept.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (_, b) in kept.drain(width.min(kept.len())..) {
                ctx.prune(b.node);
                ctx.release(&b);
            }
            beams = kept;
            if beams.iter().all(|(_, b)| b.ended()) {
                break;
            }
        }
        // The best beam finishes its reasoning and states the answer.
        let Some((_, mut best)) = beams.into_iter().next() else {
            ctx.choose(None, None, Default::default());
            return Ok(());
        };
        if !best.ended() && !ctx.budget_spent() {
            let mut rest = [ctx.continue_in_new_node(&best, "conclusion")];
            let max = ctx.config().max_tokens;
            ctx.generate(&mut rest, &StopRule::to_end(max))?;
            let [r] = rest;
            best = r;
        }
        let (last, answer) = conclude(ctx, best)?;
        ctx.choose(Some(last.node), answer, Default::default());
        Ok(())
    }
}
