//! Shared by the GPU tests: a device (or a printed reason to skip), seeded data, GGML blocks.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use half::f16;
use thinkscope_gpu::{AdapterChoice, GpuContext, OpenOptions, Source, WeightFormat};

/// The best adapter there is, software included (lavapipe in CI). `None`, with the reason
/// printed, where there is none: the tests then skip.
pub fn device() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    match CTX.get_or_init(|| {
        GpuContext::open(&OpenOptions::new(AdapterChoice::Any)).map_err(|e| e.to_string())
    }) {
        Ok(c) => Some(c.clone()),
        Err(e) => {
            eprintln!("skipped: no GPU adapter ({e}); install mesa-vulkan-drivers for lavapipe");
            None
        }
    }
}

/// SplitMix64: varied, reproducible data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) as f32
    }

    /// Uniform in [-a, a].
    pub fn sym(&mut self, a: f32) -> f32 {
        a * (2.0 * self.uniform() - 1.0)
    }
}

/// Random GGML bytes of `format` whose weights are about `scale` in size: random codes, and
/// f16 scales chosen so that `d · code` stays near `scale`.
pub fn random_weights(
    format: WeightFormat,
    rows: usize,
    cols: usize,
    scale: f32,
    rng: &mut Rng,
) -> Vec<u8> {
    let h = |v: f32| f16::from_f32(v).to_le_bytes();
    match format {
        WeightFormat::F32 => (0..rows * cols)
            .flat_map(|_| rng.sym(scale).to_le_bytes())
            .collect(),
        WeightFormat::F16 => (0..rows * cols).flat_map(|_| h(rng.sym(scale))).collect(),
        WeightFormat::Quant(source) => {
            let nblocks = rows * cols / source.block_elems();
            let mut out = Vec::new();
            for _ in 0..nblocks {
                let mut b: Vec<u8> = (0..source.block_bytes())
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                let d =
                    |lo: f32, hi: f32, rng: &mut Rng| h(scale * (lo + (hi - lo) * rng.uniform()));
                match source {
                    Source::Q4_0 => b[..2].copy_from_slice(&d(0.1, 0.2, rng)),
                    Source::Q5_0 => b[..2].copy_from_slice(&d(0.05, 0.1, rng)),
                    Source::Q8_0 => b[..2].copy_from_slice(&d(0.006, 0.012, rng)),
                    Source::Q4_1 => {
                        b[..2].copy_from_slice(&d(0.1, 0.15, rng));
                        b[2..4].copy_from_slice(&d(-1.0, -0.8, rng));
                    }
                    Source::Q5_1 => {
                        b[..2].copy_from_slice(&d(0.05, 0.07, rng));
                        b[2..4].copy_from_slice(&d(-1.0, -0.8, rng));
                    }
                    Source::Q4K => {
                        b[..2].copy_from_slice(&d(0.002, 0.004, rng));
                        b[2..4].copy_from_slice(&d(0.01, 0.02, rng));
                    }
                    Source::Q5K => {
                        b[..2].copy_from_slice(&d(0.001, 0.002, rng));
                        b[2..4].copy_from_slice(&d(0.01, 0.02, rng));
                    }
                    Source::Q6K => b[208..210].copy_from_slice(&d(0.0003, 0.0006, rng)),
                }
                out.extend(b);
            }
            out
        }
    }
}

/// The weights as f32, the way the CPU kernels dequantize them (the oracle).
pub fn dequantize(format: WeightFormat, rows: usize, cols: usize, bytes: &[u8]) -> Vec<f32> {
    match format {
        WeightFormat::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        WeightFormat::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        WeightFormat::Quant(source) => {
            let m = thinkscope_kernels::PackedMatrix::from_ggml(source, rows, cols, bytes)
                .expect("the CPU kernels pack it");
            let mut out = vec![0f32; rows * cols];
            for (r, row) in out.chunks_mut(cols).enumerate() {
                m.dequantize_row(r, row);
            }
            out
        }
    }
}
