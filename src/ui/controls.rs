//! The left panel of the Explore view: the prompt, and the focused pane's strategy and knobs.
//! The knobs' widgets, labels, ranges and tooltips come from the strategy registry, so a new
//! strategy's settings appear here without a line of UI code.

use std::time::Instant;

use eframe::egui::{self, RichText, Ui};
use thinkscope_engine::model::thinking::ThinkingFormat;
use thinkscope_engine::strategy::{registry, Knob, KnobKind, KnobValue, Knobs};

use crate::ui::runs::pane_letter;
use crate::ui::state::{PaneSettings, Settings};

/// The teaching preset's note.
pub const TEACHING_NOTE: &str = "System 1 answers at once: one greedy pass, no reasoning. System 2 spends test-time compute: it samples several reasoning traces and lets them vote. Run both on the same question and compare the answers, the trees and the meters: more thinking costs tokens, time and energy, and does not always pay. With a thinking model that has the switch, System 1 answers with its thinking off and System 2 thinks first.";

/// Draw the panel for `focus` (which pane's settings are edited; the panel may change it).
/// `thinking` is how the loaded model marks its thinking, if it thinks.
pub fn controls_ui(
    ui: &mut Ui,
    settings: &mut Settings,
    focus: &mut usize,
    panes: usize,
    thinking: Option<&ThinkingFormat>,
) {
    ui.heading("Prompt");
    ui.add(
        egui::TextEdit::multiline(&mut settings.prompt)
            .desired_rows(5)
            .desired_width(f32::INFINITY)
            .hint_text("Ask something that needs thought…"),
    )
    .on_hover_text("The question every pane answers. Ctrl+Enter runs.");
    ui.horizontal(|ui| {
        let label = ui.label("Known answer");
        ui.add(
            egui::TextEdit::singleline(&mut settings.expected_answer)
                .desired_width(f32::INFINITY)
                .hint_text("optional"),
        )
        .labelled_by(label.id)
        .on_hover_text("If you know the answer, progress probes are scored against it (p̂ estimates correctness) and the exact scorer can check it. Without it, probes are scored against the run's most common answer: consensus progress.");
    });
    if settings.teaching_note {
        ui.add_space(4.0);
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.label(RichText::new("System 1 vs System 2").strong());
            ui.label(RichText::new(TEACHING_NOTE).small());
            if ui.small_button("Hide").clicked() {
                settings.teaching_note = false;
            }
        });
    }
    ui.separator();
    if panes > 1 {
        ui.horizontal(|ui| {
            ui.label("Settings of pane");
            for i in 0..panes {
                ui.selectable_value(focus, i, pane_letter(i));
            }
        });
    }
    let Some(s) = settings.panes.get_mut(*focus) else {
        return;
    };
    strategy_ui(ui, s);
    thinking_switch_ui(ui, &mut s.thinking, thinking);
    ui.add_space(4.0);
    knobs_ui(ui, s);
    sampling_ui(ui, s);
    progress_ui(ui, s);
}

/// The run-level progress-probe setting (every strategy honours it).
fn progress_ui(ui: &mut Ui, s: &mut PaneSettings) {
    ui.separator();
    ui.checkbox(&mut s.progress, "Progress probes (MRT)")
        .on_hover_text("At the end of every step node (and after the prompt), append \"Time is up. The final answer is\" and sample K short answers from forks of the node's cached prefix. p̂ is the share that match the known answer, or the run's most common answer (consensus progress); Δp̂ is the change from the parent. Colour nodes by Progress to see it. Probes cost tokens of their own, shown apart in the meters.");
    ui.add_enabled(
        s.progress,
        egui::Slider::new(&mut s.progress_probes, 1..=32).text("Probes K"),
    )
    .on_hover_text("Forced-answer continuations per node (MRT samples 8 at temperature 0.7).");
    ui.add_enabled(
        s.progress,
        egui::Slider::new(&mut s.probe_tokens, 4..=64).text("Probe length"),
    )
    .on_hover_text("The most tokens in one probe's answer.");
}

