//! Every weight format × every tier of the adapter against the CPU kernels (the oracle).
//!
//! Error bounds, derived rather than tuned:
//! - f32 kernels vs an f64 dot product over the CPU kernels' dequantized weights. Each output is
//!   a sum whose every term passes through at most `depth` f32 roundings (the mat-vec: one
//!   product, three adds inside a vec4 dot, one add of the two halves, cols/512 adds along an
//!   invocation's loop, at most 7 levels of a subgroup reduction and 16 adds across subgroups,
//!   one store — bounded by cols/512 + 32; the tiled matmul adds sequentially over all columns,
//!   cols + 8). So |err| <= depth · 2⁻²⁴ · Σ|w·x| (recursive summation), plus the weights'
//!   own rounding: GPU and CPU both form `d·code + m` with at most two roundings of values no
//!   larger than A_b = 2·max|w| + (max w − min w) of the block, so 2⁻²² · Σ_b A_b · Σ_b |x|.
//!   One percent of slack covers the bound's own rounding.
//! - int8 kernels vs the CPU kernels' own matmul (`Isa::Scalar`): the same 8-bit activations
//!   (same rounding rule) and the same exact integer sums per 16 columns, combined in f32 in
//!   another order (at most four roundings per block along the tiled matmul's sequential sum):
//!   (4·blocks + 32) · 2⁻²⁴ · Σ_b A_b · Σ_b |x| · (1 + 1/127).

mod common;

use common::{dequantize, device, random_weights, Rng};
use thinkscope_gpu::{
    ops, AdapterChoice, GpuContext, GpuMatrix, OpenOptions, Tier, WeightFormat, ALL_FORMATS,
};
use thinkscope_kernels::{Isa, PackedMatrix};

const EPS: f64 = 1.0 / (1u64 << 24) as f64;

fn block_mag(w: &[f32]) -> f64 {
    let (mut lo, mut hi, mut amax) = (f32::MAX, f32::MIN, 0f32);
    for &v in w {
        lo = lo.min(v);
        hi = hi.max(v);
        amax = amax.max(v.abs());
    }
    (2.0 * amax + (hi - lo)) as f64
}

fn check(
    ctx: &GpuContext,
    format: WeightFormat,
    rows: usize,
    cols: usize,
    n: usize,
    tier: Tier,
    seed: u64,
) {
    let mut rng = Rng(seed);
    let bytes = random_weights(format, rows, cols, 0.1, &mut rng);
    let w = dequantize(format, rows, cols, &bytes);
    let x: Vec<f32> = (0..n * cols).map(|_| rng.sym(1.0)).collect();
    let m = GpuMatrix::upload(ctx, format, rows, cols, &bytes).expect("upload");
    let got = ops::matmul(ctx, &m, &x, n, tier).expect("gpu matmul");
    assert_eq!(got.len(), n * rows);
    let int8 = tier.int8 && format.has_codes();
    let cpu = match (int8, format) {
        (true, WeightFormat::Quant(s)) => Some(
            PackedMatrix::from_ggml(s, rows, cols, &bytes)
                .expect("packs")
                .matmul(&x, n, Isa::Scalar),
        ),
        _ => None,
    };
    let depth = if n <= 16 { cols / 512 + 32 } else { cols + 8 } as f64;
    let mut worst = 0f64;
    for i in 0..n {
        for r in 0..rows {
            let (xr, wr) = (&x[i * cols..(i + 1) * cols], &w[r * cols..(r + 1) * cols]);
            let exact: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
            let abs_sum: f64 = xr
                .iter()
                .zip(wr)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let mag: f64 = wr
                .chunks(32)
                .zip(xr.chunks(32))
                .map(|(wb, xb)| block_mag(wb) * xb.iter().map(|v| v.abs() as f64).sum::<f64>())
                .sum();
            let g = got[i * rows + r] as f64;
            let (want, bound) = match &cpu {
                Some(c) => (
                    c[i * rows + r] as f64,
                    (4.0 * (cols / 32) as f64 + 32.0) * EPS * mag * (1.0 + 1.0 / 127.0),
                ),
                None => (exact, depth * EPS * abs_sum + 4.0 * EPS * mag),
            };
            let err = (g - want).abs();
            worst = worst.max(err / bound);
            assert!(
                err <= 1.01 * bound,
                "{} {} {rows}x{cols} n={n} row {i} out {r}: gpu {g} vs {want} (err {err:e}, bound {bound:e})",
                format.name(),
                tier.name()
            );
        }
    }
    eprintln!(
        "{:5} {:20} {rows}x{cols} n={n:2}: worst error {:.3} of the bound",
        format.name(),
        tier.name(),
        worst
    );
}

