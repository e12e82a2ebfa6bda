// y = x · Wᵀ for a few activation rows (1..16: decoding branches), one weight format.
//
// A workgroup of 64 invocations covers RW = 64 / S weight rows; the S invocations of a row
// ("slices") take its quarter-blocks (8 columns) u = s, s + S, ... Each weight quarter is
// dequantized once and used for all NR activation rows, so the weights are read once per pass,
// and with the row-interleaved layout the RW invocations of a slice read RW consecutive words.
// S is chosen by the host: 1 on a software adapter (no reduction, no barrier: each SIMD lane a
// row), up to 8 on a GPU so that small matrices still fill the machine. The slices' partial sums
// are then added in workgroup memory.

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

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
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
    let units = p.cols / 8u;
    var acc: array<f32, NR>;
    for (var u = sl; u < units; u += S) {
        let b = u >> 2u;
        let q = u & 3u;
        let w = dq(r, b, q, p.rows, p.hi_off);
        let xl = (p.x_off + b * 32u + 4u * q) >> 2u;
        for (var i = 0u; i < NR; i++) {
            if (i < p.n) {
                let xi = xl + ((i * p.x_stride) >> 2u);
                acc[i] += dot(w.lo, x[xi]) + dot(w.hi, x[xi + 4u]);
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
