//! The strategy registry: one description per strategy, from which everything else derives.
//!
//! A strategy file declares its name, summary, knobs (label, help, range, default) and how the lab
//! sweeps it, next to the code that runs it. The app's sliders, the CLI's flags and
//! `thinkscope-cli strategies`, validation and the lab all read that description, so adding a
//! strategy is one file and one line in [`builtin`] — or, for a strategy defined elsewhere (a test,
//! say), one call to [`register`].

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{EngineError, Result};

/// The value of one knob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KnobValue {
    /// An on/off switch.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A choice or free text.
    Text(String),
}

impl std::fmt::Display for KnobValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KnobValue::Bool(b) => write!(f, "{b}"),
            KnobValue::Int(i) => write!(f, "{i}"),
            KnobValue::Float(x) => write!(f, "{x}"),
            KnobValue::Text(s) => write!(f, "{s}"),
        }
    }
}

impl From<bool> for KnobValue {
    fn from(v: bool) -> Self {
        KnobValue::Bool(v)
    }
}

impl From<i64> for KnobValue {
    fn from(v: i64) -> Self {
        KnobValue::Int(v)
    }
}

impl From<usize> for KnobValue {
    fn from(v: usize) -> Self {
        KnobValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<i32> for KnobValue {
    fn from(v: i32) -> Self {
        KnobValue::Int(v.into())
    }
}

impl From<f64> for KnobValue {
    fn from(v: f64) -> Self {
        KnobValue::Float(v)
    }
}

impl From<f32> for KnobValue {
    fn from(v: f32) -> Self {
        KnobValue::Float(v.into())
    }
}

impl From<&str> for KnobValue {
    fn from(v: &str) -> Self {
        KnobValue::Text(v.to_owned())
    }
}

/// What values a knob takes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KnobKind {
    /// A whole number in `min..=max`.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
        /// Default.
        default: i64,
    },
    /// A real number in `min..=max`.
    Float {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
        /// Default.
        default: f64,
    },
    /// One of a few named options.
    Choice {
        /// (name, what it means).
        options: &'static [(&'static str, &'static str)],
        /// Default option.
        default: &'static str,
    },
    /// On or off.
    Bool {
        /// Default.
        default: bool,
    },
    /// Free text (non-empty, at most 256 bytes).
    Text {
        /// Default.
        default: &'static str,
    },
}

/// The common knobs that shared CLI flags (`--samples`, `--depth`, `--thinking`) and presets set,
/// whichever strategy is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Samples, beam width, branches: how wide the search is.
    Samples,
    /// Depth, iterations, insertions: how deep or long it goes.
    Depth,
    /// A thinking budget in tokens.
    Thinking,
}

impl Role {
    /// The common flag's name (`samples` for `--samples`).
    pub fn flag(self) -> &'static str {
        match self {
            Role::Samples => "samples",
            Role::Depth => "depth",
            Role::Thinking => "thinking",
        }
    }
}

/// One tunable parameter of a strategy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Knob {
    /// Key in the strategy's parameters (`width`).
    pub key: &'static str,
    /// Label for a slider (`Beam width`).
    pub label: &'static str,
    /// One sentence for a tooltip or `--help`.
    pub help: &'static str,
    /// Its values.
    #[serde(flatten)]
    pub kind: KnobKind,
    /// The common flag that sets it, if any.
    pub role: Option<Role>,
}

impl Knob {
    /// A whole-number knob.
    pub const fn int(
        key: &'static str,
        label: &'static str,
        help: &'static str,
        min: i64,
        max: i64,
        default: i64,
    ) -> Self {
        Self {
            key,
            label,
            help,
            kind: KnobKind::Int { min, max, default },
            role: None,
        }
    }

    /// A real-number knob.
    pub const fn float(
        key: &'static str,
        label: &'static str,
        help: &'static str,
        min: f64,
        max: f64,
        default: f64,
    ) -> Self {
        Self {
            key,
            label,
            help,
            kind: KnobKind::Float { min, max, default },
            role: None,
        }
    }

    /// A knob with named options.
    pub const fn choice(
        key: &'static str,
        label: &'static str,
        help: &'static str,
        options: &'static [(&'static str, &'static str)],
        default: &'static str,
    ) -> Self {
        Self {
            key,
            label,
            help,
            kind: KnobKind::Choice { options, default },
            role: None,
        }
    }

    /// An on/off knob.
    pub const fn flag(
        key: &'static str,
        label: &'static str,
        help: &'static str,
        default: bool,
    ) -> Self {
        Self {
            key,
            label,
            help,
            kind: KnobKind::Bool { default },
            role: None,
        }
    }

    /// A free-text knob.
    pub const fn text(
        key: &'static str,
        label: &'static str,
        help: &'static str,
        default: &'static str,
    ) -> Self {
        Self {
            key,
            label,
            help,
            kind: KnobKind::Text { default },
            role: None,
        }
    }

