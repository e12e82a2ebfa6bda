//! The desktop app: its state and the frame's dispatch. Panels draw and return [`Action`]s,
//! applied here after drawing; loading (`loader.rs`), runs (`runs.rs`), files (`files.rs`) and
//! drawing (`panels.rs`, `controls.rs`, `panes.rs`) live in files of their own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use eframe::egui::{self, Ui};
use thinkscope_engine::device::DevicePref;
use thinkscope_engine::events::{RunId, RunOutcome};
use thinkscope_engine::frontend::OpenOptions;
use thinkscope_engine::lab::SweepEngine;
use thinkscope_engine::model::thinking::ThinkingFormat;

use crate::ui::action::Action;
use crate::ui::autosave::{self, confirm_open_ui, restore_ui, Autosave, Leftover};
use crate::ui::connect::{connect_ui, default_key, ConnectDialog, Connector, ServerRequest};
use crate::ui::controls::controls_ui;
use crate::ui::files::{pick_file, Picked};
use crate::ui::inspector::inspector_ui;
use crate::ui::lab_view::{lab_controls_ui, lab_plot_ui, LabState};
use crate::ui::loader::{progress_slot, LoadMsg, Loader, ModelSlot};
use crate::ui::panels::{menu_ui, notices_ui, status_ui, toolbar_ui, Notice};
use crate::ui::panes::panes_ui;
use crate::ui::runs::pane_letter;
pub use crate::ui::runs::{Pane, PaneStatus};
use crate::ui::state::{SessionFile, Settings, View};

/// How the app starts.
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// Model to open (else the last one, else the default model).
    pub model_path: Option<PathBuf>,
    /// Where settings live (`None`: do not persist).
    pub config_dir: Option<PathBuf>,
    /// Where models are looked for and fetched to.
    pub models_dir: PathBuf,
    /// Device to run on (else the one in the settings, else `auto`).
    pub device: Option<DevicePref>,
    /// A session file to open at start (`thinkscope FILE.json`).
    pub open: Option<PathBuf>,
}

/// The application.
pub struct ThinkscopeApp {
    /// Persisted settings.
    pub settings: Settings,
    /// Panes, one per `settings.panes` entry.
    pub panes: Vec<Pane>,
    /// Pane whose settings the left panel edits.
    pub focus: usize,
    /// The scaling lab's sweep.
    pub lab: LabState,
    options: AppOptions,
    pub(crate) model: ModelSlot,
    model_path: Option<PathBuf>,
    /// The device the loaded model runs on (what the Device menu falls back to if a switch fails).
    loaded_device: DevicePref,
    loader: Option<Loader>,
    pub(crate) picked_tx: Sender<Picked>,
    picked_rx: Receiver<Picked>,
    pub(crate) next_run: RunId,
    notices: Vec<Notice>,
    saved: Settings,
    last_save: Instant,
    pub(crate) pending_png: Option<PathBuf>,
    connect: ConnectDialog,
    connector: Option<Connector>,
    /// Changes to the panes' trees (events folded, runs started, sessions opened).
    pub(crate) edits: u64,
    /// `edits` when the trees were last saved to or opened from a file.
    pub(crate) saved_edits: u64,
    autosave: Option<Autosave>,
    /// Autosave right away (a run finished).
    pub(crate) autosave_now: bool,
    restore_offer: Option<Box<SessionFile>>,
    pub(crate) pending_open: Option<(PathBuf, Box<SessionFile>)>,
}

impl ThinkscopeApp {
    /// Create the app; the model loads in the background on the first frame.
    pub fn new(options: AppOptions) -> Self {
        let (mut settings, warning) = match &options.config_dir {
            Some(dir) => Settings::load(dir),
            None => (Settings::default(), None),
        };
        if let Some(d) = options.device {
            settings.device = d;
        }
        let (picked_tx, picked_rx) = unbounded();
        let model_path = options
            .model_path
            .clone()
            .or_else(|| settings.model_path.clone());
        let mut app = Self {
            panes: settings.panes.iter().map(|_| Pane::default()).collect(),
            saved: settings.clone(),
            settings,
            focus: 0,
            lab: LabState::default(),
            options,
            model: ModelSlot::Idle,
            model_path,
            loaded_device: DevicePref::Auto,
            loader: None,
            picked_tx,
            picked_rx,
            next_run: RunId(1),
            notices: Vec::new(),
            last_save: Instant::now(),
            pending_png: None,
            connect: ConnectDialog::default(),
            connector: None,
            edits: 0,
            saved_edits: 0,
            autosave: None,
            autosave_now: false,
            restore_offer: None,
            pending_open: None,
        };
        if let Some(w) = warning {
            app.notify(w, true);
        }
        if let Some(dir) = app.options.config_dir.clone() {
            let (leftover, warning) = autosave::recover(&dir);
            let mut saver = Autosave::new(dir);
            match leftover {
                Leftover::None => {}
                Leftover::Crashed(s) => {
                    saver.suspended = true;
                    app.restore_offer = Some(s);
                }
                Leftover::Unreadable(msg) => app.notify(msg, true),
            }
            if let Some(w) = warning {
                app.notify(format!("autosave is off: {w}"), true);
            } else {
                app.autosave = Some(saver);
            }
        }
        if let Some(path) = app.options.open.clone() {
            app.request_open_session(&path);
        }
        app
    }