fn strategy_ui(ui: &mut Ui, s: &mut PaneSettings) {
    let defs = registry().all();
    let current = defs.iter().find(|d| d.name() == s.strategy).cloned();
    let title = current
        .as_ref()
        .map_or(s.strategy.clone(), |d| d.title().to_owned());
    egui::ComboBox::from_label("Strategy")
        .selected_text(title)
        .width(200.0)
        .show_ui(ui, |ui| {
            for d in &defs {
                ui.selectable_value(&mut s.strategy, d.name().to_owned(), d.title())
                    .on_hover_text(d.summary());
            }
        });
    if let Some(d) = &current {
        ui.label(RichText::new(d.summary()).small().weak());
    }
    ui.horizontal(|ui| {
        ui.label("Preset:");
        for (name, samples, depth, tokens) in [
            ("Quick", 2, 2, 96),
            ("Balanced", 4, 3, 192),
            ("Thorough", 8, 5, 384),
        ] {
            if ui
                .small_button(name)
                .on_hover_text(format!(
                    "{samples} samples, depth {depth}, {tokens} tokens per branch"
                ))
                .clicked()
            {
                let knobs = Knobs {
                    samples: Some(samples),
                    depth: Some(depth),
                    thinking: None,
                };
                // Each strategy takes what fits its ranges.
                let _ = s.apply_roles(&knobs);
                s.max_tokens = tokens;
            }
        }
    });
}

/// Why the thinking switch is off, or what it does: one line per kind of model.
pub fn thinking_help(format: Option<&ThinkingFormat>) -> (bool, String) {
    match format {
        None => (
            false,
            "This model does not think apart from its answer (no <think>…</think> delimiters \
             in its vocabulary and template), so there is nothing to switch."
                .to_owned(),
        ),
        Some(f) if !f.switchable => (
            false,
            format!(
                "This model always thinks inside {}…{}: its chat template has no \
                 enable_thinking switch.",
                f.open, f.close
            ),
        ),
        Some(f) => (
            true,
            format!(
                "The model reasons inside {}…{} before it answers. Default keeps its chat \
                 template's choice; Off writes an empty thought into the prompt so it answers \
                 at once (System 1), On lets it think (System 2).",
                f.open, f.close
            ),
        ),
    }
}

/// A thinking switch (default, on, off), enabled for a thinking model whose template has it.
pub fn thinking_switch_ui(ui: &mut Ui, value: &mut Option<bool>, format: Option<&ThinkingFormat>) {
    let (enabled, help) = thinking_help(format);
    ui.horizontal(|ui| {
        ui.label("Thinking").on_hover_text(&help);
        ui.add_enabled_ui(enabled, |ui| {
            for (choice, name) in [(None, "Default"), (Some(true), "On"), (Some(false), "Off")] {
                ui.selectable_value(value, choice, name)
                    .on_hover_text(&help)
                    .on_disabled_hover_text(&help);
            }
        });
    });
}

/// One widget per knob of the chosen strategy.
fn knobs_ui(ui: &mut Ui, s: &mut PaneSettings) {
    let Ok(strategy) = s.strategy() else {
        return;
    };
    let Ok(def) = strategy.def() else {
        return;
    };
    for knob in def.knobs() {
        let Some(value) = strategy.params().0.get(knob.key).cloned() else {
            continue;
        };
        if let Some(new) = knob_ui(ui, &knob, value) {
            // Out-of-range values cannot come from these widgets; a refused one is left as it was.
            let _ = s.set_knob(knob.key, new);
        }
    }
}