    /// The same knob, set by a common flag.
    pub const fn role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Its default value.
    pub fn default_value(&self) -> KnobValue {
        match self.kind {
            KnobKind::Int { default, .. } => KnobValue::Int(default),
            KnobKind::Float { default, .. } => KnobValue::Float(default),
            KnobKind::Choice { default, .. } | KnobKind::Text { default } => {
                KnobValue::Text(default.to_owned())
            }
            KnobKind::Bool { default } => KnobValue::Bool(default),
        }
    }

    /// `value` as this knob's type, if it fits its range; otherwise a message naming the knob.
    pub fn check(&self, value: &KnobValue) -> Result<KnobValue> {
        let bad = |why: String| -> Result<KnobValue> {
            Err(EngineError::InvalidParameter(format!(
                "{} ({}) {why}",
                self.label.to_lowercase(),
                self.key
            )))
        };
        match (&self.kind, value) {
            (KnobKind::Int { min, max, .. }, KnobValue::Int(v)) => {
                if v < min || v > max {
                    return bad(format!("= {v} is outside [{min}, {max}]"));
                }
                Ok(value.clone())
            }
            (KnobKind::Int { .. }, KnobValue::Float(v)) if v.fract() == 0.0 && v.abs() < 1e15 => {
                self.check(&KnobValue::Int(*v as i64))
            }
            (KnobKind::Float { min, max, .. }, KnobValue::Float(v)) => {
                if !v.is_finite() || v < min || v > max {
                    return bad(format!("= {v} is outside [{min}, {max}]"));
                }
                Ok(value.clone())
            }
            (KnobKind::Float { .. }, KnobValue::Int(v)) => self.check(&KnobValue::Float(*v as f64)),
            (KnobKind::Choice { options, .. }, KnobValue::Text(v)) => {
                if options.iter().any(|(o, _)| o == v) {
                    return Ok(value.clone());
                }
                let names: Vec<&str> = options.iter().map(|(o, _)| *o).collect();
                bad(format!("'{v}' is not one of {}", names.join(", ")))
            }
            (KnobKind::Bool { .. }, KnobValue::Bool(_)) => Ok(value.clone()),
            (KnobKind::Text { .. }, KnobValue::Text(v)) => {
                if v.trim().is_empty() {
                    return bad("is empty".into());
                }
                if v.len() > 256 {
                    return bad(format!("is {} bytes long (at most 256)", v.len()));
                }
                Ok(value.clone())
            }
            (_, v) => bad(format!("cannot be {v}")),
        }
    }

    /// Parse a value given as text (a CLI flag), for this knob's type.
    pub fn parse(&self, text: &str) -> Result<KnobValue> {
        let bad = |what: &str| {
            EngineError::InvalidParameter(format!(
                "{} ({}) needs {what}, not '{text}'",
                self.label.to_lowercase(),
                self.key
            ))
        };
        let value = match self.kind {
            KnobKind::Int { .. } => {
                KnobValue::Int(text.trim().parse().map_err(|_| bad("a whole number"))?)
            }
            KnobKind::Float { .. } => {
                KnobValue::Float(text.trim().parse().map_err(|_| bad("a number"))?)
            }
            KnobKind::Bool { .. } => match text.trim() {
                "true" | "yes" | "on" | "1" => KnobValue::Bool(true),
                "false" | "no" | "off" | "0" => KnobValue::Bool(false),
                _ => return Err(bad("true or false")),
            },
            KnobKind::Choice { .. } | KnobKind::Text { .. } => KnobValue::Text(text.to_owned()),
        };
        self.check(&value)
    }
}

/// How a candidate pool is judged in the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolRule {
    /// Majority vote over the samples' answers.
    Majority,
    /// The sample the model is most confident in (highest mean log-probability).
    MostConfident,
    /// The sample the self-verifier rates highest (P("yes") to "is this answer correct?").
    Verifier,
    /// A vote in which each sample's answer counts with its verifier score (Snell et al. 2024's
    /// weighted best-of-N).
    WeightedMajority,
}

impl PoolRule {
    /// Whether judging by this rule needs each sample's verifier score (and pays for it).
    pub fn uses_verifier(self) -> bool {
        matches!(self, Self::Verifier | Self::WeightedMajority)
    }
}

/// How the lab sweeps a strategy over budgets N.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LabMode {
    /// One run; the same figure at every budget.
    Single,
    /// One pool of samples at the largest N; smaller budgets from subsets, judged by `rule`.
    Pool {
        /// How the pool picks its answer.
        rule: PoolRule,
    },
    /// One run per budget, with the budget as the knob `knob`.
    PerBudget {
        /// The knob the budget sets.
        knob: &'static str,
    },
}

/// Knob values of one strategy, by key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(pub BTreeMap<String, KnobValue>);

impl Params {
    fn get(&self, key: &str) -> Result<&KnobValue> {
        self.0.get(key).ok_or_else(|| {
            EngineError::InvalidParameter(format!("the strategy has no parameter '{key}'"))
        })
    }

    fn wrong(key: &str, want: &str, got: &KnobValue) -> EngineError {
        EngineError::InvalidParameter(format!("parameter '{key}' should be {want}, not {got}"))
    }