    /// Whether "Restore previous session?" is being asked.
    pub fn restore_offered(&self) -> bool {
        self.restore_offer.is_some()
    }

    /// Whether "Replace the open session?" is being asked.
    pub fn open_pending(&self) -> bool {
        self.pending_open.is_some()
    }

    /// Whether the trees shown changed since they were last saved to or opened from a file.
    pub fn unsaved_work(&self) -> bool {
        self.edits != self.saved_edits && self.panes.iter().any(|p| !p.run.tree.nodes.is_empty())
    }

    fn autosave_tick(&mut self) {
        let Some(mut saver) = self.autosave.take() else {
            return;
        };
        let now = std::mem::take(&mut self.autosave_now);
        let report = saver.tick(self.edits, &self.settings, now, || self.session());
        self.autosave = Some(saver);
        if let Some(r) = report {
            self.notify(r, true);
        }
    }

    /// Restore the crashed run's autosave ("Restore previous session?" > Restore).
    pub fn restore_session(&mut self) {
        let Some(offer) = self.restore_offer.take() else {
            return;
        };
        self.apply_session(*offer);
        if let Some(a) = &mut self.autosave {
            a.suspended = false;
        }
        self.notify("Restored the previous session.", false);
    }

    /// Set the crashed run's autosave aside ("Restore previous session?" > Discard).
    pub fn discard_restore(&mut self) {
        if self.restore_offer.take().is_none() {
            return;
        }
        if let Some(a) = &mut self.autosave {
            match a.discard() {
                Ok(p) => self.notify(
                    format!("The previous session was kept as {}", p.display()),
                    false,
                ),
                Err(e) => self.notify(
                    format!("could not set the previous autosave aside: {e}"),
                    true,
                ),
            }
        }
    }

    /// A clean exit: settings saved, the last autosave written, the crash marker removed.
    pub fn exit(&mut self) {
        self.persist(true);
        if let Some(mut saver) = self.autosave.take() {
            saver.shutdown(self.edits, &self.settings, || self.session());
        }
    }

    /// How the app was started.
    pub fn options(&self) -> &AppOptions {
        &self.options
    }

    pub(crate) fn notify(&mut self, text: impl Into<String>, error: bool) {
        let text = text.into();
        if error {
            tracing::warn!("{text}");
        }
        self.notices.push(Notice { text, error });
        if self.notices.len() > 6 {
            self.notices.remove(0);
        }
    }

    /// The local model in use, if one is loaded (not a server).
    pub fn local_model(&self) -> Option<std::sync::Arc<thinkscope_engine::Model>> {
        match &self.model {
            ModelSlot::Ready { model, .. } => model.clone(),
            _ => None,
        }
    }

    /// Whether the model is loaded and the worker running.
    pub fn model_ready(&self) -> bool {
        matches!(self.model, ModelSlot::Ready { .. })
    }

    /// The device line of what runs the model ("CPU (2 threads)", "GPU: …", "server …").
    pub fn device_line(&self) -> Option<String> {
        match &self.model {
            ModelSlot::Ready { worker, .. } => Some(worker.service().info().device.clone()),
            _ => None,
        }
    }

    /// How the loaded model marks its thinking (`None`: no model yet, or one that does not
    /// think apart from its answer).
    pub fn thinking_format(&self) -> Option<ThinkingFormat> {
        match &self.model {
            ModelSlot::Ready { worker, .. } => worker.service().info().thinking.clone(),
            _ => None,
        }
    }

