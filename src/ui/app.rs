//! The desktop app: prompt, strategies, live trees side by side, meters, inspector, sessions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use eframe::egui::{self, Color32, ColorImage, RichText, Ui};

use crate::ui::inspector::{inspector_ui, BranchRequest};
use crate::ui::lab_view::{export_csv, lab_controls_ui, lab_plot_ui, LabState};
use crate::ui::meters::{meters_ui, SpeedHistory};
use crate::ui::state::{
    ColorBy, PaneSettings, PaneSnapshot, SessionFile, Settings, View, SESSION_VERSION,
};
use crate::ui::tree_view::TreeView;
use thinkscope_engine::cost::CostSnapshot;
use thinkscope_engine::device::DevicePref;
use thinkscope_engine::events::{Command, Event, RunId, RunOutcome};
use thinkscope_engine::fetch::{self, FetchProgress};
use thinkscope_engine::strategy::{registry, RunConfig, StrategyInfo};
use thinkscope_engine::tree::{NodeId, Tree};
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_engine::Model;

/// How the app starts.
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// Model to open (else the last one, else the default model).
    pub model_path: Option<PathBuf>,
    /// Where settings live (`None`: do not persist).
    pub config_dir: Option<PathBuf>,
    /// Where models are looked for and fetched to.
    pub models_dir: PathBuf,
}

/// Where the model is.
enum ModelSlot {
    Idle,
    Fetching {
        stage: &'static str,
        bytes: u64,
        total: u64,
    },
    Loading(PathBuf),
    Ready {
        model: Arc<Model>,
        worker: Worker,
    },
    Failed(String),
}

/// Results of background work, delivered to the UI thread.
enum Job {
    Fetch(FetchProgress),
    Loaded(PathBuf, Result<Arc<Model>, String>),
    PickedModel(PathBuf),
    OpenSession(PathBuf),
    SaveSession(PathBuf),
    ExportJson(PathBuf),
    ExportMarkdown(PathBuf),
    ExportPng(PathBuf),
    ExportLabCsv(PathBuf),
    Screenshot(Arc<ColorImage>),
}

/// A run's state as the UI sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaneStatus {
    /// Nothing run yet.
    Idle,
    /// Generating.
    Running,
    /// Held by the user.
    Paused,
    /// Over.
    Done(RunOutcome),
}

/// One side-by-side pane.
pub struct Pane {
    /// The worker's run id.
    pub run: Option<RunId>,
    /// The tree, rebuilt from events.
    pub tree: Tree,
    /// Latest cost.
    pub cost: CostSnapshot,
    /// Run state.
    pub status: PaneStatus,
    /// Configuration of the last run.
    pub config: Option<RunConfig>,
    /// Selected node.
    pub selected: Option<NodeId>,
    view: TreeView,
    speed: SpeedHistory,
    canvas: Option<egui::Rect>,
}

impl Default for Pane {
    fn default() -> Self {
        Self {
            run: None,
            tree: Tree::default(),
            cost: CostSnapshot::default(),
            status: PaneStatus::Idle,
            config: None,
            selected: None,
            view: TreeView::default(),
            speed: SpeedHistory::default(),
            canvas: None,
        }
    }
}

/// A dismissable message.
struct Notice {
    text: String,
    error: bool,
}

/// The application.
pub struct ThinkscopeApp {
    /// Persisted settings.
    pub settings: Settings,
    /// Panes, one per `settings.panes` entry.
    pub panes: Vec<Pane>,
    /// Pane whose settings the left panel edits.
    pub focus: usize,
    options: AppOptions,
    model: ModelSlot,
    model_path: Option<PathBuf>,
    jobs_tx: Sender<Job>,
    jobs_rx: Receiver<Job>,
    next_run: RunId,
    notices: Vec<Notice>,
    saved: Settings,
    last_save: Instant,
    pending_png: Option<PathBuf>,
    strategies: Vec<StrategyInfo>,
    /// The scaling lab's sweep.
    pub lab: LabState,
}

const TEACHING_NOTE: &str = "System 1 answers at once: one greedy pass, no reasoning. System 2 spends test-time compute: it samples several reasoning traces and lets them vote. Run both on the same question and compare the answers, the trees and the meters: more thinking costs tokens, time and energy, and does not always pay.";

