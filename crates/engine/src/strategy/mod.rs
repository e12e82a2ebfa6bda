//! Test-time-compute strategies. Each is plain sequential code against a [`Ctx`], which turns
//! its requests into service calls (batched with every other run's), keeps the tree and the cost
//! meters, and emits the events every viewer replays. Each strategy file also describes itself —
//! knobs, summary, lab mode — for the [`registry`].

mod beam;
mod best_of_n;
mod budget_forcing;
mod chain_of_thought;
mod ctx;
mod entropy_branching;
mod manual;
mod mcts;
pub mod registry;
mod self_consistency;
mod system1;
mod weighted_vote;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use self::ctx::{Branch, BranchStop, Ctx, PromptThinking, StopRule};
pub use self::manual::ManualBranch;
pub use self::registry::{
    register, registry, Knob, KnobKind, KnobValue, LabMode, Params, PoolRule, Role, StrategyDef,
};
pub use self::weighted_vote::{weighted_vote, WeightedTally};
use crate::error::{EngineError, Result};
use crate::generate::PromptFormat;
use crate::progress::ProgressConfig;
use crate::tree;

/// The built-in strategies, in menu order: the registry's starting content.
fn builtin() -> Vec<Arc<dyn StrategyDef>> {
    vec![
        Arc::new(system1::System1),
        Arc::new(chain_of_thought::ChainOfThought),
        Arc::new(best_of_n::BestOfN),
        Arc::new(self_consistency::SelfConsistency),
        Arc::new(weighted_vote::WeightedVote),
        Arc::new(beam::Beam),
        Arc::new(mcts::Mcts),
        Arc::new(budget_forcing::BudgetForcing),
        Arc::new(entropy_branching::EntropyBranching),
    ]
}

/// How candidate answers are scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scorer {
    /// Mean token log-probability of the candidate's path.
    #[default]
    MeanLogprob,
    /// The model's own verdict: P("yes") to "Is this answer correct?".
    SelfVerify,
    /// Exact check against the known answer (falls back to mean log-prob when none is given).
    Exact,
    /// Consensus progress: p̂ from K forced-answer probes at the candidate's end, against the
    /// run's most common probe answer so far (never the known answer).
    Progress,
}

impl Scorer {
    /// The scorer a choice knob names.
    pub fn from_knob(name: &str) -> Result<Self> {
        match name {
            "mean-logprob" => Ok(Self::MeanLogprob),
            "self-verify" => Ok(Self::SelfVerify),
            "exact" => Ok(Self::Exact),
            "progress" => Ok(Self::Progress),
            other => Err(EngineError::InvalidParameter(format!(
                "unknown scorer '{other}' (mean-logprob, self-verify, exact, progress)"
            ))),
        }
    }
}

/// Values for the common knobs (see [`Role`]), mapped onto whichever knobs of a strategy play
/// those roles.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    /// Samples, beam width or branching factor.
    pub samples: Option<usize>,
    /// Depth: beam steps, MCTS iterations, "Wait" insertions.
    pub depth: Option<usize>,
    /// Thinking budget in tokens (budget forcing).
    pub thinking: Option<usize>,
}

impl Knobs {
    fn get(&self, role: Role) -> Option<usize> {
        match role {
            Role::Samples => self.samples,
            Role::Depth => self.depth,
            Role::Thinking => self.thinking,
        }
    }
}

/// A strategy and its parameters: what a run config, a session file and the lab name.
///
/// In files it is an object with `name` and the knob values beside it
/// (`{"name": "beam", "width": 2, ...}`); knobs a file leaves out take their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Strategy {
    name: &'static str,
    params: Params,
}

