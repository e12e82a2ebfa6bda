//! Files the app reads and writes: model and session dialogs, sessions, exports of trees,
//! transcripts, lab CSV and PNG images. Dialogs run on a thread of their own; what they pick comes
//! back to the UI thread as a [`Picked`] message.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use crossbeam_channel::Sender;
use eframe::egui::{self, ColorImage};

use crate::ui::app::ThinkscopeApp;
use crate::ui::lab_view::export_csv;
use crate::ui::runs::{Pane, PaneStatus};
use crate::ui::state::{PaneSnapshot, SessionFile, View, SESSION_VERSION};
use thinkscope_engine::events::RunOutcome;
use thinkscope_engine::view::RunView;

/// What to do with a file the user picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileJob {
    /// Open a GGUF model.
    OpenModel,
    /// Open a session.
    OpenSession,
    /// Save the session.
    SaveSession,
    /// Export the focused pane's tree as JSON.
    ExportJson,
    /// Export the chosen path as Markdown.
    ExportMarkdown,
    /// Export the canvas (or the lab plot) as PNG.
    ExportPng,
    /// Export the lab's results as CSV.
    ExportLabCsv,
}

impl FileJob {
    /// Whether the dialog picks a file to write.
    fn saves(self) -> bool {
        !matches!(self, FileJob::OpenModel | FileJob::OpenSession)
    }

