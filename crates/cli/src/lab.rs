//! `thinkscope-cli lab`: a sweep of strategies × budgets, with a progress bar, a table, CSV and SVG;
//! with a sampled pool also the verification gap, the difficulty view and where the curves flatten.

use std::path::Path;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use thinkscope_engine::events::Event;
use thinkscope_engine::lab::plot;
use thinkscope_engine::lab::sweep::{
    difficulty_bins, difficulty_csv, format_table, format_walls, run_sweep, summarize,
    summarize_problems, walls, write_csv, write_text, SweepConfig, SweepMode,
};
use thinkscope_engine::lab::{SweepEngine, SweepProgress};

/// A doubling that gains less than this (two accuracy points) counts as flat.
const WALL_GAIN: f64 = 0.02;

pub fn lab(
    engine: &SweepEngine,
    config: &SweepConfig,
    results: &Path,
    csv: &Path,
    svg: Option<&Path>,
    bins: usize,
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
    let flat = walls(&points, WALL_GAIN);
    if !flat.is_empty() {
        println!(
            "where the curves flatten (a doubling of N gains under {:.0} points):",
            WALL_GAIN * 100.0
        );
        print!("{}", format_walls(&flat, WALL_GAIN));
    }
    // The difficulty view: the same figures per level of problem difficulty.
    let levels: Vec<_> = difficulty_bins(config, &outcome.records, bins)
        .into_iter()
        .map(|bin| {
            let points =
                summarize_problems(config, &outcome.records, |p| bin.problems.contains(&p));
            (bin, points)
        })
        .collect();
    if !levels.is_empty() {
        let path = csv.with_extension("difficulty.csv");
        write_text(&difficulty_csv(&levels), &path)?;
        println!("difficulty levels:");
        for (bin, _) in &levels {
            println!("  {}", bin.label());
        }
        println!("difficulty csv: {}", path.display());
    }
    if let Some(svg) = svg {
        let title = format!("{}: {}", engine.model_name(), config.problems.name);
        let note = format!(
            "N up to {}, seed {}, max {} tokens per sample; smaller-N costs derived from the N = {} samples",
            config.max_n, config.seed, config.max_tokens, config.max_n
        );
        plot::write_svg(&points, &title, &note, svg)?;
        println!("svg: {}", svg.display());
        let pool = config
            .lab_strategies()?
            .into_iter()
            .find(|s| matches!(s.mode, SweepMode::Pool { .. }));
        if let Some(pool) = pool {
            let gap = svg.with_extension("gap.svg");
            let note = format!(
                "{} samples per problem from {}, subsets for smaller N; shaded: some sample right, no rule picked it",
                config.max_n, pool.label
            );
            write_text(
                &plot::render_gap_svg(
                    &points,
                    &pool.label,
                    &format!("{title}: the verification gap"),
                    &note,
                ),
                &gap,
            )?;
            println!("gap svg: {}", gap.display());
            if !levels.is_empty() {
                let path = svg.with_extension("difficulty.svg");
                let note = "problems binned by the pool's pass@1, easiest first (Snell et al. 2024); each panel as in the gap chart";
                write_text(
                    &plot::render_difficulty_svg(
                        &levels,
                        &pool.label,
                        &format!("{title}: by difficulty"),
                        note,
                    ),
                    &path,
                )?;
                println!("difficulty svg: {}", path.display());
            }
        }
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
