//! `thinkscope-cli run`: one strategy on one prompt, its answer, votes and cost.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::json;
use thinkscope_engine::answer::answers_match;
use thinkscope_engine::events::{Event, RunId, RunOutcome};
use thinkscope_engine::generate::PromptFormat;
use thinkscope_engine::progress::{self, ProgressConfig};
use thinkscope_engine::service::SequenceService;
use thinkscope_engine::session::SessionFile;
use thinkscope_engine::strategy::{KnobValue, Knobs, RunConfig, Strategy};
use thinkscope_engine::view::{run_to_end, Watch};
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_engine::Model;

use crate::args::StrategyArgs;

/// The strategy the flags describe: the common knobs, then `--params`, then each `--set`.
pub fn strategy(args: &StrategyArgs, budget: Option<usize>) -> anyhow::Result<Strategy> {
    let mut s = Strategy::named(&args.strategy)?;
    let thinking = args.thinking.or_else(|| {
        // Budget forcing reads a run budget as its thinking budget, as it always has.
        (s.name() == "budget-forcing").then_some(budget).flatten()
    });
    s.apply_roles(&Knobs {
        samples: args.samples,
        depth: args.depth,
        thinking,
    })?;
    if let Some(extra) = &args.params {
        let extra: serde_json::Value =
            serde_json::from_str(extra).context("--params is not valid JSON")?;
        let serde_json::Value::Object(map) = extra else {
            bail!("--params must be a JSON object");
        };
        for (k, v) in map {
            if k == "name" {
                bail!("--params cannot change the strategy name");
            }
            let value: KnobValue = serde_json::from_value(v)
                .with_context(|| format!("--params: '{k}' is not a number, text or boolean"))?;
            s.set(&k, value)?;
        }
    }
    for pair in &args.set {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--set takes KEY=VALUE, not '{pair}'");
        };
        s.set_text(k.trim(), v.trim())?;
    }
    s.validate()?;
    Ok(s)
}

/// Everything `run` needs besides the model.
pub struct RunArgs {
    pub strategy: Strategy,
    pub prompt: String,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub budget: Option<usize>,
    pub max_tokens: usize,
    pub expected: Option<String>,
    pub raw: bool,
    pub thinking: Option<bool>,
    pub progress: Option<ProgressConfig>,
}

impl RunArgs {
    pub fn config(self) -> anyhow::Result<RunConfig> {
        let budget_forcing = self.strategy.name() == "budget-forcing";
        let config = RunConfig {
            prompt: self.prompt,
            format: if self.raw {
                PromptFormat::Raw
            } else {
                PromptFormat::Auto
            },
            strategy: self.strategy,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            max_tokens: self.max_tokens,
            // For budget forcing the budget went to its thinking knob.
            budget_tokens: if budget_forcing { None } else { self.budget },
            expected_answer: self.expected,
            thinking: self.thinking,
            progress: self.progress,
        };
        config.validate()?;
        Ok(config)
    }
}

/// A run manager over the in-process engine.
pub fn local_worker(model: Arc<Model>) -> anyhow::Result<Worker> {
    Ok(Worker::spawn(
        model,
        WorkerOptions::default(),
        Arc::new(|| {}),
    )?)
}

/// A run manager over any sequence service (a server, say).
pub fn worker_over(service: Arc<dyn SequenceService>) -> anyhow::Result<Worker> {
    Ok(Worker::with_service(
        service,
        WorkerOptions::default(),
        Arc::new(|| {}),
    )?)
}

