//! The scaling lab: problem sets, answer checking, sweeps of strategies × budgets, and the
//! estimators that turn one sampled run per problem into figures for every budget.
//!
//! A sweep samples each problem once at the largest budget and derives the smaller budgets from
//! subsets of those samples (pass@k as in Chen et al. 2021, maj@k and best-of-N as expectations
//! over random subsets), so a sweep costs one run per problem and strategy, not one per budget.
//! No GUI code lives here: the CLI, the app and the tests drive the same functions.

mod config;
pub mod estimators;
mod output;
pub mod plot;
pub mod problems;
mod records;
mod summary;
pub mod sweep;

use std::path::PathBuf;

use crate::EngineError;

pub use self::problems::{GeneratorKind, GeneratorSpec, Problem, ProblemSet};
pub use self::sweep::{
    budgets, difficulty_bins, lab_strategy, summarize, summarize_problems, walls, write_csv,
    DifficultyBasis, DifficultyBin, LabStrategy, PairFailure, ProblemRecord, SweepConfig,
    SweepEngine, SweepOutcome, SweepPoint, SweepProgress, Wall,
};

/// Errors from loading problem sets, reading and writing results, and running sweeps.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Reading or writing a file failed.
    #[error("{source}: {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// A line of a problem set or results file could not be used.
    #[error("line {line}: {reason}: {}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A problem set holds no problems.
    #[error("no problems in the set: {}", path.display())]
    EmptySet {
        /// The file.
        path: PathBuf,
    },

    /// A generator spec such as `arithmetic:8:2` could not be parsed.
    #[error("invalid generator '{spec}': {reason} (expected arithmetic:N[:D] or word:N[:D], D in 1..=3)")]
    BadGenerator {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A sweep setting is out of range.
    #[error("invalid sweep setting: {0}")]
    InvalidConfig(String),

    /// A run failed inside the engine.
    #[error("run of {strategy} on problem {problem} failed: {message}")]
    RunFailed {
        /// Strategy name.
        strategy: String,
        /// Problem id.
        problem: String,
        /// The engine's message.
        message: String,
    },

    /// An error from the engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl LabError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// The lab's result type.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// Call `f(line number, line, ended with a newline)` for each line of a JSONL `reader`,
/// refusing lines longer than `max_line` bytes, more than `max_lines` lines and text that is not
/// UTF-8, each with the line's number. Only one line is in memory at a time.
pub(crate) fn for_each_line(
    mut reader: impl std::io::BufRead,
    path: &std::path::Path,
    max_line: usize,
    max_lines: usize,
    mut f: impl FnMut(usize, &str, bool) -> Result<()>,
) -> Result<()> {
    use std::io::{BufRead as _, Read as _};
    let bad = |line: usize, reason: String| LabError::BadLine {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut buf = Vec::new();
    for line_no in 1.. {
        buf.clear();
        let n = (&mut reader)
            .take(max_line as u64 + 2)
            .read_until(b'\n', &mut buf)
            .map_err(|e| LabError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        if line_no > max_lines {
            return Err(bad(
                line_no,
                format!("the file has more than {max_lines} lines"),
            ));
        }
        let terminated = buf.last() == Some(&b'\n');
        if terminated {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if buf.len() > max_line {
            return Err(bad(
                line_no,
                format!("the line is longer than {max_line} bytes"),
            ));
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|e| bad(line_no, format!("the line is not UTF-8 ({e})")))?;
        f(line_no, line, terminated)?;
    }
    Ok(())
}

/// FNV-1a, 64 bits: a stable fingerprint for problems and settings (not for security).
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
