//! Strategy tests on the tiny model: tree shape, determinism, budgets, cancel, event stream.

use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use thinkscope_engine::cost::CostSnapshot;
use thinkscope_engine::events::{Event, RunId, RunOutcome};
use thinkscope_engine::strategy::{
    register, registry, Ctx, Knob, Knobs, LabMode, Params, Role, RunConfig, StopRule, Strategy,
    StrategyDef,
};
use thinkscope_engine::tiny::{write_tiny_model, TinySpec};
use thinkscope_engine::tree::{NodeKind, NodeStatus, Tree};
use thinkscope_engine::view::{run_to_end, RunView, Watch};
use thinkscope_engine::worker::{Command, Worker, WorkerOptions};
use thinkscope_engine::{EngineError, Model};

fn model() -> (tempfile::TempDir, Arc<Model>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.gguf");
    write_tiny_model(&path, &TinySpec::llama()).expect("write");
    let model = Model::load(&path, &Device::Cpu).expect("load");
    (dir, Arc::new(model))
}

fn config(name: &str, knobs: Knobs) -> RunConfig {
    let mut c = RunConfig::new(
        "what is 2 + 3 ?",
        Strategy::from_name(name, &knobs).expect("strategy"),
    );
    c.max_tokens = 12;
    c.temperature = 1.0;
    c.seed = 42;
    c
}

struct Finished {
    tree: Tree,
    events: Vec<Event>,
    outcome: RunOutcome,
    cost: CostSnapshot,
}

/// Read `run`'s events until it finishes (other runs' events are skipped).
fn collect(worker: &Worker, run: RunId) -> Finished {
    let mut view = RunView::new(run);
    let mut events = Vec::new();
    while !view.finished() {
        let e = worker
            .events()
            .recv_timeout(Duration::from_secs(120))
            .expect("events keep coming");
        if view.apply(&e) {
            events.push(e);
        }
    }
    finished(view, events)
}

fn finished(view: RunView, events: Vec<Event>) -> Finished {
    Finished {
        outcome: view.outcome.expect("finished"),
        tree: view.tree,
        events,
        cost: view.cost,
    }
}

fn run_one(model: &Arc<Model>, config: RunConfig) -> Finished {
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let mut events = Vec::new();
    let watch = Watch {
        idle_timeout: Some(Duration::from_secs(120)),
        ..Watch::default()
    };
    let view = run_to_end(&worker, RunId(1), config, watch, |_, e| {
        events.push(e.clone())
    })
    .expect("the run ends");
    finished(view, events)
}

/// Structural checks every finished run must pass.
fn check_well_formed(f: &Finished) {
    assert!(
        matches!(f.events.first(), Some(Event::RunStarted { .. })),
        "first event is RunStarted"
    );
    assert!(
        matches!(f.events.last(), Some(Event::RunFinished { .. })),
        "last event is RunFinished"
    );
    let mut seen = 0;
    for e in &f.events {
        match e {
            Event::NodeAdded { node, parent, .. } => {
                assert_eq!(node.index(), seen, "node ids are dense and in order");
                assert!(
                    parent.is_none_or(|p| p.index() < seen),
                    "parent exists before child"
                );
                seen += 1;
            }
            Event::TokensAppended { node, .. }
            | Event::NodeScored { node, .. }
            | Event::NodeFinished { node, .. }
            | Event::NodePruned { node, .. } => {
                assert!(node.index() < seen, "event for an existing node")
            }
            _ => {}
        }
    }
    assert_eq!(f.tree.nodes.len(), seen);
    f.tree
        .validate()
        .expect("a tree built from events validates");
    assert!(
        f.tree.nodes.iter().all(|n| n.status != NodeStatus::Running),
        "no node left running"
    );
    assert_eq!(f.tree.nodes[0].kind, NodeKind::Prompt);
    for n in &f.tree.nodes {
        for &c in &n.children {
            assert_eq!(f.tree.nodes[c].parent, Some(n.id));
        }
    }
    // Generated tokens in the tree never exceed what the meters counted.
    let in_tree: usize = f
        .tree
        .nodes
        .iter()
        .filter(|n| matches!(n.kind, NodeKind::Generated | NodeKind::Manual))
        .map(|n| n.tokens.len())
        .sum();
    assert!(in_tree as u64 <= f.cost.generated_tokens);
}

const ALL: &[&str] = &[
    "system1",
    "chain-of-thought",
    "best-of-n",
    "self-consistency",
    "weighted-vote",
    "beam",
    "mcts",
    "budget-forcing",
    "entropy-branching",
];

