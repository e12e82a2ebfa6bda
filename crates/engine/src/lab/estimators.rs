//! Estimators that turn n samples of one problem into the expected accuracy at every budget
//! k ≤ n, as if only k samples had been drawn: pass@k (Chen et al. 2021), maj@k, best-of-k by
//! the model's confidence or by its self-verifier, and the verifier-weighted vote (Snell et al.
//! 2024's weighted best-of-N).
//!
//! Each is the expectation over a uniformly random k-subset of the n samples, which is an unbiased
//! estimate of the accuracy of a fresh k-sample run. pass@k and best-of-k have closed forms;
//! maj@k is computed exactly by enumerating the subsets when there are few of them and by seeded
//! resampling otherwise.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::answer::normalize;
use crate::model::sampling::Rng;

/// Enumerate maj@k's subsets exactly when there are at most this many of them.
pub const EXACT_SUBSET_LIMIT: u128 = 50_000;
/// Random subsets drawn for maj@k when enumerating would take longer. The standard error of the
/// estimate is at most 0.5 / sqrt(RESAMPLES) ≈ 0.0035.
pub const RESAMPLES: usize = 20_000;

/// What the estimators need to know of one sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleOutcome {
    /// The answer extracted from the sample, if any.
    pub answer: Option<String>,
    /// Whether the checker accepted it.
    pub correct: bool,
    /// Mean token log-probability of the sample's path (the model's own confidence).
    pub mean_logprob: Option<f32>,
    /// The self-verifier's P(yes) for the sample's answer, if it was asked.
    #[serde(default)]
    pub verifier: Option<f32>,
}

/// pass@k: the chance that at least one of k samples drawn without replacement from n, of which
/// c are correct, is correct: `1 - C(n-c, k) / C(n, k)`, computed as a product so it stays exact
/// for large n. `k` is clamped to `n`; with no samples it is 0.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    let c = c.min(n);
    let k = k.min(n);
    if n == 0 || k == 0 || c == 0 {
        return 0.0;
    }
    if n - c < k {
        return 1.0;
    }
    // C(n-c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)
    let miss: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    1.0 - miss
}

/// C(n, k) exactly, or `None` when it does not fit in a u128.
pub fn binomial(n: usize, k: usize) -> Option<u128> {
    if k > n {
        return Some(0);
    }
    let k = k.min(n - k);
    let mut acc: u128 = 1;
    for i in 0..k {
        // acc * (n - i) / (i + 1) is always whole after the division.
        acc = acc.checked_mul((n - i) as u128)? / (i as u128 + 1);
    }
    Some(acc)
}

/// Samples grouped by answer: the vote key of each sample and whether each key is correct.
struct Ballots {
    /// Answer class of each sample (`None`: no answer, no vote).
    class: Vec<Option<usize>>,
    /// Whether each class is correct.
    correct: Vec<bool>,
    /// Confidence of each sample, `exp(mean_logprob)`: the tie-break, as the engine's vote uses.
    weight: Vec<f64>,
}

impl Ballots {
    fn new(samples: &[SampleOutcome]) -> Self {
        let mut keys: HashMap<String, usize> = HashMap::new();
        let mut correct = Vec::new();
        let class = samples
            .iter()
            .map(|s| {
                let key = normalize(s.answer.as_deref()?);
                let next = keys.len();
                let id = *keys.entry(key).or_insert(next);
                if id == correct.len() {
                    correct.push(s.correct);
                } else {
                    // Answers that normalise alike are judged alike; keep any credit given.
                    correct[id] |= s.correct;
                }
                Some(id)
            })
            .collect();
        let weight = samples
            .iter()
            .map(|s| f64::from(s.mean_logprob.unwrap_or(-10.0)).exp())
            .collect();
        Self {
            class,
            correct,
            weight,
        }
    }