impl Serialize for Strategy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        RawStrategy::from(self.clone()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Strategy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = RawStrategy::deserialize(d)?;
        Strategy::try_from(raw).map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct RawStrategy {
    name: String,
    #[serde(flatten)]
    params: Params,
}

impl TryFrom<RawStrategy> for Strategy {
    type Error = EngineError;

    fn try_from(raw: RawStrategy) -> Result<Self> {
        let mut s = Strategy::named(&raw.name)?;
        for (key, value) in raw.params.0 {
            s.set(&key, value)?;
        }
        s.validate()?;
        Ok(s)
    }
}

impl From<Strategy> for RawStrategy {
    fn from(s: Strategy) -> Self {
        RawStrategy {
            name: s.name.to_owned(),
            params: s.params,
        }
    }
}

impl Strategy {
    /// The strategy called `name` (or an alias) with its default knobs.
    pub fn named(name: &str) -> Result<Self> {
        let def = registry().find(name)?;
        let params = Params(
            def.knobs()
                .iter()
                .map(|k| (k.key.to_owned(), k.default_value()))
                .collect(),
        );
        Ok(Self {
            name: def.name(),
            params,
        })
    }

    /// The strategy called `name` with default knobs adjusted by the common `knobs`.
    pub fn from_name(name: &str, knobs: &Knobs) -> Result<Self> {
        let mut s = Self::named(name)?;
        s.apply_roles(knobs)?;
        s.validate()?;
        Ok(s)
    }

    /// Set the knobs playing the common roles.
    pub fn apply_roles(&mut self, knobs: &Knobs) -> Result<()> {
        let def = self.def()?;
        for role in [Role::Samples, Role::Depth, Role::Thinking] {
            if let Some(v) = knobs.get(role) {
                for (key, value) in def.for_role(role, v) {
                    self.set(key, value)?;
                }
            }
        }
        Ok(())
    }

    /// Set one knob, checked against its range.
    pub fn set(&mut self, key: &str, value: KnobValue) -> Result<()> {
        let def = self.def()?;
        let knobs = def.knobs();
        let Some(knob) = knobs.iter().find(|k| k.key == key) else {
            let keys: Vec<&str> = knobs.iter().map(|k| k.key).collect();
            return Err(EngineError::InvalidParameter(format!(
                "{} has no parameter '{key}' (it has: {})",
                self.name,
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            )));
        };
        let value = knob.check(&value)?;
        self.params.0.insert(key.to_owned(), value);
        Ok(())
    }

    /// The same strategy with one knob set (checked): `Strategy::named("beam")?.with("width", 3)?`.
    pub fn with(mut self, key: &str, value: impl Into<KnobValue>) -> Result<Self> {
        self.set(key, value.into())?;
        Ok(self)
    }

    /// Set one knob from text (`--set width=3`).
    pub fn set_text(&mut self, key: &str, text: &str) -> Result<()> {
        let def = self.def()?;
        let knobs = def.knobs();
        let knob = knobs.iter().find(|k| k.key == key).ok_or_else(|| {
            EngineError::InvalidParameter(format!("{} has no parameter '{key}'", self.name))
        })?;
        let value = knob.parse(text)?;
        self.set(key, value)
    }

    /// The registry name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The knob values.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The registry's description of this strategy.
    pub fn def(&self) -> Result<Arc<dyn StrategyDef>> {
        registry().find(self.name)
    }

    /// Reject parameters that make no sense, naming them.
    pub fn validate(&self) -> Result<()> {
        let def = self.def()?;
        for k in def.knobs() {
            match self.params.0.get(k.key) {
                Some(v) => {
                    k.check(v)?;
                }
                None => {
                    return Err(EngineError::InvalidParameter(format!(
                        "{} lacks parameter '{}'",
                        self.name, k.key
                    )))
                }
            }
        }
        def.check(&self.params)
    }

    /// Run the strategy to completion (or cancellation) on `ctx`.
    pub fn run(&self, ctx: &mut Ctx) -> Result<()> {
        self.def()?.run(ctx, &self.params)
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
    /// Thinking on or off, for a thinking model whose template has the switch
    /// (`enable_thinking`); `None` keeps the template's default. Models that cannot switch
    /// think (or not) as they always do.
    #[serde(default)]
    pub thinking: Option<bool>,
    /// Progress probes: when set, the context probes every step node it finishes (and the
    /// prompt) with K forced-answer continuations (see [`crate::progress`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressConfig>,
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
            thinking: None,
            progress: None,
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
        if let Some(p) = &self.progress {
            p.validate()?;
        }
        self.strategy.validate()
    }
}

/// Whether a reasoning text already states its answer explicitly.
fn states_answer(text: &str) -> bool {
    let t = text.to_lowercase();
    t.contains("answer is") || t.contains("answer:") || t.contains("\\boxed{")
}

/// Finish a reasoning branch: when it stopped without stating an answer (and budget remains),
/// append the cue "The answer is" and let the model complete one short line. Returns the branch
/// holding the answer and the extracted answer.
///
/// A thinking model's branch that stopped inside its thinking has the thinking closed first
/// (its closing delimiter goes before the cue), so the answer lands in the answer segment.
pub(crate) fn conclude(ctx: &mut Ctx, b: Branch) -> Result<(Branch, Option<String>)> {
    let text = ctx.tree().path_text(b.node);
    let answer_text = ctx.tree().path_answer_text(b.node);
    let thinking = (ctx.segment(&b) == Some(tree::Segment::Thinking))
        .then(|| ctx.thinking().map(|f| f.close.clone()))
        .flatten();
    let stated = thinking.is_none() && states_answer(&answer_text);
    if stated || ctx.budget_spent() || b.stop == Some(BranchStop::ContextFull) {
        let answer = ctx.finish(&b);
        return Ok((b, answer));
    }
    ctx.finish(&b);
    let nl = if text.ends_with('\n') || text.is_empty() {
        ""
    } else {
        "\n"
    };
    let cue = match &thinking {
        Some(close) => format!("{nl}{close}\n\nThe answer is"),
        None => format!("{nl}The answer is"),
    };
    let forced = ctx.force(&b, &cue, "answer cue")?;
    let mut a = [ctx.continue_in_new_node(&forced, "answer")];
    ctx.generate(&mut a, &StopRule::one_step(24))?;
    let [a] = a;
    let answer = ctx.finish(&a);
    Ok((a, answer))
}
