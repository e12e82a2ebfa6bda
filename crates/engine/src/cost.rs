//! Cost meters: tokens, passes, time, FLOPs and energy, each labelled measured or estimated.

use std::path::PathBuf;
use std::sync::Arc;

use thinkscope_gpu::power::GpuPower;

use serde::{Deserialize, Serialize};

use crate::model::config::ModelConfig;

/// Running cost of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CostSnapshot {
    /// Prompt tokens run through the model.
    pub prompt_tokens_computed: u64,
    /// Tokens whose KV came from cache instead of being computed.
    pub tokens_reused: u64,
    /// True when the service cannot say how many tokens it reused (a server that reports no
    /// cached prompt tokens): show "unknown", not `tokens_reused`.
    pub tokens_reused_unknown: bool,
    /// Tokens chosen by a sampler (plus inserted tokens, which are computed too).
    pub generated_tokens: u64,
    /// Forward passes this run took part in (shared batched passes count for each run in them).
    pub forward_passes: u64,
    /// Wall time since the run started.
    pub wall_secs: f64,
    /// Generated tokens per wall second.
    pub tok_per_sec: f64,
    /// Estimated floating-point operations (2 per multiply-add, from parameter count and context).
    pub flops: f64,
    /// Energy in joules.
    pub energy_joules: f64,
    /// True when `energy_joules` comes from a hardware counter, false when it is estimated.
    pub energy_measured: bool,
    /// How the energy figure was obtained.
    pub energy_source: String,
    /// Prompt-side tokens the self-verifier computed (its question), part of
    /// `prompt_tokens_computed`.
    pub verify_tokens: u64,
    /// Tokens the progress probes computed: each node's cue once, plus every probe's sampled
    /// answer. Not part of the counters above, which are the strategy's own work.
    pub probe_tokens: u64,
    /// Of `probe_tokens`, the cue tokens (the rest were sampled).
    pub probe_cue_tokens: u64,
    /// Tokens the probes' forks took from the cache instead of recomputing them (every probe
    /// starts from its node's cached prefix).
    pub probe_tokens_reused: u64,
    /// Nodes probed.
    pub probed_nodes: u64,
    /// Wall time spent in probes (part of `wall_secs`).
    pub probe_secs: f64,
    /// Estimated floating-point operations of the probes (not part of `flops`).
    pub probe_flops: f64,
    /// Energy of the probes' forward passes, measured or estimated like `energy_joules` (not
    /// part of it).
    pub probe_energy_joules: f64,
}

impl CostSnapshot {
    /// Tokens computed by the model (prompt and decode).
    pub fn tokens_computed(&self) -> u64 {
        self.prompt_tokens_computed + self.generated_tokens
    }
}

/// FLOPs to compute `n` tokens at positions `start..start + n`, `logits_rows` of them through the
/// LM head: 2 FLOPs per weight per token, plus attention's q·k and weighted sum over the context.
pub fn flops_for(config: &ModelConfig, start: usize, n: usize, logits_rows: usize) -> f64 {
    let h = config.hidden as f64;
    let per_token = 2.0
        * config.n_layer as f64
        * (h * (2.0 * config.q_dim() as f64 + 2.0 * config.kv_dim() as f64)
            + 3.0 * h * config.ffn as f64);
    let head = 2.0 * h * config.vocab as f64;
    // Sum over positions of 4 * layers * q_dim * (pos + 1).
    let positions: f64 = (start..start + n).map(|p| (p + 1) as f64).sum();
    per_token * n as f64
        + head * logits_rows as f64
        + 4.0 * config.n_layer as f64 * config.q_dim() as f64 * positions
}

/// Where energy figures come from.
#[derive(Clone, Debug)]
pub enum EnergySource {
    /// Linux powercap (Intel RAPL / AMD) package counters, in microjoules.
    Rapl {
        /// `energy_uj` files of the package domains.
        files: Vec<PathBuf>,
        /// Wrap-around ranges of each counter.
        ranges: Vec<u64>,
    },
    /// The GPU's own counter or power reading (NVML, hwmon).
    Gpu(Arc<GpuPower>),
    /// No counter: watts × busy seconds.
    Estimate {
        /// Assumed draw while the model computes.
        watts: f64,
        /// The assumption, in words.
        description: String,
    },
}

/// Reads or estimates energy for forward passes.
#[derive(Clone, Debug)]
pub struct EnergyMeter {
    source: EnergySource,
}

