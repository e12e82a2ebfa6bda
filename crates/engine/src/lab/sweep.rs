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

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::estimators::{best_of_k, maj_at_k, pass_at_k, SampleOutcome};
use super::problems::{Problem, ProblemSet};
use super::{fnv64, LabError, Result};
use crate::cost::CostSnapshot;
use crate::events::{Event, RunId, RunOutcome};
use crate::strategy::{registry, KnobValue, LabMode, PoolRule, RunConfig, Strategy};
use crate::view::{run_to_end, Watch};

/// The strategy whose samples every pool strategy of a sweep judges.
const POOL_SAMPLER: &str = "self-consistency";
use crate::service::SequenceService;
use crate::tree::{NodeId, NodeKind, Tree};
use crate::worker::{Worker, WorkerOptions};
use crate::Model;

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
fn run_budgets(mode: SweepMode, canonical: &str, max_n: usize) -> Vec<usize> {
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
        format!(
            "model={model_name} max_n={} max_tokens={} temperature={} top_p={} seed={}",
            self.max_n, self.max_tokens, self.temperature, self.top_p, self.seed
        )
    }

    fn run_config(
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
        Ok(c)
    }
}

/// One sample of a run, as the results file keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// The extracted answer.
    pub answer: Option<String>,
    /// Whether the checker accepted it.
    pub correct: bool,
    /// Mean token log-probability of its path.
    pub mean_logprob: Option<f32>,
    /// Tokens generated or inserted in it.
    pub tokens: u64,
}

impl SampleRecord {
    fn outcome(&self) -> SampleOutcome {
        SampleOutcome {
            answer: self.answer.clone(),
            correct: self.correct,
            mean_logprob: self.mean_logprob,
        }
    }
}

/// Measured cost of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCost {
    /// Prompt tokens run through the model.
    pub prompt_tokens: u64,
    /// Tokens generated (and inserted) by the strategy.
    pub generated_tokens: u64,
    /// Tokens whose KV came from the cache.
    pub tokens_reused: u64,
    /// Wall time of the run.
    pub wall_secs: f64,
    /// Energy of its forward passes.
    pub energy_joules: f64,
    /// Whether the energy was read from a hardware counter.
    pub energy_measured: bool,
    /// Estimated floating-point operations.
    pub flops: f64,
}

impl RunCost {
    /// Tokens the model computed: prompt and generated.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.generated_tokens
    }
}

impl From<&CostSnapshot> for RunCost {
    fn from(c: &CostSnapshot) -> Self {
        Self {
            prompt_tokens: c.prompt_tokens_computed,
            generated_tokens: c.generated_tokens,
            tokens_reused: c.tokens_reused,
            wall_secs: c.wall_secs,
            energy_joules: c.energy_joules,
            energy_measured: c.energy_measured,
            flops: c.flops,
        }
    }
}

/// One run of a strategy on a problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The budget it ran at.
    pub n: usize,
    /// The strategy's chosen answer.
    pub answer: Option<String>,
    /// Whether the chosen answer is right.
    pub correct: bool,
    /// Its samples (pool runs: one per sample; search runs: the leaves that reached an answer;
    /// single runs: the chosen answer).
    pub samples: Vec<SampleRecord>,
    /// What it cost.
    pub cost: RunCost,
}

/// Everything a sweep keeps of one (problem, strategy) pair: one line of the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProblemRecord {
    /// [`SweepConfig::settings_key`] of the sweep that made it.
    pub settings: String,
    /// Index of the problem in its set.
    pub problem: usize,
    /// The problem's id.
    pub problem_id: String,
    /// [`Problem::fingerprint`].
    pub fingerprint: String,
    /// Registry name of the strategy.
    pub strategy: String,
    /// The known answer.
    pub expected: String,
    /// The runs: one, or one per budget.
    pub runs: Vec<RunRecord>,
    /// Set when the samples were copied from another strategy's pool on the same problem (both
    /// strategies draw the same samples; they differ only in how they pick the answer).
    #[serde(default)]
    pub shared_from: Option<String>,
}

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
}

/// Longest line a results file may have (a record of 64 samples is a few KiB).
pub const MAX_RESULT_LINE_BYTES: usize = 4 << 20;
/// Most records a results file may hold.
pub const MAX_RESULT_LINES: usize = 1 << 20;

