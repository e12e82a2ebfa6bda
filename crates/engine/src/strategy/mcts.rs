//! Tree of thoughts searched with Monte Carlo tree search over reasoning steps.

use serde::{Deserialize, Serialize};

use super::self_consistency::vote;
use super::{check_range, conclude, Branch, Ctx, StopRule};
use crate::answer::answers_match;
use crate::error::{EngineError, Result};
use crate::tree::Scores;

/// How a rollout is valued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValueMode {
    /// Agreement of the rollout's answer with the answers of earlier rollouts.
    #[default]
    Agreement,
    /// The model's own verdict on the rollout (P("yes")).
    SelfEval,
}

/// MCTS parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MctsParams {
    /// Children sampled per expansion.
    pub children: usize,
    /// Iterations (select, expand, roll out, back up).
    pub iterations: usize,
    /// UCT exploration constant.
    pub exploration: f32,
    /// Most tokens in one reasoning step.
    pub step_tokens: usize,
    /// How rollouts are valued.
    pub value: ValueMode,
}

impl Default for MctsParams {
    fn default() -> Self {
        Self {
            children: 2,
            iterations: 6,
            exploration: 1.4,
            step_tokens: 48,
            value: ValueMode::Agreement,
        }
    }
}

impl MctsParams {
    pub(super) fn validate(&self) -> Result<()> {
        check_range("children", self.children, 1, 8)?;
        check_range("iterations", self.iterations, 1, 256)?;
        check_range("step tokens", self.step_tokens, 4, 1024)?;
        if !(self.exploration.is_finite() && self.exploration >= 0.0) {
            return Err(EngineError::InvalidParameter(
                "exploration must be >= 0".into(),
            ));
        }
        Ok(())
    }
}

pub(super) const HELP: &[(&str, &str)] = &[
    ("children", "How many next steps one expansion samples."),
    (
        "iterations",
        "Rounds of select, expand, roll out and back up.",
    ),
    (
        "exploration",
        "UCT constant: higher explores more, lower exploits the best value.",
    ),
    (
        "step_tokens",
        "The most tokens in one reasoning step (one line).",
    ),
    (
        "value",
        "agreement (rollout answers that agree score higher) or self-eval (the model judges).",
    ),
];

struct SearchNode {
    branch: Branch,
    parent: Option<usize>,
    children: Vec<usize>,
    visits: u32,
    value_sum: f32,
    terminal: bool,
}

pub(super) fn run(ctx: &mut Ctx, p: &MctsParams) -> Result<()> {
    let root = ctx.start(true, false)?;
    let mut nodes = vec![SearchNode {
        branch: root,
        parent: None,
        children: Vec::new(),
        visits: 0,
        value_sum: 0.0,
        terminal: false,
    }];
    let mut rollouts: Vec<(usize, Option<String>)> = Vec::new();
    let max = ctx.config().max_tokens;
    for it in 0..p.iterations {
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
                    uct(&nodes[a], parent_visits, p.exploration).total_cmp(&uct(
                        &nodes[b],
                        parent_visits,
                        p.exploration,
                    ))
                })
                .unwrap_or(&nodes[cur].children[0]);
        }
        // Expand.
        let leaf = if nodes[cur].terminal {
            cur
        } else {
            let mut kids = ctx.fork(&nodes[cur].branch, p.children, false, |i| {
                format!("thought {} · {}", it + 1, i + 1)
            })?;
            ctx.generate(&mut kids, &StopRule::one_step(p.step_tokens))?;
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
        let value = match p.value {
            ValueMode::SelfEval => ctx.verify(&last)?,
            ValueMode::Agreement => {
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
                votes: None,
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

fn uct(n: &SearchNode, parent_visits: f32, c: f32) -> f32 {
    if n.visits == 0 {
        return f32::INFINITY;
    }
    let mean = n.value_sum / n.visits as f32;
    mean + c * (parent_visits.ln() / n.visits as f32).sqrt()
}
