//! thinkscope: the desktop app. The engine it drives is the `thinkscope-engine` crate.

pub mod ui;
