//! `thinkscope-cli lab`: a sweep of strategies × budgets, with a progress bar, a table, CSV and SVG.

use std::path::Path;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use thinkscope_engine::events::Event;
use thinkscope_engine::lab::plot;
use thinkscope_engine::lab::sweep::{format_table, run_sweep, summarize, write_csv, SweepConfig};
use thinkscope_engine::lab::{SweepEngine, SweepProgress};

pub fn lab(
    engine: &SweepEngine,
    config: &SweepConfig,
    results: &Path,
    csv: &Path,
    svg: Option<&Path>,
) -> anyhow::Result<()> {
    eprintln!(
        "lab: {} problems ({}) × {} × N up to {}; results in {}",
        config.problems.problems.len(),
        config.problems.name,
        config.strategies.join(", "),
        config.max_n,
        results.display()
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{pos}/{len} [{bar:30}] {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let mut tokens = 0u64;
    let outcome = run_sweep(engine, config, results, &cancel, &mut |p| match p {
        SweepProgress::Started {
            total,
            done,
            ignored,
        } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done > 0 {
                eprintln!(
                    "resuming: {done} of {total} (problem, strategy) pairs already in the results file"
                );
            }
            if ignored > 0 {
                eprintln!(
                    "note: {ignored} records in the results file belong to other settings or problems and are ignored"
                );
            }
        }
        SweepProgress::PairStarted {
            problem_id,
            strategy,
            ..
        } => {
            tokens = 0;
            bar.set_message(format!("{problem_id} {strategy}"));
        }
        SweepProgress::Engine(event) => {
            if let Event::TokensAppended { tokens: t, .. } = *event {
                tokens += t.len() as u64;
                if tokens.is_multiple_of(16) {
                    bar.tick();
                }
            }
        }
        SweepProgress::PairFailed { failure, done, .. } => {
            bar.set_position(done as u64);
            bar.suspend(|| eprintln!("failed: {failure}"));
        }
        SweepProgress::PairFinished { record, done, .. } => {
            bar.set_position(done as u64);
            let Some(run) = record.runs.last() else {
                return;
            };
            let right = run.samples.iter().filter(|s| s.correct).count();
            let line = format!(
                "{:<22} {:<18} answer {:<10} {} (expected {}; {right}/{} samples right; {:.1}s{})",
                record.problem_id,
                record.strategy,
                run.answer.as_deref().unwrap_or("(none)"),
                if run.correct { "right" } else { "wrong" },
                record.expected,
                run.samples.len(),
                run.cost.wall_secs,
                if record.shared_from.is_some() {
                    ", samples shared"
                } else {
                    ""
                },
            );
            bar.suspend(|| eprintln!("{line}"));
        }
    })?;
    bar.finish_and_clear();
    if !outcome.completed {
        bail!(
            "the sweep stopped early; run the same command again to resume from {}",
            results.display()
        );
    }
    let points = summarize(config, &outcome.records);
    write_csv(&points, csv)?;
    print!("{}", format_table(&points));
    println!(
        "(means per problem over {} problems)",
        config.problems.problems.len()
    );
    if points.iter().any(|p| p.cost_derived) {
        let n = config.max_n;
        println!(
            "(costs for N below {n} are derived from subsets of the N = {n} run, not measured)"
        );
    }
    println!("csv: {}", csv.display());
    let failed = outcome.failed.len();
    if let Some(svg) = svg {
        let title = format!("{}: {}", engine.model_name(), config.problems.name);
        let note = format!(
            "N up to {}, seed {}, max {} tokens per sample; smaller-N costs derived from the N = {} samples",
            config.max_n, config.seed, config.max_tokens, config.max_n
        );
        plot::write_svg(&points, &title, &note, svg)?;
        println!("svg: {}", svg.display());
    }
    if let Some(first) = outcome.failed.first() {
        // The rest of the sweep finished and is written; a rerun retries only the failed pairs.
        bail!(
            "{failed} of {} (problem, strategy) pairs failed and were left out ({first}); run the same command again to retry them",
            config.problems.problems.len() * config.strategies.len()
        );
    }
    Ok(())
}
