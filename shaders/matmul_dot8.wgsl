// y = x · Wᵀ for many activation rows on 8-bit activations (the int8 tier's prefill): the tiling
// of matmul.wgsl with the arithmetic of matvec_dot8.wgsl, so a token's logits do not depend on
// how many rows shared its pass. Per 32-column block, the weight tile's signed 8-bit code words
// and scales and the activation tile's code words, scales and half-block sums go to workgroup
// memory; each invocation then forms, for 4 weight rows × 2 activation rows, the exact integer
// sums of 16 columns with `dot4I8Packed` and adds d_w · d_x · Σ + m_w · d_x · Σq.

#include quant.wgsl

struct P {
    rows: u32,
    cols: u32,
    n: u32,
    q_off: u32,     // first code word of the quantized rows in xq
    y_stride: u32,
    y_off: u32,
    hi_off: u32,
    d_off: u32,
    s_off: u32,
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 32u;

// Weight row r's quarter q: lo word at r*8 + q, hi word at r*8 + 4 + q.
var<workgroup> wc: array<u32, BM * 8u>;
var<workgroup> wsc: array<vec4<f32>, BM>;
var<workgroup> xc: array<u32, BN * 8u>;
var<workgroup> xd: array<f32, BN>;
var<workgroup> xsum: array<vec2<f32>, BN>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row0 = wid.x * BM;
    let i0 = wid.y * BN;
    let blocks = p.cols / 32u;
    let row_words = p.cols / 4u;
    let tx = t % 16u;
    let ty = t / 16u;
    var acc: array<f32, 8>;
    let lr = t % 64u;
    let lq = t / 64u;
    let li = t / 8u;
    let lw = t % 8u;
    let wrow = min(row0 + lr, p.rows - 1u);
    let xi = min(i0 + li, p.n - 1u);
    for (var b = 0u; b < blocks; b++) {
        let c = codes8(wrow, b, lq, p.rows, p.hi_off);
        wc[lr * 8u + lq] = c.x;
        wc[lr * 8u + 4u + lq] = c.y;
        if (lq == 0u) {
            wsc[lr] = scale_min(wrow, b, p.rows);
        }
        xc[li * 8u + lw] = xq[p.q_off + xi * row_words + b * 8u + lw];
        if (lw == 0u) {
            xd[li] = bitcast<f32>(xq[p.d_off + xi * blocks + b]);
            let si = p.s_off + (xi * blocks + b) * 2u;
            xsum[li] = vec2<f32>(bitcast<f32>(xq[si]), bitcast<f32>(xq[si + 1u]));
        }
        workgroupBarrier();
        for (var a = 0u; a < 4u; a++) {
            let r = tx + 16u * a;
            let s = wsc[r];
            for (var cc = 0u; cc < 2u; cc++) {
                let i = ty + 16u * cc;
                var lo = 0;
                var hi = 0;
                for (var q = 0u; q < 4u; q++) {
                    lo += dot4I8Packed(wc[r * 8u + q], xc[i * 8u + q]);
                    hi += dot4I8Packed(wc[r * 8u + 4u + q], xc[i * 8u + 4u + q]);
                }
                let dx = xd[i];
                acc[2u * a + cc] += s.x * dx * f32(lo) + s.z * dx * f32(hi)
                    + s.y * xsum[i].x + s.w * xsum[i].y;
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < 4u; a++) {
        let row = row0 + tx + 16u * a;
        if (row < p.rows) {
            for (var cc = 0u; cc < 2u; cc++) {
                let i = i0 + ty + 16u * cc;
                if (i < p.n) {
                    y[i * p.y_stride + p.y_off + row] = acc[2u * a + cc];
                }
            }
        }
    }
}
