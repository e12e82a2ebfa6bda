//! Test-time-compute strategies. Each is plain sequential code against a [`Ctx`], which turns
//! its requests into engine work (batched with every other run's), keeps the tree and the cost
//! meters, and emits the events every viewer replays.

mod beam;
mod best_of_n;
mod budget_forcing;
mod chain_of_thought;
mod ctx;
mod entropy_branching;
mod manual;
mod mcts;
mod self_consistency;
mod system1;

use serde::{Deserialize, Serialize};

pub use self::beam::BeamParams;
pub use self::best_of_n::BestOfNParams;
pub use self::budget_forcing::BudgetForcingParams;
pub use self::chain_of_thought::CotParams;
pub use self::ctx::{Branch, BranchStop, Ctx, StopRule};
pub use self::entropy_branching::EntropyParams;
pub use self::manual::ManualBranch;
pub use self::mcts::MctsParams;
pub use self::self_consistency::SelfConsistencyParams;
pub use self::system1::System1Params;
use crate::error::{EngineError, Result};
use crate::generate::PromptFormat;

/// How candidate answers are scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scorer {
    /// Mean token log-probability of the candidate's path.
    #[default]
    MeanLogprob,
    /// The model's own verdict: P("yes") to "Is this answer correct?".
    SelfVerify,
    /// Exact check against the known answer (falls back to mean log-prob when none is given).
    Exact,
}

/// A strategy and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Strategy {
    /// Greedy answer, no reasoning prompt.
    System1(System1Params),
    /// One sampled reasoning trace, then the answer.
    ChainOfThought(CotParams),
    /// N samples, pick the best by a scorer.
    BestOfN(BestOfNParams),
    /// N reasoning samples, majority vote.
    SelfConsistency(SelfConsistencyParams),
    /// Beam search over reasoning steps.
    Beam(BeamParams),
    /// Tree of thoughts searched with MCTS.
    Mcts(MctsParams),
    /// Hold back the end of thinking and append "Wait".
    BudgetForcing(BudgetForcingParams),
    /// Greedy decoding that branches where entropy is high.
    EntropyBranching(EntropyParams),
}

/// Knobs shared by the UI sliders and CLI flags, mapped onto each strategy's own parameters.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    /// Samples, beam width or branching factor.
    pub samples: Option<usize>,
    /// Depth: beam steps, MCTS iterations, "Wait" insertions.
    pub depth: Option<usize>,
    /// Thinking budget in tokens (budget forcing).
    pub thinking: Option<usize>,
}

/// Description of a strategy parameter, for `strategies` listings and tooltips.
#[derive(Clone, Debug, Serialize)]
pub struct ParamInfo {
    /// Field name.
    pub name: &'static str,
    /// One sentence.
    pub help: &'static str,
    /// Default value as JSON.
    pub default: serde_json::Value,
}

/// A registered strategy.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyInfo {
    /// Name used on the command line.
    pub name: &'static str,
    /// Title for the UI.
    pub title: &'static str,
    /// One paragraph.
    pub description: &'static str,
    /// Whether it uses a reasoning prompt (System 2).
    pub reasoning: bool,
    /// Its parameters.
    pub params: Vec<ParamInfo>,
}

fn params_of<T: Serialize + Default>(help: &[(&'static str, &'static str)]) -> Vec<ParamInfo> {
    let value = serde_json::to_value(T::default()).unwrap_or_default();
    help.iter()
        .map(|(name, h)| ParamInfo {
            name,
            help: h,
            default: value.get(*name).cloned().unwrap_or_default(),
        })
        .collect()
}

