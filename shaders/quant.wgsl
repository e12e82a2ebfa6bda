// Weight storage of one format, included by the shaders that read weight matrices (matvec,
// matmul, embed). The includer declares `codes: array<u32>` and `scales: array<u32>`; exactly one
// FMT_* flag and its kind flag (K_U4, K_U5, K_U8S, K_U8U, K_F16, K_F32) are set by the host.
//
// Layouts (written by crates/gpu/src/format.rs). Every array is interleaved by rows: word w of
// 32-column block b of row r is at `(b * W + w) * nr + r` (nr: rows of this part), so the
// invocations of a workgroup, one row each, read consecutive words. Per block:
//   K_U4   W = 4: byte i of word q holds code 4q+i (low nibble) and code 16+4q+i (high nibble)
//   K_U5   as K_U4, plus a plane at `hi_off` (W = 1) whose bit e is the fifth bit of code e
//   K_U8*  W = 8: byte i of word w is code 4w+i (signed for Q8_0, 0..63 for Q6_K)
//   K_F16  W = 16 words of f16 pairs;  K_F32  W = 32 words of f32 bits
// Scales (formats with codes): Q4_0/Q5_0/Q8_0 one f16 `d` per block (element b * nr + r, two to
// a word); Q4_1/Q5_1 one word per block holding f16 `d` and `m`; Q4_K/Q5_K five words per
// 256-column super-block (f16 d|dmin, eight 6-bit scales as bytes, eight 6-bit minimums as
// bytes); Q6_K five words per super-block (f16 d, sixteen signed 8-bit scales). Value =
// d * code + m, as in thinkscope-kernels.

// The eight weights of "quarter" q of a block: columns 4q..4q+3 (`lo`) and 16+4q..16+4q+3 (`hi`).
struct Dq {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// Four successive bits of `h`, one per lane.
fn bits4(h: u32) -> vec4<u32> {
    return (vec4<u32>(h) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
}

// Scale and minimum of the two halves of block b of a row: (d_lo, m_lo, d_hi, m_hi).
fn scale_min(row: u32, b: u32, nr: u32) -> vec4<f32> {
#if FMT_Q4_0 || FMT_Q5_0 || FMT_Q8_0
    let i = b * nr + row;
    let d = unpack2x16float(scales[i >> 1u])[i & 1u];
    let m = {{MIN_OFFSET}} * d;
    return vec4<f32>(d, m, d, m);
#endif
#if FMT_Q4_1 || FMT_Q5_1
    let dm = unpack2x16float(scales[b * nr + row]);
    return vec4<f32>(dm.x, dm.y, dm.x, dm.y);
#endif
#if FMT_Q4K || FMT_Q5K
    let base = (b >> 3u) * 5u;
    let j = b & 7u;
    let dd = unpack2x16float(scales[base * nr + row]);
    let sh = 8u * (j & 3u);
    let sc = f32((scales[(base + 1u + (j >> 2u)) * nr + row] >> sh) & 0xFFu);
    let mn = f32((scales[(base + 3u + (j >> 2u)) * nr + row] >> sh) & 0xFFu);
    let d = dd.x * sc;
    let m = -dd.y * mn;
    return vec4<f32>(d, m, d, m);
#endif
#if FMT_Q6K
    let base = (b >> 3u) * 5u;
    let j = 2u * (b & 7u);
    let d = unpack2x16float(scales[base * nr + row]).x;
    let w = scales[(base + 1u + (j >> 2u)) * nr + row];
    let s0 = f32(extractBits(bitcast<i32>(w), 8u * (j & 3u), 8u));
    let s1 = f32(extractBits(bitcast<i32>(w), 8u * (j & 3u) + 8u, 8u));
    let d0 = d * s0;
    let d1 = d * s1;
    return vec4<f32>(d0, -32.0 * d0, d1, -32.0 * d1);
#endif
#if K_F16 || K_F32
    return vec4<f32>(1.0, 0.0, 1.0, 0.0);
#endif
}

// Quarter q of block b of a row, dequantized.
fn dq(row: u32, b: u32, q: u32, nr: u32, hi_off: u32) -> Dq {
    var c: Dq;
#if K_U4 || K_U5
    let w = codes[(b * 4u + q) * nr + row];
    var lo = unpack4xU8(w & 0x0F0F0F0Fu);
    var hi = unpack4xU8((w >> 4u) & 0x0F0F0F0Fu);
#if K_U5
    let h = codes[hi_off + b * nr + row];
    lo = lo | (bits4(h >> (4u * q)) << vec4<u32>(4u));
    hi = hi | (bits4(h >> (16u + 4u * q)) << vec4<u32>(4u));
#endif
    c.lo = vec4<f32>(lo);
    c.hi = vec4<f32>(hi);
#endif
#if K_U8S
    c.lo = vec4<f32>(unpack4xI8(codes[(b * 8u + q) * nr + row]));
    c.hi = vec4<f32>(unpack4xI8(codes[(b * 8u + 4u + q) * nr + row]));
#endif
#if K_U8U
    c.lo = vec4<f32>(unpack4xU8(codes[(b * 8u + q) * nr + row]));
    c.hi = vec4<f32>(unpack4xU8(codes[(b * 8u + 4u + q) * nr + row]));
#endif
#if K_F16
    let w0 = b * 16u + 2u * q;
    c.lo = vec4<f32>(unpack2x16float(codes[w0 * nr + row]), unpack2x16float(codes[(w0 + 1u) * nr + row]));
    c.hi = vec4<f32>(unpack2x16float(codes[(w0 + 8u) * nr + row]), unpack2x16float(codes[(w0 + 9u) * nr + row]));
#endif
#if K_F32
    let w0 = b * 32u + 4u * q;
    c.lo = bitcast<vec4<f32>>(vec4<u32>(codes[w0 * nr + row], codes[(w0 + 1u) * nr + row], codes[(w0 + 2u) * nr + row], codes[(w0 + 3u) * nr + row]));
    c.hi = bitcast<vec4<f32>>(vec4<u32>(codes[(w0 + 16u) * nr + row], codes[(w0 + 17u) * nr + row], codes[(w0 + 18u) * nr + row], codes[(w0 + 19u) * nr + row]));
#endif
#if !K_F16 && !K_F32
    let s = scale_min(row, b, nr);
    c.lo = c.lo * s.x + s.y;
    c.hi = c.hi * s.z + s.w;
#endif
    return c;
}

#if DOT8
// Quarter q of block b as two words of signed 8-bit codes (lo, hi columns as above); only for the
// formats with codes.
fn codes8(row: u32, b: u32, q: u32, nr: u32, hi_off: u32) -> vec2<u32> {
#if K_U4 || K_U5
    let w = codes[(b * 4u + q) * nr + row];
    var lo = w & 0x0F0F0F0Fu;
    var hi = (w >> 4u) & 0x0F0F0F0Fu;
#if K_U5
    let h = codes[hi_off + b * nr + row];
    lo = lo | (pack4xU8(bits4(h >> (4u * q))) << 4u);
    hi = hi | (pack4xU8(bits4(h >> (16u + 4u * q))) << 4u);
#endif
    return vec2<u32>(lo, hi);
#endif
#if K_U8S || K_U8U
    return vec2<u32>(codes[(b * 8u + q) * nr + row], codes[(b * 8u + 4u + q) * nr + row]);
#endif
}
#endif
