//! The project's own quantized matmul for the formats candle lacks fast CPU kernels for.
//!
//! Activations are quantized once per call (to 8-bit blocks), and every weight row is used for
//! all activation rows while it is hot in cache, so a batch of sixteen branches streams the weights
//! from memory once, not sixteen times. Dot products use AVX2 when the CPU has it (detected at run
//! time, so a binary built without `target-cpu=native` is still fast) and portable scalar code
//! otherwise; both are tested against a dequantize-then-multiply reference.

#![allow(unsafe_code)]

use half::f16;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Elements per quantization block (Q4_1 and Q8_0 alike).
pub const BLOCK: usize = 32;

/// Weight formats with a kernel here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// 32 × 4-bit values with an f16 scale and an f16 minimum (20 bytes a block).
    Q4_1,
    /// 32 × 8-bit values with an f16 scale (34 bytes a block).
    Q8_0,
}

impl Format {
    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Format::Q4_1 => 20,
            Format::Q8_0 => 34,
        }
    }
}

/// A quantized weight matrix `[rows, cols]` in GGML block layout, row-major.
pub struct QuantMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

/// Activations quantized to 8 bits in blocks of 32: per block a scale `d` and `s = d * Σq`.
pub struct QuantActs {
    rows: usize,
    blocks: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// x86-64 AVX2 + FMA.
    Avx2,
}

/// The best implementation this CPU supports.
pub fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        return Isa::Avx2;
    }
    Isa::Scalar
}

