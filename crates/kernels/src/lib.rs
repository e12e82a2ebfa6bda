//! The project's own quantized matmul, for every GGML weight format the models ship in
//! (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
//!
//! At load time each weight matrix is repacked (once, streaming from the file) into tiles of 16
//! rows × 32 columns: integer codes interleaved so that one 32-bit lane holds four consecutive
//! codes of one row, and an f32 scale and minimum per row and 32 (or 16) columns, so that
//! `value = d · code + m` for every format. A vector of sixteen lanes is then sixteen output rows:
//! one broadcast of four activation bytes and one `vpdpbusd` (AVX-512 VNNI) or
//! `vpmaddubsw`+`vpmaddwd` (AVX2) advance sixteen dot products by four terms, and no horizontal
//! sums are ever needed. Activations are quantized once per call to 8 bits per element in blocks
//! of 32; each weight tile, once loaded and unpacked, is used for four activation rows, and each
//! 16-row group for all activation rows while it is in cache, so sixteen branches or a whole
//! prompt stream the weights from memory once.
//!
//! The instruction set is picked at run time (a binary built without `target-cpu=native` is still
//! fast), with portable scalar code as the fallback; all three are tested against candle's own
//! dequantization followed by an f32 matmul.

#![allow(unsafe_code)]
#![allow(clippy::needless_range_loop)] // index arithmetic mirrors the GGML layouts

mod pack;
#[cfg(target_arch = "x86_64")]
mod x86;

use half::f16;
use rayon::prelude::*;

use self::pack::{decode, Decoded};
pub use self::pack::{Kind, Min, Source};

/// Columns per block (activation quantization block, weight sub-block).
pub const BLOCK: usize = 32;
/// Rows per tile: the lanes of one vector.
pub const LANES: usize = 16;
/// Activation rows that share one unpacked weight tile.
const TILE_ROWS: usize = 4;

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 (F, BW) with VNNI.
    Avx512Vnni,
}

impl Isa {
    /// For people: "AVX-512 VNNI", "AVX2", "portable".
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "portable",
            Isa::Avx2 => "AVX2",
            Isa::Avx512Vnni => "AVX-512 VNNI",
        }
    }
}

/// The best implementation this CPU supports. `THINKSCOPE_ISA=scalar|avx2` picks a lesser one
/// (benchmarks, debugging).
pub fn detect() -> Isa {
    let best = available().last().copied().unwrap_or(Isa::Scalar);
    match std::env::var("THINKSCOPE_ISA").as_deref() {
        Err(_) | Ok("") => best,
        Ok("scalar") => Isa::Scalar,
        Ok("avx2") if available().contains(&Isa::Avx2) => Isa::Avx2,
        Ok(other) => {
            tracing::warn!(
                "THINKSCOPE_ISA={other:?} is not 'scalar' or an available 'avx2'; using {}",
                best.name()
            );
            best
        }
    }
}

/// Every implementation this CPU can run, worst first.
pub fn available() -> Vec<Isa> {
    #[allow(unused_mut)]
    let mut v = vec![Isa::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            v.push(Isa::Avx2);
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
            {
                v.push(Isa::Avx512Vnni);
            }
        }
    }
    v
}

/// A weight matrix `[rows, cols]` repacked into 16-row tiles (see the module docs).
pub struct PackedMatrix {
    source: Source,
    rows: usize,
    cols: usize,
    groups: usize,
    blocks: usize,
    /// `[group][block][tile bytes]`.
    codes: Vec<u8>,
    /// Scales, `[group][block][sub][16]`, as f32 or (for formats whose scales are f16) as f16
    /// bits; the other vector is empty.
    d: Vec<f32>,
    d16: Vec<u16>,
    /// Like `d`; empty when the minimum is a fixed multiple of the scale.
    m: Vec<f32>,
    m16: Vec<u16>,
}

/// Activations quantized to 8 bits in blocks of 32.
pub struct QuantActs {
    rows: usize,
    blocks: usize,
    /// `[row][cols]`.
    qs: Vec<i8>,
    /// Scale per block: `[row][block]`.
    d: Vec<f32>,
    /// `d · Σq` per half block: `[row][block][2]`.
    s16: Vec<f32>,
}