/// Run `config` to its end, print what happened, and write `json_path` and `session_path` if
/// given.
pub fn run(
    worker: &Worker,
    config: RunConfig,
    json_path: Option<&Path>,
    session_path: Option<&Path>,
) -> anyhow::Result<()> {
    let view = run_to_end(
        worker,
        RunId(1),
        config.clone(),
        Watch::default(),
        |view, event| {
            if let Event::NodeFinished {
                node,
                answer: Some(a),
                ..
            } = event
            {
                let label = view.tree.node(*node).map_or("", |n| n.label.as_str());
                eprintln!("  [{node}] {label} → {a}");
            }
        },
    )?;
    if let Some(path) = session_path {
        SessionFile::from_run(&config, view.tree.clone(), view.cost.clone())
            .write(path)
            .with_context(|| format!("could not save the session: {}", path.display()))?;
        eprintln!(
            "session saved: {} (open it with `thinkscope {}`)",
            path.display(),
            path.display()
        );
    }
    if view.outcome == Some(RunOutcome::Failed) {
        bail!("{}", view.error_line());
    }
    let (tree, cost) = (&view.tree, &view.cost);
    println!("strategy: {}", config.strategy.name());
    println!("answer:   {}", tree.answer.as_deref().unwrap_or("(none)"));
    if let Some(expected) = &config.expected_answer {
        let ok = tree
            .answer
            .as_deref()
            .is_some_and(|a| answers_match(a, expected));
        println!("correct:  {ok} (expected {expected})");
    }
    if !tree.tally.is_empty() {
        let votes: Vec<String> = tree
            .tally
            .iter()
            .map(|(a, n)| format!("{a}: {n}"))
            .collect();
        println!("votes:    {}", votes.join(", "));
    }
    println!(
        "nodes:    {} ({} tokens in the tree)",
        tree.nodes.len(),
        tree.token_count()
    );
    println!("cost:");
    println!(
        "  prompt tokens computed  {:>12}",
        cost.prompt_tokens_computed
    );
    if cost.tokens_reused_unknown {
        println!("  tokens reused (cache)        unknown (not reported by the server)");
    } else {
        println!("  tokens reused (cache)   {:>12}", cost.tokens_reused);
    }
    println!("  generated tokens        {:>12}", cost.generated_tokens);
    println!("  forward passes          {:>12}", cost.forward_passes);
    println!("  wall time               {:>11.2}s", cost.wall_secs);
    println!("  generation speed        {:>8.1} tok/s", cost.tok_per_sec);
    println!("  FLOPs (estimated)       {:>12.3e}", cost.flops);
    if cost.energy_source.starts_with("unknown") {
        println!(
            "  energy                       unknown   [{}]",
            cost.energy_source
        );
    } else {
        println!(
            "  energy ({})  {:>9.1} J   [{}]",
            if cost.energy_measured {
                "measured "
            } else {
                "estimated"
            },
            cost.energy_joules,
            cost.energy_source
        );
    }
    if cost.probed_nodes > 0 {
        println!("probes (their tokens and energy are not in the figures above; their time is part of the wall time):");
        println!("  nodes probed            {:>12}", cost.probed_nodes);
        println!(
            "  probe tokens computed   {:>12}  ({} cue, {} sampled)",
            cost.probe_tokens,
            cost.probe_cue_tokens,
            cost.probe_tokens - cost.probe_cue_tokens
        );
        println!("  probe tokens reused     {:>12}", cost.probe_tokens_reused);
        println!("  probe time              {:>11.2}s", cost.probe_secs);
        if cost.energy_source.starts_with("unknown") {
            println!("  probe energy                 unknown");
        } else {
            println!(
                "  probe energy ({})  {:>5.1} J",
                if cost.energy_measured {
                    "measured "
                } else {
                    "estimated"
                },
                cost.probe_energy_joules
            );
        }
        print_progress(tree);
    }
    if let Some(path) = json_path {
        let out = json!({
            "config": config,
            "outcome": view.outcome,
            "answer": tree.answer,
            "tally": tree.tally,
            "tree": tree,
            "cost": cost,
        });
        thinkscope_engine::atomic::write(path, serde_json::to_string_pretty(&out)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The progress of the chosen path (or, without one, of every probed node), one line per node.
fn print_progress(tree: &thinkscope_engine::tree::Tree) {
    let ids: Vec<_> = match tree.chosen {
        Some(c) => tree.path(c),
        None => tree.nodes.iter().map(|n| n.id).collect(),
    };
    let mut basis = None;
    let mut lines = Vec::new();
    for id in ids {
        let n = &tree.nodes[id];
        let Some(p) = &n.progress else { continue };
        basis = Some((p.basis, p.reference.clone()));
        lines.push(format!(
            "  [{id}] {:<16} at {:>4} tokens  p̂ {:.2}{}",
            n.label,
            p.at_tokens,
            p.p_hat,
            p.delta
                .map_or_else(String::new, |d| format!("  Δp̂ {d:+.2}")),
        ));
    }
    let Some((basis, reference)) = basis else {
        return;
    };
    println!(
        "{} along the {}, vs {}:",
        basis.short(),
        if tree.chosen.is_some() {
            "chosen path"
        } else {
            "tree"
        },
        reference.as_deref().unwrap_or("(no answer)")
    );
    for l in lines {
        println!("{l}");
    }
    if let Some(c) = tree.chosen {
        let curve = progress::path_curve(tree, c);
        let end = tree.path_tokens(c).len();
        if let Some(best) = progress::best_p_hat(tree).filter(|_| end > 0) {
            let area = progress::regret(&curve, best, end);
            println!(
                "  regret against the best p̂ of the run ({best:.2}): {area:.1} token·probability ({:.2} per token)",
                area / end as f64
            );
        }
    }
    if basis == progress::ProgressBasis::Consensus {
        println!("  ({})", basis.label());
    }
}