impl QuantMatrix {
    /// Wrap raw GGML blocks. `None` when the sizes do not add up.
    pub fn new(format: Format, rows: usize, cols: usize, data: Vec<u8>) -> Option<Self> {
        if cols % BLOCK != 0 || data.len() != rows * cols / BLOCK * format.block_bytes() {
            return None;
        }
        Some(Self {
            format,
            rows,
            cols,
            data,
        })
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The weight format.
    pub fn format(&self) -> Format {
        self.format
    }

    fn row_bytes(&self) -> usize {
        self.cols / BLOCK * self.format.block_bytes()
    }

    /// `y = x · Wᵀ` for `n` rows of `x` (`[n, cols]` → `[n, rows]`).
    pub fn matmul(&self, x: &[f32], n: usize, isa: Isa) -> Vec<f32> {
        let acts = quantize_acts(x, n, self.cols);
        let mut y = vec![0f32; n * self.rows];
        // Work in chunks of output rows; within a chunk each weight row meets every input row.
        const CHUNK: usize = 32;
        let row_bytes = self.row_bytes();
        let mut out_t = vec![0f32; n * self.rows];
        out_t
            .par_chunks_mut(CHUNK * n)
            .zip(self.data.par_chunks(CHUNK * row_bytes))
            .for_each(|(out, w)| {
                for (o, wrow) in w.chunks(row_bytes).enumerate() {
                    let out = &mut out[o * n..(o + 1) * n];
                    let mut r = 0;
                    // Four activation rows per pass over the weight row, where the ISA allows.
                    while isa == Isa::Avx2 && r + 4 <= n {
                        out[r..r + 4].copy_from_slice(&self.dot4(wrow, &acts, r));
                        r += 4;
                    }
                    for (r, o) in out.iter_mut().enumerate().skip(r) {
                        *o = self.dot(wrow, &acts, r, isa);
                    }
                }
            });
        // Transpose [rows, n] → [n, rows].
        for o in 0..self.rows {
            for r in 0..n {
                y[r * self.rows + o] = out_t[o * n + r];
            }
        }
        y
    }

    #[inline]
    fn dot(&self, wrow: &[u8], acts: &QuantActs, r: usize, isa: Isa) -> f32 {
        let b = acts.blocks;
        let qs = &acts.qs[r * b * BLOCK..(r + 1) * b * BLOCK];
        let d = &acts.d[r * b..(r + 1) * b];
        let s = &acts.s[r * b..(r + 1) * b];
        match (isa, self.format) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Format::Q4_1) => {
                // SAFETY: `Isa::Avx2` is only produced by `detect` after checking AVX2 and FMA.
                unsafe { avx2::dot_q4_1(wrow, qs, d, s) }
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Format::Q8_0) => {
                // SAFETY: as above.
                unsafe { avx2::dot_q8_0(wrow, qs, d) }
            }
            (_, Format::Q4_1) => dot_q4_1_scalar(wrow, qs, d, s),
            (_, Format::Q8_0) => dot_q8_0_scalar(wrow, qs, d),
        }
    }

    /// Dot products of one weight row with activation rows `r..r + 4` (AVX2 only).
    #[inline]
    fn dot4(&self, wrow: &[u8], acts: &QuantActs, r: usize) -> [f32; 4] {
        let b = acts.blocks;
        let row = |k: usize| {
            let i = r + k;
            (
                &acts.qs[i * b * BLOCK..(i + 1) * b * BLOCK],
                &acts.d[i * b..(i + 1) * b],
                &acts.s[i * b..(i + 1) * b],
            )
        };
        let (q0, d0, s0) = row(0);
        let (q1, d1, s1) = row(1);
        let (q2, d2, s2) = row(2);
        let (q3, d3, s3) = row(3);
        #[cfg(target_arch = "x86_64")]
        {
            match self.format {
                // SAFETY: only called when `detect` found AVX2 and FMA.
                Format::Q4_1 => unsafe {
                    avx2::dot_q4_1_x4(wrow, [q0, q1, q2, q3], [d0, d1, d2, d3], [s0, s1, s2, s3])
                },
                // SAFETY: as above.
                Format::Q8_0 => unsafe {
                    avx2::dot_q8_0_x4(wrow, [q0, q1, q2, q3], [d0, d1, d2, d3])
                },
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (q0, d0, s0, q1, d1, s1, q2, d2, s2, q3, d3, s3);
            std::array::from_fn(|k| self.dot(wrow, acts, r + k, Isa::Scalar))
        }
    }

    /// Dequantize one row to f32 (embedding lookups and references).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let rb = self.row_bytes();
        let w = &self.data[row * rb..(row + 1) * rb];
        let bb = self.format.block_bytes();
        for (blk, o) in w.chunks(bb).zip(out.chunks_mut(BLOCK)) {
            let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            match self.format {
                Format::Q4_1 => {
                    let m = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
                    for j in 0..16 {
                        o[j] = d * (blk[4 + j] & 0x0F) as f32 + m;
                        o[j + 16] = d * (blk[4 + j] >> 4) as f32 + m;
                    }
                }
                Format::Q8_0 => {
                    for j in 0..BLOCK {
                        o[j] = d * blk[2 + j] as i8 as f32;
                    }
                }
            }
        }
    }
}

/// Quantize `n` rows of `cols` floats to 8-bit blocks (round to nearest, scale max|x| / 127).
pub fn quantize_acts(x: &[f32], n: usize, cols: usize) -> QuantActs {
    let blocks = cols / BLOCK;
    let mut qs = vec![0i8; n * cols];
    let mut d = vec![0f32; n * blocks];
    let mut s = vec![0f32; n * blocks];
    for (i, (xb, qb)) in x
        .chunks(BLOCK)
        .zip(qs.chunks_mut(BLOCK))
        .enumerate()
        .take(n * blocks)
    {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in qb.iter_mut().zip(xb) {
            let r = (v * inv).round() as i32;
            *q = r.clamp(-127, 127) as i8;
            sum += *q as i32;
        }
        d[i] = scale;
        s[i] = scale * sum as f32;
    }
    QuantActs {
        rows: n,
        blocks,
        qs,
        d,
        s,
    }
}

