// Causal attention over the paged f16 cache for a ragged batch: each row is its own sequence
// (block table), position and window; it sees positions lo ..= pos, lo = pos + 1 - window for a
// sliding-window layer, else 0. One workgroup of 64 per (row, query head), grouped-query heads
// mapped to their key/value head. Positions are taken 64 at a time (one score per invocation),
// with the softmax running max and sum carried across chunks; each invocation accumulates the
// weighted values of up to four f16 pairs of head dimensions.

struct P {
    n: u32,
    n_head: u32,
    n_kv: u32,
    hd: u32,
    window: u32,      // 0: global attention
    q_stride: u32,    // floats per row of qkv (queries at column 0)
    pos_off: u32,
    item_off: u32,
    table_off: u32,
    scale: f32,
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
#if F16
enable f16;
@group(0) @binding(2) var<storage, read> kv: array<vec2<f16>>;
fn kv2(i: u32) -> vec2<f32> {
    return vec2<f32>(kv[i]);
}
#else
@group(0) @binding(2) var<storage, read> kv: array<u32>;
fn kv2(i: u32) -> vec2<f32> {
    return unpack2x16float(kv[i]);
}
#endif
@group(0) @binding(3) var<storage, read> info: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> pe: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.n * p.n_head) {
        return;
    }
    let row = g / p.n_head;
    let head = g % p.n_head;
    let kh = head / (p.n_head / p.n_kv);
    let hw = p.hd / 2u;
    let pos = info[p.pos_off + row];
    let table = info[p.table_off + info[p.item_off + row]];
    var lo = 0u;
    if (p.window != 0u && pos + 1u > p.window) {
        lo = pos + 1u - p.window;
    }
    for (var d = t; d < p.hd; d += 64u) {
        qs[d] = qkv[row * p.q_stride + head * p.hd + d];
    }
    workgroupBarrier();
    var m = -3.0e38;
    var l = 0.0;
    var acc: array<vec2<f32>, 2>;
    for (var c0 = lo; c0 <= pos; c0 += 64u) {
        let j = c0 + t;
        var s = -3.0e38;
        if (j <= pos) {
            let blk = info[table + j / 16u];
            let kb = (((blk * 2u) * p.n_kv + kh) * 16u + j % 16u) * hw;
            var dot = 0.0;
            for (var d = 0u; d < hw; d++) {
                let k = kv2(kb + d);
                dot += qs[2u * d] * k.x + qs[2u * d + 1u] * k.y;
            }
            s = dot * p.scale;
        }
        sc[t] = s;
        workgroupBarrier();
        let cnt = min(64u, pos + 1u - c0);
        var cm = m;
        for (var i = 0u; i < cnt; i++) {
            cm = max(cm, sc[i]);
        }
        let alpha = exp(m - cm);
        m = cm;
        var e = 0.0;
        if (j <= pos) {
            e = exp(s - cm);
        }
        pe[t] = e;
        workgroupBarrier();
        var cs = 0.0;
        for (var k = 0u; k < 2u; k++) {
            acc[k] *= alpha;
        }
        for (var i = 0u; i < cnt; i++) {
            let jj = c0 + i;
            let w = pe[i];
            cs += w;
            let blk = info[table + jj / 16u];
            let vb = (((blk * 2u + 1u) * p.n_kv + kh) * 16u + jj % 16u) * hw;
            for (var k = 0u; k < 2u; k++) {
                let d = t + 64u * k;
                if (d < hw) {
                    acc[k] += w * kv2(vb + d);
                }
            }
        }
        l = l * alpha + cs;
        workgroupBarrier();
    }
    let inv = 1.0 / l;
    for (var k = 0u; k < 2u; k++) {
        let d = t + 64u * k;
        if (d < hw) {
            let o = row * p.n_head * p.hd + head * p.hd + 2u * d;
            out[o] = acc[k].x * inv;
            out[o + 1u] = acc[k].y * inv;
        }
    }
}
