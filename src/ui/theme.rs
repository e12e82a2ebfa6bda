//! Colours and colour maps.

use eframe::egui::Color32;

/// Accent for the chosen answer path.
pub const CHOSEN: Color32 = Color32::from_rgb(255, 196, 61);
/// Pruned nodes.
pub const PRUNED: Color32 = Color32::from_rgb(110, 110, 118);
/// Running nodes pulse in this colour.
pub const RUNNING: Color32 = Color32::from_rgb(86, 156, 255);
/// Forced (inserted) text.
pub const FORCED: Color32 = Color32::from_rgb(200, 120, 255);
/// A thinking model's thinking (the tokens inside `<think>…</think>`).
pub const THINKING: Color32 = Color32::from_rgb(150, 170, 235);
/// A thinking model's answer (after its thinking closed).
pub const ANSWER: Color32 = Color32::from_rgb(250, 235, 200);

/// Map t in [0, 1] to a red → amber → green ramp.
pub fn red_green(t: f32) -> Color32 {
    let t = t.clamp(0.0, 1.0);
    let stops = [
        (0.0, [220.0, 70.0, 70.0]),
        (0.5, [235.0, 180.0, 60.0]),
        (1.0, [70.0, 190.0, 110.0]),
    ];
    ramp(&stops, t)
}

/// Map t in [0, 1] to red → grey → green: a loss, no change, a gain (t = 0.5 is no change).
pub fn diverging(t: f32) -> Color32 {
    let t = t.clamp(0.0, 1.0);
    let stops = [
        (0.0, [220.0, 70.0, 70.0]),
        (0.5, [128.0, 128.0, 136.0]),
        (1.0, [70.0, 190.0, 110.0]),
    ];
    ramp(&stops, t)
}

/// Map t in [0, 1] to a blue → purple → orange ramp (for entropy: calm to uncertain).
pub fn calm_hot(t: f32) -> Color32 {
    let t = t.clamp(0.0, 1.0);
    let stops = [
        (0.0, [70.0, 130.0, 220.0]),
        (0.5, [160.0, 90.0, 200.0]),
        (1.0, [245.0, 140.0, 50.0]),
    ];
    ramp(&stops, t)
}

fn ramp(stops: &[(f32, [f32; 3])], t: f32) -> Color32 {
    for w in stops.windows(2) {
        let (a, ca) = w[0];
        let (b, cb) = w[1];
        if t <= b {
            let u = (t - a) / (b - a);
            let c: Vec<u8> = (0..3)
                .map(|i| (ca[i] + (cb[i] - ca[i]) * u) as u8)
                .collect();
            return Color32::from_rgb(c[0], c[1], c[2]);
        }
    }
    let c = stops[stops.len() - 1].1;
    Color32::from_rgb(c[0] as u8, c[1] as u8, c[2] as u8)
}

/// A distinct colour for category `i` (vote groups).
pub fn category(i: usize) -> Color32 {
    const PALETTE: [Color32; 8] = [
        Color32::from_rgb(86, 156, 255),
        Color32::from_rgb(255, 140, 66),
        Color32::from_rgb(90, 200, 120),
        Color32::from_rgb(230, 90, 120),
        Color32::from_rgb(170, 120, 240),
        Color32::from_rgb(60, 200, 210),
        Color32::from_rgb(220, 200, 70),
        Color32::from_rgb(200, 140, 110),
    ];
    PALETTE[i % PALETTE.len()]
}

/// Background for a token chip from its probability: unlikely tokens glow red.
pub fn token_background(prob: f32) -> Color32 {
    let surprise = (1.0 - prob).clamp(0.0, 1.0);
    let c = red_green(1.0 - surprise);
    Color32::from_rgba_unmultiplied(c.r(), c.g(), c.b(), (40.0 + 150.0 * surprise) as u8)
}