/// Every strategy, in menu order.
pub fn registry() -> Vec<StrategyInfo> {
    vec![
        StrategyInfo {
            name: "system1",
            title: "System 1 (greedy)",
            description: "Answer at once, greedily, with no reasoning prompt: the fast, intuitive baseline.",
            reasoning: false,
            params: params_of::<System1Params>(system1::HELP),
        },
        StrategyInfo {
            name: "chain-of-thought",
            title: "Chain of thought",
            description: "One sampled reasoning trace (\"think step by step\"), then the answer.",
            reasoning: true,
            params: params_of::<CotParams>(chain_of_thought::HELP),
        },
        StrategyInfo {
            name: "best-of-n",
            title: "Best of N",
            description: "Sample N answers from the same prompt and keep the one a scorer likes best.",
            reasoning: true,
            params: params_of::<BestOfNParams>(best_of_n::HELP),
        },
        StrategyInfo {
            name: "self-consistency",
            title: "Self-consistency",
            description: "Sample N reasoning traces, extract each answer, and take the majority vote.",
            reasoning: true,
            params: params_of::<SelfConsistencyParams>(self_consistency::HELP),
        },
        StrategyInfo {
            name: "beam",
            title: "Beam search over steps",
            description: "Grow reasoning one line at a time, keeping the best `width` partial solutions at each step.",
            reasoning: true,
            params: params_of::<BeamParams>(beam::HELP),
        },
        StrategyInfo {
            name: "mcts",
            title: "Tree of thoughts (MCTS)",
            description: "Monte Carlo tree search over reasoning steps: select by UCT, expand, roll out to an answer, back the value up.",
            reasoning: true,
            params: params_of::<MctsParams>(mcts::HELP),
        },
        StrategyInfo {
            name: "budget-forcing",
            title: "Budget forcing (\"Wait\")",
            description: "s1-style: when the model stops thinking too early, append \"Wait\" and let it go on; stop it at the budget.",
            reasoning: true,
            params: params_of::<BudgetForcingParams>(budget_forcing::HELP),
        },
        StrategyInfo {
            name: "entropy-branching",
            title: "Entropy-triggered branching",
            description: "Decode greedily and branch only where the model is unsure (next-token entropy above a threshold).",
            reasoning: true,
            params: params_of::<EntropyParams>(entropy_branching::HELP),
        },
    ]
}

impl Strategy {
    /// The strategy called `name` with default parameters adjusted by `knobs`.
    pub fn from_name(name: &str, knobs: &Knobs) -> Result<Self> {
        let s = match name {
            "system1" | "greedy" => Self::System1(System1Params::default()),
            "chain-of-thought" | "cot" => Self::ChainOfThought(CotParams::default()),
            "best-of-n" => {
                let mut p = BestOfNParams::default();
                p.n = knobs.samples.unwrap_or(p.n);
                Self::BestOfN(p)
            }
            "self-consistency" => {
                let mut p = SelfConsistencyParams::default();
                p.n = knobs.samples.unwrap_or(p.n);
                Self::SelfConsistency(p)
            }
            "beam" => {
                let mut p = BeamParams::default();
                p.width = knobs.samples.unwrap_or(p.width);
                p.depth = knobs.depth.unwrap_or(p.depth);
                Self::Beam(p)
            }
            "mcts" | "tree-of-thoughts" => {
                let mut p = MctsParams::default();
                p.children = knobs.samples.unwrap_or(p.children);
                p.iterations = knobs.depth.unwrap_or(p.iterations);
                Self::Mcts(p)
            }
            "budget-forcing" => {
                let mut p = BudgetForcingParams::default();
                p.max_waits = knobs.depth.unwrap_or(p.max_waits);
                if let Some(t) = knobs.thinking {
                    p.min_thinking = t / 2;
                    p.max_thinking = t;
                }
                Self::BudgetForcing(p)
            }
            "entropy-branching" => {
                let mut p = EntropyParams::default();
                p.branches = knobs.samples.unwrap_or(p.branches);
                p.max_splits = knobs.depth.unwrap_or(p.max_splits);
                Self::EntropyBranching(p)
            }
            other => {
                let names: Vec<&str> = registry().iter().map(|s| s.name).collect();
                return Err(EngineError::InvalidParameter(format!(
                    "unknown strategy '{other}' (known: {})",
                    names.join(", ")
                )));
            }
        };
        s.validate()?;
        Ok(s)
    }

