//! Supervision: the engine thread restarts after a panic, and a run that runs out of KV memory
//! fails alone. One test per binary where a fault is armed: faults are process-wide, so no other
//! test may run a pass meanwhile.

use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use thinkscope_engine::events::{RunId, RunOutcome};
use thinkscope_engine::fault::{arm, Fault};
use thinkscope_engine::strategy::{Knobs, RunConfig, Strategy};
use thinkscope_engine::tiny::{write_tiny_model, TinySpec};
use thinkscope_engine::view::{run_to_end, RunView, Watch};
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_engine::Model;

fn tiny() -> (tempfile::TempDir, Arc<Model>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.gguf");
    write_tiny_model(&path, &TinySpec::llama()).expect("write");
    let model = Model::load(&path, &Device::Cpu).expect("load");
    (dir, Arc::new(model))
}

fn run(worker: &Worker, id: u64, name: &str, samples: usize, max_tokens: usize) -> RunView {
    let knobs = Knobs {
        samples: Some(samples),
        ..Knobs::default()
    };
    let mut config = RunConfig::new(
        "what is 2 + 3 ?",
        Strategy::from_name(name, &knobs).expect("strategy"),
    );
    config.max_tokens = max_tokens;
    config.seed = 7;
    let watch = Watch {
        idle_timeout: Some(Duration::from_secs(120)),
        ..Watch::default()
    };
    run_to_end(worker, RunId(id), config, watch, |_, _| {}).expect("the run ends")
}

#[test]
fn the_engine_thread_restarts_after_a_panic_and_a_kv_overflow_fails_one_run() {
    let (_d, model) = tiny();
    // Room for a few blocks only: a wide run cannot fit, a single answer can.
    let block = thinkscope_engine::kv::KvPool::new(model.kv_layout(), 1).block_bytes();
    let options = WorkerOptions {
        kv_budget_bytes: 24 * block,
        ..WorkerOptions::default()
    };
    let worker = Worker::spawn(model.clone(), options, Arc::new(|| {})).expect("worker");

    // A panic inside a forward pass fails the run in flight with a message ...
    arm(Fault::EnginePanic);
    let crashed = run(&worker, 1, "self-consistency", 2, 8);
    let tokens: Vec<usize> = crashed.tree.nodes.iter().map(|n| n.tokens.len()).collect();
    assert_eq!(
        crashed.outcome,
        Some(RunOutcome::Failed),
        "tokens per node {tokens:?}"
    );
    assert!(
        crashed.error_line().contains("restarted"),
        "{}",
        crashed.error_line()
    );
    // ... and the engine serves the next run as if nothing had happened.
    let after = run(&worker, 2, "self-consistency", 2, 8);
    assert_eq!(
        after.outcome,
        Some(RunOutcome::Completed),
        "{}",
        after.error_line()
    );
    assert!(after.tree.nodes.len() >= 2);

    // A run that needs more KV memory than the budget fails with the budget's message ...
    let wide = run(&worker, 3, "self-consistency", 16, 40);
    assert_eq!(wide.outcome, Some(RunOutcome::Failed));
    assert!(
        wide.error_line().contains("KV cache budget"),
        "{}",
        wide.error_line()
    );
    assert!(wide.tree.nodes.len() > 1, "the partial tree is kept");
    // ... and only that run: the next one fits and completes.
    let small = run(&worker, 4, "self-consistency", 1, 8);
    assert_eq!(
        small.outcome,
        Some(RunOutcome::Completed),
        "{}",
        small.error_line()
    );
}
