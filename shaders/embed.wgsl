// Token embedding lookup: x[i] = embed_scale · W[ids[i]], for the rows of one weight part (a
// matrix larger than the binding limit is split by rows; each part's dispatch fills the tokens
// whose ids fall inside it). One workgroup per token.

#include quant.wgsl

struct P {
    n: u32,
    cols: u32,
    row0: u32,      // first vocabulary row of this part
    part_rows: u32,
    hi_off: u32,
    ids_off: u32,   // token ids in info
    scale: f32,
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> info: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wid.x + wid.y * nwg.x;
    if (i >= p.n) {
        return;
    }
    let id = info[p.ids_off + i];
    if (id < p.row0 || id >= p.row0 + p.part_rows) {
        return;
    }
    let blocks = p.cols / 32u;
    for (var u = t; u < blocks * 4u; u += 64u) {
        let b = u >> 2u;
        let q = u & 3u;
        let w = dq(id - p.row0, b, q, p.part_rows, p.hi_off);
        let o = (i * p.cols + b * 32u + 4u * q) >> 2u;
        x[o] = w.lo * p.scale;
        x[o + 4u] = w.hi * p.scale;
    }
}
