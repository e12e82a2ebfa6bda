//! Sweeps: strategies × budgets × problems, one run per problem and strategy.
//!
//! Sampling strategies (self-consistency, best-of-N) are sampled once at the largest budget; the
//! figures for every smaller budget N come from the [`estimators`](super::estimators) over
//! random N-subsets of those samples, and their costs are derived in proportion to the tokens N
//! samples take (prompt + N × mean sample tokens), not measured. Single-answer strategies
//! (greedy, chain of thought, budget forcing) run once and give the same figure at every N.
//! Search strategies whose width cannot be subsampled (beam, MCTS, entropy branching) run once
//! per budget, with costs measured.
//!
//! Each finished (problem, strategy) pair is appended to a JSONL results file at once; a sweep
//! started on the same file skips the pairs already there, so an interrupted sweep resumes
//! without losing finished problems.
//!
//! This module drives a sweep; the settings (`config.rs`), the results file (`records.rs`), the
//! figures (`summary.rs`) and their CSV and table (`output.rs`) live beside it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::problems::Problem;
use super::{fnv64, LabError, Result};
use crate::cost::CostSnapshot;
use crate::events::{Event, RunId, RunOutcome};
use crate::service::SequenceService;
use crate::strategy::RunConfig;
use crate::tree::{NodeId, NodeKind, Tree};
use crate::view::{run_to_end, Watch};
use crate::worker::{Worker, WorkerOptions};
use crate::Model;

pub use super::config::*;
pub use super::output::*;
pub use super::records::*;
pub use super::summary::*;

/// Progress reports, for a progress bar.
#[derive(Clone, Debug)]
pub enum SweepProgress {
    /// The sweep began: `done` of `total` pairs were already in the results file.
    Started {
        /// (problem, strategy) pairs in the sweep.
        total: usize,
        /// Pairs already finished.
        done: usize,
        /// Records in the file made with other settings or for other problems.
        ignored: usize,
    },
    /// A (problem, strategy) pair began.
    PairStarted {
        /// Problem index.
        problem: usize,
        /// Problem id.
        problem_id: String,
        /// Strategy as the user named it.
        strategy: String,
    },
    /// An engine event of the run in progress (to draw its tree live).
    Engine(Box<Event>),
    /// A pair's run failed (a strategy that panicked, say): nothing of it is written, so a
    /// rerun tries it again, and the sweep goes on with the next pair.
    PairFailed {
        /// What failed and why.
        failure: PairFailure,
        /// Pairs finished or failed so far.
        done: usize,
        /// Pairs in the sweep.
        total: usize,
    },
    /// A pair finished and was written to the results file.
    PairFinished {
        /// Its record.
        record: Box<ProblemRecord>,
        /// Pairs finished so far.
        done: usize,
        /// Pairs in the sweep.
        total: usize,
    },
}

/// What a sweep returns.
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    /// Every finished record of this sweep (resumed and new), in problem × strategy order.
    pub records: Vec<ProblemRecord>,
    /// False when cancelled before the end.
    pub completed: bool,
    /// Pairs taken from the results file instead of being run.
    pub resumed: usize,
    /// Records in the file that belong to other settings or problems.
    pub ignored: usize,
    /// Pairs whose run failed; the sweep went on without them.
    pub failed: Vec<PairFailure>,
}

/// A (problem, strategy) pair whose run failed.
#[derive(Clone, Debug, PartialEq)]
pub struct PairFailure {
    /// Problem index.
    pub problem: usize,
    /// Problem id.
    pub problem_id: String,
    /// Strategy as the user named it.
    pub strategy: String,
    /// The run's error.
    pub message: String,
}

impl std::fmt::Display for PairFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on problem {}: {}",
            self.strategy, self.problem_id, self.message
        )
    }
}

/// Seed of a problem's runs: the sweep seed mixed with the problem, so that a problem gets the
/// same samples wherever it sits in a set.
pub(super) fn problem_seed(seed: u64, fingerprint: &str) -> u64 {
    let mut bytes = seed.to_le_bytes().to_vec();
    bytes.extend_from_slice(fingerprint.as_bytes());
    fnv64(&bytes)
}

/// What a sweep runs on: a fresh worker for every run, over a local model or a service.
pub struct SweepEngine {
    model_name: String,
    make: Box<dyn Fn() -> crate::Result<Worker> + Send + Sync>,
}

