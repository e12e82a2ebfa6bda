// The residual add after attention or the MLP, fused with the norm that follows it:
//   x += post ? rmsnorm(o) · w_post : o        (Gemma 3's post-norms)
//   xn = rmsnorm(x) · w_next                   (unless this is the last layer)
// One workgroup per row; every invocation touches the same columns in each step.

struct P {
    n: u32,
    width: u32,
    post_off: u32,  // 0xFFFFFFFF: no post-norm
    next_off: u32,  // 0xFFFFFFFF: no following norm
    eps: f32,
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> o: array<f32>;
@group(0) @binding(2) var<storage, read> vecs: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> xn: array<f32>;

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
    let row = min(j, p.n - 1u);
    let live = j < p.n;
    let s0 = row * p.width;
    var acc: array<f32, 1>;
    var inv_o = 1.0;
    if (p.post_off != 0xFFFFFFFFu) {
        for (var c = t; c < p.width; c += 64u) {
            let v = o[s0 + c];
            acc[0] += v * v;
        }
        reduce_sums(&acc, t, sg_id, n_sg, sg_lane);
        inv_o = 1.0 / sqrt(red[0] / f32(p.width) + p.eps);
        workgroupBarrier();
        acc[0] = 0.0;
    }
    for (var c = t; c < p.width; c += 64u) {
        var v = o[s0 + c];
        if (p.post_off != 0xFFFFFFFFu) {
            v = v * inv_o * vecs[p.post_off + c];
        }
        let nx = x[s0 + c] + v;
        if (live) {
            x[s0 + c] = nx;
        }
        acc[0] += nx * nx;
    }
    if (p.next_off != 0xFFFFFFFFu) {
        reduce_sums(&acc, t, sg_id, n_sg, sg_lane);
        let inv = 1.0 / sqrt(red[0] / f32(p.width) + p.eps);
        if (live) {
            for (var c = t; c < p.width; c += 64u) {
                xn[s0 + c] = x[s0 + c] * inv * vecs[p.next_off + c];
            }
        }
    }
}
