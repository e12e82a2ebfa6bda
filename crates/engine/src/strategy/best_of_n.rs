//! Best of N: sample N answers from the same prompt and keep the one a scorer likes best.

use super::{conclude, Ctx, Knob, LabMode, Params, PoolRule, Role, Scorer, StopRule, StrategyDef};
use crate::answer::answers_match;
use crate::error::Result;

/// N samples, the best by a scorer.
pub(super) struct BestOfN;

impl StrategyDef for BestOfN {
    fn name(&self) -> &'static str {
        "best-of-n"
    }

    fn title(&self) -> &'static str {
        "Best of N"
    }

    fn summary(&self) -> &'static str {
        "Sample N answers from the same prompt and keep the one a scorer likes best."
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![
            Knob::int(
                "n",
                "Samples",
                "How many answers to sample from the same prompt.",
                1,
                64,
                4,
            )
            .role(Role::Samples),
            Knob::choice(
                "scorer",
                "Scorer",
                "How candidates are ranked.",
                &[
                    (
                        "mean-logprob",
                        "the model's confidence: mean token log-probability",
                    ),
                    (
                        "self-verify",
                        "the model judges: P(yes) to \"is this answer correct?\"",
                    ),
                    (
                        "exact",
                        "check the known answer (mean log-prob when none is given)",
                    ),
                ],
                "mean-logprob",
            ),
        ]
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::Pool {
            rule: PoolRule::MostConfident,
        }
    }

    fn lab_mode_for(&self, p: &Params) -> LabMode {
        match p.text("scorer") {
            Ok("self-verify") => LabMode::Pool {
                rule: PoolRule::Verifier,
            },
            _ => self.lab_mode(),
        }
    }

    fn run(&self, ctx: &mut Ctx, p: &Params) -> Result<()> {
        let (n, scorer) = (p.count("n")?, Scorer::from_knob(p.text("scorer")?)?);
        let root = ctx.start(true, false)?;
        let mut samples = ctx.fork(&root, n, false, |i| format!("sample {}", i + 1))?;
        let max = ctx.config().max_tokens;
        ctx.generate(&mut samples, &StopRule::to_end(max))?;
        let mut scored = Vec::new();
        for b in samples {
            let (last, answer) = conclude(ctx, b)?;
            let confidence = ctx
                .path_mean_logprob(last.node)
                .unwrap_or(f32::NEG_INFINITY);
            let value = match (scorer, &ctx.config().expected_answer) {
                (Scorer::SelfVerify, _) => ctx.verify(&last)?,
                (Scorer::Exact, Some(expected)) => f32::from(u8::from(
                    answer
                        .as_deref()
                        .is_some_and(|a| answers_match(a, expected)),
                )),
                _ => confidence,
            };
            let mut scores = ctx.tree().nodes[last.node].scores.clone();
            scores.value = Some(value);
            ctx.set_scores(last.node, scores);
            scored.push((value, confidence, last, answer));
        }
        // Highest value; ties go to the more confident sample, then the earlier one.
        let best = scored
            .iter()
            .enumerate()
            .max_by(|(i, a), (j, b)| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)).then(j.cmp(i)))
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let (_, _, b, answer) = &scored[i];
                let (node, answer) = (b.node, answer.clone());
                ctx.choose(Some(node), answer, Default::default());
            }
            None => ctx.choose(None, None, Default::default()),
        }
        Ok(())
    }
}
