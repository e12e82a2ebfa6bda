//! Fault injection for the tests of the supervision paths: a process started with
//! `THINKSCOPE_FAULT=strategy-panic` (or `engine-panic`, comma-separated for several) panics once
//! at that place, so a test can watch a real binary recover. Unset, it costs one relaxed load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Places a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A strategy panics as its run starts.
    StrategyPanic,
    /// The engine thread panics in its next decode pass.
    EnginePanic,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::StrategyPanic => "strategy-panic",
            Fault::EnginePanic => "engine-panic",
        }
    }

    fn slot(self) -> &'static AtomicBool {
        static STRATEGY: AtomicBool = AtomicBool::new(false);
        static ENGINE: AtomicBool = AtomicBool::new(false);
        match self {
            Fault::StrategyPanic => &STRATEGY,
            Fault::EnginePanic => &ENGINE,
        }
    }
}

fn armed_from_env() {
    static READ: OnceLock<()> = OnceLock::new();
    READ.get_or_init(|| {
        let Ok(v) = std::env::var("THINKSCOPE_FAULT") else {
            return;
        };
        for f in [Fault::StrategyPanic, Fault::EnginePanic] {
            if v.split(',').any(|p| p.trim() == f.name()) {
                f.slot().store(true, Ordering::Relaxed);
            }
        }
    });
}

/// Arm `fault` in this process (tests that run in-process use this instead of the variable).
pub fn arm(fault: Fault) {
    armed_from_env();
    fault.slot().store(true, Ordering::Relaxed);
}

/// Panic here if `fault` is armed (once: it disarms itself).
pub fn point(fault: Fault) {
    armed_from_env();
    if fault.slot().swap(false, Ordering::Relaxed) {
        panic!("injected fault (THINKSCOPE_FAULT={})", fault.name());
    }
}