#[test]
fn every_strategy_is_deterministic_and_well_formed() {
    let (_d, model) = model();
    for name in ALL {
        let knobs = Knobs {
            samples: Some(3),
            depth: Some(2),
            thinking: Some(16),
        };
        let a = run_one(&model, config(name, knobs.clone()));
        assert_eq!(a.outcome, RunOutcome::Completed, "{name}");
        check_well_formed(&a);
        let b = run_one(&model, config(name, knobs));
        assert_eq!(a.tree, b.tree, "{name}: same seed, same tree");
        assert!(
            a.tree.answer.is_none() || a.tree.chosen.is_some(),
            "{name}: an answer has a node"
        );
    }
}

#[test]
fn multi_branch_strategies_reuse_the_prompt() {
    let (_d, model) = model();
    for name in ["best-of-n", "self-consistency", "beam", "mcts"] {
        let f = run_one(
            &model,
            config(
                name,
                Knobs {
                    samples: Some(3),
                    depth: Some(2),
                    thinking: None,
                },
            ),
        );
        assert!(f.cost.tokens_reused > 0, "{name} reuses cached prefixes");
        // Every sample after the first continues from the cached prompt.
        assert!(
            f.cost.tokens_reused >= f.cost.prompt_tokens_computed / 2,
            "{name}"
        );
    }
}

#[test]
fn tree_shapes() {
    let (_d, model) = model();
    let sc = run_one(
        &model,
        config(
            "self-consistency",
            Knobs {
                samples: Some(4),
                ..Knobs::default()
            },
        ),
    );
    assert_eq!(sc.tree.nodes[0].children.len(), 4, "one branch per sample");
    let votes: u32 = sc.tree.tally.values().sum();
    assert!(votes <= 4);

    let beam = run_one(
        &model,
        config(
            "beam",
            Knobs {
                samples: Some(2),
                depth: Some(3),
                thinking: None,
            },
        ),
    );
    // Width 2 × expansions 2: the first step has 2 candidates; at most 2 survive each step, and
    // every step with more candidates than that prunes the rest.
    let step1 = &beam.tree.nodes[0].children;
    assert_eq!(step1.len(), 2);
    for d in 1..=3 {
        let prefix = format!("step {d} ·");
        let cands: Vec<_> = beam
            .tree
            .nodes
            .iter()
            .filter(|n| n.label.starts_with(&prefix))
            .collect();
        let pruned = cands
            .iter()
            .filter(|n| n.status == NodeStatus::Pruned)
            .count();
        assert!(
            cands.len() - pruned <= 2,
            "step {d}: {} survivors",
            cands.len() - pruned
        );
        assert!(
            pruned >= cands.len().saturating_sub(2),
            "step {d} prunes its surplus"
        );
    }

    let bf = run_one(
        &model,
        config(
            "budget-forcing",
            Knobs {
                depth: Some(2),
                thinking: Some(40),
                ..Knobs::default()
            },
        ),
    );
    let thinking: usize = bf
        .tree
        .nodes
        .iter()
        .filter(|n| n.label.starts_with("thinking"))
        .map(|n| n.tokens.len())
        .sum();
    assert!(
        thinking <= 40,
        "thinking stays within its budget ({thinking})"
    );
    let waits = bf
        .tree
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Forced && n.label == "Wait")
        .count();
    assert!(waits <= 2);
}

#[test]
fn token_budget_is_respected() {
    let (_d, model) = model();
    for name in ["self-consistency", "mcts", "beam", "best-of-n"] {
        let mut c = config(
            name,
            Knobs {
                samples: Some(4),
                depth: Some(4),
                thinking: None,
            },
        );
        c.budget_tokens = Some(20);
        let f = run_one(&model, c);
        assert_eq!(f.outcome, RunOutcome::Completed, "{name}");
        assert!(
            f.cost.generated_tokens <= 20,
            "{name}: {} tokens for a budget of 20",
            f.cost.generated_tokens
        );
        check_well_formed(&f);
    }
}

