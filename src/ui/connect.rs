//! "Connect to server…": run the panes and the lab on an OpenAI-compatible server (vLLM, SGLang,
//! llama.cpp's server, llama-cpp-python) instead of a local GGUF.
//!
//! The API key comes from THINKSCOPE_API_KEY or OPENAI_API_KEY, else from the file `api-key` in
//! the app's settings folder, else from the dialog (kept in memory for this session). It is never
//! written by the app: not to settings, not to session or export files (`ApiKey` has no
//! `Serialize`). Connecting runs on a thread of its own, so the UI keeps drawing.

use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver};
use eframe::egui::{self, Ui};
use thinkscope_engine::service::SequenceService;
use thinkscope_engine::worker::{Worker, WorkerOptions};
use thinkscope_remote::service::{RemoteOptions, RemoteService};
use thinkscope_remote::{ApiKey, Client, ServerConfig};

use crate::ui::action::Action;

/// Where the key came from, for the dialog's note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable.
    Env,
    /// `api-key` in the settings folder.
    SettingsFolder,
    /// None found: the dialog's field.
    Dialog,
}

/// The key to use before the user types one: environment first, then the settings folder.
pub fn default_key(config_dir: Option<&Path>) -> (Option<ApiKey>, KeySource) {
    if let Some(k) = ApiKey::from_env() {
        return (Some(k), KeySource::Env);
    }
    let from_file = config_dir
        .map(|d| d.join("api-key"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| ApiKey::new(&t));
    match from_file {
        Some(k) => (Some(k), KeySource::SettingsFolder),
        None => (None, KeySource::Dialog),
    }
}

/// What the dialog asks to connect to.
#[derive(Clone, Debug)]
pub struct ServerRequest {
    /// Base URL as typed.
    pub url: String,
    /// Model on the server (empty: its only one).
    pub model: String,
    /// A key typed into the dialog (else the default key is used).
    pub key: Option<ApiKey>,
}

/// The dialog's state (not persisted; the URL and model are, in the settings).
#[derive(Default)]
pub struct ConnectDialog {
    /// Shown.
    pub open: bool,
    /// A key typed in the dialog, for this session only.
    pub key_text: String,
}

/// Draw the dialog; returns the connect request when the user presses Connect.
pub fn connect_ui(
    ctx: &egui::Context,
    dialog: &mut ConnectDialog,
    url: &mut String,
    model: &mut String,
    key_source: KeySource,
    busy: bool,
) -> Option<Action> {
    if !dialog.open {
        return None;
    }
    let mut out = None;
    let mut open = dialog.open;
    egui::Window::new("Connect to server")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .show(ctx, |ui: &mut Ui| {
            ui.label(
                "An OpenAI-compatible server: vLLM, SGLang, llama.cpp server, llama-cpp-python.",
            );
            egui::Grid::new("connect_grid")
                .num_columns(2)
                .show(ui, |ui| {
                    ui.label("URL");
                    ui.add(egui::TextEdit::singleline(url).hint_text("http://127.0.0.1:8000/v1"));
                    ui.end_row();
                    ui.label("Model");
                    ui.add(
                        egui::TextEdit::singleline(model).hint_text("(the server's only model)"),
                    );
                    ui.end_row();
                    ui.label("API key");
                    match key_source {
                        KeySource::Env => {
                            ui.label("from THINKSCOPE_API_KEY / OPENAI_API_KEY");
                        }
                        KeySource::SettingsFolder => {
                            ui.label("from api-key in the settings folder");
                        }
                        KeySource::Dialog => {
                            ui.add(
                                egui::TextEdit::singleline(&mut dialog.key_text)
                                    .password(true)
                                    .hint_text("none (kept for this session only)"),
                            );
                        }
                    }
                    ui.end_row();
                });
            ui.horizontal(|ui| {
                let go = ui.add_enabled(
                    !busy && !url.trim().is_empty(),
                    egui::Button::new("Connect"),
                );
                if go.clicked() {
                    out = Some(Action::Connect(ServerRequest {
                        url: url.trim().to_owned(),
                        model: model.trim().to_owned(),
                        key: ApiKey::new(&dialog.key_text),
                    }));
                }
                if busy {
                    ui.spinner();
                    ui.label("connecting…");
                }
            });
        });
    dialog.open = open && out.is_none();
    out
}

/// A connection being made on a thread of its own.
pub struct Connector {
    rx: Receiver<Result<Worker, String>>,
}

impl Connector {
    /// Connect, probe and start a worker over the server. `key` overrides the default key.
    pub fn start(
        request: ServerRequest,
        default_key: Option<ApiKey>,
        ctx: &egui::Context,
    ) -> Result<Self, String> {
        let (tx, rx) = unbounded();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("thinkscope-connect".into())
            .spawn(move || {
                let mut config = ServerConfig::new(request.url.clone());
                config.api_key = request.key.or(default_key);
                let model = (!request.model.is_empty()).then_some(request.model.as_str());
                let waker_ctx = ctx.clone();
                let result = Client::connect(config, model)
                    .map_err(|e| e.to_string())
                    .and_then(|client| {
                        RemoteService::new(client, RemoteOptions::default())
                            .map_err(|e| e.to_string())
                    })
                    .and_then(|service| {
                        let service: Arc<dyn SequenceService> = Arc::new(service);
                        Worker::with_service(
                            service,
                            WorkerOptions::default(),
                            Arc::new(move || waker_ctx.request_repaint()),
                        )
                        .map_err(|e| e.to_string())
                    });
                let _ = tx.send(result);
                ctx.request_repaint();
            })
            .map_err(|e| format!("could not start the connect thread: {e}"))?;
        Ok(Self { rx })
    }

    /// The outcome, once there is one.
    pub fn poll(&self) -> Option<Result<Worker, String>> {
        self.rx.try_recv().ok()
    }
}
