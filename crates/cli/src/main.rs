//! Headless thinkscope: fetch models, generate, benchmark.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use thinkscope_engine::device::{self, DevicePref};
use thinkscope_engine::events::{Command as EngineCommand, Event, RunOutcome};
use thinkscope_engine::fetch::{self, FetchProgress};
use thinkscope_engine::generate::{self, PromptFormat};
use thinkscope_engine::lab::plot;
use thinkscope_engine::lab::problems::ProblemSource;
use thinkscope_engine::lab::sweep::{format_table, run_sweep, summarize, write_csv, SweepConfig};
use thinkscope_engine::lab::SweepProgress;
use thinkscope_engine::strategy::{registry, Knobs, RunConfig, Strategy};
use thinkscope_engine::tree::Tree;
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_engine::{Engine, Model, SamplingParams};

#[derive(Parser)]
#[command(
    name = "thinkscope-cli",
    version,
    about = "Headless thinkscope: fetch, generate, benchmark"
)]
struct Cli {
    /// Worker threads for the CPU kernels (default: all physical cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Where to run: auto, cpu or gpu.
    #[arg(long, global = true, default_value = "auto")]
    device: DevicePref,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download a model into the models directory (default: SmolLM2-135M-Instruct Q4_1).
    FetchModel {
        /// Which model: smollm2-135m or gemma3-270m.
        #[arg(long, default_value = "smollm2-135m")]
        name: String,
        /// Target directory (default: ./models).
        #[arg(long)]
        models_dir: Option<PathBuf>,
    },
    /// Generate a completion and stream it.
    Generate {
        /// The user's prompt.
        #[arg(long)]
        prompt: String,
        /// GGUF file (default: the default model, fetched if missing).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Most tokens to generate.
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// Sampling temperature; 0 is greedy.
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// Nucleus sampling threshold.
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        /// Keep only the k most likely tokens (0 = off).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Minimum probability relative to the best token.
        #[arg(long, default_value_t = 0.05)]
        min_p: f32,
        /// Random seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Alternatives reported per token in --json.
        #[arg(long, default_value_t = 5)]
        top_alternatives: usize,
        /// Plain completion: skip the chat template.
        #[arg(long)]
        raw: bool,
        /// Print one JSON object instead of streaming text.
        #[arg(long)]
        json: bool,
    },
    /// Measure prefill, decode and batched-decode speed.
    Bench {
        /// GGUF file (default: the default model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Batch sizes for batched decoding.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
        batch: Vec<usize>,
        /// Prompt length for the prefill measurement.
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        /// Decode steps per measurement.
        #[arg(long, default_value_t = 32)]
        decode_tokens: usize,
        /// Repetitions; medians are reported.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a reasoning strategy and print its answer, votes and cost.
    Run {
        /// Strategy name (see `strategies`).
        #[arg(long)]
        strategy: String,
        /// The question.
        #[arg(long)]
        prompt: String,
        /// Samples, beam width or branching factor.
        #[arg(long)]
        samples: Option<usize>,
        /// Beam depth, MCTS iterations or "Wait" insertions.
        #[arg(long)]
        depth: Option<usize>,
        /// Sampling temperature for sampled branches.
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// Nucleus threshold.
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        /// Random seed: the same seed gives the same tree.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Token budget for the whole run (thinking budget for budget forcing).
        #[arg(long)]
        budget: Option<usize>,
        /// Most tokens per branch.
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// The known answer, for the exact scorer and a correctness line.
        #[arg(long)]
        expected: Option<String>,
        /// Strategy parameters as JSON, e.g. '{"n": 8, "scorer": "self-verify"}'.
        #[arg(long)]
        params: Option<String>,
        /// Plain completion: skip the chat template.
        #[arg(long)]
        raw: bool,
        /// GGUF file (default: the default model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Write the whole tree and the cost object to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// List the strategies and their parameters.
    Strategies {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Scaling lab: sweep strategies × budgets over a problem set; write accuracy-vs-compute
    /// figures as CSV (and SVG). Each problem is sampled once at the largest N; smaller N are
    /// derived from subsets. Finished problems go to a results file at once, so a rerun resumes.
    Lab {
        /// Problem set as JSONL: {"question": ..., "answer": ...} per line (GSM8K's "#### 42"
        /// answers accepted).
        #[arg(
            long,
            required_unless_present = "generate",
            conflicts_with = "generate"
        )]
        set: Option<PathBuf>,
        /// Built-in problems instead: arithmetic:N[:D] or word:N[:D] (D: difficulty 1..3).
        #[arg(long)]
        generate: Option<String>,
        /// Strategies, comma-separated: greedy, chain-of-thought, self-consistency, best-of-n,
        /// budget-forcing, beam, mcts, entropy-branching.
        #[arg(long, value_delimiter = ',', default_value = "greedy,self-consistency")]
        strategies: Vec<String>,
        /// Largest budget N (1..64); the sweep reports N = 1, 2, 4, … up to it.
        #[arg(long, default_value_t = 8)]
        max_n: usize,
        /// Seed of the generator, the runs and the resampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Most tokens per sample.
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        /// Sampling temperature.
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// Nucleus threshold.
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        /// Where to write the CSV (one row per strategy and N).
        #[arg(long)]
        csv: PathBuf,
        /// Results file to append to and resume from (default: next to the CSV, *.results.jsonl).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Also draw the accuracy-vs-tokens curves to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// GGUF file (default: the default model).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Write a copy of a model with its weight matrices re-quantized (e.g. a Q8_0 file for
    /// benchmarks).
    Quantize {
        /// GGUF file to read (default: the default model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Target type: q8_0, q4_0, q4_1, q5_0, q5_1 or f16.
        #[arg(long, default_value = "q8_0")]
        to: String,
        /// Where to write the new file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show a model's metadata and configuration.
    Info {
        /// GGUF file (default: the default model).
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(n) = cli.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        // The pools are sized from these variables on first use, which has not happened yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // thinkscope's own kernels and attention run on the rayon pool. candle's pool, used only
        // for the formats without an own kernel, spins while idle and starves the rayon threads
        // (measured: Gemma 3 270M decodes at 3.6 tok/s with two pools of 2 threads, 40 tok/s with
        // candle on one), so candle gets a single thread.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    match cli.command {
        Command::FetchModel { name, models_dir } => {
            let Some(src) = fetch::source(&name) else {
                let known: Vec<&str> = fetch::SOURCES.iter().map(|s| s.key).collect();
                bail!("unknown model '{name}' (known: {})", known.join(", "));
            };
            let dir = models_dir.unwrap_or_else(fetch::models_dir);
            let path = fetch_with_bar(src, &dir)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Generate {
            prompt,
            model,
            max_tokens,
            temperature,
            top_p,
            top_k,
            min_p,
            seed,
            top_alternatives,
            raw,
            json,
        } => {
            let params = SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                seed,
                top_alternatives,
            };
            params.validate()?;
            if max_tokens == 0 {
                bail!("--max-tokens must be at least 1");
            }
            let model = load_model(model.as_deref(), cli.device)?;
            let format = if raw {
                PromptFormat::Raw
            } else {
                PromptFormat::Auto
            };
            let ids = generate::build_prompt(&model, &prompt, format)?;
            let mut engine = Engine::new(
                model.clone(),
                thinkscope_engine::sequences::DEFAULT_KV_BUDGET_BYTES,
            )?;
            let mut stdout = std::io::stdout();
            let gen = generate::generate(&mut engine, &ids, &params, max_tokens, |_, piece| {
                if !json {
                    let _ = write!(stdout, "{piece}");
                    let _ = stdout.flush();
                }
                true
            })?;
            if json {
                let out = json!({
                    "model": model.info.name,
                    "device": model.info.device,
                    "prompt_tokens": gen.prompt_tokens,
                    "text": gen.text,
                    "tokens": gen.tokens,
                    "stop_reason": gen.stop_reason,
                    "counters": gen.counters,
                    "prefill_secs": gen.prefill_secs,
                    "decode_secs": gen.decode_secs,
                    "sampling": params,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!();
                let n = gen.tokens.len();
                eprintln!(
                    "[{} prompt tokens, {n} generated, {:.1} tok/s, stop: {:?}]",
                    gen.prompt_tokens,
                    n as f64 / gen.decode_secs.max(1e-9),
                    gen.stop_reason
                );
            }
            Ok(())
        }
        Command::Bench {
            model,
            batch,
            prompt_tokens,
            decode_tokens,
            repeats,
            json,
        } => {
            let model = load_model(model.as_deref(), cli.device)?;
            bench(
                &model,
                &batch,
                prompt_tokens,
                decode_tokens,
                repeats.max(1),
                json,
            )
        }
        Command::Run {
            strategy,
            prompt,
            samples,
            depth,
            temperature,
            top_p,
            seed,
            budget,
            max_tokens,
            expected,
            params,
            raw,
            model,
            json,
        } => {
            let knobs = Knobs {
                samples,
                depth,
                thinking: if strategy == "budget-forcing" {
                    budget
                } else {
                    None
                },
            };
            let mut strat = Strategy::from_name(&strategy, &knobs)?;
            if let Some(extra) = params {
                strat = merge_params(&strat, &extra)?;
            }
            let config = RunConfig {
                prompt,
                format: if raw {
                    PromptFormat::Raw
                } else {
                    PromptFormat::Auto
                },
                strategy: strat,
                temperature,
                top_p,
                seed,
                max_tokens,
                budget_tokens: if strategy == "budget-forcing" {
                    None
                } else {
                    budget
                },
                expected_answer: expected,
            };
            config.validate()?;
            let model = load_model(model.as_deref(), cli.device)?;
            run_strategy(model, config, json.as_deref())
        }
        Command::Strategies { json } => {
            let reg = registry();
            if json {
                println!("{}", serde_json::to_string_pretty(&reg)?);
            } else {
                for s in reg {
                    println!("{:<18} {}", s.name, s.description);
                    for p in s.params {
                        println!("    {:<14} (default {}) {}", p.name, p.default, p.help);
                    }
                }
                println!("\nGeneric flags map onto them: --samples (n / width / children / branches), --depth (beam depth / MCTS iterations / max waits / max splits), --budget (run token budget; thinking budget for budget-forcing).");
            }
            Ok(())
        }
        Command::Lab {
            set,
            generate,
            strategies,
            max_n,
            seed,
            max_tokens,
            temperature,
            top_p,
            csv,
            results,
            svg,
            model,
        } => {
            let source = match (set, generate) {
                (Some(path), _) => ProblemSource::File(path),
                (None, Some(spec)) => ProblemSource::Generate(spec.parse()?),
                (None, None) => bail!("give --set FILE.jsonl or --generate arithmetic:N"),
            };
            let config = SweepConfig {
                strategies,
                max_n,
                problems: source.load(seed)?,
                seed,
                max_tokens,
                temperature,
                top_p,
            };
            config.validate()?;
            let results = results.unwrap_or_else(|| csv.with_extension("results.jsonl"));
            let model = load_model(model.as_deref(), cli.device)?;
            lab(model, &config, &results, &csv, svg.as_deref())
        }
        Command::Quantize { model, to, out } => {
            let target: thinkscope_engine::quantize::QuantType = to.parse()?;
            let src = model_path(model.as_deref())?;
            if out.exists() {
                bail!("{} exists; not overwriting it", out.display());
            }
            thinkscope_engine::quantize::requantize(&src, &out, target)?;
            // Prove the file loads before saying so.
            let m = load_model(Some(&out), cli.device)?;
            eprintln!("wrote {} ({})", out.display(), m.kernel_summary());
            Ok(())
        }
        Command::Info { model } => {
            let model = load_model(model.as_deref(), cli.device)?;
            let out = json!({
                "info": model.info,
                "config": model.config,
                "stop_ids": model.tokenizer.stop_ids,
                "add_bos": model.tokenizer.add_bos,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

fn fetch_with_bar(src: &fetch::ModelSource, dir: &Path) -> anyhow::Result<PathBuf> {
    let bar = ProgressBar::new(src.download_bytes);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let path = fetch::fetch(src, dir, &mut |p| match p {
        FetchProgress::Downloading { bytes, total } => {
            bar.set_message("downloading");
            bar.set_length(total);
            bar.set_position(bytes);
        }
        FetchProgress::Unpacking { bytes, total } => {
            bar.set_message("unpacking");
            bar.set_length(total);
            bar.set_position(bytes);
        }
        FetchProgress::Verifying => bar.set_message("verifying"),
        FetchProgress::Done { .. } => bar.finish_and_clear(),
    })?;
    bar.finish_and_clear();
    Ok(path)
}

/// The file `--model` names, or the default model (fetched when missing).
fn model_path(path: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(match path {
        Some(p) => p.to_owned(),
        None => {
            let dir = fetch::models_dir();
            let default = fetch::default_model_path(&dir);
            if !default.is_file() {
                eprintln!(
                    "Default model not found; fetching {} into {}",
                    fetch::SMOLLM2_135M.file_name,
                    dir.display()
                );
                fetch_with_bar(&fetch::SMOLLM2_135M, &dir)?;
            }
            default
        }
    })
}

fn load_model(path: Option<&Path>, pref: DevicePref) -> anyhow::Result<Arc<Model>> {
    let path = model_path(path)?;
    let (dev, note) = device::select(pref);
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    let model = Model::load(&path, &dev).with_context(|| format!("loading {}", path.display()))?;
    Ok(Arc::new(model))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(
    model: &Arc<Model>,
    batches: &[usize],
    prompt_tokens: usize,
    decode_tokens: usize,
    repeats: usize,
    json_out: bool,
) -> anyhow::Result<()> {
    if prompt_tokens == 0 || decode_tokens == 0 || batches.contains(&0) {
        bail!("prompt tokens, decode tokens and batch sizes must be at least 1");
    }
    let vocab = model.config.vocab as u32;
    // A deterministic pseudo-text prompt of ordinary tokens.
    let prompt: Vec<u32> = (0..prompt_tokens as u32)
        .map(|i| 200 + (i * 7919) % (vocab - 400))
        .collect();
    let mut engine = Engine::new(
        model.clone(),
        thinkscope_engine::sequences::DEFAULT_KV_BUDGET_BYTES,
    )?;
    // Warm-up.
    let s = engine.new_sequence();
    engine.prefill(s, &prompt[..prompt.len().min(16)])?;
    engine.release(s);

    let mut prefill = Vec::new();
    for _ in 0..repeats {
        let s = engine.new_sequence();
        let t = Instant::now();
        engine.prefill(s, &prompt)?;
        prefill.push(prompt_tokens as f64 / t.elapsed().as_secs_f64());
        engine.release(s);
    }
    let root = engine.new_sequence();
    engine.prefill(root, &prompt)?;
    let mut fork_micros = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let c = engine.fork(root)?;
        fork_micros.push(t.elapsed().as_secs_f64() * 1e6);
        engine.release(c);
    }
    let mut decode = serde_json::Map::new();
    let mut rows = Vec::new();
    for &b in batches {
        let mut rates = Vec::new();
        for _ in 0..repeats {
            let seqs: Vec<u64> = (0..b)
                .map(|_| engine.fork(root))
                .collect::<Result<_, _>>()?;
            let t = Instant::now();
            for step in 0..decode_tokens {
                let steps: Vec<(u64, u32)> = seqs
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| (s, 300 + ((i * 31 + step * 17) as u32 % (vocab - 600))))
                    .collect();
                engine.decode(&steps)?;
            }
            rates.push((b * decode_tokens) as f64 / t.elapsed().as_secs_f64());
            for s in seqs {
                engine.release(s);
            }
        }
        let r = median(rates);
        decode.insert(b.to_string(), json!(r));
        rows.push((b, r));
    }
    let prefill_tok_s = median(prefill);
    let fork_us = median(fork_micros);
    let rss = peak_rss_mb();
    if json_out {
        let out = json!({
            "model": model.info.name,
            "device": model.info.device,
            "threads": rayon::current_num_threads(),
            "kernels": model.kernel_summary(),
            "prompt_tokens": prompt_tokens,
            "decode_tokens": decode_tokens,
            "prefill_tok_s": prefill_tok_s,
            "decode_tok_s": decode,
            "fork_micros": fork_us,
            "peak_rss_mb": rss,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("model: {} on {}", model.info.name, model.info.device);
        println!("kernels: {}", model.kernel_summary());
        println!("prefill ({prompt_tokens} tokens): {prefill_tok_s:.1} tok/s");
        for (b, r) in rows {
            println!(
                "decode batch {b:>3}: {r:.1} tok/s total ({:.1} per sequence)",
                r / b as f64
            );
        }
        println!("fork: {fork_us:.1} µs");
        println!("peak RSS: {rss:.0} MB");
    }
    Ok(())
}

/// Peak resident set size from /proc (Linux); 0 where unavailable.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Overlay `extra` (a JSON object) on the strategy's parameters.
fn merge_params(strategy: &Strategy, extra: &str) -> anyhow::Result<Strategy> {
    let extra: serde_json::Value =
        serde_json::from_str(extra).context("--params is not valid JSON")?;
    let serde_json::Value::Object(extra) = extra else {
        bail!("--params must be a JSON object");
    };
    let mut value = serde_json::to_value(strategy)?;
    if let serde_json::Value::Object(map) = &mut value {
        for (k, v) in extra {
            if k == "name" {
                bail!("--params cannot change the strategy name");
            }
            map.insert(k, v);
        }
    }
    let merged: Strategy =
        serde_json::from_value(value).context("--params does not fit the strategy")?;
    merged.validate()?;
    Ok(merged)
}

fn run_strategy(
    model: Arc<Model>,
    config: RunConfig,
    json_path: Option<&Path>,
) -> anyhow::Result<()> {
    let worker = Worker::spawn(model.clone(), WorkerOptions::default(), Arc::new(|| {}))?;
    worker.send(EngineCommand::Run {
        run: 1,
        config: Box::new(config.clone()),
    })?;
    let mut tree = Tree::default();
    let mut errors = Vec::new();
    let (outcome, cost) = loop {
        let event = worker.events().recv().context("the engine stopped")?;
        tree.apply(&event);
        match event {
            Event::RunFinished { outcome, cost, .. } => break (outcome, cost),
            Event::Error { message, .. } => errors.push(message),
            Event::NodeFinished {
                node,
                answer: Some(a),
                ..
            } => {
                eprintln!("  [{}] {} → {a}", node, tree.nodes[node].label);
            }
            _ => {}
        }
    };
    if outcome == RunOutcome::Failed {
        bail!("{}", errors.join("; "));
    }
    println!("strategy: {}", config.strategy.name());
    println!("answer:   {}", tree.answer.as_deref().unwrap_or("(none)"));
    if let Some(expected) = &config.expected_answer {
        let ok = tree
            .answer
            .as_deref()
            .is_some_and(|a| thinkscope_engine::answer::answers_match(a, expected));
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
    println!("  tokens reused (cache)   {:>12}", cost.tokens_reused);
    println!("  generated tokens        {:>12}", cost.generated_tokens);
    println!("  forward passes          {:>12}", cost.forward_passes);
    println!("  wall time               {:>11.2}s", cost.wall_secs);
    println!("  generation speed        {:>8.1} tok/s", cost.tok_per_sec);
    println!("  FLOPs (estimated)       {:>12.3e}", cost.flops);
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
    if let Some(path) = json_path {
        let out = json!({
            "config": config,
            "outcome": outcome,
            "answer": tree.answer,
            "tally": tree.tally,
            "tree": tree,
            "cost": {
                "prompt_tokens_computed": cost.prompt_tokens_computed,
                "tokens_reused": cost.tokens_reused,
                "generated_tokens": cost.generated_tokens,
                "forward_passes": cost.forward_passes,
                "wall_secs": cost.wall_secs,
                "flops": cost.flops,
                "energy_joules": cost.energy_joules,
                "energy_measured": cost.energy_measured,
                "energy_source": cost.energy_source,
                "tok_per_sec": cost.tok_per_sec,
            },
        });
        std::fs::write(path, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn lab(
    model: Arc<Model>,
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
    let outcome = run_sweep(model.clone(), config, results, &cancel, &mut |p| match p {
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
    if let Some(svg) = svg {
        let title = format!("{}: {}", model.info.name, config.problems.name);
        let note = format!(
            "N up to {}, seed {}, max {} tokens per sample; smaller-N costs derived from the N = {} samples",
            config.max_n, config.seed, config.max_tokens, config.max_n
        );
        plot::write_svg(&points, &title, &note, svg)?;
        println!("svg: {}", svg.display());
    }
    Ok(())
}
