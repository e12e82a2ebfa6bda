//! thinkscope: watch a language model think.
//!
//! The [`engine`] runs GGUF models on candle with forkable, batched sequences; the binaries drive
//! it from a desktop app and a command line.

pub mod engine;
pub mod lab;
pub mod ui;
