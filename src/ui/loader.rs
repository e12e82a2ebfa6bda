//! Opening a model in the background: find, fetch with progress, load, start the worker (the
//! engine's [`thinkscope_engine::frontend::open_local`]), while the UI keeps drawing.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver};
use eframe::egui;
use thinkscope_engine::fetch::FetchProgress;
use thinkscope_engine::frontend::{self, OpenOptions, OpenProgress, Opened};
use thinkscope_engine::worker::Worker;
use thinkscope_engine::Model;

/// Where the model is.
pub enum ModelSlot {
    /// Nothing asked for yet.
    Idle,
    /// Fetching the default model.
    Fetching {
        /// What the fetch is doing.
        stage: &'static str,
        /// Bytes done.
        bytes: u64,
        /// Bytes in all.
        total: u64,
    },
    /// Loading a file.
    Loading(PathBuf),
    /// Loaded, with a worker.
    Ready {
        /// The model; `None` when the worker runs on a server.
        model: Option<Arc<Model>>,
        /// Its worker.
        worker: Worker,
    },
    /// Loading failed (and no other model is loaded).
    Failed(String),
}

/// What a loader thread reports.
pub enum LoadMsg {
    /// Progress.
    Progress(OpenProgress),
    /// The model file and its outcome.
    Done(PathBuf, Result<Opened, String>),
}

/// A model being opened on a thread of its own.
pub struct Loader {
    rx: Receiver<LoadMsg>,
}

impl Loader {
    /// Start opening `options.model` (or the default model). `wake` repaints the UI.
    pub fn start(options: OpenOptions, ctx: &egui::Context) -> Result<Self, String> {
        let (tx, rx) = unbounded();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("thinkscope-load".into())
            .spawn(move || {
                let waker_ctx = ctx.clone();
                let waker = Arc::new(move || waker_ctx.request_repaint());
                let fallback = options.model.clone().unwrap_or_else(|| {
                    thinkscope_engine::fetch::default_model_path(&options.models_dir)
                });
                let mut path = fallback;
                let result = frontend::open_local(&options, waker, &mut |p| {
                    if let OpenProgress::Loading(p) = &p {
                        path = p.clone();
                    }
                    let _ = tx.send(LoadMsg::Progress(p));
                    ctx.request_repaint();
                });
                let _ = tx.send(LoadMsg::Done(path, result.map_err(|e| e.to_string())));
                ctx.request_repaint();
            })
            .map_err(|e| format!("could not start the loader thread: {e}"))?;
        Ok(Self { rx })
    }

    /// Messages that arrived since the last frame.
    pub fn poll(&self) -> Vec<LoadMsg> {
        self.rx.try_iter().collect()
    }
}

/// The slot a fetch or load in progress shows.
pub fn progress_slot(p: &OpenProgress) -> ModelSlot {
    match p {
        OpenProgress::Fetch(FetchProgress::Downloading { bytes, total }) => ModelSlot::Fetching {
            stage: "downloading",
            bytes: *bytes,
            total: *total,
        },
        OpenProgress::Fetch(FetchProgress::Unpacking { bytes, total }) => ModelSlot::Fetching {
            stage: "unpacking",
            bytes: *bytes,
            total: *total,
        },
        OpenProgress::Fetch(FetchProgress::Verifying) => ModelSlot::Fetching {
            stage: "verifying",
            bytes: 1,
            total: 1,
        },
        OpenProgress::Fetch(FetchProgress::Done { path }) | OpenProgress::Loading(path) => {
            ModelSlot::Loading(path.clone())
        }
    }
}
