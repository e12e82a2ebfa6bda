//! Decoding GGML weight blocks into integer codes with a scale and a minimum per 32 (or 16)
//! elements, the form every kernel here multiplies: `value = d · code + m`.

#![allow(clippy::needless_range_loop)] // index arithmetic mirrors the GGML layouts

use half::f16;

/// The GGML weight formats the kernels take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// 4-bit, scale only (`(q - 8) · d`).
    Q4_0,
    /// 4-bit, scale and minimum.
    Q4_1,
    /// 5-bit, scale only (`(q - 16) · d`).
    Q5_0,
    /// 5-bit, scale and minimum.
    Q5_1,
    /// 8-bit, scale only.
    Q8_0,
    /// 4-bit k-quant: 256-element super-blocks, 6-bit scales and minimums per 32.
    Q4K,
    /// 5-bit k-quant.
    Q5K,
    /// 6-bit k-quant: 8-bit scales per 16 elements.
    Q6K,
}

/// How the codes are stored in a packed matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Codes 0..16, two per byte.
    U4,
    /// Codes 0..32: a nibble plane and a plane of fifth bits.
    U5,
    /// Codes 0..256, one per byte.
    U8,
}

impl Kind {
    /// Bytes of codes per 16 rows × 32 columns.
    pub fn tile_bytes(self) -> usize {
        match self {
            Kind::U4 => 256,
            Kind::U5 => 320,
            Kind::U8 => 512,
        }
    }
}

/// Where the minimum of a sub-block comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Min {
    /// Stored per sub-block.
    Stored,
    /// A fixed multiple of the scale (`m = k · d`), as in the symmetric formats.
    Offset(f32),
}

impl Source {
    /// Elements per GGML block.
    pub fn block_elems(self) -> usize {
        match self {
            Source::Q4K | Source::Q5K | Source::Q6K => 256,
            _ => 32,
        }
    }

    /// Bytes per GGML block.
    pub fn block_bytes(self) -> usize {
        match self {
            Source::Q4_0 => 18,
            Source::Q4_1 => 20,
            Source::Q5_0 => 22,
            Source::Q5_1 => 24,
            Source::Q8_0 => 34,
            Source::Q4K => 144,
            Source::Q5K => 176,
            Source::Q6K => 210,
        }
    }

    /// How the codes are packed.
    pub fn kind(self) -> Kind {
        match self {
            Source::Q4_0 | Source::Q4_1 | Source::Q4K => Kind::U4,
            Source::Q5_0 | Source::Q5_1 | Source::Q5K => Kind::U5,
            Source::Q8_0 | Source::Q6K => Kind::U8,
        }
    }

    /// The largest code the format produces.
    pub fn max_code(self) -> u8 {
        match self {
            Source::Q4_0 | Source::Q4_1 | Source::Q4K => 15,
            Source::Q5_0 | Source::Q5_1 | Source::Q5K => 31,
            Source::Q6K => 63,
            Source::Q8_0 => 255,
        }
    }

    /// Scales per 32 elements: 2 where the format scales each 16.
    pub fn subs(self) -> usize {
        match self {
            Source::Q6K => 2,
            _ => 1,
        }
    }

    /// Whether the format's scales and minimums are f16 values as stored (kept as f16, so the
    /// packed matrix is no larger than the GGML one); k-quant scales are products, kept in f32.
    pub fn half_scales(self) -> bool {
        matches!(
            self,
            Source::Q4_0 | Source::Q4_1 | Source::Q5_0 | Source::Q5_1 | Source::Q8_0
        )
    }

    /// Where minimums come from.
    pub fn min(self) -> Min {
        match self {
            Source::Q4_0 => Min::Offset(-8.0),
            Source::Q5_0 => Min::Offset(-16.0),
            Source::Q8_0 => Min::Offset(-128.0),
            Source::Q6K => Min::Offset(-32.0),
            Source::Q4_1 | Source::Q5_1 | Source::Q4K | Source::Q5K => Min::Stored,
        }
    }
}

/// One 32-element sub-block, decoded: unsigned codes, and per half (16 elements) a scale and a
/// minimum. For formats with one scale per 32 both halves are equal.
#[derive(Clone, Copy, Default)]
pub(crate) struct Decoded {
    pub codes: [u8; 32],
    pub d: [f32; 2],
    pub m: [f32; 2],
}

fn h(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Decode one GGML block (`source.block_bytes()` bytes) into `block_elems / 32` sub-blocks.
pub(crate) fn decode(source: Source, b: &[u8], out: &mut [Decoded]) {
    match source {
        Source::Q4_0 | Source::Q4_1 => {
            let d = h(b, 0);
            let (m, qs) = match source {
                Source::Q4_1 => (h(b, 2), &b[4..20]),
                _ => (-8.0 * d, &b[2..18]),
            };
            let o = &mut out[0];
            for j in 0..16 {
                o.codes[j] = qs[j] & 0x0F;
                o.codes[j + 16] = qs[j] >> 4;
            }
            o.d = [d; 2];
            o.m = [m; 2];
        }
        Source::Q5_0 | Source::Q5_1 => {
            let d = h(b, 0);
            let (m, rest) = match source {
                Source::Q5_1 => (h(b, 2), &b[4..24]),
                _ => (-16.0 * d, &b[2..22]),
            };
            let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let qs = &rest[4..20];
            let o = &mut out[0];
            for j in 0..16 {
                o.codes[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                o.codes[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            }
            o.d = [d; 2];
            o.m = [m; 2];
        }
        Source::Q8_0 => {
            let d = h(b, 0);
            let o = &mut out[0];
            for j in 0..32 {
                o.codes[j] = (b[2 + j] as i8 as i16 + 128) as u8;
            }
            o.d = [d; 2];
            o.m = [-128.0 * d; 2];
        }
        Source::Q4K | Source::Q5K => {
            let (d, dmin) = (h(b, 0), h(b, 2));
            let scales = &b[4..16];
            let (qh, qs) = match source {
                Source::Q5K => (Some(&b[16..48]), &b[48..176]),
                _ => (None, &b[16..144]),
            };
            for c in 0..4 {
                let ql = &qs[32 * c..32 * c + 32];
                for half in 0..2 {
                    let j = 2 * c + half;
                    let (sc, mn) = scale_min_k4(j, scales);
                    let o = &mut out[j];
                    for l in 0..32 {
                        let lo = if half == 0 { ql[l] & 0x0F } else { ql[l] >> 4 };
                        let hi = qh.map_or(0, |qh| (qh[l] >> j) & 1);
                        o.codes[l] = lo | (hi << 4);
                    }
                    o.d = [d * sc as f32; 2];
                    o.m = [-dmin * mn as f32; 2];
                }
            }
        }
        Source::Q6K => {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = h(b, 208);
            for n in 0..2 {
                let (ql, qh, sc) = (&ql[64 * n..], &qh[32 * n..], &sc[8 * n..]);
                for l in 0..32 {
                    let q = [
                        (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
                        (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                        (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                        (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                    ];
                    for (j, &q) in q.iter().enumerate() {
                        out[4 * n + j].codes[l] = q;
                    }
                }
                for j in 0..4 {
                    let o = &mut out[4 * n + j];
                    for half in 0..2 {
                        let s = d * sc[2 * j + half] as i8 as f32;
                        o.d[half] = s;
                        o.m[half] = -32.0 * s;
                    }
                }
            }
        }
    }
}

fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}
