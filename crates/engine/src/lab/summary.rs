//! Turning records into one point per strategy and budget: pass@N, maj@N, best-of-N by confidence
//! and by the verifier, and the verifier-weighted vote from the estimators, with costs measured at
//! the largest N and derived below it; the same per difficulty level; and where each curve stops
//! rising (the wall).

use serde::{Deserialize, Serialize};

use super::config::{budgets, lab_strategy, SweepConfig, SweepMode};
use super::estimators::{
    best_of_k, maj_at_k, pass_at_k, verifier_best_of_k, weighted_maj_at_k, SampleOutcome,
};
use super::records::{ProblemRecord, RunRecord, SampleRecord};
use super::sweep::problem_seed;
use crate::strategy::PoolRule;

/// One figure of a sweep point (pass@N, maj@N, …), where it has one.
type Figure = dyn Fn(&SweepPoint) -> Option<f64>;
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
    /// Verifier-weighted maj@N (Snell et al.'s weighted best-of-N), when the samples were
    /// verified.
    #[serde(default)]
    pub accuracy_weighted_maj: Option<f64>,
    /// Best-of-N by the self-verifier's P(yes), when the samples were verified.
    #[serde(default)]
    pub accuracy_verifier: Option<f64>,
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
    /// Joules per correct answer: all the energy over the expected number of right answers
    /// (`None` when none was right).
    #[serde(default)]
    pub energy_per_correct: Option<f64>,
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
    weighted: Option<f64>,
    verifier: Option<f64>,
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
        weighted: None,
        verifier: None,
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
            let verified = m > 0 && outcomes.iter().all(|s| s.verifier.is_some());
            let weighted = verified.then(|| weighted_maj_at_k(&outcomes, k, seed));
            let verifier = verified.then(|| verifier_best_of_k(&outcomes, k));
            // Cost of k samples: the shared prompt plus k of the m samples' generated tokens,
            // and k of the m verifier questions when the rule reads the verifier.
            let total = run.cost.tokens() as f64;
            let verify = run.cost.verify_tokens.min(run.cost.prompt_tokens) as f64;
            let charged = if rule.uses_verifier() { verify } else { 0.0 };
            let tokens = if m == 0 {
                total
            } else {
                run.cost.prompt_tokens as f64 - verify
                    + (run.cost.generated_tokens as f64 + charged) * k as f64 / m as f64
            };
            let share = if total > 0.0 { tokens / total } else { 1.0 };
            Some(Figures {
                accuracy: match rule {
                    PoolRule::MostConfident => best,
                    PoolRule::Majority => maj,
                    PoolRule::Verifier => verifier.unwrap_or(0.0),
                    PoolRule::WeightedMajority => weighted.unwrap_or(0.0),
                },
                pass: pass_at_k(m, c, k),
                maj,
                best,
                weighted,
                verifier,
                tokens,
                wall_secs: run.cost.wall_secs * share,
                energy_joules: run.cost.energy_joules * share,
                energy_measured: run.cost.energy_measured,
                derived: k < m || (verify > 0.0 && !rule.uses_verifier()),
            })
        }
    }
}

/// Average the records into one point per strategy and budget, in the config's order.
/// Records of strategies or settings not in `config` are left out.
pub fn summarize(config: &SweepConfig, records: &[ProblemRecord]) -> Vec<SweepPoint> {
    summarize_problems(config, records, |_| true)
}