impl PackedMatrix {
    /// Repack a matrix whose GGML rows are delivered, sixteen at a time (fewer for the last
    /// group), by `read`. Errors when `cols` is not a whole number of the format's blocks.
    pub fn pack<E>(
        source: Source,
        rows: usize,
        cols: usize,
        mut read: impl FnMut(&mut [u8]) -> Result<(), E>,
    ) -> Result<Self, PackError<E>> {
        let be = source.block_elems();
        if rows == 0 || cols == 0 || !cols.is_multiple_of(be) {
            return Err(PackError::Shape { rows, cols, source });
        }
        let blocks = cols / BLOCK;
        let groups = rows.div_ceil(LANES);
        let tb = source.kind().tile_bytes();
        let subs = source.subs();
        let stored = source.min() == Min::Stored;
        let mut codes = vec![0u8; groups * blocks * tb];
        let mut d = vec![0f32; groups * blocks * subs * LANES];
        let mut m = if stored { d.clone() } else { Vec::new() };
        let half = source.half_scales();
        let row_bytes = cols / be * source.block_bytes();
        let mut raw = vec![0u8; LANES * row_bytes];
        let mut dec = vec![Decoded::default(); be / BLOCK];
        for g in 0..groups {
            let n = (rows - g * LANES).min(LANES);
            read(&mut raw[..n * row_bytes]).map_err(PackError::Read)?;
            for k in 0..n {
                let row = &raw[k * row_bytes..(k + 1) * row_bytes];
                for (gb, blk) in row.chunks_exact(source.block_bytes()).enumerate() {
                    decode(source, blk, &mut dec);
                    for (j, sub) in dec.iter().enumerate() {
                        let b = gb * (be / BLOCK) + j;
                        let tile = &mut codes[(g * blocks + b) * tb..][..tb];
                        put_codes(source.kind(), tile, k, &sub.codes);
                        for s in 0..subs {
                            let at = ((g * blocks + b) * subs + s) * LANES + k;
                            d[at] = sub.d[s];
                            if stored {
                                m[at] = sub.m[s];
                            }
                        }
                    }
                }
            }
        }
        // f16 sources' scales round-trip exactly.
        let to16 =
            |v: Vec<f32>| -> Vec<u16> { v.iter().map(|&x| f16::from_f32(x).to_bits()).collect() };
        let (d, d16, m, m16) = if half {
            (Vec::new(), to16(d), Vec::new(), to16(m))
        } else {
            (d, Vec::new(), m, Vec::new())
        };
        Ok(Self {
            source,
            rows,
            cols,
            groups,
            blocks,
            codes,
            d,
            d16,
            m,
            m16,
        })
    }

    /// Repack a matrix held in memory as GGML rows.
    pub fn from_ggml(source: Source, rows: usize, cols: usize, bytes: &[u8]) -> Option<Self> {
        let be = source.block_elems();
        if !cols.is_multiple_of(be) || bytes.len() != rows * cols / be * source.block_bytes() {
            return None;
        }
        let mut at = 0;
        Self::pack(source, rows, cols, |buf: &mut [u8]| {
            buf.copy_from_slice(&bytes[at..at + buf.len()]);
            at += buf.len();
            Ok::<(), ()>(())
        })
        .ok()
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The format the weights came in.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.codes.len() + 4 * (self.d.len() + self.m.len()) + 2 * (self.d16.len() + self.m16.len())
    }

    fn subs(&self) -> usize {
        self.source.subs()
    }

