//! What a sweep runs: strategies, budgets, problems and sampling settings, and how each strategy
//! is swept (the registry's [`LabMode`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::problems::ProblemSet;
use super::{LabError, Result};
use crate::strategy::{registry, KnobValue, LabMode, RunConfig, Strategy};

/// The strategy whose samples every pool strategy of a sweep judges.
pub(crate) const POOL_SAMPLER: &str = "self-consistency";

/// Largest budget a sweep may sample at (the sampling strategies' limit).
pub const MAX_BUDGET: usize = 64;

/// What a sweep runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepConfig {
    /// Strategy names as the user wrote them (`greedy`, `self-consistency`, `best-of-n`, ...).
    pub strategies: Vec<String>,
    /// Largest budget N; the budgets are 1, 2, 4, … up to it.
    pub max_n: usize,
    /// The problems.
    pub problems: ProblemSet,
    /// Seed of every run (mixed with each problem's fingerprint) and of the resampling.
    pub seed: u64,
    /// Most tokens one sample may generate.
    pub max_tokens: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus threshold.
    pub top_p: f32,
    /// Thinking on or off for a thinking model whose template has the switch; `None` keeps
    /// the template's default (see [`RunConfig::thinking`]).
    pub thinking: Option<bool>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            strategies: vec!["greedy".into(), "self-consistency".into()],
            max_n: 8,
            problems: ProblemSet {
                name: String::new(),
                problems: Vec::new(),
            },
            seed: 0,
            max_tokens: 128,
            temperature: 0.7,
            top_p: 0.95,
            thinking: None,
        }
    }
}

/// How a strategy is swept: the registry's [`LabMode`].
pub type SweepMode = LabMode;

/// How `name` is swept, and its registry name.
pub fn sweep_mode(name: &str) -> Result<(SweepMode, &'static str)> {
    let def = registry().find(name)?;
    Ok((def.lab_mode(), def.name()))
}

/// The budgets of a sweep: powers of two below `max_n`, then `max_n`.
pub fn budgets(max_n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut n = 1;
    while n < max_n {
        out.push(n);
        n *= 2;
    }
    if max_n > 0 {
        out.push(max_n);
    }
    out
}

/// The budgets a strategy is run at: once at 1 (single), once at `max_n` (pool), or at every
/// budget its width accepts (per budget; entropy branching, say, needs at least 2 branches).
pub(super) fn run_budgets(mode: SweepMode, canonical: &str, max_n: usize) -> Vec<usize> {
    match mode {
        SweepMode::Single => vec![1],
        SweepMode::Pool { .. } => vec![max_n],
        SweepMode::PerBudget { knob } => budgets(max_n)
            .into_iter()
            .filter(|&n| {
                Strategy::named(canonical)
                    .and_then(|mut s| s.set(knob, KnobValue::Int(n as i64)))
                    .is_ok()
            })
            .collect(),
    }
}

impl SweepConfig {
    /// Reject settings that make no sense, naming them.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LabError::InvalidConfig(m));
        if self.strategies.is_empty() {
            return bad("no strategies given".into());
        }
        if self.max_n == 0 || self.max_n > MAX_BUDGET {
            return bad(format!("max N {} is outside [1, {MAX_BUDGET}]", self.max_n));
        }
        let mut seen = BTreeSet::new();
        for s in &self.strategies {
            let (mode, canonical) = sweep_mode(s)?;
            if !seen.insert(canonical) {
                return bad(format!("strategy '{s}' is listed twice"));
            }
            if run_budgets(mode, canonical, self.max_n).is_empty() {
                return bad(format!(
                    "{s} accepts none of the budgets up to max N {}",
                    self.max_n
                ));
            }
        }
        if self.problems.problems.is_empty() {
            return bad("the problem set is empty".into());
        }
        // The engine checks the rest of a run's settings; check them once here, not per run.
        self.run_config("x", SweepMode::Single, "system1", 1, 0)?
            .validate()?;
        Ok(())
    }

    /// The settings a result depends on, written into every record: a resumed sweep only reuses
    /// records made with the same ones.
    pub fn settings_key(&self, model_name: &str) -> String {
        // Thinking is named only when set, so records made before the switch still resume.
        let thinking = match self.thinking {
            None => "",
            Some(true) => " thinking=on",
            Some(false) => " thinking=off",
        };
        format!(
            "model={model_name} max_n={} max_tokens={} temperature={} top_p={} seed={}{thinking}",
            self.max_n, self.max_tokens, self.temperature, self.top_p, self.seed
        )
    }

    pub(super) fn run_config(
        &self,
        question: &str,
        mode: SweepMode,
        canonical: &str,
        n: usize,
        seed: u64,
    ) -> Result<RunConfig> {
        let strategy = match mode {
            // Every pool strategy judges the same samples: self-consistency's reasoning traces.
            SweepMode::Pool { .. } => {
                let mut s = Strategy::named(POOL_SAMPLER)?;
                s.set("n", KnobValue::Int(n as i64))?;
                s
            }
            SweepMode::Single => Strategy::named(canonical)?,
            SweepMode::PerBudget { knob } => {
                let mut s = Strategy::named(canonical)?;
                s.set(knob, KnobValue::Int(n as i64))?;
                s
            }
        };
        let mut c = RunConfig::new(question, strategy);
        c.temperature = self.temperature;
        c.top_p = self.top_p;
        c.max_tokens = self.max_tokens;
        c.seed = seed;
        c.thinking = self.thinking;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_reaches_every_run_and_the_settings_key_only_when_set() {
        let mut c = SweepConfig::default();
        let before = c.settings_key("m");
        assert!(
            !before.contains("thinking"),
            "old records still resume: {before}"
        );
        for (thinking, key) in [(Some(false), "thinking=off"), (Some(true), "thinking=on")] {
            c.thinking = thinking;
            assert!(c.settings_key("m").ends_with(key));
            assert_ne!(
                c.settings_key("m"),
                before,
                "records of another setting are not reused"
            );
            for (mode, name) in [
                (SweepMode::Single, "greedy"),
                (
                    SweepMode::Pool {
                        rule: crate::strategy::PoolRule::MostConfident,
                    },
                    "best-of-n",
                ),
            ] {
                let run = c.run_config("q", mode, name, 2, 0).expect("config");
                assert_eq!(run.thinking, thinking);
            }
        }
    }
}
