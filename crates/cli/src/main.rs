//! Headless thinkscope: fetch models, generate, run strategies, sweep the lab, benchmark.
//!
//! `args.rs` is the schema; each larger subcommand has a file of its own; everything a command
//! does with models and runs goes through the engine's frontend entry points.

mod args;
mod backend;
mod bench;
mod lab;
mod model;
mod run;
mod strategies;

use std::io::Write;

use anyhow::bail;
use clap::Parser;
use serde_json::json;
use thinkscope_engine::fetch;
use thinkscope_engine::generate::{self, PromptFormat};
use thinkscope_engine::lab::problems::ProblemSource;
use thinkscope_engine::lab::sweep::SweepConfig;
use thinkscope_engine::lab::SweepEngine;
use thinkscope_engine::progress::ProgressConfig;
use thinkscope_engine::sequences::DEFAULT_KV_BUDGET_BYTES;
use thinkscope_engine::{Engine, SamplingParams};

use crate::args::{Cli, Command};
use crate::model::{fetch_with_bar, load_model, model_path};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // A panic on a worker or run thread is caught there and reported as that run's error; its
    // default report (several lines of stderr) would break "one line per error". The main
    // thread keeps the default report.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") {
            default_hook(info);
        } else {
            tracing::debug!("{info}");
        }
    }));
    let cli = Cli::parse();
    if let Err(err) = dispatch(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
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
            backend,
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
            if backend.is_remote() {
                let service = backend.connect()?;
                return backend::generate(&service, &prompt, params, max_tokens, raw, json);
            }
            let model = load_model(model.model.as_deref(), cli.device)?;
            let format = if raw {
                PromptFormat::Raw
            } else {
                PromptFormat::Auto
            };
            let ids = generate::build_prompt(&model, &prompt, format)?;
            let mut engine = Engine::new(model.clone(), DEFAULT_KV_BUDGET_BYTES)?;
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
            let model = load_model(model.model.as_deref(), cli.device)?;
            bench::bench(
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
            temperature,
            top_p,
            seed,
            budget,
            max_tokens,
            expected,
            raw,
            thinking_mode,
            progress,
            probe_tokens,
            probe_temperature,
            model,
            backend,
            json,
            save_session,
        } => {
            let progress = progress.map(|probes| ProgressConfig {
                probes,
                probe_tokens,
                temperature: probe_temperature,
            });
            let config = run::RunArgs {
                strategy: run::strategy(&strategy, budget)?,
                prompt,
                temperature,
                top_p,
                seed,
                budget,
                max_tokens,
                expected,
                raw,
                thinking: thinking_mode.setting(),
                progress,
            }
            .config()?;
            let worker = if backend.is_remote() {
                run::worker_over(backend::as_service(&backend.connect()?))?
            } else {
                run::local_worker(load_model(model.model.as_deref(), cli.device)?)?
            };
            run::run(&worker, config, json.as_deref(), save_session.as_deref())
        }
        Command::Strategies { json } => strategies::list(json),
        Command::Lab {
            set,
            generate,
            strategies,
            max_n,
            seed,
            max_tokens,
            temperature,
            top_p,
            thinking_mode,
            csv,
            results,
            svg,
            bins,
            model,
            backend,
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
                thinking: thinking_mode.setting(),
            };
            config.validate()?;
            let results = results.unwrap_or_else(|| csv.with_extension("results.jsonl"));
            let engine = if backend.is_remote() {
                SweepEngine::service(backend::as_service(&backend.connect()?))
            } else {
                SweepEngine::local(load_model(model.model.as_deref(), cli.device)?)
            };
            lab::lab(&engine, &config, &results, &csv, svg.as_deref(), bins)
        }
        Command::Quantize { model, to, out } => {
            let target: thinkscope_engine::quantize::QuantType = to.parse()?;
            let src = model_path(model.model.as_deref())?;
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
            let model = load_model(model.model.as_deref(), cli.device)?;
            let out = json!({
                "info": model.info,
                "description": model.describe(),
                "thinking": model.thinking,
                "config": model.config,
                "stop_ids": model.tokenizer.stop_ids,
                "add_bos": model.tokenizer.add_bos,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}
