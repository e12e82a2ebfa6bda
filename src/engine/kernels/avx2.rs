//! AVX2 + FMA dot products of one weight row with one quantized activation row.

use std::arch::x86_64::*;

use half::f16;

/// Σ over blocks of `dw·dx·Σ(qw·qx) + mw·sx` for Q4_1 weights.
///
/// # Safety
/// The CPU must support AVX2 and FMA. `w` holds whole 20-byte blocks and `qs` 32 values per block.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q4_1(w: &[u8], qs: &[i8], d: &[f32], s: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    let ones = _mm256_set1_epi16(1);
    for (b, blk) in w.chunks_exact(20).enumerate() {
        let dw = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let mw = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
        let wq = unpack_q4_1(blk);
        let xq = _mm256_loadu_si256(qs.as_ptr().add(b * 32) as *const __m256i);
        // Unsigned weights × signed activations, pairwise summed to i16, then to i32.
        let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq), ones);
        let scale = _mm256_set1_ps(dw * d[b]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prod), scale, acc);
        mins += mw * s[b];
    }
    hsum(acc) + mins
}

/// Σ over blocks of `dw·dx·Σ(qw·qx)` for Q8_0 weights.
///
/// # Safety
/// The CPU must support AVX2 and FMA. `w` holds whole 34-byte blocks and `qs` 32 values per block.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q8_0(w: &[u8], qs: &[i8], d: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let ones = _mm256_set1_epi16(1);
    for (b, blk) in w.chunks_exact(34).enumerate() {
        let dw = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let wq = _mm256_loadu_si256(blk.as_ptr().add(2) as *const __m256i);
        let xq = _mm256_loadu_si256(qs.as_ptr().add(b * 32) as *const __m256i);
        // Signed × signed via |w| × (x with w's sign).
        let aw = _mm256_sign_epi8(wq, wq);
        let sx = _mm256_sign_epi8(xq, wq);
        let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
        let scale = _mm256_set1_ps(dw * d[b]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prod), scale, acc);
    }
    hsum(acc)
}

/// The 32 four-bit values of a Q4_1 block as bytes, in element order: the low nibbles of its 16
/// bytes are elements 0..16, the high nibbles 16..32.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn unpack_q4_1(blk: &[u8]) -> __m256i {
    let mask = _mm_set1_epi8(0x0F);
    let raw = _mm_loadu_si128(blk.as_ptr().add(4) as *const __m128i);
    let lo = _mm_and_si128(raw, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
    _mm256_set_m128i(hi, lo)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let hi = _mm256_extractf128_ps(v, 1);
    let lo = _mm256_castps256_ps128(v);
    let s = _mm_add_ps(hi, lo);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// [`dot_q4_1`] for four activation rows at once: each weight block is unpacked once and used four
/// times. `qs`, `d` and `s` are the four rows' slices.
///
/// # Safety
/// As [`dot_q4_1`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q4_1_x4(w: &[u8], qs: [&[i8]; 4], d: [&[f32]; 4], s: [&[f32]; 4]) -> [f32; 4] {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut mins = [0f32; 4];
    let ones = _mm256_set1_epi16(1);
    for (b, blk) in w.chunks_exact(20).enumerate() {
        let dw = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let mw = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
        let wq = unpack_q4_1(blk);
        for r in 0..4 {
            let xq = _mm256_loadu_si256(qs[r].as_ptr().add(b * 32) as *const __m256i);
            let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq), ones);
            let scale = _mm256_set1_ps(dw * d[r][b]);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prod), scale, acc[r]);
            mins[r] += mw * s[r][b];
        }
    }
    [
        hsum(acc[0]) + mins[0],
        hsum(acc[1]) + mins[1],
        hsum(acc[2]) + mins[2],
        hsum(acc[3]) + mins[3],
    ]
}

/// [`dot_q8_0`] for four activation rows at once.
///
/// # Safety
/// As [`dot_q8_0`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q8_0_x4(w: &[u8], qs: [&[i8]; 4], d: [&[f32]; 4]) -> [f32; 4] {
    let mut acc = [_mm256_setzero_ps(); 4];
    let ones = _mm256_set1_epi16(1);
    for (b, blk) in w.chunks_exact(34).enumerate() {
        let dw = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let wq = _mm256_loadu_si256(blk.as_ptr().add(2) as *const __m256i);
        let aw = _mm256_sign_epi8(wq, wq);
        for r in 0..4 {
            let xq = _mm256_loadu_si256(qs[r].as_ptr().add(b * 32) as *const __m256i);
            let sx = _mm256_sign_epi8(xq, wq);
            let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
            let scale = _mm256_set1_ps(dw * d[r][b]);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prod), scale, acc[r]);
        }
    }
    [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
}