    /// Dequantize one row to f32 (embedding lookups, references).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let (g, k) = (row / LANES, row % LANES);
        let tile = self.tile(g);
        let tb = self.source.kind().tile_bytes();
        let subs = self.subs();
        let mut codes = [[0u8; BLOCK]; LANES];
        for (b, o) in out[..self.cols].chunks_mut(BLOCK).enumerate() {
            unpack_tile(tile.kind, &tile.codes[b * tb..][..tb], &mut codes);
            for (e, o) in o.iter_mut().enumerate() {
                let (d, m) = tile.scale_min((b * subs + (e / 16).min(subs - 1)) * LANES + k);
                *o = d * codes[k][e] as f32 + m;
            }
        }
    }

    /// `y = x · Wᵀ` for `n` rows of `x` (`[n, cols]` → `[n, rows]`).
    pub fn matmul(&self, x: &[f32], n: usize, isa: Isa) -> Vec<f32> {
        let acts = quantize_acts(x, n, self.cols);
        let mut y = vec![0f32; n * self.rows];
        self.matmul_acts(&acts, isa, &mut y);
        y
    }

    /// [`matmul`](Self::matmul) on activations already quantized, writing `[n, rows]` into `y`.
    pub fn matmul_acts(&self, acts: &QuantActs, isa: Isa, y: &mut [f32]) {
        matmul_many(&[self], acts, isa, &mut [y]);
    }

    /// The share of group `g`.
    fn tile(&self, g: usize) -> Tile<'_> {
        let tb = self.source.kind().tile_bytes();
        let sl = self.blocks * self.subs() * LANES;
        Tile {
            codes: &self.codes[g * self.blocks * tb..][..self.blocks * tb],
            d: share(&self.d, g, sl),
            d16: share(&self.d16, g, sl),
            m: share(&self.m, g, sl),
            m16: share(&self.m16, g, sl),
            half: self.source.half_scales(),
            wide: self.source.max_code() > 127,
            blocks: self.blocks,
            kind: self.source.kind(),
            subs: self.subs(),
            min: self.source.min(),
        }
    }

    /// All activation rows against one 16-row group; `out` is `[n][16]`.
    fn group(&self, g: usize, acts: &QuantActs, isa: Isa, out: &mut [f32]) {
        let tile = self.tile(g);
        let n = acts.rows;
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512Vnni => {
                let mut r = 0;
                while r < n {
                    let m = if n - r >= TILE_ROWS { TILE_ROWS } else { 1 };
                    let o = &mut out[r * LANES..(r + m) * LANES];
                    // SAFETY: `Isa::Avx2` / `Isa::Avx512Vnni` come from `available`, which checked
                    // the CPU features the kernels are compiled for.
                    unsafe { x86::tile(isa, &tile, acts, r, m, o) };
                    r += m;
                }
            }
            _ => scalar_rows(&tile, acts, 0, n, out),
        }
    }
}

/// Group `g`'s `len` entries of a per-group vector (empty stays empty).
fn share<T>(v: &[T], g: usize, len: usize) -> &[T] {
    if v.is_empty() {
        v
    } else {
        &v[g * len..][..len]
    }
}

/// One 16-row group's share of a packed matrix.
pub(crate) struct Tile<'a> {
    pub codes: &'a [u8],
    pub d: &'a [f32],
    pub d16: &'a [u16],
    pub m: &'a [f32],
    pub m16: &'a [u16],
    /// Scales in `d16`/`m16` rather than `d`/`m`.
    pub half: bool,
    /// Codes may exceed 127 (where AVX2's 16-bit pair sums could saturate).
    pub wide: bool,
    pub blocks: usize,
    pub kind: Kind,
    pub subs: usize,
    pub min: Min,
}

impl Tile<'_> {
    /// Scale and minimum at index `at` of the `[block][sub][16]` layout.
    fn scale_min(&self, at: usize) -> (f32, f32) {
        let d = if self.half {
            f16::from_bits(self.d16[at]).to_f32()
        } else {
            self.d[at]
        };
        let m = match self.min {
            Min::Stored if self.half => f16::from_bits(self.m16[at]).to_f32(),
            Min::Stored => self.m[at],
            Min::Offset(o) => o * d,
        };
        (d, m)
    }
}

/// Errors from [`PackedMatrix::pack`].
#[derive(Debug)]
pub enum PackError<E> {
    /// The shape does not fit the format's blocks.
    Shape {
        rows: usize,
        cols: usize,
        source: Source,
    },
    /// Reading the rows failed.
    Read(E),
}