/// [`summarize`] over the problems `keep` accepts (by index in the set).
pub fn summarize_problems(
    config: &SweepConfig,
    records: &[ProblemRecord],
    keep: impl Fn(usize) -> bool,
) -> Vec<SweepPoint> {
    let mut points = Vec::new();
    for label in &config.strategies {
        let Ok(ls) = lab_strategy(label) else {
            continue;
        };
        let mode = ls.mode;
        let mine: Vec<&ProblemRecord> = records
            .iter()
            .filter(|r| r.strategy == ls.key && keep(r.problem))
            .collect();
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
            let mean_opt = |f: fn(&Figures) -> Option<f64>| {
                let v: Option<Vec<f64>> = rows.iter().map(f).collect();
                v.map(|v| v.iter().sum::<f64>() / count)
            };
            let right = sum(|f| f.accuracy);
            points.push(SweepPoint {
                strategy: label.clone(),
                n,
                problems: rows.len(),
                accuracy: sum(|f| f.accuracy) / count,
                accuracy_pass: sum(|f| f.pass) / count,
                accuracy_maj: sum(|f| f.maj) / count,
                accuracy_best_of_n: sum(|f| f.best) / count,
                accuracy_weighted_maj: mean_opt(|f| f.weighted),
                accuracy_verifier: mean_opt(|f| f.verifier),
                tokens: sum(|f| f.tokens) / count,
                wall_secs: sum(|f| f.wall_secs) / count,
                energy_joules: sum(|f| f.energy_joules) / count,
                tokens_total: sum(|f| f.tokens),
                wall_secs_total: sum(|f| f.wall_secs),
                energy_joules_total: sum(|f| f.energy_joules),
                energy_per_correct: (right > 0.0).then(|| sum(|f| f.energy_joules) / right),
                energy_measured: rows.iter().all(|f| f.energy_measured),
                cost_derived: rows.iter().any(|f| f.derived),
            });
        }
    }
    points
}

/// What a difficulty level is measured by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifficultyBasis {
    /// The share of a problem's pool samples that are right (pass@1), as Snell et al. (2024) bin
    /// by the base model's pass@1.
    PassAt1,
    /// Whether the greedy (System 1) answer is right: two levels.
    Greedy,
}

/// A difficulty level: problems of similar success, easiest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DifficultyBin {
    /// 1 for the easiest.
    pub level: usize,
    /// How success was measured.
    pub basis: DifficultyBasis,
    /// Lowest success in the level.
    pub lo: f64,
    /// Highest success in the level.
    pub hi: f64,
    /// Problem indices in the set.
    pub problems: Vec<usize>,
}

impl DifficultyBin {
    /// "level 2: pass@1 0.25–0.62, 8 problems".
    pub fn label(&self) -> String {
        let what = match self.basis {
            DifficultyBasis::PassAt1 => "pass@1",
            DifficultyBasis::Greedy => "greedy right",
        };
        let range = if (self.hi - self.lo).abs() < 1e-9 {
            format!("{:.2}", self.lo)
        } else {
            format!("{:.2}–{:.2}", self.lo, self.hi)
        };
        format!(
            "level {}: {what} {range}, {} problem{}",
            self.level,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )
    }
}

/// Bin the problems by difficulty: by pass@1 of the sweep's first pool strategy when it has one
/// (into about `bins` levels of equal size, as Snell et al. bin by quantile, except that problems
/// of equal pass@1 always share a level), otherwise by whether greedy was right. Empty when the
/// sweep has neither.
pub fn difficulty_bins(
    config: &SweepConfig,
    records: &[ProblemRecord],
    bins: usize,
) -> Vec<DifficultyBin> {
    let strategies = config.lab_strategies().unwrap_or_default();
    let pool = strategies
        .iter()
        .find(|s| matches!(s.mode, SweepMode::Pool { .. }));
    let (basis, key, bins) = match pool {
        Some(p) => (DifficultyBasis::PassAt1, p.key.clone(), bins.max(1)),
        None => match strategies.iter().find(|s| s.key == "system1") {
            Some(g) => (DifficultyBasis::Greedy, g.key.clone(), 2),
            None => return Vec::new(),
        },
    };
    let mut scored: Vec<(usize, f64)> = records
        .iter()
        .filter(|r| r.strategy == key)
        .filter_map(|r| {
            let run = r.runs.first()?;
            let success = match basis {
                DifficultyBasis::PassAt1 if !run.samples.is_empty() => {
                    run.samples.iter().filter(|s| s.correct).count() as f64
                        / run.samples.len() as f64
                }
                DifficultyBasis::PassAt1 => return None,
                DifficultyBasis::Greedy => f64::from(u8::from(run.correct)),
            };
            Some((r.problem, success))
        })
        .collect();
    // Easiest first; a level closes once it is full and the next problem is harder.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let target = scored.len().div_ceil(bins).max(1);
    let mut out: Vec<DifficultyBin> = Vec::new();
    let mut current: Vec<(usize, f64)> = Vec::new();
    for (i, &(p, x)) in scored.iter().enumerate() {
        current.push((p, x));
        let next_differs = scored.get(i + 1).is_none_or(|n| n.1 != x);
        let full = match basis {
            DifficultyBasis::Greedy => false,
            DifficultyBasis::PassAt1 => current.len() >= target,
        };
        if (full || i + 1 == scored.len() || basis == DifficultyBasis::Greedy) && next_differs {
            let hi = current.first().map_or(0.0, |c| c.1);
            let lo = current.last().map_or(0.0, |c| c.1);
            let mut problems: Vec<usize> = current.drain(..).map(|c| c.0).collect();
            problems.sort_unstable();
            out.push(DifficultyBin {
                level: out.len() + 1,
                basis,
                lo,
                hi,
                problems,
            });
        }
    }
    out
}

