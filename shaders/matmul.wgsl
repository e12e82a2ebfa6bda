// y = x · Wᵀ for many activation rows (prefill, scoring): a tiled matmul.
//
// A workgroup of 256 invocations computes a tile of 64 weight rows × 32 activation rows. For each
// 32-column block, every invocation dequantizes one quarter-block of the weight tile into
// workgroup memory and loads four activations, then each invocation accumulates 4 × 2 outputs
// (rows tx + 16a, activation rows ty + 16c) from workgroup memory, so every weight is read from
// memory once per 32 activation rows. Rows are padded to 33 floats against bank conflicts.

#include quant.wgsl

struct P {
    rows: u32,
    cols: u32,
    n: u32,
    x_stride: u32,
    y_stride: u32,
    y_off: u32,
    hi_off: u32,
    x_off: u32,
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 32u;
const LD: u32 = 33u;

var<workgroup> ws: array<f32, BM * LD>;
var<workgroup> xs: array<f32, BN * LD>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row0 = wid.x * BM;
    let i0 = wid.y * BN;
    let blocks = p.cols / 32u;
    let tx = t % 16u;
    let ty = t / 16u;
    var acc: array<f32, 8>;
    // This invocation's share of the loads: weight row lr, quarter lq (consecutive invocations,
    // consecutive rows: consecutive words); activation row li, vec4 lv.
    let lr = t % 64u;
    let lq = t / 64u;
    let li = t / 8u;
    let lv = t % 8u;
    for (var b = 0u; b < blocks; b++) {
        let w = dq(min(row0 + lr, p.rows - 1u), b, lq, p.rows, p.hi_off);
        let wb = lr * LD + 4u * lq;
        ws[wb] = w.lo.x;
        ws[wb + 1u] = w.lo.y;
        ws[wb + 2u] = w.lo.z;
        ws[wb + 3u] = w.lo.w;
        ws[wb + 16u] = w.hi.x;
        ws[wb + 17u] = w.hi.y;
        ws[wb + 18u] = w.hi.z;
        ws[wb + 19u] = w.hi.w;
        var xv = vec4<f32>(0.0);
        if (i0 + li < p.n) {
            xv = x[(p.x_off + (i0 + li) * p.x_stride + b * 32u) / 4u + lv];
        }
        let xb = li * LD + 4u * lv;
        xs[xb] = xv.x;
        xs[xb + 1u] = xv.y;
        xs[xb + 2u] = xv.z;
        xs[xb + 3u] = xv.w;
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            let x0 = xs[ty * LD + k];
            let x1 = xs[(ty + 16u) * LD + k];
            for (var a = 0u; a < 4u; a++) {
                let wv = ws[(tx + 16u * a) * LD + k];
                acc[2u * a] += wv * x0;
                acc[2u * a + 1u] += wv * x1;
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < 4u; a++) {
        let row = row0 + tx + 16u * a;
        if (row < p.rows) {
            for (var c = 0u; c < 2u; c++) {
                let i = i0 + ty + 16u * c;
                if (i < p.n) {
                    y[i * p.y_stride + p.y_off + row] = acc[2u * a + c];
                }
            }
        }
    }
}
