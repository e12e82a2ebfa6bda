// After the q/k/v projections, per row and head: biases, the per-head q/k RMS norms, rotary
// embedding (interleaved or NeoX pairs, this layer's frequencies and magnitude; none where the
// layer has no pairs), then q back in place and k, v
// as f16 into the row's slot of the paged cache:
//   word ((((block · 2 + is_v) · n_kv + head) · 16 + slot) · head_dim + d) / 2 of the layer's
//   buffer, block = table[pos / 16], slot = pos % 16.
// Workgroups 0 .. n_head-1 of a row are its query heads, the next n_kv its key/value heads.

#include rope.wgsl

struct P {
    n: u32,
    n_head: u32,
    n_kv: u32,
    hd: u32,
    pairs: u32,       // rotated pairs (rope_dim / 2)
    neox: u32,
    stride: u32,      // floats per row of qkv
    bias_off: u32,    // q|k|v biases in vecs, or 0xFFFFFFFF
    qn_off: u32,      // q norm weights, or 0xFFFFFFFF
    kn_off: u32,
    freq_off: u32,    // this layer's inverse frequencies in vecs
    pos_off: u32,     // per-row position in info
    item_off: u32,    // per-row batch item in info
    table_off: u32,   // per-item start of its block table in info
    eps: f32,
    mscale: f32,      // factor on both rotated coordinates (YaRN, LongRoPE; else 1)
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> vecs: array<f32>;
@group(0) @binding(2) var<storage, read> info: array<u32>;
@group(0) @binding(3) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(4) var<storage, read_write> kv: array<u32>;

var<workgroup> hv: array<f32, 512>;
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
    let heads = p.n_head + p.n_kv;
    let g = wid.x + wid.y * nwg.x;
    let row = min(g / heads, p.n - 1u);
    let live = g < p.n * heads;
    let h = g % heads;
    let is_q = h < p.n_head;
    let q_dim = p.n_head * p.hd;
    let kv_dim = p.n_kv * p.hd;
    var col = h * p.hd;
    if (!is_q) {
        col = q_dim + (h - p.n_head) * p.hd;
    }
    let base = row * p.stride;
    // Load (with bias); for k heads also the v head, kept in hv[256..].
    for (var d = t; d < p.hd; d += 64u) {
        var v = qkv[base + col + d];
        if (p.bias_off != 0xFFFFFFFFu) {
            v += vecs[p.bias_off + col + d];
        }
        hv[d] = v;
        if (!is_q) {
            var w = qkv[base + col + kv_dim + d];
            if (p.bias_off != 0xFFFFFFFFu) {
                w += vecs[p.bias_off + col + kv_dim + d];
            }
            hv[256u + d] = w;
        }
    }
    var norm_off = p.kn_off;
    if (is_q) {
        norm_off = p.qn_off;
    }
    if (p.qn_off != 0xFFFFFFFFu) {
        var acc: array<f32, 1>;
        for (var d = t; d < p.hd; d += 64u) {
            acc[0] += hv[d] * hv[d];
        }
        reduce_sums(&acc, t, sg_id, n_sg, sg_lane);
        let inv = 1.0 / sqrt(red[0] / f32(p.hd) + p.eps);
        for (var d = t; d < p.hd; d += 64u) {
            hv[d] = hv[d] * inv * vecs[norm_off + d];
        }
    }
    workgroupBarrier();
    let pos = info[p.pos_off + row];
    for (var i = t; i < p.pairs; i += 64u) {
        let sc = sincos(f32(pos) * vecs[p.freq_off + i]) * p.mscale;
        var a = 2u * i;
        var b = 2u * i + 1u;
        if (p.neox != 0u) {
            a = i;
            b = i + p.pairs;
        }
        let x0 = hv[a];
        let x1 = hv[b];
        hv[a] = x0 * sc.y - x1 * sc.x;
        hv[b] = x0 * sc.x + x1 * sc.y;
    }
    workgroupBarrier();
    if (!live) {
        return;
    }
    if (is_q) {
        for (var d = t; d < p.hd; d += 64u) {
            qkv[base + col + d] = hv[d];
        }
    } else {
        let kh = h - p.n_head;
        let item = info[p.item_off + row];
        let block = info[info[p.table_off + item] + pos / 16u];
        let slot = pos % 16u;
        let kw = (((block * 2u) * p.n_kv + kh) * 16u + slot) * (p.hd / 2u);
        let vw = (((block * 2u + 1u) * p.n_kv + kh) * 16u + slot) * (p.hd / 2u);
        for (var d = t; d < p.hd / 2u; d += 64u) {
            kv[kw + d] = pack2x16float(vec2<f32>(hv[2u * d], hv[2u * d + 1u]));
            kv[vw + d] = pack2x16float(vec2<f32>(hv[256u + 2u * d], hv[256u + 2u * d + 1u]));
        }
    }
}
