// Copy-on-write of cache blocks inside one layer's buffer: block dst := block src for each pair
// (src, dst) in info, done before the pass writes anything.

struct P {
    copies: u32,
    words: u32,       // u32 words of one block in one layer
    pairs_off: u32,   // (src, dst) pairs in info
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> info: array<u32>;
@group(0) @binding(2) var<storage, read_write> kv: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let c = wid.y;
    if (c >= p.copies) {
        return;
    }
    let src = info[p.pairs_off + 2u * c];
    let dst = info[p.pairs_off + 2u * c + 1u];
    for (var w = wid.x * 64u + t; w < p.words; w += 64u * 64u) {
        kv[dst * p.words + w] = kv[src * p.words + w];
    }
}
