// Workgroup sums of NV values per invocation, for 64-invocation workgroups. The includer defines
// `const NV: u32` and calls `reduce_sums(acc, t)` from uniform control flow; afterwards
// `red[k * 64u]` holds the workgroup's sum of `acc[k]`. The f32 tier adds pairwise through
// workgroup memory; the subgroup tier adds inside each subgroup first (any subgroup size) and
// then across the subgroups.

var<workgroup> red: array<f32, NV * 64u>;

#if SUBGROUP
fn reduce_sums(acc: ptr<function, array<f32, NV>>, t: u32, sg_id: u32, n_sg: u32, sg_lane: u32) {
    for (var k = 0u; k < NV; k++) {
        let s = subgroupAdd((*acc)[k]);
        if (sg_lane == 0u) {
            red[k * 64u + sg_id] = s;
        }
    }
    workgroupBarrier();
    if (t < NV) {
        var s = 0.0;
        for (var i = 0u; i < n_sg; i++) {
            s += red[t * 64u + i];
        }
        red[t * 64u] = s;
    }
    workgroupBarrier();
}
#else
fn reduce_sums(acc: ptr<function, array<f32, NV>>, t: u32, sg_id: u32, n_sg: u32, sg_lane: u32) {
    for (var k = 0u; k < NV; k++) {
        red[k * 64u + t] = (*acc)[k];
    }
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (t < s) {
            for (var k = 0u; k < NV; k++) {
                red[k * 64u + t] += red[k * 64u + t + s];
            }
        }
        workgroupBarrier();
    }
}
#endif
