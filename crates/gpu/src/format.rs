//! Weight formats, and GGML blocks repacked at load into the layouts the shaders read: integer
//! codes in one array, scales in another (see `shaders/quant.wgsl` for the word layouts).
//!
//! Code words keep GGML's own nibble order where it already suits the shaders (Q4_0, Q4_1 and
//! the Q5 formats are copied as they are); the k-quants are decoded into 32-column sub-blocks.
//! Scales stay f16 where the file has f16 (so the GPU copy is no larger than the file), and
//! k-quant scales stay as their 6- or 8-bit integers beside the super-block's f16 scale, so
//! `d · sc` is formed in f32 in the shader, exactly as the CPU kernels form it.

use half::f16;
use thinkscope_kernels::Source;

use crate::error::GpuError;

/// A weight matrix's format as stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// A GGML quantized format the CPU kernels also take.
    Quant(Source),
    /// IEEE half precision.
    F16,
    /// IEEE single precision.
    F32,
}

/// Every format, for tests and tables.
pub const ALL_FORMATS: [WeightFormat; 10] = [
    WeightFormat::Quant(Source::Q4_0),
    WeightFormat::Quant(Source::Q4_1),
    WeightFormat::Quant(Source::Q5_0),
    WeightFormat::Quant(Source::Q5_1),
    WeightFormat::Quant(Source::Q8_0),
    WeightFormat::Quant(Source::Q4K),
    WeightFormat::Quant(Source::Q5K),
    WeightFormat::Quant(Source::Q6K),
    WeightFormat::F16,
    WeightFormat::F32,
];

impl WeightFormat {
    /// Elements per GGML block.
    pub fn block_elems(self) -> usize {
        match self {
            WeightFormat::Quant(s) => s.block_elems(),
            WeightFormat::F16 | WeightFormat::F32 => 32,
        }
    }

    /// GGML bytes of `cols` elements (one row).
    pub fn row_bytes(self, cols: usize) -> usize {
        match self {
            WeightFormat::Quant(s) => cols / s.block_elems() * s.block_bytes(),
            WeightFormat::F16 => 2 * cols,
            WeightFormat::F32 => 4 * cols,
        }
    }

    /// Name as llama.cpp prints it.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::Quant(Source::Q4_0) => "Q4_0",
            WeightFormat::Quant(Source::Q4_1) => "Q4_1",
            WeightFormat::Quant(Source::Q5_0) => "Q5_0",
            WeightFormat::Quant(Source::Q5_1) => "Q5_1",
            WeightFormat::Quant(Source::Q8_0) => "Q8_0",
            WeightFormat::Quant(Source::Q4K) => "Q4_K",
            WeightFormat::Quant(Source::Q5K) => "Q5_K",
            WeightFormat::Quant(Source::Q6K) => "Q6_K",
            WeightFormat::F16 => "F16",
            WeightFormat::F32 => "F32",
        }
    }

    /// Whether the packed int8 path can take it (formats with integer codes).
    pub fn has_codes(self) -> bool {
        matches!(self, WeightFormat::Quant(_))
    }

    /// Code words per 32-column block (not counting the fifth-bit plane).
    pub(crate) fn code_words(self) -> usize {
        match self {
            WeightFormat::Quant(s) => match s {
                Source::Q4_0 | Source::Q4_1 | Source::Q4K => 4,
                Source::Q5_0 | Source::Q5_1 | Source::Q5K => 4,
                Source::Q8_0 | Source::Q6K => 8,
            },
            WeightFormat::F16 => 16,
            WeightFormat::F32 => 32,
        }
    }

    pub(crate) fn has_hi_plane(self) -> bool {
        matches!(
            self,
            WeightFormat::Quant(Source::Q5_0 | Source::Q5_1 | Source::Q5K)
        )
    }

    /// Scale words per row of `cols` columns.
    pub(crate) fn scale_words(self, cols: usize) -> usize {
        let blocks = cols / 32;
        match self {
            WeightFormat::Quant(Source::Q4_0 | Source::Q5_0 | Source::Q8_0) => blocks,
            WeightFormat::Quant(Source::Q4_1 | Source::Q5_1) => blocks,
            WeightFormat::Quant(Source::Q4K | Source::Q5K | Source::Q6K) => blocks / 8 * 5,
            WeightFormat::F16 | WeightFormat::F32 => 0,
        }
    }

    /// Shader flags selecting this format in quant.wgsl, and its MIN_OFFSET.
    pub(crate) fn flags(self) -> (Vec<&'static str>, &'static str) {
        let (fmt, kind, off) = match self {
            WeightFormat::Quant(Source::Q4_0) => ("FMT_Q4_0", "K_U4", "-8.0"),
            WeightFormat::Quant(Source::Q4_1) => ("FMT_Q4_1", "K_U4", "0.0"),
            WeightFormat::Quant(Source::Q5_0) => ("FMT_Q5_0", "K_U5", "-16.0"),
            WeightFormat::Quant(Source::Q5_1) => ("FMT_Q5_1", "K_U5", "0.0"),
            WeightFormat::Quant(Source::Q8_0) => ("FMT_Q8_0", "K_U8S", "0.0"),
            WeightFormat::Quant(Source::Q4K) => ("FMT_Q4K", "K_U4", "0.0"),
            WeightFormat::Quant(Source::Q5K) => ("FMT_Q5K", "K_U5", "0.0"),
            WeightFormat::Quant(Source::Q6K) => ("FMT_Q6K", "K_U8U", "0.0"),
            WeightFormat::F16 => ("FMT_F16", "K_F16", "0.0"),
            WeightFormat::F32 => ("FMT_F32", "K_F32", "0.0"),
        };
        (vec![fmt, kind], off)
    }
}

