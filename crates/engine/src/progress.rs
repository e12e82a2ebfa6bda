//! Progress you can see: MRT-style estimates of how close a node's prefix is to the answer.
//!
//! MRT (Qu et al. 2025, arXiv:2503.07572) measures the progress an episode of a reasoning trace
//! makes as the change in the probability of eventually answering correctly. At an episode
//! boundary it estimates that probability by forcing an answer from the prefix: a "time is up,
//! give the final answer" cue, then K short sampled answers (their code: K = 8 at temperature
//! 0.7), scored against the known answer. Here every probe is a fork of the node's cached
//! sequence, so no prefix token is recomputed; only the cue and the short answers are.
//!
//! p̂ is the share of a node's K probes whose answer matches a reference: the expected answer
//! when the user or the lab gives one, or else the run's *consensus* answer (the most common
//! answer over all its probes), which is labelled as such — agreement with the run's own majority,
//! not correctness. Δp̂ is p̂ minus that of the nearest probed ancestor, with the same reference.
//! The context (`strategy/ctx.rs`) runs the probes; this module holds the data and the arithmetic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::answer::{answers_match, normalize};
use crate::error::{EngineError, Result};
use crate::model::sampling::SamplingParams;
use crate::service::BranchStop;
use crate::tree::{NodeId, Tree};

/// The cue appended before a probe's answer. It reads like budget forcing's "time is up" line,
/// and ends where the answer extractor looks ("final answer is …").
pub const PROBE_CUE: &str = "Time is up. The final answer is";

/// Most probes per node.
pub const MAX_PROBES: usize = 64;
/// Most tokens one probe may generate.
pub const MAX_PROBE_TOKENS: usize = 256;

/// Whether and how a run probes its nodes: a run-level setting that every strategy honours (the
/// context probes each step node when it is finished).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgressConfig {
    /// K: forced-answer continuations per node.
    pub probes: usize,
    /// Most tokens in one probe's answer.
    pub probe_tokens: usize,
    /// Sampling temperature of the probes.
    pub temperature: f32,
}

impl Default for ProgressConfig {
    /// MRT's setting: K = 8 at temperature 0.7, with answers of at most 16 tokens.
    fn default() -> Self {
        Self {
            probes: 8,
            probe_tokens: 16,
            temperature: 0.7,
        }
    }
}

impl ProgressConfig {
    /// K probes of the default length and temperature.
    pub fn with_probes(probes: usize) -> Self {
        Self {
            probes,
            ..Self::default()
        }
    }

    /// Reject settings that make no sense, naming them.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidParameter(m));
        if self.probes == 0 || self.probes > MAX_PROBES {
            return bad(format!(
                "progress probes {} is outside [1, {MAX_PROBES}]",
                self.probes
            ));
        }
        if self.probe_tokens == 0 || self.probe_tokens > MAX_PROBE_TOKENS {
            return bad(format!(
                "probe length {} is outside [1, {MAX_PROBE_TOKENS}]",
                self.probe_tokens
            ));
        }
        if !(self.temperature.is_finite() && (0.0..=5.0).contains(&self.temperature)) {
            return bad(format!(
                "probe temperature {} is outside [0, 5]",
                self.temperature
            ));
        }
        Ok(())
    }
}

/// What the probes were compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressBasis {
    /// The known answer (given by the user or the lab): p̂ estimates correctness.
    Expected,
    /// The run's consensus answer (the most common probe answer): p̂ measures agreement with the
    /// run's own majority, not correctness.
    Consensus,
}

impl ProgressBasis {
    /// How to name the figure to a person.
    pub fn label(self) -> &'static str {
        match self {
            Self::Expected => "progress (probes scored against the known answer)",
            Self::Consensus => {
                "consensus progress (probes scored against the run's most common answer, not a known answer)"
            }
        }
    }

    /// The short name: "progress" or "consensus progress".
    pub fn short(self) -> &'static str {
        match self {
            Self::Expected => "progress",
            Self::Consensus => "consensus progress",
        }
    }
}

/// One forced-answer continuation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// The text sampled after the cue.
    pub text: String,
    /// The answer extracted from the cue and that text.
    pub answer: Option<String>,
    /// Tokens of `text` (an end-of-text token, when it stopped on one, is sampled but not in
    /// the text).
    pub tokens: usize,
    /// Why it stopped.
    #[serde(default)]
    pub stop: Option<BranchStop>,
    /// Whether the answer matched the reference.
    pub matched: bool,
}

