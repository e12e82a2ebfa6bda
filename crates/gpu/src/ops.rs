//! Single kernels run on host data: what the tests compare with the CPU kernels.

use crate::context::{GpuContext, Tier};
use crate::error::GpuError;
use crate::matrix::{qacts_words, record_matmul, record_quantize, uses_dot8, Acts, GpuMatrix};
use crate::pipelines::{Binder, Recorder};

/// `y = x · Wᵀ` for `n` rows of `x` (`[n, cols]` → `[n, rows]`) with the kernels of `tier`
/// (which must be within the adapter's [`GpuContext::available`]).
pub fn matmul(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &[f32],
    n: usize,
    tier: Tier,
) -> Result<Vec<f32>, GpuError> {
    if tier.min(ctx.available()) != tier {
        return Err(GpuError::Invalid(format!(
            "tier {} is not available on this adapter",
            tier.name()
        )));
    }
    if x.len() != n * m.cols() || n == 0 {
        return Err(GpuError::Invalid(format!(
            "{} inputs for {n} rows of {}",
            x.len(),
            m.cols()
        )));
    }
    let xb = ctx.upload("x", &crate::format::f32_bytes(x))?;
    let y = ctx.buffer(
        "y",
        (4 * n * m.rows()) as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    )?;
    let xq = ctx.buffer(
        "xq",
        (4 * qacts_words(n, m.cols())) as u64,
        wgpu::BufferUsages::STORAGE,
    )?;
    let mut binder = Binder::new();
    let mut rec = Recorder::default();
    let acts = Acts {
        buf: &xb,
        off: 0,
        stride: m.cols() as u32,
        n: n as u32,
    };
    let q = if uses_dot8(m, tier) {
        Some(record_quantize(
            ctx,
            &mut binder,
            &mut rec,
            acts,
            m.cols() as u32,
            &xq,
        )?)
    } else {
        None
    };
    record_matmul(
        ctx,
        &mut binder,
        &mut rec,
        tier,
        m,
        acts,
        q,
        &y,
        m.rows() as u32,
        0,
    )?;
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    binder.encode(ctx, &rec, &mut enc)?;
    ctx.queue.submit([enc.finish()]);
    let raw = ctx.read(&y, 0, (4 * n * m.rows()) as u64)?;
    Ok(raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Seconds one `n`-row matmul of `m` takes at `tier`, from `reps` dispatches in one submission
/// (benchmarks; the input is zeros).
pub fn time_matmul(
    ctx: &GpuContext,
    m: &GpuMatrix,
    n: usize,
    tier: Tier,
    reps: usize,
) -> Result<f64, GpuError> {
    let xb = ctx.buffer("x", (4 * n * m.cols()) as u64, wgpu::BufferUsages::STORAGE)?;
    let y = ctx.buffer(
        "y",
        (4 * n * m.rows()) as u64,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    )?;
    let xq = ctx.buffer(
        "xq",
        (4 * qacts_words(n, m.cols())) as u64,
        wgpu::BufferUsages::STORAGE,
    )?;
    let mut binder = Binder::new();
    let mut rec = Recorder::default();
    let acts = Acts {
        buf: &xb,
        off: 0,
        stride: m.cols() as u32,
        n: n as u32,
    };
    for _ in 0..reps {
        let q = if uses_dot8(m, tier) {
            Some(record_quantize(
                ctx,
                &mut binder,
                &mut rec,
                acts,
                m.cols() as u32,
                &xq,
            )?)
        } else {
            None
        };
        record_matmul(
            ctx,
            &mut binder,
            &mut rec,
            tier,
            m,
            acts,
            q,
            &y,
            m.rows() as u32,
            0,
        )?;
    }
    // Once to compile and warm up, then timed.
    for timed in [false, true] {
        let t = std::time::Instant::now();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        binder.encode(ctx, &rec, &mut enc)?;
        ctx.queue.submit([enc.finish()]);
        ctx.read(&y, 0, 4)?;
        if timed {
            return Ok(t.elapsed().as_secs_f64() / reps as f64);
        }
    }
    Ok(0.0)
}
