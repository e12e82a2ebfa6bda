//! Elementwise functions in plain arithmetic the compiler can vectorise.

/// GELU, tanh form: `0.5·x·(1 + tanh(z))`, written as `x · sigmoid(2z)`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    let z = C * (x + 0.044_715 * x * x * x);
    x / (1.0 + fast_exp(-2.0 * z))
}

/// `e^x` to within 2 ulp over the range that matters here, in plain arithmetic the compiler can
/// vectorise (libm's `expf` is a call per element). Saturates to 0 and infinity outside ±87.
#[inline]
pub fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // e^x = 2^k · e^r with k = round(x / ln 2), |r| <= ln2 / 2.
    let k = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    // Degree-6 Taylor polynomial of e^r (error below 2e-8 relative on |r| <= 0.347).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (fast_exp(x), x.exp());
            assert!((a - b).abs() <= 4.0 * f32::EPSILON * b, "{x}: {a} vs {b}");
            x += 0.0137;
        }
        assert!((0.0..1e-37).contains(&fast_exp(-1000.0)));
        assert!(fast_exp(1000.0).is_finite());
    }

    #[test]
    fn gelu_matches_the_tanh_form() {
        for i in -2000..2000 {
            let x = i as f32 / 200.0;
            let want = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh());
            assert!(
                (gelu_tanh(x) - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{x}"
            );
        }
    }
}