/// Draw one knob; its new value when the user changed it.
fn knob_ui(ui: &mut Ui, knob: &Knob, value: KnobValue) -> Option<KnobValue> {
    let response;
    let new = match (&knob.kind, value) {
        (KnobKind::Int { min, max, .. }, KnobValue::Int(mut v)) => {
            let log = *min > 0 && max / min.max(&1) >= 64;
            response = ui.add(
                egui::Slider::new(&mut v, *min..=*max)
                    .logarithmic(log)
                    .text(knob.label),
            );
            KnobValue::Int(v)
        }
        (KnobKind::Float { min, max, .. }, KnobValue::Float(mut v)) => {
            response = ui.add(egui::Slider::new(&mut v, *min..=*max).text(knob.label));
            KnobValue::Float(v)
        }
        (KnobKind::Bool { .. }, KnobValue::Bool(mut v)) => {
            response = ui.checkbox(&mut v, knob.label);
            KnobValue::Bool(v)
        }
        (KnobKind::Choice { options, .. }, KnobValue::Text(mut v)) => {
            let inner = egui::ComboBox::from_label(knob.label)
                .selected_text(v.clone())
                .show_ui(ui, |ui| {
                    let mut changed = false;
                    for (name, help) in options.iter() {
                        changed |= ui
                            .selectable_value(&mut v, (*name).to_owned(), *name)
                            .on_hover_text(*help)
                            .changed();
                    }
                    changed
                });
            let changed = inner.inner.unwrap_or(false);
            inner.response.on_hover_text(knob.help);
            return changed.then_some(KnobValue::Text(v));
        }
        (KnobKind::Text { .. }, KnobValue::Text(mut v)) => {
            let inner = ui.horizontal(|ui| {
                let label = ui.label(knob.label);
                ui.text_edit_singleline(&mut v).labelled_by(label.id)
            });
            response = inner.inner;
            KnobValue::Text(v)
        }
        _ => return None,
    };
    let changed = response.changed();
    response.on_hover_text(knob.help);
    changed.then_some(new)
}

fn sampling_ui(ui: &mut Ui, s: &mut PaneSettings) {
    let greedy = registry().get(&s.strategy).is_some_and(|d| !d.reasoning());
    ui.add_enabled(
        !greedy,
        egui::Slider::new(&mut s.temperature, 0.0..=2.0)
            .clamping(egui::SliderClamping::Edits)
            .text("Temperature"),
    )
    .on_hover_text(
        "Randomness of sampled branches: 0 is greedy, 1 is the model's own distribution.",
    );
    ui.add_enabled(
        !greedy,
        egui::Slider::new(&mut s.top_p, 0.05..=1.0)
            .clamping(egui::SliderClamping::Edits)
            .text("Top-p"),
    )
    .on_hover_text("Sample only from the most likely tokens that together reach this probability.");
    ui.add(
        egui::Slider::new(&mut s.max_tokens, 16..=1024)
            .logarithmic(true)
            // A session or CLI run may hold a value outside the slider's range: drawing it
            // must not change it.
            .clamping(egui::SliderClamping::Edits)
            .text("Max tokens"),
    )
    .on_hover_text("The most tokens one branch may generate.");
    ui.horizontal(|ui| {
        let check = ui
            .checkbox(&mut s.use_budget, "Run budget")
            .on_hover_text("Cap the tokens the whole run may generate, across all branches.");
        ui.add_enabled(
            s.use_budget,
            egui::DragValue::new(&mut s.budget)
                .range(1..=1_000_000)
                .suffix(" tok"),
        )
        .labelled_by(check.id);
    });
    ui.horizontal(|ui| {
        let label = ui.label("Seed").on_hover_text("Same seed, same tree.");
        ui.add(egui::DragValue::new(&mut s.seed))
            .labelled_by(label.id);
        if ui
            .small_button("Random")
            .on_hover_text("A new random seed")
            .clicked()
        {
            s.seed =
                (Instant::now().elapsed().as_nanos() as u64) ^ (s.seed.rotate_left(17) + 0x9E37);
        }
    });
}
