//! The inference engine: models, sequences, sampling, fetching. No GUI code lives here.

pub mod answer;
pub mod core;
pub mod cost;
pub mod device;
pub mod error;
pub mod events;
pub mod fetch;
pub mod generate;
pub mod kernels;
pub mod kv;
pub mod model;
pub mod strategy;
pub mod tiny;
pub mod tree;
pub mod worker;

pub use self::core::{Counters, Engine, SeqId};
pub use self::error::{EngineError, Result};
pub use self::model::sampling::{SamplingParams, TokenInfo};
pub use self::model::Model;