impl ThinkscopeApp {
    /// Create the app; the model loads in the background on the first frame.
    pub fn new(options: AppOptions) -> Self {
        let (settings, warning) = match &options.config_dir {
            Some(dir) => Settings::load(dir),
            None => (Settings::default(), None),
        };
        let (jobs_tx, jobs_rx) = unbounded();
        let model_path = options
            .model_path
            .clone()
            .or_else(|| settings.model_path.clone());
        let mut app = Self {
            panes: settings.panes.iter().map(|_| Pane::default()).collect(),
            saved: settings.clone(),
            settings,
            focus: 0,
            options,
            model: ModelSlot::Idle,
            model_path,
            jobs_tx,
            jobs_rx,
            next_run: 1,
            notices: Vec::new(),
            last_save: Instant::now(),
            pending_png: None,
            strategies: registry(),
            lab: LabState::default(),
        };
        if let Some(w) = warning {
            app.notify(w, true);
        }
        app
    }

    fn notify(&mut self, text: impl Into<String>, error: bool) {
        let text = text.into();
        if error {
            tracing::warn!("{text}");
        }
        self.notices.push(Notice { text, error });
        if self.notices.len() > 6 {
            self.notices.remove(0);
        }
    }

    /// Whether the model is loaded and the worker running.
    pub fn model_ready(&self) -> bool {
        matches!(self.model, ModelSlot::Ready { .. })
    }

