//! The command line's schema: every subcommand and flag, with its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use thinkscope_engine::device::DevicePref;

use crate::backend::BackendArgs;

#[derive(Parser)]
#[command(
    name = "thinkscope-cli",
    version,
    about = "Headless thinkscope: fetch models, generate, run strategies, sweep the lab, benchmark"
)]
pub struct Cli {
    /// Worker threads for the CPU kernels (default: all physical cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Where to run: auto, cpu or gpu.
    #[arg(long, global = true, default_value = "auto")]
    pub device: DevicePref,
    #[command(subcommand)]
    pub command: Command,
}

/// Which model file.
#[derive(Args, Clone, Debug, Default)]
pub struct ModelArg {
    /// GGUF file (default: the default model, fetched if missing).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// A strategy and its knobs, as `run` takes them.
#[derive(Args, Clone, Debug)]
pub struct StrategyArgs {
    /// Strategy name (see `strategies`).
    #[arg(long)]
    pub strategy: String,
    /// Samples, beam width, MCTS children or branches (the strategy's "samples" knob).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Beam depth, MCTS iterations, "Wait" insertions or splits (its "depth" knob).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Thinking budget in tokens (budget forcing's "thinking" knob).
    #[arg(long)]
    pub thinking: Option<usize>,
    /// Any knob by key, e.g. `--set scorer=self-verify --set width=3` (see `strategies`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Knobs as a JSON object, e.g. '{"n": 8, "scorer": "self-verify"}'.
    #[arg(long)]
    pub params: Option<String>,
}

/// Whether a thinking model thinks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ThinkingMode {
    /// The chat template's default.
    #[default]
    Auto,
    /// Thinking on.
    On,
    /// Thinking off (an empty thought), where the template has the switch.
    Off,
}

impl ThinkingMode {
    /// The run setting: `None` for the template's default.
    pub fn setting(self) -> Option<bool> {
        match self {
            Self::Auto => None,
            Self::On => Some(true),
            Self::Off => Some(false),
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
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
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        backend: BackendArgs,
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
        #[command(flatten)]
        model: ModelArg,
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
        #[command(flatten)]
        strategy: StrategyArgs,
        /// The question.
        #[arg(long)]
        prompt: String,
        /// Sampling temperature for sampled branches.
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// Nucleus threshold.
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        /// Random seed: the same seed gives the same tree.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Token budget for the whole run (for budget forcing without --thinking: its thinking
        /// budget).
        #[arg(long)]
        budget: Option<usize>,
        /// Most tokens per branch.
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// The known answer, for the exact scorer and a correctness line.
        #[arg(long)]
        expected: Option<String>,
        /// Plain completion: skip the chat template.
        #[arg(long)]
        raw: bool,
        /// Thinking models: switch thinking on or off where the chat template can
        /// (`enable_thinking`: Qwen3, SmolLM3); auto keeps the template's default. Not to be
        /// confused with --thinking, budget forcing's token budget.
        #[arg(long, value_enum, default_value_t = ThinkingMode::Auto)]
        thinking_mode: ThinkingMode,
        /// Progress probes: K forced-answer continuations from the end of every step node (and
        /// the prompt), scored against --expected or else the run's consensus answer; the JSON
        /// gains `progress` on each probed node and `probe_tokens` in the cost (MRT uses K = 8).
        #[arg(long, value_name = "K")]
        progress: Option<usize>,
        /// Most tokens in one probe's answer.
        #[arg(long, default_value_t = 16)]
        probe_tokens: usize,
        /// Sampling temperature of the probes.
        #[arg(long, default_value_t = 0.7)]
        probe_temperature: f32,
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        backend: BackendArgs,
        /// Write the whole tree and the cost object to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the run as a session file the app opens (`thinkscope FILE`); a run that fails
        /// midway still saves the tree it reached.
        #[arg(long, value_name = "FILE")]
        save_session: Option<PathBuf>,
    },
    /// List the strategies and their knobs.
    Strategies {
        /// Print the registry as JSON.
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
        /// Strategies, comma-separated (see `strategies`); set knobs after colons, e.g.
        /// `beam:scorer=progress` or `best-of-n:scorer=self-verify` (each spec is its own curve).
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
        /// Thinking models: switch thinking on or off where the chat template can
        /// (`enable_thinking`); auto keeps the template's default.
        #[arg(long, value_enum, default_value_t = ThinkingMode::Auto)]
        thinking_mode: ThinkingMode,
        /// Where to write the CSV (one row per strategy and N).
        #[arg(long)]
        csv: PathBuf,
        /// Results file to append to and resume from (default: next to the CSV, *.results.jsonl).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Also draw the accuracy-vs-tokens curves to this SVG file; with a sampled pool, the
        /// verification gap and the difficulty view go beside it (FILE.gap.svg,
        /// FILE.difficulty.svg).
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Difficulty levels: problems binned by the pool's pass@1 (Snell et al. use 5), or by
        /// greedy success without a pool; per-level figures go to CSV.difficulty.csv.
        #[arg(long, default_value_t = 4)]
        bins: usize,
        #[command(flatten)]
        model: ModelArg,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Write a copy of a model with its weight matrices re-quantized (e.g. a Q8_0 file for
    /// benchmarks).
    Quantize {
        #[command(flatten)]
        model: ModelArg,
        /// Target type: q8_0, q4_0, q4_1, q5_0, q5_1 or f16.
        #[arg(long, default_value = "q8_0")]
        to: String,
        /// Where to write the new file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show a model's metadata and configuration.
    Info {
        #[command(flatten)]
        model: ModelArg,
    },
}
