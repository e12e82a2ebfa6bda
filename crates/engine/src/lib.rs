//! thinkscope's engine: models, forkable batched sequences, strategies, the reasoning tree, cost
//! meters and the scaling lab. No GUI crate is a dependency of this one (CI checks the resolved
//! dependency tree), so the app, the CLI, the tests and the benchmarks all drive the same code.

pub mod answer;
pub mod atomic;
pub mod backend;
pub mod cost;
pub mod device;
pub mod error;
pub mod events;
pub mod fault;
pub mod fetch;
pub mod frontend;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod generate;
pub mod kv;
pub mod lab;
pub mod local;
pub mod model;
pub mod progress;
pub mod quantize;
pub mod sequences;
pub mod service;
pub mod session;
pub mod strategy;
pub mod tiny;
pub mod tree;
pub mod view;
pub mod worker;

/// The project's own quantized matmul kernels (their own crate, re-exported).
pub use thinkscope_kernels as kernels;

pub use self::error::{EngineError, Result};
pub use self::model::sampling::{SamplingParams, TokenInfo};
pub use self::model::Model;
pub use self::sequences::{Counters, Engine, SeqId};
