//! The scaling lab: problem sets, answer checking, sweeps of strategies × budgets, and the
//! estimators that turn one sampled run per problem into figures for every budget.
//!
//! A sweep samples each problem once at the largest budget and derives the smaller budgets from
//! subsets of those samples (pass@k as in Chen et al. 2021, maj@k and best-of-N as expectations
//! over random subsets), so a sweep costs one run per problem and strategy, not one per budget.
//! No GUI code lives here: the CLI, the app and the tests drive the same functions.

pub mod estimators;
pub mod plot;
pub mod problems;
pub mod sweep;

use std::path::PathBuf;

use crate::EngineError;

pub use self::problems::{GeneratorKind, GeneratorSpec, Problem, ProblemSet};
pub use self::sweep::{
    budgets, summarize, write_csv, ProblemRecord, SweepConfig, SweepEngine, SweepOutcome,
    SweepPoint, SweepProgress,
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

/// FNV-1a, 64 bits: a stable fingerprint for problems and settings (not for security).
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