/// A node's progress estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// p̂: the share of the probes whose answer matches `reference`.
    pub p_hat: f32,
    /// p̂ minus the nearest probed ancestor's (against the same reference); `None` for the first
    /// probed node of a path.
    pub delta: Option<f32>,
    /// How the probes were scored.
    pub basis: ProgressBasis,
    /// The answer they were compared with (`None`: no probe of the run reached an answer).
    pub reference: Option<String>,
    /// Tokens on the path at the probe point, the prompt excluded (the x of a progress plot).
    pub at_tokens: usize,
    /// Sequence length at the probe point, the prompt included (what each probe's fork reused).
    pub prefix_tokens: usize,
    /// Tokens of the cue, computed once per node and shared by its probes.
    pub cue_tokens: usize,
    /// Probe sampling temperature.
    pub temperature: f32,
    /// The probes.
    pub probes: Vec<Probe>,
}

impl Progress {
    /// The share of probes that matched.
    pub fn share(probes: &[Probe]) -> f32 {
        if probes.is_empty() {
            return 0.0;
        }
        probes.iter().filter(|p| p.matched).count() as f32 / probes.len() as f32
    }

    /// Check a progress estimate read from a file.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.p_hat.is_finite() && (0.0..=1.0).contains(&self.p_hat)) {
            return Err(format!("p̂ {} is outside [0, 1]", self.p_hat));
        }
        if self
            .delta
            .is_some_and(|d| !(d.is_finite() && (-1.0..=1.0).contains(&d)))
        {
            return Err(format!("Δp̂ {:?} is outside [-1, 1]", self.delta));
        }
        if self.probes.len() > MAX_PROBES {
            return Err(format!(
                "{} probes, more than {MAX_PROBES}",
                self.probes.len()
            ));
        }
        Ok(())
    }
}

/// The cue for a node whose path text is `path_text`: on a line of its own.
pub fn cue_for(path_text: &str) -> String {
    if path_text.is_empty() || path_text.ends_with('\n') {
        PROBE_CUE.to_owned()
    } else {
        format!("\n{PROBE_CUE}")
    }
}

/// The sampling parameters of probe `i` of `node` in a run seeded `run_seed`: fixed per probe, so
/// a probe can be recomputed, and apart from the strategy's own samplers, so turning probes on
/// does not change the strategy's tree.
pub fn probe_sampling(
    config: &ProgressConfig,
    top_p: f32,
    run_seed: u64,
    node: NodeId,
    i: usize,
) -> SamplingParams {
    let seed = run_seed
        .wrapping_mul(0x2545_F491_4F6C_DD1D)
        .wrapping_add((node.index() as u64) << 20)
        .wrapping_add(i as u64)
        ^ 0x5052_4F42_4553_0000; // "PROBES"
    SamplingParams {
        temperature: config.temperature,
        top_p,
        seed,
        top_alternatives: 0,
        ..SamplingParams::default()
    }
}

/// Mark each probe matched or not against `reference`; the share that matched.
pub fn score(probes: &mut [Probe], reference: Option<&str>) -> f32 {
    for p in probes.iter_mut() {
        p.matched = match (&p.answer, reference) {
            (Some(a), Some(r)) => answers_match(a, r),
            _ => false,
        };
    }
    Progress::share(probes)
}

/// The run's consensus answer: the most common (normalised) answer over every probe in the tree.
/// Ties go to the answer seen first in node order. `None` when no probe reached an answer.
pub fn consensus(tree: &Tree) -> Option<String> {
    let mut count: BTreeMap<String, (usize, usize, String)> = BTreeMap::new();
    let mut seen = 0;
    for n in &tree.nodes {
        let Some(p) = &n.progress else { continue };
        for a in p.probes.iter().filter_map(|p| p.answer.as_deref()) {
            seen += 1;
            let e = count
                .entry(normalize(a))
                .or_insert_with(|| (0, seen, a.to_owned()));
            e.0 += 1;
        }
    }
    count
        .into_values()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, _, answer)| answer)
}

