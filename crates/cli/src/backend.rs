//! `--backend openai`: `generate`, `run` and `lab` over an OpenAI-compatible server (vLLM,
//! SGLang, llama.cpp's server, llama-cpp-python) instead of the in-process engine. The API key
//! comes from THINKSCOPE_API_KEY or OPENAI_API_KEY and is never written anywhere.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::json;
use thinkscope_engine::generate::PromptFormat;
use thinkscope_engine::model::sampling::{Sampler, SamplingParams};
use thinkscope_engine::model::template::Message;
use thinkscope_engine::service::{
    GenBranch, GenerateRequest, RunControl, SequenceService, StopRule,
};
use thinkscope_remote::service::{GpuEnergy, RemoteOptions, RemoteService, TemplateSource};
use thinkscope_remote::{Client, ServerConfig};

/// Where the model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// In this process, on a GGUF file.
    #[default]
    Local,
    /// On an OpenAI-compatible server (`--base-url`).
    Openai,
}

/// The flags that pick and configure the backend.
#[derive(Args, Clone, Debug, Default)]
pub struct BackendArgs {
    /// Where the model runs: local (a GGUF in this process) or openai (an OpenAI-compatible
    /// server: vLLM, SGLang, llama.cpp server, llama-cpp-python).
    #[arg(long, value_enum, default_value = "local")]
    pub backend: Backend,
    /// The server, e.g. http://127.0.0.1:8000/v1 (with --backend openai).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Model on the server (default: the one it serves; with several, they are listed).
    #[arg(long)]
    pub api_model: Option<String>,
    /// Requests in flight at once over a server (its batching does the rest).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Chat template for servers that render none over HTTP: a Jinja file, or a GGUF whose
    /// template to use.
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// Energy estimate over a server: watts per GPU (shown as an estimate; unknown without it).
    #[arg(long)]
    pub gpu_watts: Option<f64>,
    /// GPUs serving the model, for --gpu-watts.
    #[arg(long, default_value_t = 1)]
    pub gpus: u32,
    /// Seconds a server may stay silent before a request fails (queued requests wait).
    #[arg(long, default_value_t = 300)]
    pub read_timeout: u64,
}

impl BackendArgs {
    /// Whether the commands go to a server.
    pub fn is_remote(&self) -> bool {
        self.backend == Backend::Openai
    }

    /// Connect to the server and probe it.
    pub fn connect(&self) -> anyhow::Result<Arc<RemoteService>> {
        let Some(url) = &self.base_url else {
            bail!("--backend openai needs --base-url URL (e.g. http://127.0.0.1:8000/v1)");
        };
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        let gpu_energy = match self.gpu_watts {
            Some(w) if w.is_finite() && w > 0.0 && self.gpus > 0 => Some(GpuEnergy {
                watts_per_gpu: w,
                gpus: self.gpus,
            }),
            Some(_) => bail!("--gpu-watts must be a positive number of watts, with --gpus ≥ 1"),
            None => None,
        };
        let chat_template = match &self.chat_template {
            Some(path) => Some(
                TemplateSource::from_file(path)
                    .with_context(|| format!("chat template {}", path.display()))?,
            ),
            None => None,
        };
        let mut config = ServerConfig::new(url.clone());
        config.read_timeout = Duration::from_secs(self.read_timeout.max(1));
        let client = Client::connect(config, self.api_model.as_deref())?;
        let service = RemoteService::new(
            client,
            RemoteOptions {
                concurrency: self.concurrency,
                chat_template,
                gpu_energy,
                ..RemoteOptions::default()
            },
        )?;
        eprintln!("{}", service.info().device);
        Ok(Arc::new(service))
    }
}

/// `generate` over a server: the completion streams to stdout (or one JSON object with every
/// token, its log-prob and alternatives, and the cost).
pub fn generate(
    service: &RemoteService,
    prompt: &str,
    params: SamplingParams,
    max_tokens: usize,
    raw: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    let run = RunControl::new();
    let format = if raw {
        PromptFormat::Raw
    } else {
        PromptFormat::Auto
    };
    let started = Instant::now();
    let ids = service.prompt_ids(&[Message::new("user", prompt)], format)?;
    let prefilled = service.prefill(&run, ids)?;
    let mut cost = prefilled.cost;
    let branch = GenBranch {
        seq: prefilled.value.seq,
        sampler: Sampler::new(params.clone())?,
        prior_text: String::new(),
    };
    let mut tokens = Vec::new();
    let mut stdout = std::io::stdout();
    let served = service.generate(
        &run,
        GenerateRequest {
            branches: vec![branch],
            rule: StopRule::to_end(max_tokens),
            budget: None,
        },
        &mut |_, t| {
            if !json_out {
                let _ = write!(stdout, "{}", t.text);
                let _ = stdout.flush();
            }
            tokens.push(t);
        },
    );
    cost.add(&served.cost);
    let outcomes = served.value?;
    let stop = outcomes.first().map(|o| o.stop);
    let wall_secs = started.elapsed().as_secs_f64();
    let info = service.info();
    let reused = service
        .client()
        .info()
        .capabilities
        .cached_tokens_reported
        .then_some(cost.tokens_reused);
    if json_out {
        let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
        let out = json!({
            "model": info.model,
            "device": info.device,
            "prompt_tokens": prefilled.value.len,
            "text": text,
            "tokens": tokens,
            "stop_reason": stop,
            "cost": {
                "prompt_tokens_computed": cost.prompt_tokens_computed,
                "tokens_reused": reused,
                "generated_tokens": cost.generated_tokens,
                "requests": cost.forward_passes,
                "wall_secs": wall_secs,
                "energy_joules": (info.energy_source.starts_with("estimated")).then_some(cost.energy_joules),
                "energy_source": info.energy_source,
            },
            "sampling": params,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!();
        eprintln!(
            "[{} prompt tokens, {} generated, {:.1} s wall, reused {}, stop: {:?}]",
            prefilled.value.len,
            tokens.len(),
            wall_secs,
            reused.map_or("unknown".to_owned(), |r| r.to_string()),
            stop
        );
    }
    Ok(())
}

/// The service as the run manager and the lab take it.
pub fn as_service(service: &Arc<RemoteService>) -> Arc<dyn SequenceService> {
    service.clone()
}
