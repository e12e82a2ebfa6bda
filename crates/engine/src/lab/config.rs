//! What a sweep runs: strategies, budgets, problems and sampling settings, and how each strategy
//! is swept (the registry's [`LabMode`]).
//!
//! A strategy is named as on the command line, optionally with knob values after colons:
//! `beam:scorer=progress`, `best-of-n:scorer=self-verify`. Each such spec is its own curve, and
//! its records are keyed by the registry name with the values it sets.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::problems::ProblemSet;
use super::{LabError, Result};
use crate::strategy::{KnobValue, LabMode, RunConfig, Strategy};

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

/// A strategy of a sweep: a registry strategy with some knobs set, and how the lab sweeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct LabStrategy {
    /// The spec as the user wrote it (`greedy`, `beam:scorer=progress`).
    pub label: String,
    /// The registry name and the knobs it sets, sorted (`system1`, `beam:scorer=progress`):
    /// the key of its records.
    pub key: String,
    /// The strategy with those knobs.
    pub strategy: Strategy,
    /// How the lab sweeps it.
    pub mode: SweepMode,
}

/// Parse a strategy spec: a registry name or alias, then `:key=value` for each knob to set. The
/// knob a per-budget strategy's budget sets cannot be set.
pub fn lab_strategy(spec: &str) -> Result<LabStrategy> {
    let mut parts = spec.trim().split(':');
    let name = parts.next().unwrap_or_default().trim();
    let mut strategy = Strategy::named(name)?;
    let mut set: Vec<(String, String)> = Vec::new();
    for part in parts {
        let Some((k, v)) = part.split_once('=') else {
            return Err(LabError::InvalidConfig(format!(
                "'{spec}': '{part}' is not KEY=VALUE (write name:key=value)"
            )));
        };
        let (k, v) = (k.trim(), v.trim());
        strategy.set_text(k, v)?;
        set.retain(|(key, _)| key != k);
        set.push((k.to_owned(), v.to_owned()));
    }
    strategy.validate()?;
    let def = strategy.def()?;
    let mode = def.lab_mode_for(strategy.params());
    if let SweepMode::PerBudget { knob } = mode {
        if set.iter().any(|(k, _)| k == knob) {
            return Err(LabError::InvalidConfig(format!(
                "'{spec}': the budget N sets {knob}; it cannot be set here"
            )));
        }
    }
    set.sort();
    let mut key = strategy.name().to_owned();
    for (k, _) in &set {
        let value = strategy
            .params()
            .0
            .get(k)
            .map(ToString::to_string)
            .unwrap_or_default();
        key.push_str(&format!(":{k}={value}"));
    }
    Ok(LabStrategy {
        label: spec.trim().to_owned(),
        key,
        strategy,
        mode,
    })
}

/// How a spec is swept, and its record key.
pub fn sweep_mode(spec: &str) -> Result<(SweepMode, String)> {
    let s = lab_strategy(spec)?;
    Ok((s.mode, s.key))
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
pub(super) fn run_budgets(s: &LabStrategy, max_n: usize) -> Vec<usize> {
    match s.mode {
        SweepMode::Single => vec![1],
        SweepMode::Pool { .. } => vec![max_n],
        SweepMode::PerBudget { knob } => budgets(max_n)
            .into_iter()
            .filter(|&n| {
                let mut st = s.strategy.clone();
                st.set(knob, KnobValue::Int(n as i64)).is_ok() && st.validate().is_ok()
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
            let ls = lab_strategy(s)?;
            if !seen.insert(ls.key.clone()) {
                return bad(format!("strategy '{s}' is listed twice"));
            }
            if run_budgets(&ls, self.max_n).is_empty() {
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
        self.run_config("x", &lab_strategy("system1")?, 1, 0)?
            .validate()?;
        Ok(())
    }

    /// The sweep's strategies, parsed.
    pub fn lab_strategies(&self) -> Result<Vec<LabStrategy>> {
        self.strategies.iter().map(|s| lab_strategy(s)).collect()
    }

    /// Whether some pool strategy judges by the verifier, so that every pool sample is verified.
    pub fn needs_verifier(&self) -> bool {
        self.strategies.iter().any(|s| {
            lab_strategy(s)
                .is_ok_and(|ls| matches!(ls.mode, SweepMode::Pool { rule } if rule.uses_verifier()))
        })
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
        let mut key = format!(
            "model={model_name} max_n={} max_tokens={} temperature={} top_p={} seed={}{thinking}",
            self.max_n, self.max_tokens, self.temperature, self.top_p, self.seed
        );
        // Verified pools cost more than plain ones; older keys stay as they were.
        if self.needs_verifier() {
            key.push_str(" verify=1");
        }
        key
    }

    pub(super) fn run_config(
        &self,
        question: &str,
        ls: &LabStrategy,
        n: usize,
        seed: u64,
    ) -> Result<RunConfig> {
        let strategy = match ls.mode {
            // Every pool strategy judges the same samples: self-consistency's reasoning traces,
            // each verified when a pool rule needs the verifier.
            SweepMode::Pool { .. } => {
                let mut s = Strategy::named(POOL_SAMPLER)?;
                s.set("n", KnobValue::Int(n as i64))?;
                if self.needs_verifier() {
                    s.set("verify", KnobValue::Bool(true))?;
                }
                s
            }
            SweepMode::Single => ls.strategy.clone(),
            SweepMode::PerBudget { knob } => {
                let mut s = ls.strategy.clone();
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
            for spec in ["greedy", "best-of-n"] {
                let ls = lab_strategy(spec).expect("a lab strategy");
                let run = c.run_config("q", &ls, 2, 0).expect("config");
                assert_eq!(run.thinking, thinking);
            }
        }
    }
}
