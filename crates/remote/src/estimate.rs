//! Next-token entropy from the top alternatives a server reports: servers send the k most likely
//! log-probs, not the whole distribution, so entropy can only be estimated. The estimate counts
//! the top k exactly and spreads the missing mass over as few tokens as the k-th probability
//! allows, which makes it a lower bound: exact when the top k hold nearly all the mass, low when
//! the tail is long and flat. Everything that shows it says "estimated".

/// How the entropy figure was obtained, for labels.
pub const ENTROPY_LABEL: &str = "estimated from the server's top alternatives (a lower bound)";

/// Entropy (nats) estimated from the top log-probs (any order). `None` when there are none.
pub fn entropy_from_top(logprobs: &[f32]) -> Option<f32> {
    let mut probs: Vec<f64> = logprobs
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| f64::from(l).exp())
        .collect();
    if probs.is_empty() {
        return None;
    }
    probs.sort_by(|a, b| b.total_cmp(a));
    let mass: f64 = probs.iter().sum();
    // Rounding on the server can push the sum a hair over 1.
    let scale = if mass > 1.0 { 1.0 / mass } else { 1.0 };
    let mut h: f64 = probs
        .iter()
        .map(|&p| p * scale)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    let rest = (1.0 - mass * scale).max(0.0);
    let smallest = probs.last().copied().unwrap_or(0.0) * scale;
    if rest > 1e-9 && smallest > 0.0 {
        let tokens = (rest / smallest).ceil().max(1.0);
        h += -rest * (rest / tokens).ln();
    }
    Some(h as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_when_the_top_holds_all_the_mass() {
        let half = 0.5f32.ln();
        let h = entropy_from_top(&[half, half]).expect("h");
        assert!((h - std::f32::consts::LN_2).abs() < 1e-5, "{h}");
    }

    #[test]
    fn a_lower_bound_that_grows_with_the_missing_mass() {
        // True distribution: 0.4, 0.2, then 40 tokens of 0.01 each.
        let truth: f64 = -(0.4f64 * 0.4f64.ln() + 0.2 * 0.2f64.ln() + 40.0 * 0.01 * 0.01f64.ln());
        let h = f64::from(entropy_from_top(&[0.4f32.ln(), 0.2f32.ln()]).expect("h"));
        let top_only = -(0.4f64 * 0.4f64.ln() + 0.2 * 0.2f64.ln());
        assert!(
            h > top_only && h <= truth + 1e-6,
            "{top_only} < {h} <= {truth}"
        );
        assert!(entropy_from_top(&[]).is_none());
    }
}