/// Read a results file. A missing file is empty; a torn last line (from an interruption during
/// a write) is dropped; any other bad line is an error naming its number.
pub fn read_results(path: &Path) -> Result<Vec<ProblemRecord>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(path, e)),
    };
    parse_results(std::io::BufReader::new(file), path)
}

/// Parse results lines from `reader` (see [`read_results`]); `path` names it in messages.
/// Lines and their count are bounded, so a hostile file cannot take unbounded memory.
pub fn parse_results(reader: impl std::io::BufRead, path: &Path) -> Result<Vec<ProblemRecord>> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    super::for_each_line(
        reader,
        path,
        MAX_RESULT_LINE_BYTES,
        MAX_RESULT_LINES,
        |line_no, line, terminated| {
            if line.trim().is_empty() {
                return Ok(());
            }
            match serde_json::from_str::<ProblemRecord>(line) {
                Ok(r) => out.push(r),
                // A torn last line has no newline; it is only known to be last at the end.
                Err(e) if !terminated => pending = Some((line_no, e.to_string())),
                Err(e) => {
                    return Err(LabError::BadLine {
                        path: path.to_owned(),
                        line: line_no,
                        reason: format!("not a sweep result ({e})"),
                    })
                }
            }
            Ok(())
        },
    )?;
    if let Some((line, _)) = pending {
        tracing::warn!("dropping a torn last line ({line}) of {}", path.display());
    }
    Ok(out)
}

/// Appends records, one JSON line each, flushed and synced as each is written. Appending never
/// rewrites earlier lines; a torn line left by a crash is cut off when the file is next opened,
/// and a write that fails part way (a full disk) is cut off at once, so the next record does not
/// join it.
struct ResultsWriter {
    file: std::fs::File,
    path: std::path::PathBuf,
    /// Length of the file up to its last whole line.
    len: u64,
}

impl ResultsWriter {
    fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| LabError::io(path, e))?;
        let len = whole_lines_len(&mut file).map_err(|e| LabError::io(path, e))?;
        if file.metadata().map_err(|e| LabError::io(path, e))?.len() != len {
            // A torn last line (the process died during a write) is cut off, so that the
            // records appended after it stay readable.
            file.set_len(len).map_err(|e| LabError::io(path, e))?;
            file.sync_all().map_err(|e| LabError::io(path, e))?;
        }
        Ok(Self {
            file,
            path: path.to_owned(),
            len,
        })
    }

    fn append(&mut self, record: &ProblemRecord) -> Result<()> {
        let mut line = serde_json::to_string(record)
            .map_err(|e| LabError::io(&self.path, std::io::Error::other(e)))?;
        line.push('\n');
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Cut the partial line off; the records before it stay as they were.
            let _ = self.file.set_len(self.len);
            return Err(LabError::io(&self.path, e));
        }
        self.len += line.len() as u64;
        Ok(())
    }
}