    /// The registry name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::System1(_) => "system1",
            Self::ChainOfThought(_) => "chain-of-thought",
            Self::BestOfN(_) => "best-of-n",
            Self::SelfConsistency(_) => "self-consistency",
            Self::Beam(_) => "beam",
            Self::Mcts(_) => "mcts",
            Self::BudgetForcing(_) => "budget-forcing",
            Self::EntropyBranching(_) => "entropy-branching",
        }
    }

    /// Reject parameters that make no sense.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::System1(_) | Self::ChainOfThought(_) => Ok(()),
            Self::BestOfN(p) => p.validate(),
            Self::SelfConsistency(p) => p.validate(),
            Self::Beam(p) => p.validate(),
            Self::Mcts(p) => p.validate(),
            Self::BudgetForcing(p) => p.validate(),
            Self::EntropyBranching(p) => p.validate(),
        }
    }

    /// Run the strategy to completion (or cancellation) on `ctx`.
    pub fn run(&self, ctx: &mut Ctx) -> Result<()> {
        match self {
            Self::System1(p) => system1::run(ctx, p),
            Self::ChainOfThought(p) => chain_of_thought::run(ctx, p),
            Self::BestOfN(p) => best_of_n::run(ctx, p),
            Self::SelfConsistency(p) => self_consistency::run(ctx, p),
            Self::Beam(p) => beam::run(ctx, p),
            Self::Mcts(p) => mcts::run(ctx, p),
            Self::BudgetForcing(p) => budget_forcing::run(ctx, p),
            Self::EntropyBranching(p) => entropy_branching::run(ctx, p),
        }
    }
}

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The user's question.
    pub prompt: String,
    /// Chat template or plain completion.
    #[serde(default)]
    pub format: PromptFormat,
    /// The strategy.
    pub strategy: Strategy,
    /// Sampling temperature for sampled branches.
    pub temperature: f32,
    /// Nucleus threshold for sampled branches.
    pub top_p: f32,
    /// Seed: the same seed gives the same tree.
    pub seed: u64,
    /// Most tokens one branch may generate.
    pub max_tokens: usize,
    /// Most tokens the whole run may generate (`None`: no limit beyond `max_tokens` per branch).
    pub budget_tokens: Option<usize>,
    /// The known answer, for exact checking.
    #[serde(default)]
    pub expected_answer: Option<String>,
}

/// Largest token budget accepted for one run.
pub const MAX_BUDGET_TOKENS: usize = 1_000_000;

impl RunConfig {
    /// A config with sensible defaults for `strategy`.
    pub fn new(prompt: impl Into<String>, strategy: Strategy) -> Self {
        Self {
            prompt: prompt.into(),
            format: PromptFormat::Auto,
            strategy,
            temperature: 0.7,
            top_p: 0.95,
            seed: 0,
            max_tokens: 256,
            budget_tokens: None,
            expected_answer: None,
        }
    }

    /// Reject bad parameters with a message naming them.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidParameter(m));
        if self.prompt.trim().is_empty() {
            return bad("the prompt is empty".into());
        }
        if !(self.temperature.is_finite() && (0.0..=5.0).contains(&self.temperature)) {
            return bad(format!(
                "temperature {} is outside [0, 5]",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top-p {} is outside (0, 1]", self.top_p));
        }
        if self.max_tokens == 0 || self.max_tokens > 32_768 {
            return bad(format!(
                "max tokens {} is outside [1, 32768]",
                self.max_tokens
            ));
        }
        if let Some(b) = self.budget_tokens {
            if b == 0 || b > MAX_BUDGET_TOKENS {
                return bad(format!(
                    "token budget {b} is outside [1, {MAX_BUDGET_TOKENS}]"
                ));
            }
        }
        self.strategy.validate()
    }
}

pub(crate) fn check_range(name: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if v < lo || v > hi {
        return Err(EngineError::InvalidParameter(format!(
            "{name} = {v} is outside [{lo}, {hi}]"
        )));
    }
    Ok(())
}

/// Whether a reasoning text already states its answer explicitly.
fn states_answer(text: &str) -> bool {
    let t = text.to_lowercase();
    t.contains("answer is") || t.contains("answer:") || t.contains("\\boxed{")
}

/// Finish a reasoning branch: when it stopped without stating an answer (and budget remains),
/// append the cue "The answer is" and let the model complete one short line. Returns the branch
/// holding the answer and the extracted answer.
pub(crate) fn conclude(ctx: &mut Ctx, b: Branch) -> Result<(Branch, Option<String>)> {
    let text = ctx.tree().path_text(b.node);
    if states_answer(&text) || ctx.budget_spent() || b.stop == Some(BranchStop::ContextFull) {
        let answer = ctx.finish(&b);
        return Ok((b, answer));
    }
    ctx.finish(&b);
    let cue = if text.ends_with('\n') || text.is_empty() {
        "The answer is"
    } else {
        "\nThe answer is"
    };
    let forced = ctx.force(&b, cue, "answer cue")?;
    let mut a = [ctx.continue_in_new_node(&forced, "answer")];
    ctx.generate(&mut a, &StopRule::one_step(24))?;
    let [a] = a;
    let answer = ctx.finish(&a);
    Ok((a, answer))
}