    /// Whether a model is being loaded or fetched.
    pub fn loading(&self) -> bool {
        self.loader.is_some()
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

    /// Start loading (and if needed fetching) the model. A loaded model stays in use until the
    /// new one is ready: a file that fails to load then costs nothing but a message.
    fn start_loading(&mut self, ctx: &egui::Context) {
        let explicit = self.model_path.clone();
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
        let options = OpenOptions {
            model: explicit,
            models_dir: self.options.models_dir.clone(),
            device: self.settings.device,
            ..OpenOptions::default()
        };
        match Loader::start(options, ctx) {
            Ok(l) => self.loader = Some(l),
            Err(e) => self.model = ModelSlot::Failed(e),
        }
    }

    /// Open another model file (keeps the current one if this fails).
    pub fn open_model(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.model_path = Some(path);
        self.start_loading(ctx);
    }

    /// Run the local model on `device` from now on: the model is loaded again there, and the
    /// one in use stays if that fails (no GPU, say).
    pub fn set_device(&mut self, ctx: &egui::Context, device: DevicePref) {
        if device == self.settings.device && self.loader.is_none() && self.local_model_loaded() {
            return;
        }
        self.settings.device = device;
        self.notify(format!("Loading the model on device \"{device}\"…"), false);
        self.start_loading(ctx);
    }

    /// Whether a local model (not a server) is loaded.
    fn local_model_loaded(&self) -> bool {
        matches!(self.model, ModelSlot::Ready { model: Some(_), .. })
    }

    /// Show the "Connect to server" dialog (File > Connect to server…).
    pub fn open_connect_dialog(&mut self) {
        self.connect.open = true;
    }

    /// Connect to a server on a thread; the panes move there once it answers.
    fn connect_server(&mut self, ctx: &egui::Context, request: ServerRequest) {
        let (key, _) = default_key(self.options.config_dir.as_deref());
        self.notify(format!("Connecting to {}…", request.url), false);
        match Connector::start(request, key, ctx) {
            Ok(c) => self.connector = Some(c),
            Err(e) => self.notify(e, true),
        }
    }

    fn poll_connector(&mut self) {
        let Some(result) = self.connector.as_ref().and_then(Connector::poll) else {
            return;
        };
        self.connector = None;
        match result {
            Ok(worker) => {
                for pane in &mut self.panes {
                    if pane.active() {
                        pane.status = PaneStatus::Done(RunOutcome::Cancelled);
                    }
                    pane.started = false;
                }
                self.notify(
                    format!("Connected: {}", worker.service().info().device),
                    false,
                );
                self.model = ModelSlot::Ready {
                    model: None,
                    worker,
                };
            }
            Err(e) => {
                self.connect.open = true;
                self.notify(format!("could not connect: {e}"), true);
            }
        }
    }

    fn poll_loader(&mut self) {
        let Some(loader) = &self.loader else {
            return;
        };
        for msg in loader.poll() {
            match msg {
                LoadMsg::Progress(p) => {
                    if !self.model_ready() {
                        self.model = progress_slot(&p);
                    }
                }
                LoadMsg::Done(path, Ok(opened)) => {
                    self.loader = None;
                    // `None` means the default model, fetched when missing.
                    self.settings.model_path = self.model_path.clone();
                    self.loaded_device = self.settings.device;
                    // Replacing the worker ends the old model's runs.
                    for pane in &mut self.panes {
                        if pane.active() {
                            pane.status = PaneStatus::Done(RunOutcome::Cancelled);
                        }
                        pane.started = false;
                    }
                    if self.model_ready() {
                        self.notify(format!("Opened {}", path.display()), false);
                    }
                    if let Some(note) = &opened.loaded.device_note {
                        self.notify(note.clone(), false);
                    }
                    self.model = ModelSlot::Ready {
                        model: Some(opened.loaded.model),
                        worker: opened.worker,
                    };
                }
                LoadMsg::Done(path, Err(e)) => {
                    self.loader = None;
                    let msg = format!("could not open {}: {e}", path.display());
                    self.notify(msg.clone(), true);
                    if self.model_ready() {
                        // Keep the model that works; remember it, not the broken file or
                        // the device it could not run on.
                        self.model_path = self.settings.model_path.clone();
                        self.settings.device = self.loaded_device;
                    } else {
                        self.model = ModelSlot::Failed(msg);
                    }
                }
            }
        }
    }

    fn poll_files(&mut self, ctx: &egui::Context) {
        while let Ok(p) = self.picked_rx.try_recv() {
            match p {
                Picked::File(job, path) => self.file_picked(ctx, job, path),
                Picked::Screenshot(img) => self.screenshot_taken(ctx, &img),
            }
        }
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

    /// Do what a panel asked for.
    pub fn apply(&mut self, ctx: &egui::Context, action: Action) {
        match action {
            Action::RunAll => self.run_all(),
            Action::PauseAll => self.pause_all(),
            Action::ResumeAll => self.resume_all(),
            Action::StepAll => self.step_all(),
            Action::StopAll => self.stop_all(),
            Action::SetPanes(n) => self.set_pane_count(n),
            Action::System1VsSystem2 => self.system1_vs_system2(),
            Action::OpenModel(p) => self.open_model(ctx, p),
            Action::SetDevice(d) => self.set_device(ctx, d),
            Action::OpenConnect => self.open_connect_dialog(),
            Action::Connect(request) => self.connect_server(ctx, request),
            Action::PickFile(job) => {
                pick_file(job, self.options.models_dir.clone(), self.picked_tx.clone())
            }
            Action::Branch(pane, b) => self.branch(pane, b),
            Action::StartSweep => self.start_sweep(ctx),
            Action::Focus(i) => self.focus = i.min(self.panes.len().saturating_sub(1)),
            Action::Dismiss(i) => {
                if i < self.notices.len() {
                    self.notices.remove(i);
                }
            }
            Action::Quit => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            Action::RestoreSession => self.restore_session(),
            Action::DiscardRestore => self.discard_restore(),
            Action::ConfirmOpen => self.confirm_open(),
            Action::CancelOpen => {
                if let Some((p, _)) = self.pending_open.take() {
                    self.notify(format!("Did not open {}", p.display()), false);
                }
            }
        }
    }

    /// Draw one frame.
    pub fn ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        if matches!(self.model, ModelSlot::Idle) && self.loader.is_none() {
            self.start_loading(&ctx);
        }
        self.poll_loader();
        self.poll_connector();
        self.poll_files(&ctx);
        self.poll_events();

        let mut actions = Vec::new();
        egui::Panel::top("menu").show(ui, |ui| actions.extend(menu_ui(ui, self)));
        egui::Panel::top("toolbar").show(ui, |ui| actions.extend(toolbar_ui(ui, self)));
        egui::Panel::bottom("status").show(ui, |ui| status_ui(ui, &self.model));
        if self.settings.view == View::Lab {
            let ready = self.model_ready();
            let thinking = self.thinking_format();
            egui::Panel::left("lab_controls")
                .resizable(true)
                .default_size(300.0)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| {
                        if lab_controls_ui(
                            ui,
                            &mut self.settings.lab,
                            &mut self.lab,
                            ready,
                            thinking.as_ref(),
                        ) {
                            actions.push(Action::StartSweep);
                        }
                    });
                });
            egui::CentralPanel::default().show(ui, |ui| {
                lab_plot_ui(ui, &mut self.settings.lab, &mut self.lab);
            });
        } else {
            actions.extend(self.explore_ui(ui));
        }
        let (_, key_source) = default_key(self.options.config_dir.as_deref());
        actions.extend(connect_ui(
            &ctx,
            &mut self.connect,
            &mut self.settings.server_url,
            &mut self.settings.server_model,
            key_source,
            self.connector.is_some(),
        ));
        actions.extend(notices_ui(&ctx, &self.notices));
        if let Some(offer) = &self.restore_offer {
            actions.extend(restore_ui(&ctx, offer));
        } else if let Some((path, _)) = &self.pending_open {
            let keep = self
                .options
                .config_dir
                .as_ref()
                .map(|d| d.join(autosave::BEFORE_OPEN));
            actions.extend(confirm_open_ui(&ctx, path, keep.as_deref()));
        }
        for a in actions {
            self.apply(&ctx, a);
        }
        if self.busy() {
            ctx.request_repaint_after(Duration::from_millis(250));
        }
        self.persist(false);
        self.autosave_tick();
    }

    fn explore_ui(&mut self, ui: &mut Ui) -> Vec<Action> {
        let mut actions = Vec::new();
        let panes = self.panes.len();
        let thinking = self.thinking_format();
        egui::Panel::left("controls")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    controls_ui(
                        ui,
                        &mut self.settings,
                        &mut self.focus,
                        panes,
                        thinking.as_ref(),
                    )
                });
            });
        let focus = self.focus.min(panes.saturating_sub(1));
        let can_branch = matches!(self.panes[focus].status, PaneStatus::Done(_));
        if let Some(sel) = self.panes[focus].selected {
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
                    if let Some(b) = inspector_ui(ui, &self.panes[focus].run.tree, sel, can_branch)
                    {
                        actions.push(Action::Branch(focus, b));
                    }
                });
            if close {
                self.panes[focus].selected = None;
            }
        }
        egui::CentralPanel::default().show(ui, |ui| {
            actions.extend(panes_ui(ui, &mut self.panes, &self.settings, focus));
        });
        actions
    }

    fn start_sweep(&mut self, ctx: &egui::Context) {
        let ModelSlot::Ready { model, worker } = &self.model else {
            self.notify("The model is not loaded yet.", true);
            return;
        };
        let engine = match model {
            Some(m) => SweepEngine::local(m.clone()),
            None => SweepEngine::service(worker.service().clone()),
        };
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
            .start(engine, &self.settings.lab, results, ctx.clone());
    }

    /// Save settings now (on exit).
    pub fn save_now(&mut self) {
        self.persist(true);
    }
}

impl Drop for ThinkscopeApp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A crash: the crash marker stays, so the next start offers the last autosave.
            return;
        }
        self.exit();
    }
}
