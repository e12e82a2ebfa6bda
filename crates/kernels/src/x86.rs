//! AVX-512 VNNI and AVX2 kernels: one 16-row tile group against up to four activation rows.
//!
//! Lane `k` of a vector is output row `k` of the group. For each 32-column block and each group
//! `g` of four columns, the tile holds the four codes of every row side by side, so a broadcast of
//! the activation's four bytes and one `u8 × i8` dot-product step advance all sixteen rows.

use std::arch::x86_64::*;

use super::{Isa, Kind, Min, QuantActs, Tile, BLOCK, LANES};

const U4: u8 = 0;
const U5: u8 = 1;
const U8: u8 = 2;

/// Rows `r0 .. r0 + m` of `acts` (m is 1 or 4) against `t`; `out` is `[m][16]`.
///
/// # Safety
/// `isa` must be supported by this CPU (as checked by [`super::available`]).
pub(crate) unsafe fn tile(
    isa: Isa,
    t: &Tile<'_>,
    acts: &QuantActs,
    r0: usize,
    m: usize,
    out: &mut [f32],
) {
    let off = match t.min {
        Min::Offset(o) => o,
        Min::Stored => 0.0,
    };
    let stored = t.min == Min::Stored;
    macro_rules! dispatch {
        ($f:ident, $m:literal, $r:expr, $out:expr) => {
            match (t.kind, t.subs == 2, stored, t.half) {
                (Kind::U4, false, true, true) => {
                    $f::<U4, false, true, true, $m>(t, acts, $r, off, $out)
                }
                (Kind::U4, false, false, true) => {
                    $f::<U4, false, false, true, $m>(t, acts, $r, off, $out)
                }
                (Kind::U4, false, true, false) => {
                    $f::<U4, false, true, false, $m>(t, acts, $r, off, $out)
                }
                (Kind::U5, false, false, true) => {
                    $f::<U5, false, false, true, $m>(t, acts, $r, off, $out)
                }
                (Kind::U5, false, true, true) => {
                    $f::<U5, false, true, true, $m>(t, acts, $r, off, $out)
                }
                (Kind::U5, false, true, false) => {
                    $f::<U5, false, true, false, $m>(t, acts, $r, off, $out)
                }
                (Kind::U8, false, false, true) => {
                    $f::<U8, false, false, true, $m>(t, acts, $r, off, $out)
                }
                (Kind::U8, true, false, false) => {
                    $f::<U8, true, false, false, $m>(t, acts, $r, off, $out)
                }
                // No GGML format packs this way; keep a correct path anyway.
                _ => super::scalar_rows(t, acts, $r, $m, $out),
            }
        };
    }
    match (isa, m) {
        (Isa::Avx512Vnni, 4) => dispatch!(k512, 4, r0, out),
        (Isa::Avx512Vnni, _) => {
            for r in 0..m {
                dispatch!(k512, 1, r0 + r, &mut out[r * LANES..(r + 1) * LANES]);
            }
        }
        // AVX2 has sixteen registers: two activation rows at a time.
        (_, _) => {
            let mut r = 0;
            while r < m {
                if m - r >= 2 {
                    dispatch!(k256, 2, r0 + r, &mut out[r * LANES..(r + 2) * LANES]);
                    r += 2;
                } else {
                    dispatch!(k256, 1, r0 + r, &mut out[r * LANES..(r + 1) * LANES]);
                    r += 1;
                }
            }
        }
    }
}

const fn tile_bytes(k: u8) -> usize {
    match k {
        U4 => 256,
        U5 => 320,
        _ => 512,
    }
}

/// Check every extent the kernels read or write (they index with raw pointers) and return the
/// first byte of each activation row.
fn checked_rows<
    const K: u8,
    const SUB2: bool,
    const STORED: bool,
    const H: bool,
    const M: usize,
