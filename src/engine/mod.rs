//! The inference engine: models, sequences, sampling, fetching. No GUI code lives here.

pub mod core;
pub mod device;
pub mod error;
pub mod fetch;
pub mod generate;
pub mod kv;
pub mod model;
pub mod tiny;

pub use self::core::{Counters, Engine, SeqId};
pub use self::error::{EngineError, Result};
pub use self::model::sampling::{SamplingParams, TokenInfo};
pub use self::model::Model;
