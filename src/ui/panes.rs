//! The pane grid of the Explore view: each pane's title, answer, votes, meters and live tree.

use eframe::egui::{self, Color32, RichText, Ui};
use thinkscope_engine::events::RunOutcome;
use thinkscope_engine::strategy::registry;

use crate::ui::action::Action;
use crate::ui::meters::meters_ui;
use crate::ui::runs::{pane_letter, Pane, PaneStatus};
use crate::ui::state::Settings;

/// Lay the panes out in a grid (2×2 for four) and draw each.
pub fn panes_ui(ui: &mut Ui, panes: &mut [Pane], settings: &Settings, focus: usize) -> Vec<Action> {
    let mut out = Vec::new();
    let n = panes.len();
    let cols = if n == 4 { 2 } else { n.max(1) };
    let rows = n.div_ceil(cols);
    let avail = ui.available_size();
    let gap = 8.0;
    let w = (avail.x - gap * (cols as f32 - 1.0)) / cols as f32;
    let h = (avail.y - gap * (rows as f32 - 1.0)) / rows as f32;
    let origin = ui.cursor().min;
    for (i, pane) in panes.iter_mut().enumerate() {
        let (r, c) = (i / cols, i % cols);
        let rect = egui::Rect::from_min_size(
            origin + egui::vec2(c as f32 * (w + gap), r as f32 * (h + gap)),
            egui::vec2(w, h),
        );
        let mut child = ui.new_child(egui::UiBuilder::new().max_rect(rect).id_salt(("pane", i)));
        child.set_clip_rect(rect.intersect(ui.clip_rect()));
        let strategy = &settings.panes[i].strategy;
        let title = registry()
            .get(strategy)
            .map_or(strategy.clone(), |d| d.title().to_owned());
        let clicked = pane_ui(&mut child, pane, i, n, &title, settings, i == focus, rect);
        if clicked || child.response().clicked() {
            out.push(Action::Focus(i));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn pane_ui(
    ui: &mut Ui,
    pane: &mut Pane,
    i: usize,
    n: usize,
    title: &str,
    settings: &Settings,
    focused: bool,
    rect: egui::Rect,
) -> bool {
    let frame = egui::Frame::group(ui.style()).stroke(egui::Stroke::new(
        if focused { 2.0 } else { 1.0 },
        if focused {
            Color32::from_rgb(86, 156, 255)
        } else {
            Color32::from_gray(70)
        },
    ));
    let mut clicked = false;
    frame.show(ui, |ui| {
        ui.set_min_size(rect.size() - egui::vec2(16.0, 16.0));
        ui.set_max_size(rect.size() - egui::vec2(16.0, 16.0));
        ui.horizontal(|ui| {
            if ui
                .small_button("Fit")
                .on_hover_text("Fit the whole tree in view")
                .clicked()
            {
                pane.view.follow = true;
            }
            if n > 1 {
                ui.strong(pane_letter(i));
            }
            ui.strong(title);
            status_badge(ui, pane.status);
            let tree = &pane.run.tree;
            if let Some(a) = &tree.answer {
                ui.add(
                    egui::Label::new(
                        RichText::new(format!("answer: {a}"))
                            .strong()
                            .color(crate::ui::theme::CHOSEN),
                    )
                    .truncate(),
                );
            }
            if !tree.tally.is_empty() {
                let votes: Vec<String> =
                    tree.tally.iter().map(|(a, v)| format!("{a}×{v}")).collect();
                ui.add(egui::Label::new(RichText::new(votes.join("  ")).small()).truncate())
                    .on_hover_text(format!("Vote tally: {}", votes.join(", ")));
            }
        });
        if pane.status == PaneStatus::Done(RunOutcome::Failed) {
            let why = pane.run.error_line();
            ui.add(
                egui::Label::new(
                    RichText::new(format!("run failed: {why}"))
                        .color(Color32::from_rgb(240, 110, 110)),
                )
                .truncate(),
            )
            .on_hover_text(why);
        }
        meters_ui(ui, &pane.run.cost, &pane.speed);
        if !settings.follow {
            pane.view.follow = false;
        }
        let out = pane
            .view
            .ui(ui, &pane.run.tree, settings.color_by, pane.selected);
        pane.canvas = out.rect;
        if let Some(id) = out.clicked {
            pane.selected = Some(id);
            clicked = true;
        }
    });
    clicked
}

fn status_badge(ui: &mut Ui, status: PaneStatus) {
    let (text, color) = match status {
        PaneStatus::Idle => ("idle", Color32::GRAY),
        PaneStatus::Running => ("running", Color32::from_rgb(86, 156, 255)),
        PaneStatus::Paused => ("paused", Color32::from_rgb(235, 180, 60)),
        PaneStatus::Done(RunOutcome::Completed) => ("done", Color32::from_rgb(90, 200, 120)),
        PaneStatus::Done(RunOutcome::Cancelled) => ("stopped", Color32::GRAY),
        PaneStatus::Done(RunOutcome::Failed) => ("failed", Color32::from_rgb(230, 90, 90)),
    };
    ui.label(RichText::new(text).small().color(color));
}