    /// Expected correctness of the majority vote over the samples at `idx`: most votes wins,
    /// ties go to the higher summed confidence, and a tie on both is a fair coin among the tied.
    /// A subset without a single answer scores 0.
    fn vote(&self, idx: &[usize], votes: &mut [u32], conf: &mut [f64]) -> f64 {
        votes.iter_mut().for_each(|v| *v = 0);
        conf.iter_mut().for_each(|c| *c = 0.0);
        for &i in idx {
            if let Some(c) = self.class[i] {
                votes[c] += 1;
                conf[c] += self.weight[i];
            }
        }
        let Some(top) = votes.iter().copied().max().filter(|&v| v > 0) else {
            return 0.0;
        };
        let best_conf = (0..votes.len())
            .filter(|&c| votes[c] == top)
            .map(|c| conf[c])
            .fold(f64::NEG_INFINITY, f64::max);
        let (mut tied, mut right) = (0u32, 0u32);
        for c in 0..votes.len() {
            if votes[c] == top && conf[c] == best_conf {
                tied += 1;
                right += u32::from(self.correct[c]);
            }
        }
        f64::from(right) / f64::from(tied.max(1))
    }
}

/// maj@k: the expected accuracy of a majority vote over k samples drawn without replacement from
/// `samples`. Votes are over normalised answers; ties go to the answer with the higher summed
/// confidence (as the self-consistency strategy breaks them), then to a fair coin. Exact when
/// C(n, k) ≤ [`EXACT_SUBSET_LIMIT`], else the mean over [`RESAMPLES`] random subsets drawn with
/// `seed`. `k` is clamped to n.
pub fn maj_at_k(samples: &[SampleOutcome], k: usize, seed: u64) -> f64 {
    let ballots = Ballots::new(samples);
    let classes = ballots.correct.len();
    let mut votes = vec![0u32; classes];
    let mut conf = vec![0.0f64; classes];
    over_subsets(samples.len(), k, seed, |idx| {
        ballots.vote(idx, &mut votes, &mut conf)
    })
}

