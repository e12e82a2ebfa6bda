//! Headless thinkscope: fetch models, generate, benchmark.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use thinkscope::engine::device::{self, DevicePref};
use thinkscope::engine::fetch::{self, FetchProgress};
use thinkscope::engine::generate::{self, PromptFormat};
use thinkscope::engine::{Engine, Model, SamplingParams};

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
        // candle sizes its pool from this variable on first use, which has not happened yet.
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
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
                thinkscope::engine::core::DEFAULT_KV_BUDGET_BYTES,
            );
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

fn load_model(path: Option<&Path>, pref: DevicePref) -> anyhow::Result<Arc<Model>> {
    let path = match path {
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
    };
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
        thinkscope::engine::core::DEFAULT_KV_BUDGET_BYTES,
    );
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
            "threads": candle_core::utils::get_num_threads(),
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
