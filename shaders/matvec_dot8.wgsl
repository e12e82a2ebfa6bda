// y = x · Wᵀ for a few activation rows, on 8-bit activations with packed int8 dot products
// (`dot4I8Packed`): the arithmetic of thinkscope-kernels' CPU kernels. Per 16 columns,
// d_w · d_x · Σ code·q + m_w · (d_x · Σ q), the integer sums exact. Work split as in matvec.wgsl;
// activations come from quantize.wgsl.

#include quant.wgsl

struct P {
    rows: u32,
    cols: u32,
    n: u32,
    x_stride: u32,  // unused: quantized rows are dense
    y_stride: u32,
    y_off: u32,
    hi_off: u32,
    d_off: u32,     // word offset of the activation scales in xq
    s_off: u32,     // word offset of the half-block sums
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const NR: u32 = {{NR}}u;
const R: u32 = {{R}}u;
const NV: u32 = R * NR;

#include reduce.wgsl

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
#if SUBGROUP
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
#endif
) {
#if !SUBGROUP
    let sg_id = 0u;
    let n_sg = 0u;
    let sg_lane = 0u;
#endif
    let r0 = (wid.x + wid.y * nwg.x) * R;
    let blocks = p.cols / 32u;
    let units = blocks * 4u;
    let row_words = p.cols / 4u;
    var acc: array<f32, NV>;
    if (r0 < p.rows) {
        for (var u = t; u < units; u += 64u) {
            let b = u >> 2u;
            let q = u & 3u;
            for (var r = 0u; r < R; r++) {
                let row = min(r0 + r, p.rows - 1u);
                let c = codes8(row, b, q, blocks, p.hi_off);
                let s = scale_min(row, b, blocks);
                for (var i = 0u; i < NR; i++) {
                    if (i < p.n) {
                        let xw = i * row_words + b * 8u + q;
                        let dx = bitcast<f32>(xq[p.d_off + i * blocks + b]);
                        let lo = f32(dot4I8Packed(c.x, xq[xw]));
                        let hi = f32(dot4I8Packed(c.y, xq[xw + 4u]));
                        var v = s.x * dx * lo + s.z * dx * hi;
                        if (q == 0u) {
                            let si = p.s_off + (i * blocks + b) * 2u;
                            v += s.y * bitcast<f32>(xq[si]) + s.w * bitcast<f32>(xq[si + 1u]);
                        }
                        acc[r * NR + i] += v;
                    }
                }
            }
        }
    }
    reduce_sums(&acc, t, sg_id, n_sg, sg_lane);
    if (t < NV) {
        let r = t / NR;
        let i = t % NR;
        if (r0 + r < p.rows && i < p.n) {
            y[i * p.y_stride + p.y_off + r0 + r] = red[t * 64u];
        }
    }
}