#[test]
fn cancel_mid_run_leaves_a_consistent_tree() {
    let (_d, model) = model();
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let mut c = config(
        "mcts",
        Knobs {
            samples: Some(3),
            depth: Some(200),
            thinking: None,
        },
    );
    c.max_tokens = 64;
    worker
        .send(Command::Run {
            run: RunId(7),
            config: Box::new(c),
        })
        .expect("send");
    // Wait for real progress, then cancel.
    let mut tree = Tree::default();
    let mut events = Vec::new();
    loop {
        let e = worker
            .events()
            .recv_timeout(Duration::from_secs(60))
            .expect("event");
        tree.apply(&e);
        events.push(e.clone());
        if tree.token_count() > 30 {
            break;
        }
    }
    worker.send(Command::Cancel(RunId(7))).expect("cancel");
    let rest = collect(&worker, RunId(7));
    for e in &rest.events {
        tree.apply(e);
    }
    events.extend(rest.events);
    assert_eq!(rest.outcome, RunOutcome::Cancelled);
    let f = Finished {
        tree,
        events,
        outcome: rest.outcome,
        cost: rest.cost,
    };
    check_well_formed(&f);
    assert!(
        f.tree.nodes.iter().any(|n| n.status == NodeStatus::Pruned),
        "interrupted nodes are pruned"
    );
}

#[test]
fn pause_holds_and_step_advances() {
    let (_d, model) = model();
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    worker
        .send(Command::Run {
            run: RunId(3),
            config: Box::new(config(
                "self-consistency",
                Knobs {
                    samples: Some(2),
                    ..Knobs::default()
                },
            )),
        })
        .expect("send");
    worker.send(Command::Pause(RunId(3))).expect("pause");
    std::thread::sleep(Duration::from_millis(300));
    let mut tree = Tree::default();
    while let Ok(e) = worker.events().try_recv() {
        assert!(
            !matches!(e, Event::RunFinished { .. }),
            "a paused run does not finish"
        );
        tree.apply(&e);
    }
    let before = tree.token_count();
    for _ in 0..3 {
        worker.send(Command::Step(RunId(3))).expect("step");
    }
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(e) = worker.events().try_recv() {
        assert!(
            !matches!(e, Event::RunFinished { .. }),
            "three passes do not finish two 12-token samples"
        );
        tree.apply(&e);
    }
    assert!(tree.token_count() > before, "stepping makes progress");
    worker.send(Command::Resume(RunId(3))).expect("resume");
    let f = collect(&worker, RunId(3));
    assert_eq!(f.outcome, RunOutcome::Completed);
}

#[test]
fn concurrent_runs_match_solo_runs() {
    let (_d, model) = model();
    let names = ["self-consistency", "system1", "beam"];
    let solo: Vec<Tree> = names
        .iter()
        .map(|n| {
            run_one(
                &model,
                config(
                    n,
                    Knobs {
                        samples: Some(3),
                        depth: Some(2),
                        thinking: None,
                    },
                ),
            )
            .tree
        })
        .collect();
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    for (i, n) in names.iter().enumerate() {
        let c = config(
            n,
            Knobs {
                samples: Some(3),
                depth: Some(2),
                thinking: None,
            },
        );
        worker
            .send(Command::Run {
                run: RunId(i as u64),
                config: Box::new(c),
            })
            .expect("send");
    }
    let mut trees = vec![Tree::default(); names.len()];
    let mut done = 0;
    while done < names.len() {
        let e = worker
            .events()
            .recv_timeout(Duration::from_secs(120))
            .expect("event");
        let Some(run) = e.run() else { continue };
        trees[run.0 as usize].apply(&e);
        if matches!(e, Event::RunFinished { .. }) {
            done += 1;
        }
    }
    assert_eq!(
        trees, solo,
        "sharing forward passes does not change any run's tree"
    );
}

#[test]
fn branch_by_hand_reuses_the_path() {
    let (_d, model) = model();
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let c = config(
        "best-of-n",
        Knobs {
            samples: Some(3),
            ..Knobs::default()
        },
    );
    worker
        .send(Command::Run {
            run: RunId(1),
            config: Box::new(c),
        })
        .expect("send");
    let first = collect(&worker, RunId(1));
    let answer_node = first
        .tree
        .nodes
        .iter()
        .find(|n| n.kind == NodeKind::Generated && n.tokens.len() >= 3)
        .expect("a sample with three tokens")
        .id;

    let alt = first.tree.nodes[answer_node].tokens[2].top[1].id;
    worker
        .send(Command::BranchFrom {
            run: RunId(1),
            node: answer_node,
            index: 2,
            token: alt,
        })
        .expect("branch");
    let second = collect(&worker, RunId(1));
    let mut tree = first.tree.clone();
    for e in &second.events {
        tree.apply(e);
    }
    let new = tree.nodes.last().expect("new node");
    assert_eq!(new.kind, NodeKind::Manual);
    assert_eq!(new.parent, Some(answer_node));
    assert_eq!(new.fork_at, Some(2));
    assert_eq!(new.tokens[0].id, alt);
    assert!(
        second.cost.tokens_reused > 0,
        "the prefix comes from the cache"
    );
    let path = tree.path_tokens(new.id);
    assert_eq!(path[0].id, first.tree.nodes[answer_node].tokens[0].id);
    assert_eq!(path[2].id, alt);
}