impl SweepEngine {
    /// Runs on a local model, each with a fresh engine: no prefix cached by an earlier run
    /// changes what a run computes, so a resumed sweep reproduces an uninterrupted one and every
    /// run's cost is measured cold.
    pub fn local(model: Arc<Model>) -> Self {
        Self {
            model_name: model.info.name.clone(),
            make: Box::new(move || {
                Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {}))
            }),
        }
    }

    /// Runs on a sequence service (a remote server, say), each with a fresh worker over it.
    pub fn service(service: Arc<dyn SequenceService>) -> Self {
        Self {
            model_name: service.info().model.clone(),
            make: Box::new(move || {
                Worker::with_service(service.clone(), WorkerOptions::default(), Arc::new(|| {}))
            }),
        }
    }

    /// The model's name, part of every record's settings.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }
}

/// Run a sweep, appending each finished pair to `results` and skipping pairs already there.
/// Cancelling (setting `cancel`) stops the run in progress within a forward pass and returns
/// with `completed: false`; what was finished stays in the file.
pub fn run_sweep(
    engine: &SweepEngine,
    config: &SweepConfig,
    results: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(SweepProgress),
) -> Result<SweepOutcome> {
    config.validate()?;
    let settings = config.settings_key(engine.model_name());
    let strategies = config.lab_strategies()?;
    let problems = &config.problems.problems;

    // What the file already holds for these settings and problems.
    let existing = read_results(results)?;
    let file_records = existing.len();
    let mut done: HashMap<(usize, String, String), ProblemRecord> = HashMap::new();
    for r in existing {
        let ours = r.settings == settings
            && problems
                .get(r.problem)
                .is_some_and(|p| p.fingerprint() == r.fingerprint)
            && strategies.iter().any(|s| s.key == r.strategy);
        if ours {
            done.entry((r.problem, r.fingerprint.clone(), r.strategy.clone()))
                .or_insert(r);
        }
    }
    let total = problems.len() * strategies.len();
    let resumed = done.len();
    let ignored = file_records - resumed;
    progress(SweepProgress::Started {
        total,
        done: resumed,
        ignored,
    });

    let mut writer = ResultsWriter::open(results)?;
    let mut next_run = RunId(1);
    let mut finished = resumed;
    let mut records = Vec::with_capacity(total);
    let mut failed = Vec::new();
    for (index, problem) in problems.iter().enumerate() {
        let fingerprint = problem.fingerprint();
        let seed = problem_seed(config.seed, &fingerprint);
        'pairs: for ls in &strategies {
            let (label, mode, canonical) = (&ls.label, &ls.mode, &ls.key);
            let key = (index, fingerprint.clone(), canonical.clone());
            if let Some(r) = done.get(&key) {
                records.push(r.clone());
                continue;
            }
            if cancel.load(Ordering::Relaxed) {
                return Ok(SweepOutcome {
                    records,
                    completed: false,
                    resumed,
                    ignored,
                    failed,
                });
            }
            progress(SweepProgress::PairStarted {
                problem: index,
                problem_id: problem.id.clone(),
                strategy: label.clone(),
            });
            // Pool strategies draw the same samples: reuse another one's pool on this problem.
            let pool = matches!(mode, SweepMode::Pool { .. })
                .then(|| {
                    strategies.iter().find_map(|o| {
                        let k = (index, fingerprint.clone(), o.key.clone());
                        done.get(&k).filter(|_| {
                            matches!(o.mode, SweepMode::Pool { .. }) && o.key != *canonical
                        })
                    })
                })
                .flatten();
            let record = if let Some(other) = pool {
                ProblemRecord {
                    strategy: canonical.clone(),
                    shared_from: Some(other.strategy.clone()),
                    ..other.clone()
                }
            } else {
                let ns = run_budgets(ls, config.max_n);
                let mut runs = Vec::with_capacity(ns.len());
                for n in ns {
                    let run_config = config.run_config(&problem.question, ls, n, seed)?;
                    let run = next_run;
                    next_run.0 += 1;
                    let worker = (engine.make)()?;
                    let ran = match run_once(
                        &worker, run, run_config, cancel, progress, label, problem,
                    ) {
                        Err(LabError::RunFailed { message, .. }) => {
                            let failure = PairFailure {
                                problem: index,
                                problem_id: problem.id.clone(),
                                strategy: label.clone(),
                                message,
                            };
                            tracing::warn!("lab: {failure}");
                            finished += 1;
                            progress(SweepProgress::PairFailed {
                                failure: failure.clone(),
                                done: finished,
                                total,
                            });
                            failed.push(failure);
                            continue 'pairs;
                        }
                        other => other?,
                    };
                    let Some((tree, cost)) = ran else {
                        return Ok(SweepOutcome {
                            records,
                            completed: false,
                            resumed,
                            ignored,
                            failed,
                        });
                    };
                    runs.push(run_record(&tree, &cost, *mode, n, problem));
                }
                ProblemRecord {
                    settings: settings.clone(),
                    problem: index,
                    problem_id: problem.id.clone(),
                    fingerprint: fingerprint.clone(),
                    strategy: canonical.clone(),
                    expected: problem.answer.clone(),
                    runs,
                    shared_from: None,
                }
            };
            writer.append(&record)?;
            finished += 1;
            done.insert(key, record.clone());
            progress(SweepProgress::PairFinished {
                record: Box::new(record.clone()),
                done: finished,
                total,
            });
            records.push(record);
        }
    }
    Ok(SweepOutcome {
        records,
        completed: true,
        resumed,
        ignored,
        failed,
    })
}

