//! The app's frame: menu, toolbar, status line and notices. Each draws from the app's state,
//! edits view settings in place, and returns the [`Action`]s anything else needs.

use eframe::egui::{self, Color32, RichText, Ui};

use thinkscope_engine::device::DevicePref;

use crate::ui::action::Action;
use crate::ui::app::ThinkscopeApp;
use crate::ui::files::{list_models, FileJob};
use crate::ui::loader::ModelSlot;
use crate::ui::runs::PaneStatus;
use crate::ui::state::{ColorBy, View};

/// The menu bar.
pub fn menu_ui(ui: &mut Ui, app: &mut ThinkscopeApp) -> Vec<Action> {
    let mut out = Vec::new();
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| {
            let mut item = |ui: &mut Ui, label: &str, action: Action| {
                if ui.button(label).clicked() {
                    out.push(action);
                    ui.close();
                }
            };
            item(ui, "Open model…", Action::PickFile(FileJob::OpenModel));
            item(ui, "Connect to server…", Action::OpenConnect);
            ui.menu_button("Models folder", |ui| {
                let dir = &app.options().models_dir;
                let models = list_models(dir);
                if models.is_empty() {
                    ui.label(format!("No .gguf files in {}", dir.display()));
                }
                for m in models {
                    let name = m
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if ui.button(name).clicked() {
                        out.push(Action::OpenModel(m));
                        ui.close();
                    }
                }
            });
            ui.separator();
            let mut item = |ui: &mut Ui, label: &str, action: Action| {
                if ui.button(label).clicked() {
                    out.push(action);
                    ui.close();
                }
            };
            item(ui, "Open session…", Action::PickFile(FileJob::OpenSession));
            item(ui, "Save session…", Action::PickFile(FileJob::SaveSession));
            ui.separator();
            item(ui, "Export tree as JSON…", Action::PickFile(FileJob::ExportJson));
            item(
                ui,
                "Export chosen path as Markdown…",
                Action::PickFile(FileJob::ExportMarkdown),
            );
            item(
                ui,
                "Export lab results as CSV…",
                Action::PickFile(FileJob::ExportLabCsv),
            );
            item(
                ui,
                "Export canvas or plot as PNG…",
                Action::PickFile(FileJob::ExportPng),
            );
            ui.separator();
            item(ui, "Quit", Action::Quit);
        });
        ui.menu_button("View", |ui| {
            for n in 1..=4 {
                let label = format!("{n} pane{}", if n > 1 { "s" } else { "" });
                if ui.radio(app.panes.len() == n, label).clicked() {
                    out.push(Action::SetPanes(n));
                    ui.close();
                }
            }
            ui.separator();
            ui.label("Colour nodes by");
            for c in ColorBy::ALL {
                ui.radio_value(&mut app.settings.color_by, c, c.label());
            }
            ui.separator();
            ui.checkbox(
                &mut app.settings.follow,
                "Keep the tree in view while it grows",
            );
        });
        ui.menu_button("Device", |ui| {
            ui.label("Where the local model runs");
            for d in DevicePref::ALL {
                let help = match d {
                    DevicePref::Auto => "A hardware GPU if there is one, else the CPU kernels",
                    DevicePref::Cpu => "The CPU kernels",
                    DevicePref::Gpu => {
                        "The best GPU adapter, even a software one (slow: for checking only)"
                    }
                };
                if ui
                    .radio(app.settings.device == d, d.name())
                    .on_hover_text(help)
                    .clicked()
                {
                    out.push(Action::SetDevice(d));
                    ui.close();
                }
            }
        });
        ui.menu_button("Help", |ui| {
            ui.label("Drag to pan, scroll to zoom, double-click a node to fold its subtree, click a node to inspect it.");
            ui.label("In the inspector, right-click a token to branch there with another token.");
        });
    });
    out
}