#[test]
fn bad_parameters_are_rejected() {
    let zero = Knobs {
        samples: Some(0),
        ..Knobs::default()
    };
    assert!(matches!(
        Strategy::from_name("self-consistency", &zero),
        Err(EngineError::InvalidParameter(_))
    ));
    assert!(matches!(
        Strategy::from_name("best-of-n", &zero),
        Err(EngineError::InvalidParameter(_))
    ));
    let depth0 = Knobs {
        depth: Some(0),
        ..Knobs::default()
    };
    assert!(matches!(
        Strategy::from_name("beam", &depth0),
        Err(EngineError::InvalidParameter(_))
    ));
    assert!(matches!(
        Strategy::from_name("mcts", &depth0),
        Err(EngineError::InvalidParameter(_))
    ));
    assert!(matches!(
        Strategy::from_name("nonsense", &Knobs::default()),
        Err(EngineError::InvalidParameter(_))
    ));
    let mut c = config("system1", Knobs::default());
    c.budget_tokens = Some(usize::MAX);
    assert!(c.validate().is_err(), "absurd budget");
    c.budget_tokens = Some(0);
    assert!(c.validate().is_err(), "zero budget");
    let mut c = config("system1", Knobs::default());
    c.prompt = "  ".into();
    assert!(c.validate().is_err(), "empty prompt");

    // Through the worker: an error event and a failed run, and the worker keeps going.
    let (_d, model) = model();
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    worker
        .send(Command::Run {
            run: RunId(1),
            config: Box::new(c),
        })
        .expect("send");
    let mut saw_error = false;
    loop {
        match worker
            .events()
            .recv_timeout(Duration::from_secs(10))
            .expect("event")
        {
            Event::Error { message, .. } => {
                assert!(message.contains("empty"), "{message}");
                saw_error = true;
            }
            Event::RunFinished { outcome, .. } => {
                assert_eq!(outcome, RunOutcome::Failed);
                break;
            }
            _ => {}
        }
    }
    assert!(saw_error);
    worker
        .send(Command::Run {
            run: RunId(2),
            config: Box::new(config("system1", Knobs::default())),
        })
        .expect("send");
    assert_eq!(collect(&worker, RunId(2)).outcome, RunOutcome::Completed);
}

/// `RunFinished` is only sent once the worker can branch from the run: a branch requested the
/// moment it arrives always starts (it used to race the worker's own bookkeeping).
#[test]
fn branching_right_after_run_finished_always_finds_the_run() {
    let (_d, model) = model();
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    for run in (1..=20u64).map(RunId) {
        let c = config(
            "best-of-n",
            Knobs {
                samples: Some(2),
                ..Knobs::default()
            },
        );
        worker
            .send(Command::Run {
                run,
                config: Box::new(c),
            })
            .expect("send");
        let first = collect(&worker, run);
        let node = first
            .tree
            .nodes
            .iter()
            .find(|n| n.kind == NodeKind::Generated && n.tokens.len() >= 2)
            .expect("an answer with two tokens");
        let alt = node.tokens[1].top[1].id;
        worker
            .send(Command::BranchFrom {
                run,
                node: node.id,
                index: 1,
                token: alt,
            })
            .expect("branch");
        loop {
            let e = worker
                .events()
                .recv_timeout(Duration::from_secs(30))
                .expect("the branch runs and finishes");
            match e {
                Event::Error {
                    run: Some(r),
                    message,
                } if r == run => {
                    panic!("run {run}: {message}")
                }
                Event::RunFinished {
                    run: r, outcome, ..
                } if r == run => {
                    assert_eq!(outcome, RunOutcome::Completed);
                    break;
                }
                _ => {}
            }
        }
    }
}

/// A strategy that lives in this file alone: registering it is all it takes to run it through
/// the worker, with its knob checked like any built-in one.
struct TwoSteps;

