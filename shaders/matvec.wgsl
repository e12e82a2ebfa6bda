// y = x · Wᵀ for a few activation rows (1..16: decoding branches), one weight format.
//
// A workgroup of 64 invocations computes R output rows for all NR activation rows: each
// invocation walks the quarter-blocks (8 columns) u = t, t+64, ... of the R weight rows,
// dequantizes each once and uses it for every activation row, so the weights are read once per
// pass. Consecutive invocations read consecutive code words. Partial sums are then added across
// the workgroup (reduce.wgsl).

#include quant.wgsl

struct P {
    rows: u32,      // output rows in this weight part
    cols: u32,
    n: u32,         // activation rows (<= NR)
    x_stride: u32,  // floats between activation rows
    y_stride: u32,  // floats between output rows
    y_off: u32,     // first output column (part offset and matrix offset)
    hi_off: u32,
    x_off: u32,     // first float of x
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
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
    var acc: array<f32, NV>;
    if (r0 < p.rows) {
        for (var u = t; u < units; u += 64u) {
            let b = u >> 2u;
            let q = u & 3u;
            let xl = (p.x_off + b * 32u + 4u * q) >> 2u;
            for (var r = 0u; r < R; r++) {
                let w = dq(min(r0 + r, p.rows - 1u), b, q, blocks, p.hi_off);
                for (var i = 0u; i < NR; i++) {
                    if (i < p.n) {
                        let xi = xl + ((i * p.x_stride) >> 2u);
                        acc[r * NR + i] += dot(w.lo, x[xi]) + dot(w.hi, x[xi + 4u]);
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
