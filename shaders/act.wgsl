// The gated MLP's activation, in place: g = act(g) · u over rows of [gate | up] (2·ffn floats).
// SiLU: g / (1 + e^-g); GELU (tanh form): g / (1 + e^(-2z)), z = sqrt(2/π)(g + 0.044715 g³).

struct P {
    n: u32,
    ffn: u32,
    gelu: u32,
}

@group(1) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> gu: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 64u;
    if (k >= p.n * p.ffn) {
        return;
    }
    let i = k / p.ffn;
    let j = k % p.ffn;
    let gi = i * 2u * p.ffn + j;
    let g = gu[gi];
    let u = gu[gi + p.ffn];
    var a: f32;
    if (p.gelu != 0u) {
        let z = 0.7978846 * (g + 0.044715 * g * g * g);
        a = g / (1.0 + exp(clamp(-2.0 * z, -87.0, 88.0)));
    } else {
        a = g / (1.0 + exp(clamp(-g, -87.0, 88.0)));
    }
    gu[gi] = a * u;
}