impl StrategyDef for TwoSteps {
    fn name(&self) -> &'static str {
        "test-two-steps"
    }

    fn title(&self) -> &'static str {
        "Two steps (test)"
    }

    fn summary(&self) -> &'static str {
        "Forks the prompt, writes one step in each branch, then picks the first."
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![Knob::int("forks", "Forks", "Branches to write.", 1, 4, 2).role(Role::Samples)]
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::PerBudget { knob: "forks" }
    }

    fn run(&self, ctx: &mut Ctx, p: &Params) -> thinkscope_engine::Result<()> {
        let root = ctx.start(true, false)?;
        let mut kids = ctx.fork(&root, p.count("forks")?, false, |i| format!("step {i}"))?;
        ctx.generate(&mut kids, &StopRule::one_step(6))?;
        let answers: Vec<_> = kids.iter().map(|k| ctx.finish(k)).collect();
        ctx.choose(Some(kids[0].node), answers[0].clone(), Default::default());
        Ok(())
    }
}

/// A strategy that crashes after it has started writing: the run must end `Failed` with the
/// panic's message, and the worker must go on serving other runs.
struct Crashes;

impl StrategyDef for Crashes {
    fn name(&self) -> &'static str {
        "test-crashes"
    }

    fn title(&self) -> &'static str {
        "Crashes (test)"
    }

    fn summary(&self) -> &'static str {
        "Panics in the middle of a run."
    }

    fn knobs(&self) -> Vec<Knob> {
        Vec::new()
    }

    fn lab_mode(&self) -> LabMode {
        LabMode::Single
    }

    fn run(&self, ctx: &mut Ctx, _p: &Params) -> thinkscope_engine::Result<()> {
        let root = ctx.start(true, false)?;
        let mut b = [ctx.continue_in_new_node(&root, "doomed")];
        ctx.generate(&mut b, &StopRule::to_end(3))?;
        let text = ctx.tree().path_text(b[0].node);
        panic!("a bug in the strategy after {} bytes", text.len());
    }
}

fn register_test_strategies() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        register(Arc::new(TwoSteps)).expect("register two-steps");
        register(Arc::new(Crashes)).expect("register crashes");
    });
}

#[test]
fn a_strategy_defined_in_a_test_runs_end_to_end() {
    register_test_strategies();
    let (_d, model) = model();
    let def = registry().get("test-two-steps").expect("registered");
    assert_eq!(def.title(), "Two steps (test)");
    // A second registration under the same name is refused.
    assert!(register(Arc::new(TwoSteps)).is_err());
    // Its knob goes through the common flags and is range-checked like a built-in one.
    let too_many = Knobs {
        samples: Some(9),
        ..Knobs::default()
    };
    let err = Strategy::from_name("test-two-steps", &too_many).expect_err("9 > 4");
    assert!(err.to_string().contains("forks"), "{err}");
    let f = run_one(
        &model,
        config(
            "test-two-steps",
            Knobs {
                samples: Some(3),
                ..Knobs::default()
            },
        ),
    );
    check_well_formed(&f);
    assert_eq!(f.outcome, RunOutcome::Completed);
    let steps: Vec<_> = f.tree.nodes[0].children.clone();
    assert_eq!(steps.len(), 3, "three forks under the prompt");
    assert!(steps.iter().all(|&s| !f.tree.nodes[s].tokens.is_empty()));
    assert_eq!(f.tree.chosen, Some(steps[0]));
    assert!(f.cost.tokens_reused > 0, "forks reuse the prompt");
}

#[test]
fn a_panicking_strategy_fails_its_run_only() {
    register_test_strategies();
    let (_d, model) = model();
    let worker =
        Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {})).expect("worker");
    let watch = || Watch {
        idle_timeout: Some(Duration::from_secs(120)),
        ..Watch::default()
    };
    let crashed = run_to_end(
        &worker,
        RunId(1),
        config("test-crashes", Knobs::default()),
        watch(),
        |_, _| {},
    )
    .expect("the run ends");
    assert_eq!(crashed.outcome, Some(RunOutcome::Failed));
    assert!(
        crashed.error_line().contains("a bug in the strategy"),
        "{}",
        crashed.error_line()
    );
    assert!(
        crashed
            .tree
            .nodes
            .iter()
            .all(|n| n.status != NodeStatus::Running),
        "nothing is left running"
    );
    assert!(crashed.tree.nodes.len() >= 2, "the partial tree is kept");
    // The same worker serves the next run.
    let next = run_to_end(
        &worker,
        RunId(2),
        config("system1", Knobs::default()),
        watch(),
        |_, _| {},
    )
    .expect("the next run ends");
    assert_eq!(next.outcome, Some(RunOutcome::Completed));
}