/// The nearest ancestor of `node` that has been probed.
pub fn probed_ancestor(tree: &Tree, node: NodeId) -> Option<NodeId> {
    let path = tree.path(node);
    path.iter()
        .rev()
        .skip(1)
        .copied()
        .find(|&a| tree.nodes[a].progress.is_some())
}

/// p̂ of `node`'s probes against `reference` (without changing the stored figures).
pub fn p_hat_against(tree: &Tree, node: NodeId, reference: Option<&str>) -> Option<f32> {
    let mut probes = tree.node(node)?.progress.as_ref()?.probes.clone();
    Some(score(&mut probes, reference))
}

/// `node`'s progress scored against `reference`, with Δp̂ against its nearest probed ancestor
/// scored the same way.
pub fn rescored(
    tree: &Tree,
    node: NodeId,
    basis: ProgressBasis,
    reference: Option<&str>,
) -> Option<Progress> {
    let mut p = tree.node(node)?.progress.clone()?;
    p.p_hat = score(&mut p.probes, reference);
    p.delta = probed_ancestor(tree, node)
        .and_then(|a| p_hat_against(tree, a, reference))
        .map(|parent| p.p_hat - parent);
    p.basis = basis;
    p.reference = reference.map(str::to_owned);
    Some(p)
}

/// One point of a progress curve: tokens on the path, then p̂ there.
pub type CurvePoint = (usize, f32);

/// p̂ along the path from the root to `node`, one point per probed node, in path order.
pub fn path_curve(tree: &Tree, node: NodeId) -> Vec<CurvePoint> {
    tree.path(node)
        .into_iter()
        .filter_map(|i| tree.nodes[i].progress.as_ref())
        .map(|p| (p.at_tokens, p.p_hat))
        .collect()
}

/// The highest p̂ any node of the run reached: the "best achievable" line of a regret plot.
pub fn best_p_hat(tree: &Tree) -> Option<f32> {
    tree.nodes
        .iter()
        .filter_map(|n| n.progress.as_ref().map(|p| p.p_hat))
        .reduce(f32::max)
}

/// Cumulative regret of a curve, MRT's measure: the area between `best` and p̂, with p̂ held from
/// each probe point to the next and the last one held to `end_tokens`. In token × probability
/// units; divide by the tokens for a mean.
pub fn regret(curve: &[CurvePoint], best: f32, end_tokens: usize) -> f64 {
    let mut area = 0.0;
    for (i, &(x, p)) in curve.iter().enumerate() {
        let next = curve.get(i + 1).map_or(end_tokens.max(x), |c| c.0);
        area += f64::from((best - p).max(0.0)) * next.saturating_sub(x) as f64;
    }
    area
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(answer: Option<&str>) -> Probe {
        Probe {
            text: String::new(),
            answer: answer.map(str::to_owned),
            tokens: 1,
            stop: None,
            matched: false,
        }
    }

    #[test]
    fn scores_count_matches_numerically() {
        let mut probes = vec![
            probe(Some("5")),
            probe(Some("5.0")),
            probe(Some("6")),
            probe(None),
        ];
        assert_eq!(score(&mut probes, Some("5")), 0.5);
        assert!(probes[1].matched && !probes[3].matched);
        assert_eq!(score(&mut probes, None), 0.0);
    }

    #[test]
    fn regret_is_the_area_under_best() {
        // p̂ 0 for tokens 0..10, 0.5 for 10..30, 1 for 30..40 against best 1: 10 + 10 + 0.
        let curve = [(0, 0.0), (10, 0.5), (30, 1.0)];
        assert!((regret(&curve, 1.0, 40) - 20.0).abs() < 1e-9);
        assert_eq!(regret(&[], 1.0, 10), 0.0);
    }

    #[test]
    fn cues_start_on_their_own_line() {
        assert_eq!(cue_for(""), PROBE_CUE);
        assert_eq!(cue_for("a\n"), PROBE_CUE);
        assert!(cue_for("a").starts_with('\n'));
    }

    #[test]
    fn settings_are_checked() {
        ProgressConfig::default().validate().expect("default");
        assert!(ProgressConfig::with_probes(0).validate().is_err());
        assert!(ProgressConfig::with_probes(65).validate().is_err());
        let long = ProgressConfig {
            probe_tokens: 0,
            ..ProgressConfig::default()
        };
        assert!(long.validate().is_err());
    }
}