/// Run controls, views, panes and colouring.
pub fn toolbar_ui(ui: &mut Ui, app: &mut ThinkscopeApp) -> Vec<Action> {
    let mut out = Vec::new();
    let ready = app.model_ready();
    let busy = app.busy();
    let any_paused = app.panes.iter().any(|p| p.status == PaneStatus::Paused);
    let panes = app.panes.len();
    let settings = &mut app.settings;
    ui.horizontal(|ui| {
        ui.selectable_value(
            &mut settings.view,
            View::Explore,
            RichText::new("Explore").strong(),
        )
        .on_hover_text("Watch strategies grow their trees live");
        ui.selectable_value(&mut settings.view, View::Lab, RichText::new("Lab").strong())
            .on_hover_text("Accuracy against test-time compute on a problem set");
        ui.separator();
        if ui
            .add_enabled(ready, egui::Button::new(RichText::new("Run").strong()))
            .on_hover_text("Run every pane on the prompt (Ctrl+Enter)")
            .clicked()
        {
            out.push(Action::RunAll);
        }
        if any_paused {
            if ui.add_enabled(busy, egui::Button::new("Resume")).clicked() {
                out.push(Action::ResumeAll);
            }
        } else if ui
            .add_enabled(busy, egui::Button::new("Pause"))
            .on_hover_text("Hold every run after its current forward pass")
            .clicked()
        {
            out.push(Action::PauseAll);
        }
        if ui
            .add_enabled(busy, egui::Button::new("Step"))
            .on_hover_text("Let paused runs do one more forward pass")
            .clicked()
        {
            out.push(Action::StepAll);
        }
        if ui
            .add_enabled(busy, egui::Button::new("Stop"))
            .on_hover_text("Cancel every run; the trees keep what they have")
            .clicked()
        {
            out.push(Action::StopAll);
        }
        ui.separator();
        ui.label("Panes:");
        for n in 1..=4 {
            if ui
                .selectable_label(panes == n, n.to_string())
                .on_hover_text("Compare strategies side by side on the same prompt")
                .clicked()
            {
                out.push(Action::SetPanes(n));
            }
        }
        ui.separator();
        if ui
            .button("System 1 vs System 2")
            .on_hover_text("Greedy answer beside self-consistency, for teaching")
            .clicked()
        {
            out.push(Action::System1VsSystem2);
        }
        ui.separator();
        egui::ComboBox::from_label("Colour")
            .selected_text(settings.color_by.label())
            .show_ui(ui, |ui| {
                for c in ColorBy::ALL {
                    ui.selectable_value(&mut settings.color_by, c, c.label());
                }
            });
    });
    if ui.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Enter)) && ready {
        out.push(Action::RunAll);
    }
    out
}

/// The model and device line at the bottom.
pub fn status_ui(ui: &mut Ui, slot: &ModelSlot) {
    ui.horizontal(|ui| match slot {
        ModelSlot::Idle => {
            ui.label("Starting…");
        }
        ModelSlot::Fetching {
            stage,
            bytes,
            total,
        } => {
            ui.label(format!("Fetching the default model ({stage})"));
            let frac = *bytes as f32 / (*total).max(1) as f32;
            ui.add(
                egui::ProgressBar::new(frac)
                    .desired_width(260.0)
                    .show_percentage(),
            );
            ui.label(format!(
                "{:.1} / {:.1} MB",
                *bytes as f64 / 1e6,
                *total as f64 / 1e6
            ));
        }
        ModelSlot::Loading(p) => {
            ui.spinner();
            ui.label(format!("Loading {}", p.display()));
        }
        ModelSlot::Ready {
            model: None,
            worker,
        } => {
            ui.label(
                RichText::new("•")
                    .strong()
                    .color(Color32::from_rgb(90, 200, 120)),
            );
            let info = worker.service().info();
            ui.label(&info.device).on_hover_text(&info.kernels);
        }
        ModelSlot::Ready {
            model: Some(model), ..
        } => {
            ui.label(
                RichText::new("•")
                    .strong()
                    .color(Color32::from_rgb(90, 200, 120)),
            );
            ui.label(format!(
                "{} · {:?} · {:.0}M params · {}",
                model.info.name,
                model.config.arch,
                model.info.params as f64 / 1e6,
                model.info.device
            ))
            .on_hover_text(model.info.path.display().to_string());
            if !model.info.has_chat_template {
                ui.label(RichText::new("base model: plain completion").weak());
            }
        }
        ModelSlot::Failed(e) => {
            ui.label(RichText::new(format!("Error: {e}")).color(Color32::from_rgb(230, 90, 90)));
        }
    });
}

/// A dismissable message.
pub struct Notice {
    /// What it says.
    pub text: String,
    /// Whether it reports an error.
    pub error: bool,
}

/// Messages in the bottom-right corner.
pub fn notices_ui(ctx: &egui::Context, notices: &[Notice]) -> Vec<Action> {
    let mut out = Vec::new();
    if notices.is_empty() {
        return out;
    }
    egui::Area::new(egui::Id::unique("thinkscope-notices"))
        .anchor(egui::Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -36.0))
        .show(ctx, |ui| {
            for (i, n) in notices.iter().enumerate() {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.set_max_width(420.0);
                    ui.horizontal(|ui| {
                        let color = if n.error {
                            Color32::from_rgb(240, 110, 110)
                        } else {
                            Color32::from_rgb(120, 200, 140)
                        };
                        ui.label(
                            RichText::new(if n.error { "!" } else { "i" })
                                .strong()
                                .color(color),
                        );
                        ui.label(&n.text);
                        if ui.small_button("x").on_hover_text("Dismiss").clicked() {
                            out.push(Action::Dismiss(i));
                        }
                    });
                });
            }
        });
    out
}