/// The mean of `f` over the k-subsets of n items: every subset when C(n, k) ≤
/// [`EXACT_SUBSET_LIMIT`], else [`RESAMPLES`] random ones drawn with `seed`. 0 when k or n is 0.
fn over_subsets(n: usize, k: usize, seed: u64, mut f: impl FnMut(&[usize]) -> f64) -> f64 {
    let k = k.min(n);
    if n == 0 || k == 0 {
        return 0.0;
    }
    let exact = binomial(n, k).is_some_and(|c| c <= EXACT_SUBSET_LIMIT);
    if exact {
        let mut idx: Vec<usize> = (0..k).collect();
        let (mut sum, mut count) = (0.0, 0u64);
        loop {
            sum += f(&idx);
            count += 1;
            if !next_combination(&mut idx, n) {
                break;
            }
        }
        sum / count as f64
    } else {
        let mut rng = Rng::new(seed ^ (k as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut perm: Vec<usize> = (0..n).collect();
        let mut sum = 0.0;
        for _ in 0..RESAMPLES {
            // Partial Fisher–Yates: the first k entries become a uniform k-subset.
            for i in 0..k {
                let j = i + (rng.next_u64() % (n - i) as u64) as usize;
                perm.swap(i, j);
            }
            sum += f(&perm[..k]);
        }
        sum / RESAMPLES as f64
    }
}

/// Weighted maj@k (Snell et al. 2024's weighted best-of-N): the expected accuracy of a vote over
/// k samples drawn without replacement in which each answer scores the sum of its samples'
/// verifier scores (a sample without a score weighs 0). Ties go to the answer with more votes,
/// then to a fair coin. Exact or resampled like [`maj_at_k`]. `k` is clamped to n.
pub fn weighted_maj_at_k(samples: &[SampleOutcome], k: usize, seed: u64) -> f64 {
    let ballots = Ballots::new(samples);
    let classes = ballots.correct.len();
    let weight: Vec<f64> = samples
        .iter()
        .map(|s| f64::from(s.verifier.unwrap_or(0.0)))
        .collect();
    let mut score = vec![0.0f64; classes];
    let mut votes = vec![0u32; classes];
    over_subsets(samples.len(), k, seed, |idx| {
        score.iter_mut().for_each(|s| *s = 0.0);
        votes.iter_mut().for_each(|v| *v = 0);
        for &i in idx {
            if let Some(c) = ballots.class[i] {
                score[c] += weight[i];
                votes[c] += 1;
            }
        }
        if votes.iter().all(|&v| v == 0) {
            return 0.0;
        }
        let best = (0..classes)
            .filter(|&c| votes[c] > 0)
            .map(|c| (score[c], votes[c]))
            .fold((f64::NEG_INFINITY, 0u32), |a, b| {
                if b.0 > a.0 || (b.0 == a.0 && b.1 > a.1) {
                    b
                } else {
                    a
                }
            });
        let (mut tied, mut right) = (0u32, 0u32);
        for c in 0..classes {
            if votes[c] > 0 && score[c] == best.0 && votes[c] == best.1 {
                tied += 1;
                right += u32::from(ballots.correct[c]);
            }
        }
        f64::from(right) / f64::from(tied.max(1))
    })
}

/// Advance `idx` (strictly increasing, each < n) to the next k-combination in lexicographic
/// order; false after the last.
fn next_combination(idx: &mut [usize], n: usize) -> bool {
    let k = idx.len();
    let mut i = k;
    while i > 0 {
        i -= 1;
        if idx[i] < n - k + i {
            idx[i] += 1;
            for j in i + 1..k {
                idx[j] = idx[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

/// Best-of-k with the model's own scorer: the expected correctness of the sample with the highest
/// mean log-probability among k drawn without replacement (samples without a score rank last;
/// equal scores are a fair coin). Closed form: the r-th best of n is the best of a random
/// k-subset with probability C(n-1-r, k-1) / C(n, k). `k` is clamped to n.
pub fn best_of_k(samples: &[SampleOutcome], k: usize) -> f64 {
    best_of_k_by(samples, k, |s| s.mean_logprob)
}

/// Best-of-k with the self-verifier as the scorer: the expected correctness of the sample whose
/// answer the model rates most likely correct (P(yes)) among k, as [`best_of_k`] computes it.
pub fn verifier_best_of_k(samples: &[SampleOutcome], k: usize) -> f64 {
    best_of_k_by(samples, k, |s| s.verifier)
}

/// Best-of-k under any scorer (unscored samples rank last; equal scores are a fair coin).
pub fn best_of_k_by(
    samples: &[SampleOutcome],
    k: usize,
    scorer: impl Fn(&SampleOutcome) -> Option<f32>,
) -> f64 {
    let n = samples.len();
    let k = k.min(n);
    if n == 0 || k == 0 {
        return 0.0;
    }
    let score = |s: &SampleOutcome| scorer(s).map_or(f64::NEG_INFINITY, f64::from);
    let mut order: Vec<&SampleOutcome> = samples.iter().collect();
    order.sort_by(|a, b| score(b).total_cmp(&score(a)));
    // p(r) = C(n-1-r, k-1) / C(n, k); p(0) = k / n, p(r+1) = p(r) (n-r-k) / (n-r-1).
    let mut p = k as f64 / n as f64;
    let mut total = 0.0;
    let mut r = 0;
    while r < n {
        // A group of equal scores: the chance the best falls in it, times its share correct.
        let mut end = r;
        let (mut p_group, mut right) = (0.0, 0usize);
        while end < n && score(order[end]).total_cmp(&score(order[r])).is_eq() {
            p_group += p;
            right += usize::from(order[end].correct);
            p = if n - end > k {
                p * (n - end - k) as f64 / (n - end - 1) as f64
            } else {
                0.0
            };
            end += 1;
        }
        total += p_group * right as f64 / (end - r) as f64;
        r = end;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_at_k_edges() {
        assert_eq!(pass_at_k(10, 0, 3), 0.0);
        assert_eq!(pass_at_k(10, 10, 1), 1.0);
        assert!((pass_at_k(10, 1, 1) - 0.1).abs() < 1e-12);
        assert_eq!(pass_at_k(4, 2, 3), 1.0);
        assert_eq!(pass_at_k(0, 0, 1), 0.0);
    }

    #[test]
    fn binomials() {
        assert_eq!(binomial(5, 2), Some(10));
        assert_eq!(binomial(64, 32), Some(1_832_624_140_942_590_534));
        assert_eq!(binomial(3, 4), Some(0));
    }
}