/// Where a curve stops paying: the smallest N from which every further doubling gains less than
/// `threshold` (accuracy points as a fraction).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Wall {
    /// The curve ("self-consistency", "pass@N (self-consistency)").
    pub curve: String,
    /// N at the wall, or `None` when the curve still gains at the largest N.
    pub n: Option<usize>,
    /// Accuracy there (or at the largest N).
    pub accuracy: f64,
    /// The largest gain of a doubling after the wall (or the last gain when there is none).
    pub gain_after: f64,
}

/// The wall of every curve that varies with N: each strategy's own accuracy, and the pool
/// figures (pass@N, maj@N, weighted maj@N, best-of-N by the verifier) of the first pool strategy.
pub fn walls(points: &[SweepPoint], threshold: f64) -> Vec<Wall> {
    let mut curves: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    let mut names: Vec<&str> = points.iter().map(|p| p.strategy.as_str()).collect();
    names.dedup();
    let mut pool_done = false;
    for name in names {
        let mut rows: Vec<&SweepPoint> = points.iter().filter(|p| p.strategy == name).collect();
        rows.sort_by_key(|p| p.n);
        let series = |f: &dyn Fn(&SweepPoint) -> Option<f64>| -> Option<Vec<(usize, f64)>> {
            rows.iter().map(|p| f(p).map(|a| (p.n, a))).collect()
        };
        let pooled = rows.iter().any(|p| p.cost_derived);
        if pooled && !pool_done {
            pool_done = true;
            let figures: [(&str, &Figure); 4] = [
                ("pass@N", &|p| Some(p.accuracy_pass)),
                ("maj@N", &|p| Some(p.accuracy_maj)),
                ("weighted maj@N", &|p| p.accuracy_weighted_maj),
                ("best-of-N by verifier", &|p| p.accuracy_verifier),
            ];
            for (fig, f) in figures {
                if let Some(s) = series(f) {
                    curves.push((fig.to_owned(), s));
                }
            }
        }
        if let Some(s) = series(&|p| Some(p.accuracy)) {
            let flat = s.windows(2).all(|w| w[0].1 == w[1].1);
            if s.len() > 1 && !flat {
                curves.push((name.to_owned(), s));
            }
        }
    }
    curves
        .into_iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(curve, s)| {
            let gains: Vec<f64> = s.windows(2).map(|w| w[1].1 - w[0].1).collect();
            // The first index from which every later gain is below the threshold.
            let from = (0..=gains.len()).find(|&i| gains[i..].iter().all(|g| *g < threshold));
            match from {
                Some(i) if i < gains.len() => Wall {
                    curve,
                    n: Some(s[i].0),
                    accuracy: s[i].1,
                    gain_after: gains[i..].iter().copied().fold(f64::NEG_INFINITY, f64::max),
                },
                _ => Wall {
                    curve,
                    n: None,
                    accuracy: s.last().map_or(0.0, |l| l.1),
                    gain_after: gains.last().copied().unwrap_or(0.0),
                },
            }
        })
        .collect()
}