/// Place lane `k`'s 32 codes into a tile. Lane `k` of chunk `c` is bytes `64c + 4k .. 64c + 4k + 4`.
fn put_codes(kind: Kind, tile: &mut [u8], k: usize, codes: &[u8; 32]) {
    match kind {
        Kind::U4 | Kind::U5 => {
            for c in 0..4 {
                for i in 0..4 {
                    let lo = codes[4 * c + i] & 0x0F;
                    let hi = codes[16 + 4 * c + i] & 0x0F;
                    tile[64 * c + 4 * k + i] = lo | (hi << 4);
                }
            }
            if kind == Kind::U5 {
                for i in 0..4 {
                    let mut bits = 0u8;
                    for g in 0..8 {
                        bits |= ((codes[4 * g + i] >> 4) & 1) << g;
                    }
                    tile[256 + 4 * k + i] = bits;
                }
            }
        }
        Kind::U8 => {
            for g in 0..8 {
                for i in 0..4 {
                    tile[64 * g + 4 * k + i] = codes[4 * g + i];
                }
            }
        }
    }
}

/// Several matrices that read the same input (`q`, `k`, `v`; `gate`, `up`) in one parallel
/// loop: the input is quantized once by the caller, and the threads share one pool of tasks,
/// so small matrices do not each pay for a start and a join. `ys[i]` receives `[n, rows_i]`.
pub fn matmul_many(mats: &[&PackedMatrix], acts: &QuantActs, isa: Isa, ys: &mut [&mut [f32]]) {
    let n = acts.rows;
    assert_eq!(mats.len(), ys.len(), "one output per matrix");
    if n == 0 {
        return;
    }
    let total: usize = mats.iter().map(|m| m.groups).sum();
    let per_task = (total / (rayon::current_num_threads() * 8)).max(1);
    // Per matrix and group, `[n][16]` outputs; groups are independent, so threads split them.
    let mut tmps: Vec<Vec<f32>> = mats
        .iter()
        .map(|m| {
            assert_eq!(acts.blocks, m.blocks, "activation width");
            vec![0f32; m.groups * n * LANES]
        })
        .collect();
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (i, tmp) in tmps.iter_mut().enumerate() {
        for (t, chunk) in tmp.chunks_mut(per_task * n * LANES).enumerate() {
            tasks.push((i, t * per_task, chunk));
        }
    }
    tasks.into_par_iter().for_each(|(i, first, out)| {
        for (j, out) in out.chunks_mut(n * LANES).enumerate() {
            mats[i].group(first + j, acts, isa, out);
        }
    });
    for ((m, tmp), y) in mats.iter().zip(&tmps).zip(ys.iter_mut()) {
        assert_eq!(y.len(), n * m.rows, "output size");
        for g in 0..m.groups {
            let valid = (m.rows - g * LANES).min(LANES);
            for r in 0..n {
                let src = &tmp[(g * n + r) * LANES..][..valid];
                y[r * m.rows + g * LANES..][..valid].copy_from_slice(src);
            }
        }
    }
}

/// The portable kernel: activation rows `r0 .. r0 + m` against one tile group. Each block's codes
/// are unpacked once into a plain `[lane][column]` array, then every row's dot products are
/// simple integer loops the compiler vectorises for whatever the target has.
pub(crate) fn scalar_rows(t: &Tile<'_>, acts: &QuantActs, r0: usize, m: usize, out: &mut [f32]) {
    let tb = t.kind.tile_bytes();
    let out = &mut out[..m * LANES];
    out.fill(0.0);
    let mut codes = [[0u8; BLOCK]; LANES];
    let mut dm = [[(0f32, 0f32); 2]; LANES];
    for b in 0..t.blocks {
        unpack_tile(t.kind, &t.codes[b * tb..][..tb], &mut codes);
        for (k, dm) in dm.iter_mut().enumerate() {
            for (s, dm) in dm.iter_mut().enumerate() {
                *dm = t.scale_min((b * t.subs + s.min(t.subs - 1)) * LANES + k);
            }
        }
        for (r, out) in (r0..r0 + m).zip(out.chunks_mut(LANES)) {
            let q = &acts.qs[(r * acts.blocks + b) * BLOCK..][..BLOCK];
            let dx = acts.d[r * acts.blocks + b];
            let sx = &acts.s16[(r * acts.blocks + b) * 2..][..2];
            for ((o, c), dm) in out.iter_mut().zip(&codes).zip(&dm) {
                for s in 0..2 {
                    let sum: i32 = c[16 * s..16 * s + 16]
                        .iter()
                        .zip(&q[16 * s..16 * s + 16])
                        .map(|(&w, &x)| w as i32 * x as i32)
                        .sum();
                    *o += dm[s].0 * dx * sum as f32 + dm[s].1 * sx[s];
                }
            }
        }
    }
}