    /// Error text of a failed model load, if any.
    pub fn model_error(&self) -> Option<&str> {
        match &self.model {
            ModelSlot::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Dismiss every message.
    pub fn clear_notices(&mut self) {
        self.notices.clear();
    }

    /// Messages currently shown.
    pub fn notices(&self) -> Vec<String> {
        self.notices.iter().map(|n| n.text.clone()).collect()
    }

    /// Start loading (and if needed fetching) the model.
    fn start_loading(&mut self, ctx: &egui::Context) {
        let tx = self.jobs_tx.clone();
        let ctx = ctx.clone();
        let explicit = self.model_path.clone();
        let dir = self.options.models_dir.clone();
        // A loaded model stays in use until the new one is ready: a file that fails to load
        // then costs nothing but a message.
        if !self.model_ready() {
            self.model = match &explicit {
                Some(p) => ModelSlot::Loading(p.clone()),
                None => ModelSlot::Fetching {
                    stage: "checking",
                    bytes: 0,
                    total: 1,
                },
            };
        } else if let Some(p) = &explicit {
            self.notify(format!("Loading {}…", p.display()), false);
        }
        let spawned = std::thread::Builder::new()
            .name("thinkscope-load".into())
            .spawn(move || {
                let wake = || ctx.request_repaint();
                let path = match explicit {
                    Some(p) => p,
                    None => {
                        let tx2 = tx.clone();
                        let ctx2 = ctx.clone();
                        match fetch::fetch(&fetch::SMOLLM2_135M, &dir, &mut |p| {
                            let _ = tx2.send(Job::Fetch(p));
                            ctx2.request_repaint();
                        }) {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = tx.send(Job::Loaded(
                                    dir.join(fetch::SMOLLM2_135M.file_name),
                                    Err(format!("{e}")),
                                ));
                                wake();
                                return;
                            }
                        }
                    }
                };
                let result = Model::load_pref(&path, DevicePref::Auto)
                    .map(|(model, note)| {
                        if let Some(note) = note {
                            tracing::info!("{note}");
                        }
                        Arc::new(model)
                    })
                    .map_err(|e| format!("{e}"));
                let _ = tx.send(Job::Loaded(path, result));
                wake();
            });
        if let Err(e) = spawned {
            self.model = ModelSlot::Failed(format!("could not start the loader thread: {e}"));
        }
    }

    /// Open another model file (keeps the current one if this fails).
    pub fn open_model(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.model_path = Some(path);
        self.start_loading(ctx);
    }

    fn poll_jobs(&mut self, ctx: &egui::Context) {
        while let Ok(job) = self.jobs_rx.try_recv() {
            match job {
                Job::Fetch(p) => {
                    self.model = match p {
                        FetchProgress::Downloading { bytes, total } => ModelSlot::Fetching {
                            stage: "downloading",
                            bytes,
                            total,
                        },
                        FetchProgress::Unpacking { bytes, total } => ModelSlot::Fetching {
                            stage: "unpacking",
                            bytes,
                            total,
                        },
                        FetchProgress::Verifying => ModelSlot::Fetching {
                            stage: "verifying",
                            bytes: 1,
                            total: 1,
                        },
                        FetchProgress::Done { path } => ModelSlot::Loading(path),
                    }
                }
                Job::Loaded(path, Ok(model)) => {
                    let waker_ctx = ctx.clone();
                    match Worker::spawn(
                        model.clone(),
                        WorkerOptions::default(),
                        Arc::new(move || waker_ctx.request_repaint()),
                    ) {
                        Ok(worker) => {
                            // `None` means the default model, fetched when missing.
                            self.settings.model_path = self.model_path.clone();
                            // Replacing the worker ends the old model's runs.
                            for pane in &mut self.panes {
                                if matches!(pane.status, PaneStatus::Running | PaneStatus::Paused) {
                                    pane.status = PaneStatus::Done(RunOutcome::Cancelled);
                                }
                            }
                            if self.model_ready() {
                                self.notify(format!("Opened {}", path.display()), false);
                            }
                            self.model = ModelSlot::Ready { model, worker };
                        }
                        Err(e) if self.model_ready() => self.notify(format!("{e}"), true),
                        Err(e) => self.model = ModelSlot::Failed(format!("{e}")),
                    }
                }
                Job::Loaded(path, Err(e)) => {
                    let msg = format!("could not open {}: {e}", path.display());
                    self.notify(msg.clone(), true);
                    if self.model_ready() {
                        // Keep the model that works; remember it, not the broken file.
                        self.model_path = self.settings.model_path.clone();
                    } else {
                        self.model = ModelSlot::Failed(msg);
                    }
                }
                Job::PickedModel(p) => self.open_model(ctx, p),
                Job::OpenSession(p) => {
                    if let Err(e) = self.open_session(&p) {
                        self.notify(format!("{e:#}"), true);
                    }
                }
                Job::SaveSession(p) => match self.session().write(&p) {
                    Ok(()) => self.notify(format!("Session saved to {}", p.display()), false),
                    Err(e) => self.notify(format!("{e:#}"), true),
                },
                Job::ExportJson(p) => {
                    let tree = &self.panes[self.focus].tree;
                    let result = serde_json::to_string_pretty(tree)
                        .map_err(anyhow::Error::from)
                        .and_then(|t| {
                            std::fs::write(&p, t)
                                .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))
                        });
                    self.report(result, &p);
                }
                Job::ExportMarkdown(p) => {
                    let md = self.panes[self.focus].tree.transcript_markdown();
                    let result = std::fs::write(&p, md)
                        .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()));
                    self.report(result, &p);
                }
                Job::ExportPng(p) => {
                    self.pending_png = Some(p);
                    let tx = self.jobs_tx.clone();
                    let c = ctx.clone();
                    ctx.request_screenshot(move |img| {
                        let _ = tx.send(Job::Screenshot(img));
                        c.request_repaint();
                    });
                }
                Job::ExportLabCsv(p) => {
                    let result = export_csv(&self.lab, &p);
                    self.report(result, &p);
                }
                Job::Screenshot(img) => {
                    if let Some(p) = self.pending_png.take() {
                        let rect = match self.settings.view {
                            View::Explore => self.panes[self.focus].canvas,
                            View::Lab => self.lab.plot_rect(),
                        };
                        let result = save_png(&img, rect, ctx.pixels_per_point(), &p);
                        self.report(result, &p);
                    }
                }
            }
        }
    }

    fn report(&mut self, result: anyhow::Result<()>, path: &Path) {
        match result {
            Ok(()) => self.notify(format!("Saved {}", path.display()), false),
            Err(e) => self.notify(format!("{e:#}"), true),
        }
    }

    fn poll_events(&mut self) {
        let ModelSlot::Ready { worker, .. } = &self.model else {
            return;
        };
        let mut errors = Vec::new();
        // Bounded per frame so a burst of events never stalls the UI.
        for _ in 0..20_000 {
            let Ok(event) = worker.events().try_recv() else {
                break;
            };
            let Some(run) = event.run() else {
                if let Event::Error { message, .. } = event {
                    errors.push(message);
                }
                continue;
            };
            let Some(pane) = self.panes.iter_mut().find(|p| p.run == Some(run)) else {
                continue;
            };
            pane.tree.apply(&event);
            match event {
                Event::Cost { cost, .. } => {
                    pane.speed.push(&cost);
                    pane.cost = cost;
                }
                Event::RunFinished { outcome, cost, .. } => {
                    pane.speed.push(&cost);
                    pane.cost = cost;
                    pane.status = PaneStatus::Done(outcome);
                }
                Event::Error { message, .. } => errors.push(message),
                _ => {}
            }
        }
        for e in errors {
            self.notify(e, true);
        }
    }

    fn send(&mut self, cmd: Command) {
        let ModelSlot::Ready { worker, .. } = &self.model else {
            self.notify("The model is not loaded yet.", true);
            return;
        };
        if let Err(e) = worker.send(cmd) {
            self.notify(format!("{e}"), true);
        }
    }

    /// Start every pane on the prompt.
    pub fn run_all(&mut self) {
        if !self.model_ready() {
            self.notify("The model is not loaded yet.", true);
            return;
        }
        if self.settings.prompt.trim().is_empty() {
            self.notify("Type a prompt first.", true);
            return;
        }
        for i in 0..self.panes.len() {
            self.run_pane(i);
        }
    }

    fn run_pane(&mut self, i: usize) {
        let config = match self.settings.panes[i].run_config(&self.settings.prompt) {
            Ok(c) => c,
            Err(e) => {
                self.notify(format!("Pane {}: {e}", pane_letter(i)), true);
                return;
            }
        };
        if let Some(old) = self.panes[i].run.filter(|_| {
            self.panes[i].status == PaneStatus::Running
                || self.panes[i].status == PaneStatus::Paused
        }) {
            self.send(Command::Cancel(old));
        }
        if let Some(old) = self.panes[i].run {
            self.send(Command::Forget(old));
        }
        let run = self.next_run;
        self.next_run += 1;
        let pane = &mut self.panes[i];
        pane.run = Some(run);
        pane.tree = Tree::default();
        pane.cost = CostSnapshot::default();
        pane.status = PaneStatus::Running;
        pane.selected = None;
        pane.view = TreeView::default();
        pane.speed.clear();
        pane.config = Some(config.clone());
        self.send(Command::Run {
            run,
            config: Box::new(config),
        });
    }

    fn for_active(&mut self, f: impl Fn(RunId) -> Command, status: PaneStatus) {
        let runs: Vec<(usize, RunId)> = self
            .panes
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.status, PaneStatus::Running | PaneStatus::Paused))
            .filter_map(|(i, p)| p.run.map(|r| (i, r)))
            .collect();
        for (i, r) in runs {
            self.send(f(r));
            if status != PaneStatus::Done(RunOutcome::Cancelled) {
                self.panes[i].status = status;
            }
        }
    }

    /// Pause every running pane.
    pub fn pause_all(&mut self) {
        self.for_active(Command::Pause, PaneStatus::Paused);
    }

    /// Resume every paused pane.
    pub fn resume_all(&mut self) {
        self.for_active(Command::Resume, PaneStatus::Running);
    }

    /// One forward pass for every paused pane.
    pub fn step_all(&mut self) {
        self.for_active(Command::Step, PaneStatus::Paused);
    }

    /// Stop every running pane.
    pub fn stop_all(&mut self) {
        self.for_active(Command::Cancel, PaneStatus::Done(RunOutcome::Cancelled));
    }

    /// Whether any pane is running or paused.
    pub fn busy(&self) -> bool {
        self.panes
            .iter()
            .any(|p| matches!(p.status, PaneStatus::Running | PaneStatus::Paused))
    }

    /// Use `n` panes (1 to 4).
    pub fn set_pane_count(&mut self, n: usize) {
        let n = n.clamp(1, 4);
        let defaults = ["self-consistency", "system1", "beam", "budget-forcing"];
        while self.settings.panes.len() < n {
            let name = defaults[self.settings.panes.len() % defaults.len()];
            self.settings.panes.push(PaneSettings::for_strategy(name));
        }
        self.settings.panes.truncate(n);
        while self.panes.len() < n {
            self.panes.push(Pane::default());
        }
        for p in self.panes.drain(n..).collect::<Vec<_>>() {
            if let Some(r) = p.run {
                self.send_quiet(Command::Cancel(r));
            }
        }
        self.focus = self.focus.min(n - 1);
    }

    fn send_quiet(&self, cmd: Command) {
        if let ModelSlot::Ready { worker, .. } = &self.model {
            let _ = worker.send(cmd);
        }
    }

    /// The teaching preset: greedy System 1 beside self-consistency.
    pub fn system1_vs_system2(&mut self) {
        self.set_pane_count(2);
        self.settings.panes[0] = PaneSettings::for_strategy("system1");
        self.settings.panes[1] = PaneSettings {
            samples: 5,
            ..PaneSettings::for_strategy("self-consistency")
        };
        self.settings.teaching_note = true;
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
                    tree: p.tree.clone(),
                    cost: p.cost.clone(),
                })
                .collect(),
        }
    }

    /// Replace the session with one read from `path` (the current one stays on error).
    pub fn open_session(&mut self, path: &Path) -> anyhow::Result<()> {
        let session = SessionFile::read(path)?;
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
                tree: s.tree,
                cost: s.cost,
                config: s.config,
                ..Pane::default()
            })
            .collect();
        let n = self.settings.panes.len().max(1);
        self.panes.resize_with(n, Pane::default);
        self.panes.truncate(n);
        self.focus = 0;
        self.notify(format!("Opened {}", path.display()), false);
        Ok(())
    }

    fn persist(&mut self, force: bool) {
        let Some(dir) = self.options.config_dir.clone() else {
            return;
        };
        if self.settings == self.saved
            || (!force && self.last_save.elapsed() < Duration::from_secs(2))
        {
            return;
        }
        self.last_save = Instant::now();
        match self.settings.save(&dir) {
            Ok(()) => self.saved = self.settings.clone(),
            Err(e) => self.notify(format!("could not save settings: {e}"), true),
        }
    }

    fn pick_file(
        &self,
        save: bool,
        filter: (&'static str, &'static [&'static str]),
        make: fn(PathBuf) -> Job,
    ) {
        let tx = self.jobs_tx.clone();
        let dir = self.options.models_dir.clone();
        let _ = std::thread::Builder::new()
            .name("thinkscope-dialog".into())
            .spawn(move || {
                let dialog = rfd::FileDialog::new()
                    .add_filter(filter.0, filter.1)
                    .set_directory(&dir);
                let picked = if save {
                    dialog.save_file()
                } else {
                    dialog.pick_file()
                };
                if let Some(p) = picked {
                    let _ = tx.send(make(p));
                }
            });
    }

    /// Draw one frame.
    pub fn ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        if matches!(self.model, ModelSlot::Idle) {
            self.start_loading(&ctx);
        }
        self.poll_jobs(&ctx);
        self.poll_events();

        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        if self.settings.view == View::Lab {
            let ready = self.model_ready();
            let mut start = false;
            egui::Panel::left("lab_controls")
                .resizable(true)
                .default_size(300.0)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| {
                        start = lab_controls_ui(ui, &mut self.settings.lab, &mut self.lab, ready);
                    });
                });
            if start {
                self.start_sweep(&ctx);
            }
            egui::CentralPanel::default().show(ui, |ui| {
                lab_plot_ui(ui, &mut self.settings.lab, &mut self.lab);
            });
        } else {
            self.explore_ui(ui);
        }
        self.notices_ui(&ctx);
        if self.busy() {
            ctx.request_repaint_after(Duration::from_millis(250));
        }
        self.persist(false);
    }

    fn explore_ui(&mut self, ui: &mut Ui) {
        egui::Panel::left("controls")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.controls_ui(ui));
            });
        let focus = self.focus;
        let can_branch = matches!(self.panes[focus].status, PaneStatus::Done(_));
        if let Some(sel) = self.panes[focus].selected {
            let mut branch = None;
            let mut close = false;
            egui::Panel::right("inspector")
                .resizable(true)
                .default_size(340.0)
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        ui.strong(format!("Inspector · pane {}", pane_letter(focus)));
                        if ui
                            .small_button("x")
                            .on_hover_text("Close the inspector")
                            .clicked()
                        {
                            close = true;
                        }
                    });
                    branch = inspector_ui(ui, &self.panes[focus].tree, sel, can_branch);
                });
            if close {
                self.panes[focus].selected = None;
            }
            if let Some(b) = branch {
                self.branch(focus, b);
            }
        }
        egui::CentralPanel::default().show(ui, |ui| self.panes_ui(ui));
    }

    fn start_sweep(&mut self, ctx: &egui::Context) {
        let ModelSlot::Ready { model, .. } = &self.model else {
            self.notify("The model is not loaded yet.", true);
            return;
        };
        let model = model.clone();
        let dir = self
            .options
            .config_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            self.notify(format!("could not create {}: {e}", dir.display()), true);
            return;
        }
        let results = dir.join("lab-results.jsonl");
        self.lab
            .start(model, &self.settings.lab, results, ctx.clone());
    }

    fn branch(&mut self, pane: usize, b: BranchRequest) {
        let Some(run) = self.panes[pane].run else {
            return;
        };
        self.panes[pane].status = PaneStatus::Running;
        self.send(Command::BranchFrom {
            run,
            node: b.node,
            index: b.index,
            token: b.token,
        });
    }

    fn menu_ui(&mut self, ui: &mut Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open model…").clicked() {
                    self.pick_file(false, ("GGUF model", &["gguf"]), Job::PickedModel);
                    ui.close();
                }
                ui.menu_button("Models folder", |ui| {
                    let models = list_models(&self.options.models_dir);
                    if models.is_empty() {
                        ui.label(format!("No .gguf files in {}", self.options.models_dir.display()));
                    }
                    for m in models {
                        let name = m.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        if ui.button(name).clicked() {
                            let ctx = ui.ctx().clone();
                            self.open_model(&ctx, m);
                            ui.close();
                        }
                    }
                });
                ui.separator();
                if ui.button("Open session…").clicked() {
                    self.pick_file(false, ("thinkscope session", &["json"]), Job::OpenSession);
                    ui.close();
                }
                if ui.button("Save session…").clicked() {
                    self.pick_file(true, ("thinkscope session", &["json"]), Job::SaveSession);
                    ui.close();
                }
                ui.separator();
                if ui.button("Export tree as JSON…").clicked() {
                    self.pick_file(true, ("JSON", &["json"]), Job::ExportJson);
                    ui.close();
                }
                if ui.button("Export chosen path as Markdown…").clicked() {
                    self.pick_file(true, ("Markdown", &["md"]), Job::ExportMarkdown);
                    ui.close();
                }
                if ui.button("Export lab results as CSV…").clicked() {
                    self.pick_file(true, ("CSV", &["csv"]), Job::ExportLabCsv);
                    ui.close();
                }
                if ui.button("Export canvas or plot as PNG…").clicked() {
                    self.pick_file(true, ("PNG image", &["png"]), Job::ExportPng);
                    ui.close();
                }
                ui.separator();
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("View", |ui| {
                for n in 1..=4 {
                    if ui.radio(self.panes.len() == n, format!("{n} pane{}", if n > 1 { "s" } else { "" })).clicked() {
                        self.set_pane_count(n);
                        ui.close();
                    }
                }
                ui.separator();
                ui.label("Colour nodes by");
                for c in ColorBy::ALL {
                    ui.radio_value(&mut self.settings.color_by, c, c.label());
                }
                ui.separator();
                ui.checkbox(&mut self.settings.follow, "Keep the tree in view while it grows");
            });
            ui.menu_button("Help", |ui| {
                ui.label("Drag to pan, scroll to zoom, double-click a node to fold its subtree, click a node to inspect it.");
                ui.label("In the inspector, right-click a token to branch there with another token.");
            });
        });
    }

    fn toolbar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.selectable_value(
                &mut self.settings.view,
                View::Explore,
                RichText::new("Explore").strong(),
            )
            .on_hover_text("Watch strategies grow their trees live");
            ui.selectable_value(
                &mut self.settings.view,
                View::Lab,
                RichText::new("Lab").strong(),
            )
            .on_hover_text("Accuracy against test-time compute on a problem set");
            ui.separator();
            let ready = self.model_ready();
            let busy = self.busy();
            let any_paused = self.panes.iter().any(|p| p.status == PaneStatus::Paused);
            if ui
                .add_enabled(ready, egui::Button::new(RichText::new("Run").strong()))
                .on_hover_text("Run every pane on the prompt (Ctrl+Enter)")
                .clicked()
            {
                self.run_all();
            }
            if any_paused {
                if ui.add_enabled(busy, egui::Button::new("Resume")).clicked() {
                    self.resume_all();
                }
            } else if ui
                .add_enabled(busy, egui::Button::new("Pause"))
                .on_hover_text("Hold every run after its current forward pass")
                .clicked()
            {
                self.pause_all();
            }
            if ui
                .add_enabled(busy, egui::Button::new("Step"))
                .on_hover_text("Let paused runs do one more forward pass")
                .clicked()
            {
                self.step_all();
            }
            if ui
                .add_enabled(busy, egui::Button::new("Stop"))
                .on_hover_text("Cancel every run; the trees keep what they have")
                .clicked()
            {
                self.stop_all();
            }
            ui.separator();
            ui.label("Panes:");
            for n in 1..=4 {
                if ui
                    .selectable_label(self.panes.len() == n, n.to_string())
                    .on_hover_text("Compare strategies side by side on the same prompt")
                    .clicked()
                {
                    self.set_pane_count(n);
                }
            }
            ui.separator();
            if ui
                .button("System 1 vs System 2")
                .on_hover_text("Greedy answer beside self-consistency, for teaching")
                .clicked()
            {
                self.system1_vs_system2();
            }
            ui.separator();
            egui::ComboBox::from_label("Colour")
                .selected_text(self.settings.color_by.label())
                .show_ui(ui, |ui| {
                    for c in ColorBy::ALL {
                        ui.selectable_value(&mut self.settings.color_by, c, c.label());
                    }
                });
        });
        if ui.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Enter))
            && self.model_ready()
        {
            self.run_all();
        }
    }

    fn status_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| match &self.model {
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
            ModelSlot::Ready { model, .. } => {
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
                ui.label(
                    RichText::new(format!("Error: {e}")).color(Color32::from_rgb(230, 90, 90)),
                );
            }
        });
    }

    fn controls_ui(&mut self, ui: &mut Ui) {
        ui.heading("Prompt");
        ui.add(
            egui::TextEdit::multiline(&mut self.settings.prompt)
                .desired_rows(5)
                .desired_width(f32::INFINITY)
                .hint_text("Ask something that needs thought…"),
        )
        .on_hover_text("The question every pane answers. Ctrl+Enter runs.");
        if self.settings.teaching_note {
            ui.add_space(4.0);
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.label(RichText::new("System 1 vs System 2").strong());
                ui.label(RichText::new(TEACHING_NOTE).small());
                if ui.small_button("Hide").clicked() {
                    self.settings.teaching_note = false;
                }
            });
        }
        ui.separator();
        if self.panes.len() > 1 {
            ui.horizontal(|ui| {
                ui.label("Settings of pane");
                for i in 0..self.panes.len() {
                    ui.selectable_value(&mut self.focus, i, pane_letter(i));
                }
            });
        }
        let focus = self.focus;
        let strategies = self.strategies.clone();
        let s = &mut self.settings.panes[focus];
        let info = strategies.iter().find(|i| i.name == s.strategy);
        let title = info.map_or(s.strategy.clone(), |i| i.title.to_owned());
        egui::ComboBox::from_label("Strategy")
            .selected_text(title)
            .width(200.0)
            .show_ui(ui, |ui| {
                for st in &strategies {
                    ui.selectable_value(&mut s.strategy, st.name.to_owned(), st.title)
                        .on_hover_text(st.description);
                }
            });
        if let Some(info) = info {
            ui.label(RichText::new(info.description).small().weak());
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
                    s.samples = samples;
                    s.depth = depth;
                    s.max_tokens = tokens;
                }
            }
        });
        ui.add_space(4.0);
        let name = s.strategy.as_str();
        let (samples_label, samples_help, samples_on) = match name {
            "best-of-n" => (
                "Samples (N)",
                "How many answers are sampled; the scorer keeps the best.",
                true,
            ),
            "self-consistency" => (
                "Samples (N)",
                "How many reasoning traces are sampled and vote.",
                true,
            ),
            "beam" => (
                "Beam width",
                "How many partial solutions survive each step.",
                true,
            ),
            "mcts" => (
                "Branching",
                "How many next thoughts each expansion samples.",
                true,
            ),
            "entropy-branching" => (
                "Branches per split",
                "How many likely tokens start a branch where the model is unsure.",
                true,
            ),
            _ => ("Samples", "This strategy uses a single path.", false),
        };
        let max_samples = if matches!(name, "beam" | "mcts" | "entropy-branching") {
            8
        } else {
            64
        };
        ui.add_enabled(
            samples_on,
            egui::Slider::new(&mut s.samples, 1..=max_samples).text(samples_label),
        )
        .on_hover_text(samples_help);
        let (depth_label, depth_help, depth_on) = match name {
            "beam" => (
                "Depth (steps)",
                "The most reasoning steps (lines) before the answer.",
                true,
            ),
            "mcts" => (
                "Iterations",
                "Rounds of select, expand, roll out and back up.",
                true,
            ),
            "budget-forcing" => (
                "Max waits",
                "The most times \"Wait\" is inserted when the model stops early.",
                true,
            ),
            "entropy-branching" => (
                "Max splits",
                "The most places where decoding branches.",
                true,
            ),
            _ => ("Depth", "This strategy has no depth setting.", false),
        };
        ui.add_enabled(
            depth_on,
            egui::Slider::new(&mut s.depth, 1..=32).text(depth_label),
        )
        .on_hover_text(depth_help);
        let greedy = name == "system1";
        ui.add_enabled(
            !greedy,
            egui::Slider::new(&mut s.temperature, 0.0..=2.0).text("Temperature"),
        )
        .on_hover_text(
            "Randomness of sampled branches: 0 is greedy, 1 is the model's own distribution.",
        );
        ui.add_enabled(
            !greedy,
            egui::Slider::new(&mut s.top_p, 0.05..=1.0).text("Top-p"),
        )
        .on_hover_text(
            "Sample only from the most likely tokens that together reach this probability.",
        );
        ui.add(
            egui::Slider::new(&mut s.max_tokens, 16..=1024)
                .logarithmic(true)
                .text("Max tokens"),
        )
        .on_hover_text("The most tokens one branch may generate.");
        ui.add_enabled(name == "budget-forcing", egui::Slider::new(&mut s.thinking, 16..=2048).logarithmic(true).text("Thinking budget"))
            .on_hover_text("Budget forcing: thinking is cut off here, and an early stop below half of it gets \"Wait\".");
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
                s.seed = (Instant::now().elapsed().as_nanos() as u64)
                    ^ (s.seed.rotate_left(17) + 0x9E37);
            }
        });
    }

    fn panes_ui(&mut self, ui: &mut Ui) {
        let n = self.panes.len();
        let cols = if n == 4 { 2 } else { n };
        let rows = n.div_ceil(cols);
        let avail = ui.available_size();
        let gap = 8.0;
        let w = (avail.x - gap * (cols as f32 - 1.0)) / cols as f32;
        let h = (avail.y - gap * (rows as f32 - 1.0)) / rows as f32;
        let origin = ui.cursor().min;
        let by = self.settings.color_by;
        for i in 0..n {
            let (r, c) = (i / cols, i % cols);
            let rect = egui::Rect::from_min_size(
                origin + egui::vec2(c as f32 * (w + gap), r as f32 * (h + gap)),
                egui::vec2(w, h),
            );
            let mut child =
                ui.new_child(egui::UiBuilder::new().max_rect(rect).id_salt(("pane", i)));
            child.set_clip_rect(rect.intersect(ui.clip_rect()));
            let focused = i == self.focus;
            let strategy = self.settings.panes[i].strategy.clone();
            let title = self
                .strategies
                .iter()
                .find(|s| s.name == strategy)
                .map_or(strategy.clone(), |s| s.title.to_owned());
            let follow = self.settings.follow;
            let pane = &mut self.panes[i];
            let frame = egui::Frame::group(child.style()).stroke(egui::Stroke::new(
                if focused { 2.0 } else { 1.0 },
                if focused {
                    Color32::from_rgb(86, 156, 255)
                } else {
                    Color32::from_gray(70)
                },
            ));
            let mut clicked_pane = false;
            frame.show(&mut child, |ui| {
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
                    ui.strong(&title);
                    status_badge(ui, pane.status);
                    if let Some(a) = &pane.tree.answer {
                        ui.add(
                            egui::Label::new(
                                RichText::new(format!("answer: {a}"))
                                    .strong()
                                    .color(crate::ui::theme::CHOSEN),
                            )
                            .truncate(),
                        );
                    }
                    if !pane.tree.tally.is_empty() {
                        let votes: Vec<String> = pane
                            .tree
                            .tally
                            .iter()
                            .map(|(a, v)| format!("{a}×{v}"))
                            .collect();
                        ui.add(
                            egui::Label::new(RichText::new(votes.join("  ")).small()).truncate(),
                        )
                        .on_hover_text(format!("Vote tally: {}", votes.join(", ")));
                    }
                });
                meters_ui(ui, &pane.cost, &pane.speed);
                if !follow {
                    pane.view.follow = false;
                }
                let out = pane.view.ui(ui, &pane.tree, by, pane.selected);
                pane.canvas = out.rect;
                if let Some(id) = out.clicked {
                    pane.selected = Some(id);
                    clicked_pane = true;
                }
            });
            if clicked_pane || child.response().clicked() {
                self.focus = i;
            }
        }
    }

    fn notices_ui(&mut self, ctx: &egui::Context) {
        if self.notices.is_empty() {
            return;
        }
        let mut dismiss = None;
        egui::Area::new(egui::Id::unique("thinkscope-notices"))
            .anchor(egui::Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -36.0))
            .show(ctx, |ui| {
                for (i, n) in self.notices.iter().enumerate() {
                    egui::Frame::popup(ui.style()).show(ui, |ui| {
                        ui.set_max_width(420.0);
                        ui.horizontal(|ui| {
                            let color = if n.error {
                                Color32::from_rgb(240, 110, 110)
                            } else {
                                Color32::from_rgb(120, 200, 140)
                            };
                            ui.label(
                                RichText::new(if n.error { "!" } else { "✓" })
                                    .strong()
                                    .color(color),
                            );
                            ui.label(&n.text);
                            if ui.small_button("x").on_hover_text("Dismiss").clicked() {
                                dismiss = Some(i);
                            }
                        });
                    });
                }
            });
        if let Some(i) = dismiss {
            self.notices.remove(i);
        }
    }

    /// Save settings now (on exit).
    pub fn save_now(&mut self) {
        self.persist(true);
    }
}

impl Drop for ThinkscopeApp {
    fn drop(&mut self) {
        self.persist(true);
    }
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

fn pane_letter(i: usize) -> &'static str {
    ["A", "B", "C", "D"].get(i).copied().unwrap_or("?")
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
    buf.save(path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}