#[test]
fn every_format_and_tier_matches_the_cpu_kernels() {
    let Some(ctx) = device() else { return };
    every_format_and_tier(&ctx);
}

/// The kernel shapes of the other kind of adapter: on lavapipe, the GPU's (mat-vec rows split
/// over invocations, tiled matmuls); on a GPU, the CPU's.
#[test]
fn other_kernel_shapes_match_the_cpu_kernels_too() {
    let Some(ctx) = device() else { return };
    let options = OpenOptions {
        cpu_shapes: Some(!ctx.adapter().software),
        ..OpenOptions::new(AdapterChoice::Any)
    };
    let other = GpuContext::open(&options).expect("device");
    every_format_and_tier(&other);
}

fn every_format_and_tier(ctx: &GpuContext) {
    eprintln!("adapter: {}", ctx.description());
    let t0 = std::time::Instant::now();
    for (fi, format) in ALL_FORMATS.into_iter().enumerate() {
        let cols = if format.block_elems() == 256 {
            512
        } else {
            320
        };
        // Subgroups and f16 change only the norms' reductions and the attention kernel's loads
        // (tests/forward.rs runs every tier there), so the matmul tiers are f32 and int8.
        for tier in ctx
            .available()
            .subsets()
            .into_iter()
            .filter(|t| !t.f16 && !t.subgroup)
        {
            for (j, n) in [1usize, 3, 16].into_iter().enumerate() {
                check(ctx, format, 37, cols, n, tier, (fi * 100 + j) as u64);
            }
        }
        // Prefill: the tiled matmuls (f32, and int8 where the format has codes).
        check(ctx, format, 70, cols, 40, Tier::F32, fi as u64 + 7);
        if ctx.available().int8 && format.has_codes() {
            let int8 = Tier {
                int8: true,
                ..Tier::F32
            };
            check(ctx, format, 70, cols, 40, int8, fi as u64 + 8);
        }
    }
    eprintln!("all formats and tiers: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn matrices_above_the_binding_limit_are_split_by_rows() {
    let Some(_) = device() else { return };
    // A 2 KiB binding limit splits a 100 x 256 Q8_0 matrix (8 KiB of codes) into parts.
    let options = OpenOptions {
        max_binding_bytes: Some(2048),
        ..OpenOptions::new(AdapterChoice::Any)
    };
    let ctx = GpuContext::open(&options).expect("device");
    for format in [
        WeightFormat::Quant(thinkscope_gpu::Source::Q8_0),
        WeightFormat::Quant(thinkscope_gpu::Source::Q5K),
        WeightFormat::F16,
    ] {
        let mut rng = Rng(5);
        let bytes = random_weights(format, 100, 256, 0.1, &mut rng);
        let m = GpuMatrix::upload(&ctx, format, 100, 256, &bytes).expect("upload");
        assert!(
            m.part_count() > 1,
            "{} split into {}",
            format.name(),
            m.part_count()
        );
        for n in [1, 5, 20] {
            check(&ctx, format, 100, 256, n, ctx.available(), 9 + n as u64);
        }
    }
}

#[test]
fn bad_shapes_and_sizes_are_errors() {
    let Some(ctx) = device() else { return };
    let q8 = WeightFormat::Quant(thinkscope_gpu::Source::Q8_0);
    assert!(GpuMatrix::upload(&ctx, q8, 4, 48, &[0; 4 * 48 / 32 * 34]).is_err());
    assert!(GpuMatrix::upload(&ctx, q8, 4, 64, &[0; 10]).is_err());
    let m = GpuMatrix::upload(&ctx, q8, 4, 64, &[0; 4 * 2 * 34]).expect("zeros are fine");
    assert!(ops::matmul(&ctx, &m, &[0.0; 10], 1, Tier::F32).is_err());
}