impl QuantActs {
    /// Rows quantized.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

fn dot_q4_1_scalar(w: &[u8], qs: &[i8], d: &[f32], s: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in w.chunks(20).enumerate() {
        let dw = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let mw = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
        let q = &qs[b * BLOCK..(b + 1) * BLOCK];
        let mut sum = 0i32;
        for j in 0..16 {
            sum += (blk[4 + j] & 0x0F) as i32 * q[j] as i32;
            sum += (blk[4 + j] >> 4) as i32 * q[j + 16] as i32;
        }
        acc += dw * d[b] * sum as f32 + mw * s[b];
    }
    acc
}

fn dot_q8_0_scalar(w: &[u8], qs: &[i8], d: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in w.chunks(34).enumerate() {
        let dw = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let q = &qs[b * BLOCK..(b + 1) * BLOCK];
        let mut sum = 0i32;
        for j in 0..BLOCK {
            sum += blk[2 + j] as i8 as i32 * q[j] as i32;
        }
        acc += dw * d[b] * sum as f32;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::sampling::Rng;

    fn random_matrix(format: Format, rows: usize, cols: usize, rng: &mut Rng) -> QuantMatrix {
        let mut data = Vec::new();
        for _ in 0..rows * cols / BLOCK {
            let d = f16::from_f32(0.01 + rng.next_f64() as f32 * 0.05);
            data.extend_from_slice(&d.to_le_bytes());
            match format {
                Format::Q4_1 => {
                    let m = f16::from_f32(-0.2 * rng.next_f64() as f32);
                    data.extend_from_slice(&m.to_le_bytes());
                    data.extend((0..16).map(|_| rng.next_u64() as u8));
                }
                Format::Q8_0 => data.extend((0..32).map(|_| rng.next_u64() as u8)),
            }
        }
        QuantMatrix::new(format, rows, cols, data).expect("sizes")
    }

    /// Dequantize the weights and multiply in f32.
    fn reference(m: &QuantMatrix, x: &[f32], n: usize) -> Vec<f32> {
        let mut row = vec![0f32; m.cols];
        let mut y = vec![0f32; n * m.rows];
        for o in 0..m.rows {
            m.dequantize_row(o, &mut row);
            for r in 0..n {
                y[r * m.rows + o] = row
                    .iter()
                    .zip(&x[r * m.cols..(r + 1) * m.cols])
                    .map(|(a, b)| a * b)
                    .sum();
            }
        }
        y
    }

    fn check(format: Format, isa: Isa) {
        let mut rng = Rng::new(3);
        for (rows, cols, n) in [(1, 32, 1), (70, 576, 1), (64, 576, 3), (33, 1536, 17)] {
            let m = random_matrix(format, rows, cols, &mut rng);
            let x: Vec<f32> = (0..n * cols)
                .map(|_| 2.0 * rng.next_f64() as f32 - 1.0)
                .collect();
            let got = m.matmul(&x, n, isa);
            let want = reference(&m, &x, n);
            let scale = want.iter().fold(1e-3f32, |a, v| a.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                // 8-bit activations: error well under 1% of the output range.
                assert!(
                    (g - w).abs() <= 0.01 * scale,
                    "{format:?} {isa:?} {rows}x{cols} n={n}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn scalar_matches_reference() {
        check(Format::Q4_1, Isa::Scalar);
        check(Format::Q8_0, Isa::Scalar);
    }

    #[test]
    fn simd_matches_scalar_and_reference() {
        let isa = detect();
        check(Format::Q4_1, isa);
        check(Format::Q8_0, isa);
        // SIMD and scalar sum the same integers; only float rounding may differ.
        let mut rng = Rng::new(9);
        for format in [Format::Q4_1, Format::Q8_0] {
            let m = random_matrix(format, 40, 576, &mut rng);
            let x: Vec<f32> = (0..4 * 576).map(|_| rng.next_f64() as f32 - 0.5).collect();
            let a = m.matmul(&x, 4, isa);
            let b = m.matmul(&x, 4, Isa::Scalar);
            for (p, q) in a.iter().zip(&b) {
                assert!(
                    (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                    "{format:?}: {p} vs {q}"
                );
            }
        }
    }
}
