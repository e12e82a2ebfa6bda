//! Tree of thoughts searched with Monte Carlo tree search over reasoning steps.

use super::self_consistency::vote;
use super::{conclude, Branch, Ctx, Knob, LabMode, Params, Role, StopRule, StrategyDef};
use crate::answer::answers_match;
use crate::error::Result;
use crate::tree::{NodeId, Scores};

/// Tree of thoughts searched with MCTS.
pub(super) struct Mcts;

impl StrategyDef for Mcts {
    fn name(&self) -> &'static str {
        "mcts"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["tree-of-thoughts"]
    }

    fn title(&self) -> &'static str {
        "Tree of thoughts (MCTS)"
    }

    fn summary(&self) -> &'static str {
        "Monte Carlo tree search over reasoning steps: select by UCT, expand, roll out to an answer, back the value up."
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![
            Knob::int(
                "children",
                "Children",
                "How many next steps one expansion samples.",
                1,
                8,
                2,
            )
            .role(Role::Samples),
            Knob::int(
                "iterations",
                "Iterations",
                "Rounds of select, expand, roll out and back up.",
                1,
                256,
                6,
            )
            .role(Role::Depth),
            Knob::float(
                "exploration",
                "Exploration",
                "UCT constant: higher explores more, lower exploits the best value.",
                0.0,
                10.0,
                1.4,
            ),
            Knob::int(
                "step_tokens",
                "Tokens per step",
                "The most tokens in one reasoning step (one line).",
                4,
                1024,
                48,
            ),
            Knob::choice(
                "value",
                "Rollout value",
                "How a rollout is valued.",
                &[
                    (
                        "agreement",
                        "rollout answers that agree with earlier ones score higher",
                    ),
                    ("self-eval", "the model judges the rollout: P(yes)"),
                    (
                        "progress",
                        "consensus progress at the expanded step: K forced-answer probes from its end, scored against the run's majority answer (MRT)",
                    ),
                ],
                "agreement",
            ),
        ]
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::PerBudget { knob: "children" }
    }

    fn run(&self, ctx: &mut Ctx, p: &Params) -> Result<()> {
        let (children, iterations, step_tokens) = (
            p.count("children")?,
            p.count("iterations")?,
            p.count("step_tokens")?,
        );
        let (exploration, value_rule) = (p.real("exploration")?, p.text("value")?.to_owned());
        let root = ctx.start(true, false)?;
        let mut nodes = vec![SearchNode {
            branch: root,
            parent: None,
            children: Vec::new(),
            visits: 0,
            value_sum: 0.0,
            terminal: false,
        }];
        let mut rollouts: Vec<(NodeId, Option<String>)> = Vec::new();
        let max = ctx.config().max_tokens;
        for it in 0..iterations {
            if ctx.budget_spent() {
                break;
            }
            // Select.
            let mut cur = 0;
            while !nodes[cur].children.is_empty() && !nodes[cur].terminal {
                let parent_visits = nodes[cur].visits.max(1) as f32;
                cur = *nodes[cur]
                    .children
                    .iter()
                    .max_by(|&&a, &&b| {
                        uct(&nodes[a], parent_visits, exploration).total_cmp(&uct(
                            &nodes[b],
                            parent_visits,
                            exploration,
                        ))
                    })
                    .unwrap_or(&nodes[cur].children[0]);
            }
            // Expand.
            let leaf = if nodes[cur].terminal {
                cur
            } else {
                let mut kids = ctx.fork(&nodes[cur].branch, children, false, |i| {
                    format!("thought {} · {}", it + 1, i + 1)
                })?;
                ctx.generate(&mut kids, &StopRule::one_step(step_tokens))?;
                let first = nodes.len();
                for k in kids {
                    let terminal = k.ended();
                    nodes.push(SearchNode {
                        branch: k,
                        parent: Some(cur),
                        children: Vec::new(),
                        visits: 0,
                        value_sum: 0.0,
                        terminal,
                    });
                    let id = nodes.len() - 1;
                    nodes[cur].children.push(id);
                }
                first
            };
            // Roll out from the leaf to an answer.
            let mut roll = if nodes[leaf].terminal {
                nodes[leaf].branch.clone()
            } else {
                let forked = ctx.fork(&nodes[leaf].branch, 1, false, |_| "rollout".into())?;
                let mut r = forked;
                ctx.generate(&mut r, &StopRule::to_end(max))?;
                r.remove(0)
            };
            roll.stop = roll.stop.or(Some(super::BranchStop::MaxTokens));
            let (last, answer) = conclude(ctx, roll)?;
            let value = match value_rule.as_str() {
                "self-eval" => ctx.verify(&last)?,
                // How often short forced answers from the expanded step agree with the majority.
                "progress" => {
                    let b = nodes[leaf].branch.clone();
                    ctx.progress_score(&b)?
                }
                _ => {
                    let earlier = rollouts.len() as f32;
                    let agree = rollouts
                        .iter()
                        .filter(|(_, a)| match (a, &answer) {
                            (Some(x), Some(y)) => answers_match(x, y),
                            _ => false,
                        })
                        .count() as f32;
                    if answer.is_none() {
                        0.0
                    } else {
                        (agree + 1.0) / (earlier + 2.0)
                    }
                }
            };
            rollouts.push((last.node, answer));
            // Back the value up to the root.
            let mut up = Some(leaf);
            while let Some(i) = up {
                nodes[i].visits += 1;
                nodes[i].value_sum += value;
                let n = &nodes[i];
                let scores = Scores {
                    value: Some(n.value_sum / n.visits as f32),
                    visits: Some(n.visits),
                    mean_logprob: ctx.path_mean_logprob(n.branch.node),
                    ..ctx.tree().nodes[n.branch.node].scores.clone()
                };
                let node = n.branch.node;
                up = n.parent;
                if i != 0 {
                    ctx.set_scores(node, scores);
                }
            }
        }
        let (tally, winner) = vote(ctx, &rollouts);
        let (node, answer) = winner.unzip();
        ctx.choose(node, answer, tally);
        Ok(())
    }
}

fn uct(n: &SearchNode, parent_visits: f32, c: f32) -> f32 {
    if n.visits == 0 {
        return f32::INFINITY;
    }
    let mean = n.value_sum / n.visits as f32;
    mean + c * (parent_visits.ln() / n.visits as f32).sqrt()
}
struct SearchNode {
    branch: Branch,
    parent: Option<usize>,
    children: Vec<usize>,
    visits: u32,
    value_sum: f32,
    terminal: bool,
}
