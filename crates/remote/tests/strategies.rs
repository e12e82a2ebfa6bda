//! Every strategy over the real llama-cpp-python server on the default model, through the same
//! run manager the app and the CLI use; Stop mid-run; the server killed mid-run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thinkscope_engine::events::{Event, RunId, RunOutcome};
use thinkscope_engine::service::SequenceService;
use thinkscope_engine::strategy::{registry, Knobs, RunConfig, Strategy};
use thinkscope_engine::tree::NodeKind;
use thinkscope_engine::view::{run_to_end, RunView, Watch};
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_remote::llama_server::LlamaServer;

mod common;
use common::{server, service};

fn worker(server: &LlamaServer) -> Worker {
    let service: Arc<dyn SequenceService> = Arc::new(service(server));
    Worker::with_service(service, WorkerOptions::default(), Arc::new(|| {})).expect("worker")
}

fn config(name: &str, max_tokens: usize) -> RunConfig {
    let knobs = Knobs {
        samples: Some(2),
        depth: Some(2),
        thinking: Some(48),
    };
    let mut c = RunConfig::new(
        "What is 2 + 3?",
        Strategy::from_name(name, &knobs).expect("strategy"),
    );
    c.max_tokens = max_tokens;
    c.seed = 1;
    c
}

fn watch() -> Watch<'static> {
    Watch {
        idle_timeout: Some(Duration::from_secs(300)),
        ..Watch::default()
    }
}

#[test]
fn every_strategy_runs_over_the_server() {
    let Some(server) = server() else { return };
    let worker = worker(&server);
    let mut report = Vec::new();
    for (k, name) in registry().names().into_iter().enumerate() {
        let started = Instant::now();
        let view = run_to_end(
            &worker,
            RunId(k as u64 + 1),
            config(name, 32),
            watch(),
            |_, _| {},
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            view.outcome,
            Some(RunOutcome::Completed),
            "{name}: {}",
            view.error_line()
        );
        let tree = &view.tree;
        let generated: Vec<_> = tree
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Generated | NodeKind::Manual))
            .collect();
        assert!(!generated.is_empty(), "{name}: no generated node");
        let tokens: usize = generated.iter().map(|n| n.tokens.len()).sum();
        assert!(tokens > 0, "{name}: no tokens");
        for n in &generated {
            assert!(
                n.tokens.len() <= 32 + 48,
                "{name}: node {} has {} tokens",
                n.id,
                n.tokens.len()
            );
            for t in &n.tokens {
                assert!(
                    t.logprob <= 0.0 && t.logprob.is_finite(),
                    "{name}: logprob {}",
                    t.logprob
                );
                // Streamed tokens and children started from a top alternative alike.
                if n.kind == NodeKind::Generated {
                    assert!(
                        !t.top.is_empty(),
                        "{name}: {:?} has no alternatives",
                        t.text
                    );
                }
            }
        }
        // The server computed every kept token, plus one look-ahead per request.
        assert!(
            view.cost.generated_tokens >= tokens as u64,
            "{name}: {} generated < {tokens} in the tree",
            view.cost.generated_tokens
        );
        assert!(view.cost.prompt_tokens_computed > 0, "{name}");
        assert!(view.cost.wall_secs > 0.0);
        report.push(format!(
            "{name}: {} nodes, {tokens} tree tokens, {} generated, answer {:?}, {:.1} s",
            tree.nodes.len(),
            view.cost.generated_tokens,
            tree.answer,
            started.elapsed().as_secs_f64()
        ));
        if name == "self-consistency" {
            assert!(!tree.tally.is_empty(), "a tally");
            assert!(tree.tally.values().sum::<u32>() <= 2);
        }
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{}", report.join("\n"));
}

#[test]
fn stop_mid_run_closes_the_streams_and_the_server_is_free_again() {
    let Some(server) = server() else { return };
    let worker = worker(&server);
    let cancel = AtomicBool::new(false);
    let tokens = Mutex::new(0usize);
    let mut c = config("self-consistency", 400);
    c.strategy = Strategy::from_name(
        "self-consistency",
        &Knobs {
            samples: Some(3),
            ..Knobs::default()
        },
    )
    .expect("strategy");
    let watch = Watch {
        cancel: Some(&cancel),
        idle_timeout: Some(Duration::from_secs(120)),
    };
    let mut stopped_at = None;
    let view = run_to_end(&worker, RunId(1), c, watch, |_: &RunView, e: &Event| {
        if let Event::TokensAppended { tokens: t, .. } = e {
            let mut n = tokens.lock().expect("count");
            *n += t.len();
            if *n >= 8 && stopped_at.is_none() {
                cancel.store(true, Ordering::SeqCst);
                stopped_at = Some(Instant::now());
            }
        }
    })
    .expect("ends");
    let after = stopped_at.map(|t| t.elapsed()).unwrap_or_default();
    assert_eq!(
        view.outcome,
        Some(RunOutcome::Cancelled),
        "{}",
        view.error_line()
    );
    assert!(view.tree.token_count() >= 8, "the partial tree is kept");
    assert!(
        view.tree.token_count() < 3 * 400,
        "the samples were cut short, not run to their end"
    );
    // The streams are closed: the next run does not wait behind 3 × 400 tokens.
    let before = Instant::now();
    let next = run_to_end(
        &worker,
        RunId(2),
        config("system1", 4),
        self::watch(),
        |_, _| {},
    )
    .expect("next run");
    assert_eq!(next.outcome, Some(RunOutcome::Completed));
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "stop: run ended {after:?} after Stop; the next run took {:?}",
        before.elapsed()
    );
}

#[test]
fn killing_the_server_mid_run_fails_the_run_and_keeps_the_partial_tree() {
    let Some(server) = server() else { return };
    let worker = worker(&server);
    let server = Mutex::new(Some(server));
    let mut seen = 0usize;
    let mut c = config("chain-of-thought", 300);
    c.prompt = "Write a long story about a dragon who learns arithmetic.".into();
    let view = run_to_end(&worker, RunId(1), c, watch(), |_, e| {
        if let Event::TokensAppended { tokens, .. } = e {
            seen += tokens.len();
            if seen >= 6 {
                if let Some(mut s) = server.lock().expect("server").take() {
                    s.kill();
                }
            }
        }
    })
    .expect("ends");
    assert_eq!(
        view.outcome,
        Some(RunOutcome::Failed),
        "{} tokens: {}",
        view.tree.token_count(),
        view.tree.transcript_markdown()
    );
    let line = view.error_line();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.contains("stream was cut") || line.contains("cannot connect"),
        "{line}"
    );
    assert!(
        view.tree.token_count() >= 6,
        "the tokens that arrived are kept"
    );
}
