// RMS norm of whole rows: out[j] = src[row(j)] / sqrt(mean(src²) + eps) · w, where row(j) = j or,
// for the output norm of the rows whose logits were asked for, info[map_off + j].
// One workgroup per row.

struct P {
    n: u32,
    width: u32,
    w_off: u32,     // weights in vecs
    map_off: u32,   // 0xFFFFFFFF: rows in order
    eps: f32,
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> vecs: array<f32>;
@group(0) @binding(3) var<storage, read> info: array<u32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

const NV: u32 = 1u;
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
    let j = wid.x + wid.y * nwg.x;
    var row = min(j, p.n - 1u);
    if (p.map_off != 0xFFFFFFFFu) {
        row = info[p.map_off + row];
    }
    let s0 = row * p.width;
    var acc: array<f32, 1>;
    for (var c = t; c < p.width; c += 64u) {
        let v = src[s0 + c];
        acc[0] += v * v;
    }
    reduce_sums(&acc, t, sg_id, n_sg, sg_lane);
    let inv = 1.0 / sqrt(red[0] / f32(p.width) + p.eps);
    if (j < p.n) {
        for (var c = t; c < p.width; c += 64u) {
            dst[j * p.width + c] = src[s0 + c] * inv * vecs[p.w_off + c];
        }
    }
}