/// Assumed CPU draw per busy thread when no counter is readable (a mid-range desktop core under
/// full SIMD load; laptops draw less, servers more).
pub const ESTIMATED_WATTS_PER_CPU_THREAD: f64 = 10.0;
/// Assumed draw of a data-centre GPU under inference load.
pub const ESTIMATED_GPU_WATTS: f64 = 300.0;
/// Assumed draw of a desktop discrete GPU running memory-bound decode kernels (well under the
/// 200–350 W board limits of current cards; the shaders leave the arithmetic units mostly idle).
pub const ESTIMATED_DISCRETE_GPU_WATTS: f64 = 150.0;
/// Assumed extra draw of an integrated GPU under load.
pub const ESTIMATED_INTEGRATED_GPU_WATTS: f64 = 15.0;

impl EnergyMeter {
    /// Use RAPL when readable, else an estimate for `threads` CPU threads (or a GPU).
    pub fn detect(threads: usize, gpu: bool) -> Self {
        if !gpu {
            if let Some(source) = rapl() {
                return Self { source };
            }
        }
        let (watts, description) = if gpu {
            (
                ESTIMATED_GPU_WATTS,
                format!("estimated: {ESTIMATED_GPU_WATTS:.0} W GPU draw × compute time"),
            )
        } else {
            let w = ESTIMATED_WATTS_PER_CPU_THREAD * threads as f64;
            (
                w,
                format!(
                    "estimated: {ESTIMATED_WATTS_PER_CPU_THREAD:.0} W × {threads} CPU threads × compute time (no RAPL counter readable)"
                ),
            )
        };
        Self {
            source: EnergySource::Estimate { watts, description },
        }
    }

    /// The GPU's own meter where the platform has one readable, else an estimate for a
    /// discrete or integrated GPU.
    pub fn for_gpu(power: Option<GpuPower>, discrete: bool) -> Self {
        if let Some(p) = power {
            return Self {
                source: EnergySource::Gpu(Arc::new(p)),
            };
        }
        let (watts, kind) = if discrete {
            (ESTIMATED_DISCRETE_GPU_WATTS, "discrete")
        } else {
            (ESTIMATED_INTEGRATED_GPU_WATTS, "integrated")
        };
        Self {
            source: EnergySource::Estimate {
                watts,
                description: format!(
                    "estimated: {watts:.0} W {kind}-GPU draw × compute time (no NVML or hwmon counter readable)"
                ),
            },
        }
    }

    /// Whether figures are measured.
    pub fn measured(&self) -> bool {
        matches!(
            self.source,
            EnergySource::Rapl { .. } | EnergySource::Gpu(_)
        )
    }

    /// How figures are obtained, in words.
    pub fn describe(&self) -> String {
        match &self.source {
            EnergySource::Rapl { files, .. } => format!(
                "measured: CPU package energy counters (RAPL, {} domain(s), whole package)",
                files.len()
            ),
            EnergySource::Gpu(p) => p.describe().to_owned(),
            EnergySource::Estimate { description, .. } => description.clone(),
        }
    }

    /// A counter reading to diff later (microjoules; 0 for estimates).
    pub fn read(&self) -> u64 {
        match &self.source {
            EnergySource::Rapl { files, .. } => {
                files.iter().map(|f| read_u64(f).unwrap_or(0)).sum()
            }
            EnergySource::Gpu(p) => p.energy_micro_joules().unwrap_or(0),
            EnergySource::Estimate { .. } => 0,
        }
    }

    /// Joules spent between `before` (a [`Self::read`]) and now, over `secs` of compute.
    pub fn joules_since(&self, before: u64, secs: f64) -> f64 {
        match &self.source {
            EnergySource::Rapl { ranges, .. } => {
                let now = self.read();
                let delta = if now >= before {
                    now - before
                } else {
                    // One counter wrapped.
                    now + ranges.iter().copied().max().unwrap_or(0) - before
                };
                delta as f64 / 1e6
            }
            EnergySource::Gpu(p) => match p.energy_micro_joules() {
                Some(now) => now.saturating_sub(before) as f64 / 1e6,
                None => p.watts().unwrap_or(0.0) * secs,
            },
            EnergySource::Estimate { watts, .. } => watts * secs,
        }
    }
}

fn read_u64(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn rapl() -> Option<EnergySource> {
    let base = std::path::Path::new("/sys/class/powercap");
    let mut files = Vec::new();
    let mut ranges = Vec::new();
    for entry in std::fs::read_dir(base).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Package domains only ("intel-rapl:0", not the "intel-rapl:0:0" sub-domains).
        if name.matches(':').count() != 1 {
            continue;
        }
        let file = entry.path().join("energy_uj");
        if read_u64(&file).is_some() {
            ranges
                .push(read_u64(&entry.path().join("max_energy_range_uj")).unwrap_or(u64::MAX / 2));
            files.push(file);
        }
    }
    (!files.is_empty()).then_some(EnergySource::Rapl { files, ranges })
}