>(
    t: &Tile<'_>,
    a: &QuantActs,
    r0: usize,
    out: &[f32],
) -> [*const u8; M] {
    let nb = t.blocks;
    let subs = if SUB2 { 2 } else { 1 };
    let scales = if H { t.d16.len() } else { t.d.len() };
    assert!(t.codes.len() >= nb * tile_bytes(K) && scales >= nb * subs * LANES);
    assert!(!STORED || (if H { t.m16.len() } else { t.m.len() }) >= nb * LANES);
    assert!(a.qs.len() >= (r0 + M) * nb * BLOCK && out.len() >= M * LANES);
    assert!(a.d.len() >= (r0 + M) * nb && a.s16.len() >= 2 * (r0 + M) * nb);
    std::array::from_fn(|r| a.qs[(r0 + r) * nb * BLOCK..].as_ptr() as *const u8)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn k512<const K: u8, const SUB2: bool, const STORED: bool, const H: bool, const M: usize>(
    t: &Tile<'_>,
    a: &QuantActs,
    r0: usize,
    off: f32,
    out: &mut [f32],
) {
    let (nb, tb, subs) = (t.blocks, tile_bytes(K), if SUB2 { 2 } else { 1 });
    let qp = checked_rows::<K, SUB2, STORED, H, M>(t, a, r0, out);
    let m4 = _mm512_set1_epi8(0x0F);
    let m10 = _mm512_set1_epi8(0x10);
    let mut acc = [_mm512_setzero_ps(); M];
    for b in 0..nb {
        let tp = t.codes.as_ptr().add(b * tb);
        let dp = b * subs * LANES;
        let hb = if K == U5 {
            _mm512_loadu_si512(tp.add(256) as *const _)
        } else {
            _mm512_setzero_si512()
        };
        // For a single row, two partial sums (even and odd column groups) halve the dependency
        // chain; four rows already give four independent chains.
        let mut p = [_mm512_setzero_si512(); M];
        let mut q = [_mm512_setzero_si512(); M];
        for g in 0..8 {
            let w = if K == U8 {
                _mm512_loadu_si512(tp.add(64 * g) as *const _)
            } else {
                let raw = _mm512_loadu_si512(tp.add(64 * (g % 4)) as *const _);
                let lo = if g < 4 {
                    _mm512_and_si512(raw, m4)
                } else {
                    _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4)
                };
                if K == U5 {
                    // Bit g of each plane byte is the fifth bit of column group g.
                    let bit = if g <= 4 {
                        _mm512_sll_epi16(hb, _mm_cvtsi32_si128(4 - g as i32))
                    } else {
                        _mm512_srl_epi16(hb, _mm_cvtsi32_si128(g as i32 - 4))
                    };
                    _mm512_or_si512(lo, _mm512_and_si512(bit, m10))
                } else {
                    lo
                }
            };
            for r in 0..M {
                let x = _mm512_set1_epi32(
                    (qp[r].add(b * BLOCK + 4 * g) as *const i32).read_unaligned(),
                );
                if M > 1 || g % 2 == 0 {
                    p[r] = _mm512_dpbusd_epi32(p[r], w, x);
                } else {
                    q[r] = _mm512_dpbusd_epi32(q[r], w, x);
                }
            }
            if SUB2 && g == 3 {
                let dv = ld16::<H>(t.d, t.d16, dp);
                for r in 0..M {
                    let i = (r0 + r) * nb + b;
                    let t1 = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(_mm512_add_epi32(p[r], q[r])),
                        _mm512_set1_ps(a.d[i]),
                        _mm512_set1_ps(off * a.s16[2 * i]),
                    );
                    acc[r] = _mm512_fmadd_ps(t1, dv, acc[r]);
                    p[r] = _mm512_setzero_si512();
                    q[r] = _mm512_setzero_si512();
                }
            }
        }
        let dv = ld16::<H>(t.d, t.d16, dp + if SUB2 { LANES } else { 0 });
        let mv = if STORED {
            ld16::<H>(t.m, t.m16, b * LANES)
        } else {
            _mm512_setzero_ps()
        };
        for r in 0..M {
            let i = (r0 + r) * nb + b;
            let pf = _mm512_cvtepi32_ps(_mm512_add_epi32(p[r], q[r]));
            if STORED {
                let t1 = _mm512_mul_ps(pf, _mm512_set1_ps(a.d[i]));
                acc[r] = _mm512_fmadd_ps(t1, dv, acc[r]);
                acc[r] =
                    _mm512_fmadd_ps(mv, _mm512_set1_ps(a.s16[2 * i] + a.s16[2 * i + 1]), acc[r]);
            } else {
                let s = if SUB2 {
                    a.s16[2 * i + 1]
                } else {
                    a.s16[2 * i] + a.s16[2 * i + 1]
                };
                let t1 = _mm512_fmadd_ps(pf, _mm512_set1_ps(a.d[i]), _mm512_set1_ps(off * s));
                acc[r] = _mm512_fmadd_ps(t1, dv, acc[r]);
            }
        }
    }
    for (r, v) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(r * LANES), *v);
    }
}

/// Sixteen scales from `at`: f32, or f16 bits widened.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn ld16<const H: bool>(f: &[f32], h: &[u16], at: usize) -> __m512 {
    if H {
        _mm512_cvtph_ps(_mm256_loadu_si256(h.as_ptr().add(at) as *const __m256i))
    } else {
        _mm512_loadu_ps(f.as_ptr().add(at))
    }
}

/// Eight scales from `at`: f32, or f16 bits widened.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn ld8<const H: bool>(f: &[f32], h: &[u16], at: usize) -> __m256 {
    if H {
        _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().add(at) as *const __m128i))
    } else {
        _mm256_loadu_ps(f.as_ptr().add(at))
    }
}