/// All sixteen lanes' 32 codes of one tile block.
fn unpack_tile(kind: Kind, tile: &[u8], codes: &mut [[u8; BLOCK]; LANES]) {
    for (k, c) in codes.iter_mut().enumerate() {
        match kind {
            Kind::U4 | Kind::U5 => {
                for g in 0..4 {
                    for i in 0..4 {
                        let byte = tile[64 * g + 4 * k + i];
                        c[4 * g + i] = byte & 0x0F;
                        c[16 + 4 * g + i] = byte >> 4;
                    }
                }
                if kind == Kind::U5 {
                    for i in 0..4 {
                        let bits = tile[256 + 4 * k + i];
                        for g in 0..8 {
                            c[4 * g + i] |= ((bits >> g) & 1) << 4;
                        }
                    }
                }
            }
            Kind::U8 => {
                for g in 0..8 {
                    c[4 * g..4 * g + 4].copy_from_slice(&tile[64 * g + 4 * k..][..4]);
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
    let mut s16 = vec![0f32; n * blocks * 2];
    let row = |xr: &[f32], qr: &mut [i8], dr: &mut [f32], s16r: &mut [f32]| {
        for (i, (xb, qb)) in xr
            .chunks_exact(BLOCK)
            .zip(qr.chunks_exact_mut(BLOCK))
            .enumerate()
        {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut sums = [0i32; 2];
            for (half, (qh, xh)) in qb.chunks_exact_mut(16).zip(xb.chunks_exact(16)).enumerate() {
                for (q, v) in qh.iter_mut().zip(xh) {
                    // |v · inv| <= 127 by construction; the clamp only absorbs float slack.
                    *q = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
                }
                sums[half] = qh.iter().map(|&q| q as i32).sum();
            }
            dr[i] = scale;
            s16r[2 * i] = scale * sums[0] as f32;
            s16r[2 * i + 1] = scale * sums[1] as f32;
        }
    };
    let it = x[..n * cols]
        .par_chunks(cols)
        .zip(qs.par_chunks_mut(cols))
        .zip(d.par_chunks_mut(blocks))
        .zip(s16.par_chunks_mut(2 * blocks));
    // Rows are split across threads only when there are several.
    it.with_min_len(if n >= 4 { 1 } else { n.max(1) })
        .for_each(|(((xr, qr), dr), s16r)| row(xr, qr, dr, s16r));
    QuantActs {
        rows: n,
        blocks,
        qs,
        d,
        s16,
    }
}

impl QuantActs {
    /// Rows quantized.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
    use candle_core::Device;

    /// SplitMix64: the tests only need varied, reproducible data.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Self(seed)
        }

        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn next_f64(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    const ALL: [Source; 8] = [
        Source::Q4_0,
        Source::Q4_1,
        Source::Q5_0,
        Source::Q5_1,
        Source::Q8_0,
        Source::Q4K,
        Source::Q5K,
        Source::Q6K,
    ];

    fn dtype(s: Source) -> GgmlDType {
        match s {
            Source::Q4_0 => GgmlDType::Q4_0,
            Source::Q4_1 => GgmlDType::Q4_1,
            Source::Q5_0 => GgmlDType::Q5_0,
            Source::Q5_1 => GgmlDType::Q5_1,
            Source::Q8_0 => GgmlDType::Q8_0,
            Source::Q4K => GgmlDType::Q4K,
            Source::Q5K => GgmlDType::Q5K,
            Source::Q6K => GgmlDType::Q6K,
        }
    }

    /// Random GGML bytes with sane (small, finite) f16 scales where the format keeps them.
    fn random_ggml(source: Source, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
        let nblocks = rows * cols / source.block_elems();
        let mut out = Vec::new();
        let f = |rng: &mut Rng, lo: f32, hi: f32| {
            f16::from_f32(lo + (hi - lo) * rng.next_f64() as f32).to_le_bytes()
        };
        for _ in 0..nblocks {
            let mut b: Vec<u8> = (0..source.block_bytes())
                .map(|_| rng.next_u64() as u8)
                .collect();
            match source {
                Source::Q4_0 | Source::Q5_0 | Source::Q8_0 => {
                    b[..2].copy_from_slice(&f(rng, 0.005, 0.05))
                }
                Source::Q4_1 | Source::Q5_1 | Source::Q4K | Source::Q5K => {
                    b[..2].copy_from_slice(&f(rng, 0.001, 0.02));
                    b[2..4].copy_from_slice(&f(rng, -0.2, 0.2));
                }
                Source::Q6K => b[208..210].copy_from_slice(&f(rng, 0.0005, 0.004)),
            }
            out.extend(b);
        }
        out
    }

    fn candle_dequantize(source: Source, rows: usize, cols: usize, bytes: &[u8]) -> Vec<f32> {
        let t = qtensor_from_ggml(dtype(source), bytes, vec![rows, cols], &Device::Cpu)
            .expect("candle reads the blocks");
        t.dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("candle dequantizes")
    }

    #[test]
    fn repacked_rows_equal_candles_dequantization() {
        let mut rng = Rng::new(11);
        for source in ALL {
            let (rows, cols) = (21, 512);
            let bytes = random_ggml(source, rows, cols, &mut rng);
            let want = candle_dequantize(source, rows, cols, &bytes);
            let m = PackedMatrix::from_ggml(source, rows, cols, &bytes).expect("packs");
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                m.dequantize_row(r, &mut row);
                for (c, (g, w)) in row.iter().zip(&want[r * cols..]).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                        "{source:?} row {r} col {c}: {g} vs {w}"
                    );
                }
            }
        }
    }

    fn check(isa: Isa) {
        let mut rng = Rng::new(3);
        for source in ALL {
            for (rows, cols, n) in [(1, 256, 1), (70, 512, 1), (64, 768, 3), (33, 1536, 9)] {
                let bytes = random_ggml(source, rows, cols, &mut rng);
                let w = candle_dequantize(source, rows, cols, &bytes);
                let m = PackedMatrix::from_ggml(source, rows, cols, &bytes).expect("packs");
                let x: Vec<f32> = (0..n * cols)
                    .map(|_| 2.0 * rng.next_f64() as f32 - 1.0)
                    .collect();
                let got = m.matmul(&x, n, isa);
                let mut want = vec![0f32; n * rows];
                for r in 0..n {
                    for o in 0..rows {
                        want[r * rows + o] =
                            (0..cols).map(|c| x[r * cols + c] * w[o * cols + c]).sum();
                    }
                }
                let scale = want.iter().fold(1e-3f32, |a, v| a.max(v.abs()));
                for (i, (g, w_)) in got.iter().zip(&want).enumerate() {
                    // Rounding an activation to 8 bits moves it by at most half a step
                    // (max|x| / 254 in its block): the sum of |w| times that bounds the error.
                    let (r, o) = (i / rows, i % rows);
                    let bound: f32 = (0..cols)
                        .map(|c| {
                            let blk = &x[r * cols + c / BLOCK * BLOCK..][..BLOCK];
                            let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
                            w[o * cols + c].abs() * amax / 254.0
                        })
                        .sum();
                    assert!(
                        (g - w_).abs() <= 1.01 * bound + 1e-4 * scale,
                        "{source:?} {isa:?} {rows}x{cols} n={n} [{i}]: {g} vs {w_} (bound {bound})"
                    );
                }
                if isa != Isa::Scalar {
                    // The same integers are summed; only float rounding may differ.
                    let s = m.matmul(&x, n, Isa::Scalar);
                    for (p, q) in got.iter().zip(&s) {
                        assert!(
                            (p - q).abs() <= 1e-4 * (scale + q.abs()),
                            "{source:?} {isa:?} vs scalar: {p} vs {q}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn scalar_matches_reference() {
        check(Isa::Scalar);
    }

    #[test]
    fn every_simd_path_on_this_cpu_matches_scalar_and_reference() {
        for isa in available() {
            check(isa);
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(PackedMatrix::from_ggml(Source::Q4K, 2, 32, &[0; 40]).is_none());
        assert!(PackedMatrix::from_ggml(Source::Q8_0, 2, 64, &[0; 10]).is_none());
    }
}