/// A matrix (or a part of one) in the shader layout.
pub(crate) struct Repacked {
    /// Code words, then (Q5 formats) the fifth-bit plane from `hi_off`.
    pub codes: Vec<u32>,
    pub hi_off: u32,
    pub scales: Vec<u32>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Pack 32 codes (< 32) as four nibble words and one fifth-bit word.
fn pack_u4(codes: &[u8; 32], words: &mut Vec<u32>) -> u32 {
    for q in 0..4 {
        let mut w = 0u32;
        for i in 0..4 {
            let byte = (codes[4 * q + i] & 0x0F) | ((codes[16 + 4 * q + i] & 0x0F) << 4);
            w |= (byte as u32) << (8 * i);
        }
        words.push(w);
    }
    let mut hi = 0u32;
    for (e, c) in codes.iter().enumerate() {
        hi |= (((c >> 4) & 1) as u32) << e;
    }
    hi
}

fn pack_u8(codes: &[u8; 32], words: &mut Vec<u32>) {
    for w in 0..8 {
        words.push(le32(codes, 4 * w));
    }
}

fn k4_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn bytes_word(b: &[u8]) -> u32 {
    let mut w = 0u32;
    for (i, &x) in b.iter().enumerate() {
        w |= (x as u32) << (8 * i);
    }
    w
}

/// Repack `rows` GGML rows of `cols` columns (`bytes` holds exactly those rows).
pub(crate) fn repack(
    format: WeightFormat,
    rows: usize,
    cols: usize,
    bytes: &[u8],
) -> Result<Repacked, GpuError> {
    let be = format.block_elems();
    if rows == 0 || cols == 0 || !cols.is_multiple_of(be) || !cols.is_multiple_of(32) {
        return Err(GpuError::Invalid(format!(
            "a {} matrix of {rows} x {cols} is not whole blocks",
            format.name()
        )));
    }
    let row_bytes = format.row_bytes(cols);
    if bytes.len() != rows * row_bytes {
        return Err(GpuError::Invalid(format!(
            "{} bytes for a {} matrix of {rows} x {cols} ({} expected)",
            bytes.len(),
            format.name(),
            rows * row_bytes
        )));
    }
    let blocks = rows * cols / 32;
    let mut codes = Vec::with_capacity(blocks * format.code_words());
    let mut hi = Vec::new();
    let mut scales = Vec::with_capacity(rows * format.scale_words(cols));
    let mut half_scales: Vec<u16> = Vec::new();
    match format {
        WeightFormat::F32 => {
            codes.extend(bytes.chunks_exact(4).map(|c| le32(c, 0)));
        }
        WeightFormat::F16 => {
            codes.extend(bytes.chunks_exact(4).map(|c| le32(c, 0)));
        }
        WeightFormat::Quant(source) => {
            let bb = source.block_bytes();
            for b in bytes.chunks_exact(bb) {
                match source {
                    Source::Q4_0 | Source::Q4_1 => {
                        let qs = if source == Source::Q4_1 {
                            scales.push(le32(b, 0));
                            &b[4..20]
                        } else {
                            half_scales.push(le16(b, 0));
                            &b[2..18]
                        };
                        codes.extend(qs.chunks_exact(4).map(|c| le32(c, 0)));
                    }
                    Source::Q5_0 | Source::Q5_1 => {
                        let rest = if source == Source::Q5_1 {
                            scales.push(le32(b, 0));
                            &b[4..24]
                        } else {
                            half_scales.push(le16(b, 0));
                            &b[2..22]
                        };
                        hi.push(le32(rest, 0));
                        codes.extend(rest[4..20].chunks_exact(4).map(|c| le32(c, 0)));
                    }
                    Source::Q8_0 => {
                        half_scales.push(le16(b, 0));
                        codes.extend(b[2..34].chunks_exact(4).map(|c| le32(c, 0)));
                    }
                    Source::Q4K | Source::Q5K => {
                        let sc = &b[4..16];
                        let (qh, qs) = if source == Source::Q5K {
                            (Some(&b[16..48]), &b[48..176])
                        } else {
                            (None, &b[16..144])
                        };
                        let mut s = [0u8; 8];
                        let mut m = [0u8; 8];
                        for j in 0..8 {
                            (s[j], m[j]) = k4_scale_min(j, sc);
                        }
                        scales.push(le32(b, 0));
                        scales.push(bytes_word(&s[..4]));
                        scales.push(bytes_word(&s[4..]));
                        scales.push(bytes_word(&m[..4]));
                        scales.push(bytes_word(&m[4..]));
                        for j in 0..8 {
                            let (c, half) = (j / 2, j % 2);
                            let ql = &qs[32 * c..32 * c + 32];
                            let mut sub = [0u8; 32];
                            for l in 0..32 {
                                let lo = if half == 0 { ql[l] & 0x0F } else { ql[l] >> 4 };
                                let h = qh.map_or(0, |qh| (qh[l] >> j) & 1);
                                sub[l] = lo | (h << 4);
                            }
                            let h = pack_u4(&sub, &mut codes);
                            if qh.is_some() {
                                hi.push(h);
                            }
                        }
                    }
                    Source::Q6K => {
                        let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                        scales.push(le16(b, 208) as u32);
                        for w in 0..4 {
                            scales.push(bytes_word(&sc[4 * w..4 * w + 4]));
                        }
                        let mut subs = [[0u8; 32]; 8];
                        for n in 0..2 {
                            let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
                            for l in 0..32 {
                                let q = [
                                    (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
                                    (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                                    (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                                    (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                                ];
                                for (j, &q) in q.iter().enumerate() {
                                    subs[4 * n + j][l] = q;
                                }
                            }
                        }
                        for s in &subs {
                            pack_u8(s, &mut codes);
                        }
                    }
                }
            }
        }
    }
    // Interleave by rows (see quant.wgsl): word j of row r goes to j * rows + r.
    let codes = interleave(&codes, rows);
    let hi = interleave(&hi, rows);
    let mut scales = interleave(&scales, rows);
    let mut half_scales = interleave(&half_scales, rows);
    if !half_scales.is_empty() {
        if half_scales.len() % 2 == 1 {
            half_scales.push(0);
        }
        scales.extend(
            half_scales
                .chunks_exact(2)
                .map(|p| p[0] as u32 | ((p[1] as u32) << 16)),
        );
    }
    let mut codes = codes;
    let hi_off = codes.len() as u32;
    codes.extend(hi);
    Ok(Repacked {
        codes,
        hi_off,
        scales,
    })
}

/// Row-major `[rows][per_row]` to `[per_row][rows]`.
fn interleave<T: Copy>(v: &[T], rows: usize) -> Vec<T> {
    if v.is_empty() {
        return Vec::new();
    }
    let per_row = v.len() / rows;
    let mut out = Vec::with_capacity(v.len());
    for j in 0..per_row {
        out.extend((0..rows).map(|r| v[r * per_row + j]));
    }
    out
}

/// f32 values as the bytes of an F32 matrix (for tests and small vectors).
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// f32 values rounded to f16, as the bytes of an F16 matrix.
pub fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| f16::from_f32(*x).to_le_bytes())
        .collect()
}
