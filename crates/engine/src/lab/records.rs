//! The results file: one JSON record per finished (problem, strategy) pair, appended as soon as
//! it is done, read back (bounded, line by line) to resume a sweep.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::estimators::SampleOutcome;
use super::{LabError, Result};
use crate::cost::CostSnapshot;

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
    /// The self-verifier's P(yes) for its answer, when the pool was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<f32>,
}

impl SampleRecord {
    pub(super) fn outcome(&self) -> SampleOutcome {
        SampleOutcome {
            answer: self.answer.clone(),
            correct: self.correct,
            mean_logprob: self.mean_logprob,
            verifier: self.verifier,
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
    /// Of `prompt_tokens`, those the self-verifier's questions took.
    pub verify_tokens: u64,
    /// Tokens progress probes computed (a progress scorer's probes are part of its strategy's
    /// cost; their time and energy are in `wall_secs` and `energy_joules`).
    pub probe_tokens: u64,
}

impl RunCost {
    /// Tokens the model computed: prompt, generated and probes.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.generated_tokens + self.probe_tokens
    }
}

impl From<&CostSnapshot> for RunCost {
    fn from(c: &CostSnapshot) -> Self {
        Self {
            prompt_tokens: c.prompt_tokens_computed,
            generated_tokens: c.generated_tokens,
            tokens_reused: c.tokens_reused + c.probe_tokens_reused,
            wall_secs: c.wall_secs,
            energy_joules: c.energy_joules + c.probe_energy_joules,
            energy_measured: c.energy_measured,
            flops: c.flops + c.probe_flops,
            verify_tokens: c.verify_tokens,
            probe_tokens: c.probe_tokens,
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
pub(super) struct ResultsWriter {
    file: std::fs::File,
    path: std::path::PathBuf,
    /// Length of the file up to its last whole line.
    len: u64,
}

impl ResultsWriter {
    pub(super) fn open(path: &Path) -> Result<Self> {
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

    pub(super) fn append(&mut self, record: &ProblemRecord) -> Result<()> {
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
