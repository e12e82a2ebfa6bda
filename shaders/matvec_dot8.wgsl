// y = x · Wᵀ for a few activation rows, on 8-bit activations with packed int8 dot products
// (`dot4I8Packed`): the arithmetic of thinkscope-kernels' CPU kernels. Per 16 columns,
// d_w · d_x · Σ code·q + m_w · (d_x · Σ q), the integer sums exact. Work split as in matvec.wgsl;
// activations come from quantize.wgsl.

#include quant.wgsl

struct P {
    rows: u32,
    cols: u32,
    n: u32,
    q_off: u32,     // first code word of the quantized rows in xq
    y_stride: u32,
    y_off: u32,
    hi_off: u32,
    d_off: u32,     // word offset of their scales
    s_off: u32,     // word offset of their half-block sums
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const NR: u32 = {{NR}}u;
const S: u32 = {{S}}u;
const RW: u32 = 64u / S;

var<workgroup> red: array<f32, 64u * NR>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let lr = t % RW;
    let sl = t / RW;
    let row = (wid.x + wid.y * nwg.x) * RW + lr;
    let r = min(row, p.rows - 1u);
    let blocks = p.cols / 32u;
    let units = blocks * 4u;
    let row_words = p.cols / 4u;
    var acc: array<f32, NR>;
    for (var u = sl; u < units; u += S) {
        let b = u >> 2u;
        let q = u & 3u;
        let c = codes8(r, b, q, p.rows, p.hi_off);
        let s = scale_min(r, b, p.rows);
        for (var i = 0u; i < NR; i++) {
            if (i < p.n) {
                let xw = p.q_off + i * row_words + b * 8u + q;
                let dx = bitcast<f32>(xq[p.d_off + i * blocks + b]);
                let lo = f32(dot4I8Packed(c.x, xq[xw]));
                let hi = f32(dot4I8Packed(c.y, xq[xw + 4u]));
                var v = s.x * dx * lo + s.z * dx * hi;
                if (q == 0u) {
                    let si = p.s_off + (i * blocks + b) * 2u;
                    v += s.y * bitcast<f32>(xq[si]) + s.w * bitcast<f32>(xq[si + 1u]);
                }
                acc[i] += v;
            }
        }
    }
    if (S > 1u) {
        for (var i = 0u; i < NR; i++) {
            red[t * NR + i] = acc[i];
        }
        workgroupBarrier();
        if (sl == 0u) {
            for (var s = 1u; s < S; s++) {
                for (var i = 0u; i < NR; i++) {
                    acc[i] += red[(s * RW + lr) * NR + i];
                }
            }
        }
    }
    if (sl == 0u && row < p.rows) {
        for (var i = 0u; i < NR; i++) {
            if (i < p.n) {
                y[i * p.y_stride + p.y_off + row] = acc[i];
            }
        }
    }
}