    /// The dialog's filter.
    fn filter(self) -> (&'static str, &'static [&'static str]) {
        match self {
            FileJob::OpenModel => ("GGUF model", &["gguf"]),
            FileJob::OpenSession | FileJob::SaveSession => ("thinkscope session", &["json"]),
            FileJob::ExportJson => ("JSON", &["json"]),
            FileJob::ExportMarkdown => ("Markdown", &["md"]),
            FileJob::ExportPng => ("PNG image", &["png"]),
            FileJob::ExportLabCsv => ("CSV", &["csv"]),
        }
    }
}

/// Results of background file work, delivered to the UI thread.
pub enum Picked {
    /// A dialog's choice.
    File(FileJob, PathBuf),
    /// A screenshot for a PNG export.
    Screenshot(Arc<ColorImage>),
}

/// Show a file dialog on its own thread; the choice arrives on `tx`.
pub fn pick_file(job: FileJob, start_dir: PathBuf, tx: Sender<Picked>) {
    let _ = std::thread::Builder::new()
        .name("thinkscope-dialog".into())
        .spawn(move || {
            let (name, exts) = job.filter();
            let dialog = rfd::FileDialog::new()
                .add_filter(name, exts)
                .set_directory(&start_dir);
            let picked = if job.saves() {
                dialog.save_file()
            } else {
                dialog.pick_file()
            };
            if let Some(p) = picked {
                let _ = tx.send(Picked::File(job, p));
            }
        });
}

/// GGUF files in a folder, sorted.
pub fn list_models(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl ThinkscopeApp {
    /// Do what a picked file was picked for.
    pub(crate) fn file_picked(&mut self, ctx: &egui::Context, job: FileJob, p: PathBuf) {
        match job {
            FileJob::OpenModel => self.open_model(ctx, p),
            FileJob::OpenSession => self.request_open_session(&p),
            FileJob::SaveSession => {
                let result = self.session().write(&p);
                if result.is_ok() {
                    self.saved_edits = self.edits;
                }
                self.report(result, &p);
            }
            FileJob::ExportJson => {
                let tree = &self.panes[self.focus].run.tree;
                let result = serde_json::to_string_pretty(tree)
                    .map_err(anyhow::Error::from)
                    .and_then(|t| write_file(&p, t.as_bytes()));
                self.report(result, &p);
            }
            FileJob::ExportMarkdown => {
                let md = self.panes[self.focus].run.tree.transcript_markdown();
                let result = write_file(&p, md.as_bytes());
                self.report(result, &p);
            }
            FileJob::ExportPng => {
                self.pending_png = Some(p);
                let tx = self.picked_tx.clone();
                let c = ctx.clone();
                ctx.request_screenshot(move |img| {
                    let _ = tx.send(Picked::Screenshot(img));
                    c.request_repaint();
                });
            }
            FileJob::ExportLabCsv => {
                let result = export_csv(&self.lab, &p);
                self.report(result, &p);
            }
        }
    }

    /// Save the requested part of a screenshot as PNG.
    pub(crate) fn screenshot_taken(&mut self, ctx: &egui::Context, img: &ColorImage) {
        if let Some(p) = self.pending_png.take() {
            let rect = match self.settings.view {
                View::Explore => self.panes[self.focus].canvas,
                View::Lab => self.lab.plot_rect(),
            };
            let result = save_png(img, rect, ctx.pixels_per_point(), &p);
            self.report(result, &p);
        }
    }

    fn report(&mut self, result: anyhow::Result<()>, path: &Path) {
        match result {
            Ok(()) => self.notify(format!("Saved {}", path.display()), false),
            Err(e) => self.notify(format!("{e:#}"), true),
        }
    }

    /// The current session.
    pub fn session(&self) -> SessionFile {
        SessionFile {
            version: SESSION_VERSION,
            settings: self.settings.clone(),
            panes: self
                .panes
                .iter()
                .map(|p| PaneSnapshot {
                    config: p.config.clone(),
                    tree: p.run.tree.clone(),
                    cost: p.run.cost.clone(),
                })
                .collect(),
        }
    }

    /// Open a session file as the user asked (a dialog, the command line): a file that cannot
    /// be opened is a message and changes nothing; unsaved trees are not replaced without asking.
    pub fn request_open_session(&mut self, path: &Path) {
        match SessionFile::read(path) {
            Err(e) => self.notify(format!("{e:#}"), true),
            Ok(s) if self.unsaved_work() => {
                self.pending_open = Some((path.to_owned(), Box::new(s)));
            }
            Ok(s) => self.opened(path, s),
        }
    }

    /// "Replace the open session?" > Replace: the replaced trees are kept in the config folder.
    pub fn confirm_open(&mut self) {
        let Some((path, session)) = self.pending_open.take() else {
            return;
        };
        if let Some(dir) = self.options().config_dir.clone() {
            let keep = dir.join(crate::ui::autosave::BEFORE_OPEN);
            let result = std::fs::create_dir_all(&dir)
                .map_err(anyhow::Error::from)
                .and_then(|()| self.session().write(&keep));
            if let Err(e) = result {
                self.notify(
                    format!(
                        "the replaced trees could not be kept: {e:#}: {}",
                        keep.display()
                    ),
                    true,
                );
            }
        }
        self.opened(&path, *session);
    }

    fn opened(&mut self, path: &Path, session: SessionFile) {
        self.apply_session(session);
        self.saved_edits = self.edits;
        self.notify(format!("Opened {}", path.display()), false);
    }

    /// Replace the session with one read from `path` (the current one stays on error), without
    /// asking.
    pub fn open_session(&mut self, path: &Path) -> anyhow::Result<()> {
        let session = SessionFile::read(path)?;
        self.opened(path, session);
        Ok(())
    }

    /// Show `session` in place of the current one.
    pub(crate) fn apply_session(&mut self, session: SessionFile) {
        self.stop_all();
        let model_path = self.settings.model_path.clone();
        self.settings = session.settings;
        self.settings.model_path = model_path;
        self.panes = session
            .panes
            .into_iter()
            .map(|s| Pane {
                status: if s.tree.nodes.is_empty() {
                    PaneStatus::Idle
                } else {
                    PaneStatus::Done(RunOutcome::Completed)
                },
                run: RunView {
                    tree: s.tree,
                    cost: s.cost,
                    ..RunView::default()
                },
                config: s.config,
                ..Pane::default()
            })
            .collect();
        let n = self.settings.panes.len().max(1);
        self.panes.resize_with(n, Pane::default);
        self.panes.truncate(n);
        self.focus = 0;
        self.edits += 1;
    }
}

/// Every file the app writes goes through the engine's atomic helper: a crash or a full disk
/// mid-write leaves the old file as it was.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    thinkscope_engine::atomic::write(path, bytes).map_err(anyhow::Error::from)
}

fn save_png(
    img: &ColorImage,
    rect: Option<egui::Rect>,
    ppp: f32,
    path: &Path,
) -> anyhow::Result<()> {
    let [w, h] = img.size;
    let (x0, y0, x1, y1) = match rect {
        Some(r) => (
            ((r.min.x * ppp) as usize).min(w),
            ((r.min.y * ppp) as usize).min(h),
            ((r.max.x * ppp) as usize).min(w),
            ((r.max.y * ppp) as usize).min(h),
        ),
        None => (0, 0, w, h),
    };
    anyhow::ensure!(x1 > x0 && y1 > y0, "the canvas is not visible");
    let mut buf = image::RgbaImage::new((x1 - x0) as u32, (y1 - y0) as u32);
    for y in y0..y1 {
        for x in x0..x1 {
            let c = img.pixels[y * w + x];
            buf.put_pixel(
                (x - x0) as u32,
                (y - y0) as u32,
                image::Rgba([c.r(), c.g(), c.b(), c.a()]),
            );
        }
    }
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba8(buf)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    write_file(path, &png)
}
