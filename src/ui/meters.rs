//! Live cost meters for one pane.

use std::collections::VecDeque;

use eframe::egui::{self, Color32, CornerRadius, Pos2, Sense, Stroke, Ui, Vec2};

use thinkscope_engine::cost::CostSnapshot;

/// Recent generation speed, for the sparkline.
#[derive(Default, Clone)]
pub struct SpeedHistory {
    samples: VecDeque<f32>,
    last_tokens: u64,
    last_secs: f64,
}

impl SpeedHistory {
    /// Record a cost update.
    pub fn push(&mut self, cost: &CostSnapshot) {
        let dt = cost.wall_secs - self.last_secs;
        if dt >= 0.2 {
            let rate = (cost.generated_tokens.saturating_sub(self.last_tokens)) as f64 / dt;
            self.samples.push_back(rate as f32);
            if self.samples.len() > 120 {
                self.samples.pop_front();
            }
            self.last_tokens = cost.generated_tokens;
            self.last_secs = cost.wall_secs;
        }
    }

    /// Forget everything (new run).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Human number: 1234567 → "1.23 M".
pub fn human(x: f64) -> String {
    let (v, unit) = match x.abs() {
        a if a >= 1e15 => (x / 1e15, " P"),
        a if a >= 1e12 => (x / 1e12, " T"),
        a if a >= 1e9 => (x / 1e9, " G"),
        a if a >= 1e6 => (x / 1e6, " M"),
        a if a >= 1e3 => (x / 1e3, " k"),
        _ => (x, ""),
    };
    if unit.is_empty() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}{unit}")
    }
}

/// The meters strip.
pub fn meters_ui(ui: &mut Ui, cost: &CostSnapshot, history: &SpeedHistory) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 14.0;
        meter(ui, "prompt", &cost.prompt_tokens_computed.to_string(), "Prompt tokens the model computed (prefill and inserted text).");
        let reused = if cost.tokens_reused_unknown { "unknown".to_owned() } else { cost.tokens_reused.to_string() };
        meter(ui, "reused", &reused, "Tokens whose keys and values came from the cache of a shared prefix instead of being recomputed.");
        meter(ui, "generated", &cost.generated_tokens.to_string(), "Tokens chosen by the sampler.");
        meter(ui, "passes", &cost.forward_passes.to_string(), "Forward passes this run took part in; batched passes shared with other branches or panes count once per run.");
        meter(ui, "time", &format!("{:.1} s", cost.wall_secs), "Wall time since the run started.");
        ui.allocate_ui_with_layout(Vec2::new(120.0, 32.0), egui::Layout::top_down(egui::Align::Min), |ui| {
            ui.label(egui::RichText::new("tok/s").small().weak());
            ui.horizontal(|ui| {
                ui.strong(format!("{:.1}", cost.tok_per_sec));
                sparkline(ui, history);
            });
        })
        .response
        .on_hover_text("Generated tokens per second (average), with the recent rate as a sparkline.");
        // A server reports neither FLOPs nor energy: no figure rather than a made-up 0.
        let flops = if cost.flops == 0.0 && cost.generated_tokens > 0 { "unknown".to_owned() } else { human(cost.flops) };
        meter(ui, "FLOPs (est.)", &flops, "Estimated floating-point operations: 2 per weight per token plus attention over the context.");
        let label = if cost.energy_measured { "energy (meas.)" } else { "energy (est.)" };
        let energy = if cost.energy_source.starts_with("unknown") { "unknown".to_owned() } else { format!("{:.1} J", cost.energy_joules) };
        meter(ui, label, &energy, &cost.energy_source);
        if cost.probed_nodes > 0 {
            meter(ui, "probe tok", &cost.probe_tokens.to_string(), &format!(
                "Tokens the progress probes computed ({} cue, {} sampled) over {} nodes; each probe forks its node's cached prefix, so {} prefix tokens were reused, not recomputed. Not part of the strategy's figures.",
                cost.probe_cue_tokens,
                cost.probe_tokens - cost.probe_cue_tokens,
                cost.probed_nodes,
                cost.probe_tokens_reused
            ));
            meter(ui, "probe time", &format!("{:.1} s", cost.probe_secs), &format!(
                "Wall time spent in probes (part of the run's time); their energy: {}.",
                if cost.energy_source.starts_with("unknown") {
                    "unknown".to_owned()
                } else {
                    format!(
                        "{:.1} J, {}",
                        cost.probe_energy_joules,
                        if cost.energy_measured { "measured" } else { "estimated" }
                    )
                }
            ));
        }
    });
}

fn meter(ui: &mut Ui, label: &str, value: &str, help: &str) {
    // Fixed-size cells, so narrow panes wrap whole meters onto a new line.
    ui.allocate_ui_with_layout(
        Vec2::new(64.0, 32.0),
        egui::Layout::top_down(egui::Align::Min),
        |ui| {
            ui.label(egui::RichText::new(label).small().weak());
            ui.strong(value);
        },
    )
    .response
    .on_hover_text(help);
}

fn sparkline(ui: &mut Ui, history: &SpeedHistory) {
    let (rect, _) = ui.allocate_exact_size(Vec2::new(60.0, 18.0), Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, CornerRadius::same(2), ui.visuals().extreme_bg_color);
    let s = &history.samples;
    if s.len() < 2 {
        return;
    }
    let max = s.iter().copied().fold(1e-3, f32::max);
    let pts: Vec<Pos2> = s
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Pos2::new(
                rect.left() + rect.width() * i as f32 / (s.len() - 1) as f32,
                rect.bottom() - rect.height() * (v / max),
            )
        })
        .collect();
    painter.add(egui::Shape::line(
        pts,
        Stroke::new(1.5, Color32::from_rgb(86, 156, 255)),
    ));
}