/// Length of `file` up to and including its last newline (0 if it has none), reading only
/// its tail.
fn whole_lines_len(file: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Seed of a problem's runs: the sweep seed mixed with the problem, so that a problem gets the
/// same samples wherever it sits in a set.
fn problem_seed(seed: u64, fingerprint: &str) -> u64 {
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
    let strategies: Vec<(String, SweepMode, &'static str)> = config
        .strategies
        .iter()
        .map(|s| sweep_mode(s).map(|(mode, canonical)| (s.clone(), mode, canonical)))
        .collect::<Result<_>>()?;
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
            && strategies.iter().any(|(_, _, c)| *c == r.strategy);
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
    for (index, problem) in problems.iter().enumerate() {
        let fingerprint = problem.fingerprint();
        let seed = problem_seed(config.seed, &fingerprint);
        for (label, mode, canonical) in &strategies {
            let key = (index, fingerprint.clone(), (*canonical).to_owned());
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
                    strategies.iter().find_map(|(_, m, c)| {
                        let k = (index, fingerprint.clone(), (*c).to_owned());
                        done.get(&k)
                            .filter(|_| matches!(m, SweepMode::Pool { .. }) && c != canonical)
                    })
                })
                .flatten();
            let record = if let Some(other) = pool {
                ProblemRecord {
                    strategy: (*canonical).to_owned(),
                    shared_from: Some(other.strategy.clone()),
                    ..other.clone()
                }
            } else {
                let ns = run_budgets(*mode, canonical, config.max_n);
                let mut runs = Vec::with_capacity(ns.len());
                for n in ns {
                    let run_config =
                        config.run_config(&problem.question, *mode, canonical, n, seed)?;
                    let run = next_run;
                    next_run.0 += 1;
                    let worker = (engine.make)()?;
                    let Some((tree, cost)) =
                        run_once(&worker, run, run_config, cancel, progress, label, problem)?
                    else {
                        return Ok(SweepOutcome {
                            records,
                            completed: false,
                            resumed,
                            ignored,
                        });
                    };
                    runs.push(run_record(&tree, &cost, *mode, n, problem));
                }
                ProblemRecord {
                    settings: settings.clone(),
                    problem: index,
                    problem_id: problem.id.clone(),
                    fingerprint: fingerprint.clone(),
                    strategy: (*canonical).to_owned(),
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

fn subtree_tokens(tree: &Tree, node: NodeId) -> u64 {
    let n = &tree.nodes[node];
    n.tokens.len() as u64
        + n.children
            .iter()
            .map(|&c| subtree_tokens(tree, c))
            .sum::<u64>()
}

fn sample(tree: &Tree, leaf: NodeId, tokens: u64, problem: &Problem) -> SampleRecord {
    let node = &tree.nodes[leaf];
    SampleRecord {
        answer: node.answer.clone(),
        correct: node.answer.as_deref().is_some_and(|a| problem.check(a)),
        mean_logprob: node.scores.mean_logprob,
        tokens,
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
            root.children
                .iter()
                .map(|&c| sample(tree, chain_end(tree, c), subtree_tokens(tree, c), problem))
                .collect()
        }),
        SweepMode::Single => tree
            .chosen
            .map(|c| sample(tree, c, cost.generated_tokens, problem))
            .into_iter()
            .collect(),
        SweepMode::PerBudget { .. } => tree
            .leaves()
            .filter(|l| l.id != NodeId(0) && l.answer.is_some())
            .map(|l| sample(tree, l.id, 0, problem))
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

/// The CSV header [`write_csv`] writes.
pub const CSV_HEADER: &str = "strategy,n,accuracy_pass,accuracy_maj,accuracy_best_of_n,accuracy,\
tokens,wall_secs,energy_joules,tokens_total,wall_secs_total,energy_joules_total,energy_measured,\
cost,problems";

/// The points as CSV. Per-problem figures are means over the problems; `cost` is `measured`, or
/// `derived` where the figures of a smaller N come from a subset of a larger run.
pub fn to_csv(points: &[SweepPoint]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for p in points {
        let _ = writeln!(
            out,
            "{},{},{:.4},{:.4},{:.4},{:.4},{:.1},{:.3},{:.2},{:.0},{:.2},{:.1},{},{},{}",
            csv_field(&p.strategy),
            p.n,
            p.accuracy_pass,
            p.accuracy_maj,
            p.accuracy_best_of_n,
            p.accuracy,
            p.tokens,
            p.wall_secs,
            p.energy_joules,
            p.tokens_total,
            p.wall_secs_total,
            p.energy_joules_total,
            p.energy_measured,
            if p.cost_derived {
                "derived"
            } else {
                "measured"
            },
            p.problems,
        );
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Write the points as CSV to `path`.
pub fn write_csv(points: &[SweepPoint], path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    }
    crate::atomic::write(path, to_csv(points).as_bytes())?;
    Ok(())
}

/// The points as a plain-text table for a terminal.
pub fn format_table(points: &[SweepPoint]) -> String {
    let mut out = format!(
        "{:<18} {:>3} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8} {:>9}  {}\n",
        "strategy", "N", "acc", "pass@N", "maj@N", "best@N", "tok/prob", "s/prob", "J/prob", "cost"
    );
    for p in points {
        let _ = writeln!(
            out,
            "{:<18} {:>3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>9.0} {:>8.2} {:>9.1}  {}",
            p.strategy,
            p.n,
            p.accuracy,
            p.accuracy_pass,
            p.accuracy_maj,
            p.accuracy_best_of_n,
            p.tokens,
            p.wall_secs,
            p.energy_joules,
            if p.cost_derived {
                "derived"
            } else {
                "measured"
            },
        );
    }
    out
}