/// Sixteen lanes as two AVX2 halves (rows 0..8 and 8..16).
type V2i = [__m256i; 2];
type V2f = [__m256; 2];

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load2(p: *const u8) -> V2i {
    [
        _mm256_loadu_si256(p as *const __m256i),
        _mm256_loadu_si256(p.add(32) as *const __m256i),
    ]
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k256<const K: u8, const SUB2: bool, const STORED: bool, const H: bool, const M: usize>(
    t: &Tile<'_>,
    a: &QuantActs,
    r0: usize,
    off: f32,
    out: &mut [f32],
) {
    let (nb, tb, subs) = (t.blocks, tile_bytes(K), if SUB2 { 2 } else { 1 });
    let qp = checked_rows::<K, SUB2, STORED, H, M>(t, a, r0, out);
    // Codes above 127 (Q8_0's reach 255) could saturate `vpmaddubsw`'s 16-bit pair sums: they
    // are split into their low seven bits and their top bit.
    let split = K == U8 && t.wide;
    let m4 = _mm256_set1_epi8(0x0F);
    let m10 = _mm256_set1_epi8(0x10);
    let m7f = _mm256_set1_epi8(0x7F);
    let m01 = _mm256_set1_epi8(0x01);
    let ones = _mm256_set1_epi16(1);
    let w128 = _mm256_set1_epi16(128);
    let mut acc: [V2f; M] = [[_mm256_setzero_ps(); 2]; M];
    let step = |p: __m256i, w: __m256i, x: __m256i| -> __m256i {
        _mm256_add_epi32(p, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones))
    };
    for b in 0..nb {
        let tp = t.codes.as_ptr().add(b * tb);
        let dp = b * subs * LANES;
        let hb = if K == U5 {
            load2(tp.add(256))
        } else {
            [_mm256_setzero_si256(); 2]
        };
        let mut p: [V2i; M] = [[_mm256_setzero_si256(); 2]; M];
        for g in 0..8 {
            let mut w: V2i = [_mm256_setzero_si256(); 2];
            for h in 0..2 {
                w[h] = if K == U8 {
                    _mm256_loadu_si256(tp.add(64 * g + 32 * h) as *const __m256i)
                } else {
                    let raw = _mm256_loadu_si256(tp.add(64 * (g % 4) + 32 * h) as *const __m256i);
                    let lo = if g < 4 {
                        _mm256_and_si256(raw, m4)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4)
                    };
                    if K == U5 {
                        let bit = if g <= 4 {
                            _mm256_sll_epi16(hb[h], _mm_cvtsi32_si128(4 - g as i32))
                        } else {
                            _mm256_srl_epi16(hb[h], _mm_cvtsi32_si128(g as i32 - 4))
                        };
                        _mm256_or_si256(lo, _mm256_and_si256(bit, m10))
                    } else {
                        lo
                    }
                };
            }
            for r in 0..M {
                let x = (qp[r].add(b * BLOCK + 4 * g) as *const i32).read_unaligned();
                let x = _mm256_set1_epi32(x);
                for h in 0..2 {
                    if split {
                        let lo = _mm256_and_si256(w[h], m7f);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<7>(w[h]), m01);
                        let top = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x), w128);
                        p[r][h] = _mm256_add_epi32(step(p[r][h], lo, x), top);
                    } else {
                        p[r][h] = step(p[r][h], w[h], x);
                    }
                }
            }
            if SUB2 && g == 3 {
                for r in 0..M {
                    let i = (r0 + r) * nb + b;
                    let (dx, c) = (_mm256_set1_ps(a.d[i]), _mm256_set1_ps(off * a.s16[2 * i]));
                    for h in 0..2 {
                        let dv = ld8::<H>(t.d, t.d16, dp + 8 * h);
                        let t1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[r][h]), dx, c);
                        acc[r][h] = _mm256_fmadd_ps(t1, dv, acc[r][h]);
                        p[r][h] = _mm256_setzero_si256();
                    }
                }
            }
        }
        let dq = dp + if SUB2 { LANES } else { 0 };
        for r in 0..M {
            let i = (r0 + r) * nb + b;
            let dx = _mm256_set1_ps(a.d[i]);
            for h in 0..2 {
                let dv = ld8::<H>(t.d, t.d16, dq + 8 * h);
                let pf = _mm256_cvtepi32_ps(p[r][h]);
                if STORED {
                    let mv = ld8::<H>(t.m, t.m16, b * LANES + 8 * h);
                    acc[r][h] = _mm256_fmadd_ps(_mm256_mul_ps(pf, dx), dv, acc[r][h]);
                    acc[r][h] = _mm256_fmadd_ps(
                        mv,
                        _mm256_set1_ps(a.s16[2 * i] + a.s16[2 * i + 1]),
                        acc[r][h],
                    );
                } else {
                    let s = if SUB2 {
                        a.s16[2 * i + 1]
                    } else {
                        a.s16[2 * i] + a.s16[2 * i + 1]
                    };
                    let t1 = _mm256_fmadd_ps(pf, dx, _mm256_set1_ps(off * s));
                    acc[r][h] = _mm256_fmadd_ps(t1, dv, acc[r][h]);
                }
            }
        }
    }
    for (r, v) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(r * LANES), v[0]);
        _mm256_storeu_ps(out.as_mut_ptr().add(r * LANES + 8), v[1]);
    }
}
