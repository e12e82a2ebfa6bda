//! Turning records into one point per strategy and budget: pass@N, maj@N and best-of-N from the
//! estimators, with costs measured at the largest N and derived below it.

use serde::{Deserialize, Serialize};

use super::config::{budgets, sweep_mode, SweepConfig, SweepMode};
use super::estimators::{best_of_k, maj_at_k, pass_at_k, SampleOutcome};
use super::records::{ProblemRecord, RunRecord, SampleRecord};
use super::sweep::problem_seed;
use crate::strategy::PoolRule;

/// One row of a sweep's results: a strategy at a budget, averaged over the problems.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Strategy as the user named it.
    pub strategy: String,
    /// Budget N.
    pub n: usize,
    /// Problems averaged over.
    pub problems: usize,
    /// The strategy's own accuracy: maj@N for self-consistency, best-of-N for best-of-n, the
    /// chosen answer for the rest.
    pub accuracy: f64,
    /// pass@N: at least one of N samples right (an oracle's pick).
    pub accuracy_pass: f64,
    /// maj@N: a majority vote over N samples.
    pub accuracy_maj: f64,
    /// Best-of-N by the model's own confidence (mean log-probability).
    pub accuracy_best_of_n: f64,
    /// Tokens the model computed per problem (prompt + generated).
    pub tokens: f64,
    /// Wall seconds per problem.
    pub wall_secs: f64,
    /// Joules per problem.
    pub energy_joules: f64,
    /// Tokens over all problems.
    pub tokens_total: f64,
    /// Wall seconds over all problems.
    pub wall_secs_total: f64,
    /// Joules over all problems.
    pub energy_joules_total: f64,
    /// Whether every energy figure came from a hardware counter.
    pub energy_measured: bool,
    /// True when the costs are derived from a larger run (N smaller than the pool), not measured.
    pub cost_derived: bool,
}

/// Per-problem figures at one budget.
struct Figures {
    accuracy: f64,
    pass: f64,
    maj: f64,
    best: f64,
    tokens: f64,
    wall_secs: f64,
    energy_joules: f64,
    energy_measured: bool,
    derived: bool,
}

fn figures(record: &ProblemRecord, mode: SweepMode, n: usize, seed: u64) -> Option<Figures> {
    let measured = |run: &RunRecord, pass: f64, maj: f64, best: f64| Figures {
        accuracy: f64::from(u8::from(run.correct)),
        pass,
        maj,
        best,
        tokens: run.cost.tokens() as f64,
        wall_secs: run.cost.wall_secs,
        energy_joules: run.cost.energy_joules,
        energy_measured: run.cost.energy_measured,
        derived: false,
    };
    match mode {
        SweepMode::Single => {
            let run = record.runs.first()?;
            let c = f64::from(u8::from(run.correct));
            Some(measured(run, c, c, c))
        }
        SweepMode::PerBudget { .. } => {
            let run = record.runs.iter().find(|r| r.n == n)?;
            let outcomes: Vec<SampleOutcome> =
                run.samples.iter().map(SampleRecord::outcome).collect();
            let m = outcomes.len();
            let c = outcomes.iter().filter(|s| s.correct).count();
            Some(measured(
                run,
                pass_at_k(m, c, m),
                maj_at_k(&outcomes, m, seed),
                best_of_k(&outcomes, m),
            ))
        }
        SweepMode::Pool { rule } => {
            let run = record.runs.first()?;
            let outcomes: Vec<SampleOutcome> =
                run.samples.iter().map(SampleRecord::outcome).collect();
            let m = outcomes.len();
            let k = n.min(m);
            let c = outcomes.iter().filter(|s| s.correct).count();
            let maj = maj_at_k(&outcomes, k, seed);
            let best = best_of_k(&outcomes, k);
            // Cost of k samples: the shared prompt plus k of the m samples' generated tokens.
            let total = run.cost.tokens() as f64;
            let tokens = if m == 0 {
                total
            } else {
                run.cost.prompt_tokens as f64
                    + run.cost.generated_tokens as f64 * k as f64 / m as f64
            };
            let share = if total > 0.0 { tokens / total } else { 1.0 };
            Some(Figures {
                accuracy: match rule {
                    PoolRule::MostConfident => best,
                    PoolRule::Majority => maj,
                },
                pass: pass_at_k(m, c, k),
                maj,
                best,
                tokens,
                wall_secs: run.cost.wall_secs * share,
                energy_joules: run.cost.energy_joules * share,
                energy_measured: run.cost.energy_measured,
                derived: k < m,
            })
        }
    }
}

/// Average the records into one point per strategy and budget, in the config's order.
/// Records of strategies or settings not in `config` are left out.
pub fn summarize(config: &SweepConfig, records: &[ProblemRecord]) -> Vec<SweepPoint> {
    let mut points = Vec::new();
    for label in &config.strategies {
        let Ok((mode, canonical)) = sweep_mode(label) else {
            continue;
        };
        let mine: Vec<&ProblemRecord> =
            records.iter().filter(|r| r.strategy == canonical).collect();
        for n in budgets(config.max_n) {
            let rows: Vec<Figures> = mine
                .iter()
                .filter_map(|r| figures(r, mode, n, problem_seed(config.seed, &r.fingerprint)))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let count = rows.len() as f64;
            let sum = |f: fn(&Figures) -> f64| rows.iter().map(f).sum::<f64>();
            points.push(SweepPoint {
                strategy: label.clone(),
                n,
                problems: rows.len(),
                accuracy: sum(|f| f.accuracy) / count,
                accuracy_pass: sum(|f| f.pass) / count,
                accuracy_maj: sum(|f| f.maj) / count,
                accuracy_best_of_n: sum(|f| f.best) / count,
                tokens: sum(|f| f.tokens) / count,
                wall_secs: sum(|f| f.wall_secs) / count,
                energy_joules: sum(|f| f.energy_joules) / count,
                tokens_total: sum(|f| f.tokens),
                wall_secs_total: sum(|f| f.wall_secs),
                energy_joules_total: sum(|f| f.energy_joules),
                energy_measured: rows.iter().all(|f| f.energy_measured),
                cost_derived: rows.iter().any(|f| f.derived),
            });
        }
    }
    points
}