/// Run one strategy run to its end. `None` when the sweep was cancelled.
fn run_once(
    worker: &Worker,
    run: RunId,
    config: RunConfig,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(SweepProgress),
    label: &str,
    problem: &Problem,
) -> Result<Option<(Tree, CostSnapshot)>> {
    let watch = Watch {
        cancel: Some(cancel),
        idle_timeout: None,
    };
    let view = run_to_end(worker, run, config, watch, |_, event| {
        progress(SweepProgress::Engine(Box::new(event.clone())))
    })?;
    match view.outcome {
        Some(RunOutcome::Completed) => Ok(Some((view.tree, view.cost))),
        Some(RunOutcome::Cancelled) | None => Ok(None),
        Some(RunOutcome::Failed) => Err(LabError::RunFailed {
            strategy: label.to_owned(),
            problem: problem.id.clone(),
            message: view.error_line(),
        }),
    }
}

/// The end of a sample's chain of nodes (sample → answer cue → answer), skipping evaluations.
fn chain_end(tree: &Tree, mut node: NodeId) -> NodeId {
    while let Some(&next) = tree.nodes[node]
        .children
        .iter()
        .rev()
        .find(|&&c| tree.nodes[c].kind != NodeKind::Evaluation)
    {
        node = next;
    }
    node
}

/// Tokens of a sample's subtree, its verifier questions left out.
fn subtree_tokens(tree: &Tree, node: NodeId) -> u64 {
    let n = &tree.nodes[node];
    if n.kind == NodeKind::Evaluation {
        return 0;
    }
    n.tokens.len() as u64
        + n.children
            .iter()
            .map(|&c| subtree_tokens(tree, c))
            .sum::<u64>()
}

fn sample(
    tree: &Tree,
    leaf: NodeId,
    tokens: u64,
    problem: &Problem,
    verified: bool,
) -> SampleRecord {
    let node = &tree.nodes[leaf];
    SampleRecord {
        answer: node.answer.clone(),
        correct: node.answer.as_deref().is_some_and(|a| problem.check(a)),
        mean_logprob: node.scores.mean_logprob,
        tokens,
        // A verified pool's leaves hold the verifier's P(yes) as their value.
        verifier: node.scores.value.filter(|_| verified),
    }
}

fn run_record(
    tree: &Tree,
    cost: &CostSnapshot,
    mode: SweepMode,
    n: usize,
    problem: &Problem,
) -> RunRecord {
    let samples = match mode {
        // The root's children are the samples; each is a chain ending in its answer.
        SweepMode::Pool { .. } => tree.root().map_or_else(Vec::new, |root| {
            let verified = cost.verify_tokens > 0;
            root.children
                .iter()
                .map(|&c| {
                    let end = chain_end(tree, c);
                    sample(tree, end, subtree_tokens(tree, c), problem, verified)
                })
                .collect()
        }),
        SweepMode::Single => tree
            .chosen
            .map(|c| sample(tree, c, cost.generated_tokens, problem, false))
            .into_iter()
            .collect(),
        SweepMode::PerBudget { .. } => tree
            .leaves()
            .filter(|l| l.id != NodeId(0) && l.answer.is_some() && l.kind != NodeKind::Evaluation)
            .map(|l| sample(tree, l.id, 0, problem, false))
            .collect(),
    };
    RunRecord {
        n,
        answer: tree.answer.clone(),
        correct: tree.answer.as_deref().is_some_and(|a| problem.check(a)),
        samples,
        cost: RunCost::from(cost),
    }
}
