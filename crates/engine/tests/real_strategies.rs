//! Strategies on the real default model: answers, votes, "Wait" insertions and prefix reuse.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use candle_core::Device;
use thinkscope_engine::cost::CostSnapshot;
use thinkscope_engine::events::{RunId, RunOutcome};
use thinkscope_engine::fetch;
use thinkscope_engine::strategy::{Knobs, RunConfig, Strategy};
use thinkscope_engine::tree::{NodeKind, Tree};
use thinkscope_engine::view::{run_to_end, Watch};
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_engine::Model;

fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path: PathBuf =
                fetch::fetch(&fetch::SMOLLM2_135M, &fetch::models_dir(), &mut |_| {})
                    .expect("fetch the default model");
            Arc::new(Model::load(&path, &Device::Cpu).expect("load"))
        })
        .clone()
}

fn run(config: RunConfig) -> (Tree, CostSnapshot) {
    let worker = Worker::spawn(model(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let watch = Watch {
        idle_timeout: Some(Duration::from_secs(600)),
        ..Watch::default()
    };
    let view = run_to_end(&worker, RunId(1), config, watch, |_, _| {}).expect("the run ends");
    assert_eq!(
        view.outcome,
        Some(RunOutcome::Completed),
        "{}",
        view.error_line()
    );
    (view.tree, view.cost)
}

fn config(name: &str, knobs: Knobs, max_tokens: usize) -> RunConfig {
    let mut c = RunConfig::new(
        "What is 2 + 3?",
        Strategy::from_name(name, &knobs).expect("strategy"),
    );
    c.max_tokens = max_tokens;
    c.seed = 1;
    c
}

#[test]
fn self_consistency_votes_on_arithmetic() {
    let (tree, cost) = run(config(
        "self-consistency",
        Knobs {
            samples: Some(4),
            ..Knobs::default()
        },
        64,
    ));
    assert!(!tree.tally.is_empty(), "a tally");
    assert!(tree.tally.values().sum::<u32>() <= 4);
    let answer = tree.answer.clone().expect("an answer");
    assert!(tree
        .tally
        .keys()
        .any(|k| thinkscope_engine::answer::answers_match(k, &answer)));
    assert!(cost.tokens_reused > 0);
    eprintln!("self-consistency: answer {answer}, tally {:?}", tree.tally);
}

#[test]
fn budget_forcing_inserts_wait_and_keeps_its_budget() {
    let mut c = config("budget-forcing", Knobs::default(), 64);
    c.strategy = Strategy::named("budget-forcing")
        .and_then(|s| s.with("min_thinking", 200))
        .and_then(|s| s.with("max_thinking", 260))
        .and_then(|s| s.with("max_waits", 2))
        .expect("budget forcing");
    let (tree, _) = run(c);
    let waits: Vec<_> = tree
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Forced && n.label == "Wait")
        .collect();
    assert!(
        !waits.is_empty(),
        "the model stopped early and got a \"Wait\""
    );
    assert!(waits.len() <= 2);
    assert!(waits.iter().all(|n| n.text.contains("Wait")));
    let thinking: usize = tree
        .nodes
        .iter()
        .filter(|n| n.label.starts_with("thinking"))
        .map(|n| n.tokens.len())
        .sum();
    assert!(thinking <= 260, "thinking used {thinking} of 260 tokens");
}

#[test]
fn every_multi_branch_strategy_reuses_the_prefix() {
    for (name, knobs) in [
        (
            "best-of-n",
            Knobs {
                samples: Some(2),
                ..Knobs::default()
            },
        ),
        (
            "beam",
            Knobs {
                samples: Some(2),
                depth: Some(2),
                thinking: None,
            },
        ),
        (
            "mcts",
            Knobs {
                samples: Some(2),
                depth: Some(2),
                thinking: None,
            },
        ),
        (
            "entropy-branching",
            Knobs {
                samples: Some(2),
                depth: Some(1),
                thinking: None,
            },
        ),
    ] {
        let mut c = config(name, knobs, 48);
        if name == "entropy-branching" {
            // A low threshold so that the run certainly branches.
            c.strategy = Strategy::named("entropy-branching")
                .and_then(|s| s.with("threshold", 0.5))
                .and_then(|s| s.with("branches", 2))
                .and_then(|s| s.with("max_splits", 1))
                .expect("entropy branching");
        }
        let (tree, cost) = run(c);
        assert!(
            cost.tokens_reused > 0,
            "{name}: tokens reused {}",
            cost.tokens_reused
        );
        assert!(tree.nodes.len() > 2, "{name} branched");
        assert!(cost.flops > 0.0 && cost.energy_joules > 0.0 && !cost.energy_source.is_empty());
    }
}
