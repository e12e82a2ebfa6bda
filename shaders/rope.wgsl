// sin and cos of an f32 angle to about one ulp on every adapter: Cody–Waite reduction by π/2
// (three-part constant, products exact for |a| < 2^13·π/2) and Cephes' minimax polynomials on
// [-π/4, π/4]. Built-in sin/cos are only specified to 2^-11 absolute inside [-π, π].
fn sincos(a: f32) -> vec2<f32> {
    let k = round(a * 0.63661977236758134);
    var r = a - k * 1.5703125;
    r = r - k * 4.837512969970703125e-4;
    r = r - k * 7.54978995489188216e-8;
    let r2 = r * r;
    let s = r + r * r2 * (-1.6666654611e-1 + r2 * (8.3321608736e-3 + r2 * -1.9515295891e-4));
    let c = 1.0 - 0.5 * r2
        + r2 * r2 * (4.166664568298827e-2 + r2 * (-1.388731625493765e-3 + r2 * 2.443315711809948e-5));
    let quadrant = bitcast<u32>(i32(k)) & 3u;
    switch quadrant {
        case 0u: { return vec2<f32>(s, c); }
        case 1u: { return vec2<f32>(c, -s); }
        case 2u: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}