    /// A whole-number knob, as a count.
    pub fn count(&self, key: &str) -> Result<usize> {
        match self.get(key)? {
            KnobValue::Int(v) if *v >= 0 => Ok(*v as usize),
            v => Err(Self::wrong(key, "a whole number", v)),
        }
    }

    /// A real-number knob.
    pub fn real(&self, key: &str) -> Result<f32> {
        match self.get(key)? {
            KnobValue::Float(v) => Ok(*v as f32),
            KnobValue::Int(v) => Ok(*v as f32),
            v => Err(Self::wrong(key, "a number", v)),
        }
    }

    /// A choice or text knob.
    pub fn text(&self, key: &str) -> Result<&str> {
        match self.get(key)? {
            KnobValue::Text(v) => Ok(v),
            v => Err(Self::wrong(key, "text", v)),
        }
    }

    /// An on/off knob.
    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key)? {
            KnobValue::Bool(v) => Ok(*v),
            v => Err(Self::wrong(key, "true or false", v)),
        }
    }
}

/// Everything the program knows about a strategy.
pub trait StrategyDef: Send + Sync + 'static {
    /// Name on the command line and in files (`beam`).
    fn name(&self) -> &'static str;

    /// Other names accepted on the command line.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// Title for the UI (`Beam search over steps`).
    fn title(&self) -> &'static str;

    /// One paragraph for people.
    fn summary(&self) -> &'static str;

    /// Whether it prompts for reasoning (System 2) rather than answering at once (System 1).
    fn reasoning(&self) -> bool {
        true
    }

    /// Its tunable parameters.
    fn knobs(&self) -> Vec<Knob>;

    /// How the lab sweeps it.
    fn lab_mode(&self) -> LabMode;

    /// How the lab sweeps it with these knob values (a scorer knob can change how a pool is
    /// judged); by default [`Self::lab_mode`].
    fn lab_mode_for(&self, _params: &Params) -> LabMode {
        self.lab_mode()
    }

    /// The knob values a common flag sets (`--samples 4`): by default the knobs declared with
    /// that role.
    fn for_role(&self, role: Role, value: usize) -> Vec<(&'static str, KnobValue)> {
        self.knobs()
            .iter()
            .filter(|k| k.role == Some(role))
            .map(|k| (k.key, KnobValue::from(value)))
            .collect()
    }

    /// Rules across knobs (each knob's own range is checked before this).
    fn check(&self, _params: &Params) -> Result<()> {
        Ok(())
    }

    /// Run it to completion (or cancellation) on `ctx`.
    fn run(&self, ctx: &mut Ctx, params: &Params) -> Result<()>;
}

/// Every registered strategy, in menu order.
pub struct Registry {
    defs: RwLock<Vec<Arc<dyn StrategyDef>>>,
}

impl Registry {
    /// All strategies, in menu order.
    pub fn all(&self) -> Vec<Arc<dyn StrategyDef>> {
        self.defs.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// The strategy called `name` (or one of its aliases).
    pub fn get(&self, name: &str) -> Option<Arc<dyn StrategyDef>> {
        self.all()
            .into_iter()
            .find(|d| d.name() == name || d.aliases().contains(&name))
    }

    /// The strategy called `name`, or an error listing the known ones.
    pub fn find(&self, name: &str) -> Result<Arc<dyn StrategyDef>> {
        self.get(name).ok_or_else(|| {
            EngineError::InvalidParameter(format!(
                "unknown strategy '{name}' (known: {})",
                self.names().join(", ")
            ))
        })
    }

    /// Names of all strategies, in menu order.
    pub fn names(&self) -> Vec<&'static str> {
        self.all().iter().map(|d| d.name()).collect()
    }

    /// Add a strategy. Refused when its name or an alias is taken, or a knob is malformed.
    pub fn register(&self, def: Arc<dyn StrategyDef>) -> Result<()> {
        let mut names = vec![def.name()];
        names.extend(def.aliases());
        let knobs = def.knobs();
        for (i, k) in knobs.iter().enumerate() {
            k.check(&k.default_value())?;
            if knobs[..i].iter().any(|o| o.key == k.key) {
                return Err(EngineError::InvalidParameter(format!(
                    "strategy '{}' declares knob '{}' twice",
                    def.name(),
                    k.key
                )));
            }
        }
        let mut defs = self
            .defs
            .write()
            .map_err(|_| EngineError::Failed("the strategy registry is poisoned".into()))?;
        if let Some(taken) = names.iter().find(|n| {
            defs.iter()
                .any(|d| d.name() == **n || d.aliases().contains(n))
        }) {
            return Err(EngineError::InvalidParameter(format!(
                "a strategy called '{taken}' is already registered"
            )));
        }
        defs.push(def);
        Ok(())
    }
}

/// The process-wide registry, holding the built-in strategies from the start.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        defs: RwLock::new(super::builtin()),
    })
}

/// Add a strategy to the process-wide registry (see [`Registry::register`]).
pub fn register(def: Arc<dyn StrategyDef>) -> Result<()> {
    registry().register(def)
}
