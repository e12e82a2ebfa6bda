//! The one way a frontend opens a local model: find it, fetch it with progress when it is the
//! default model and missing, load it onto the chosen device, and start a worker over it.
//!
//! The app (on a loader thread), the CLI and the tests all call this, so "which file, fetched
//! how, on which device, with which note" is decided in one place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::device::DevicePref;
use crate::error::Result;
use crate::fetch::{self, FetchProgress};
use crate::model::Model;
use crate::worker::{Waker, Worker, WorkerOptions};

/// What to open.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// A GGUF file; `None`: the default model in `models_dir`, fetched when missing.
    pub model: Option<PathBuf>,
    /// Where the default model lives (and is fetched to).
    pub models_dir: PathBuf,
    /// Where to run.
    pub device: DevicePref,
    /// Options of the worker.
    pub worker: WorkerOptions,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            model: None,
            models_dir: fetch::models_dir(),
            device: DevicePref::Auto,
            worker: WorkerOptions::default(),
        }
    }
}

/// Where opening a model has got to.
#[derive(Clone, Debug)]
pub enum OpenProgress {
    /// Fetching the default model.
    Fetch(FetchProgress),
    /// Loading this file.
    Loading(PathBuf),
}

/// A loaded model.
pub struct Loaded {
    /// The file it came from.
    pub path: PathBuf,
    /// The model.
    pub model: Arc<Model>,
    /// Why the device differs from the one asked for, if it does.
    pub device_note: Option<String>,
}

/// A loaded model with a worker running over it.
pub struct Opened {
    /// The model.
    pub loaded: Loaded,
    /// Its worker.
    pub worker: Worker,
}

/// The file `options` names, or the default model, fetched into `models_dir` when missing.
pub fn model_path(
    options: &OpenOptions,
    progress: &mut dyn FnMut(OpenProgress),
) -> Result<PathBuf> {
    match &options.model {
        Some(p) => Ok(p.clone()),
        None => fetch::fetch(&fetch::SMOLLM2_135M, &options.models_dir, &mut |p| {
            progress(OpenProgress::Fetch(p))
        }),
    }
}

/// Load a model file onto the device `pref` asks for.
pub fn load(path: &Path, pref: DevicePref) -> Result<Loaded> {
    let (model, device_note) = Model::load_pref(path, pref)?;
    Ok(Loaded {
        path: path.to_owned(),
        model: Arc::new(model),
        device_note,
    })
}

/// Find (and fetch) and load the model `options` names.
pub fn load_model(options: &OpenOptions, progress: &mut dyn FnMut(OpenProgress)) -> Result<Loaded> {
    let path = model_path(options, progress)?;
    progress(OpenProgress::Loading(path.clone()));
    load(&path, options.device)
}

/// Find, fetch, load, and start a worker: everything a frontend needs before its first run.
/// `waker` is called whenever the worker sends events.
pub fn open_local(
    options: &OpenOptions,
    waker: Waker,
    progress: &mut dyn FnMut(OpenProgress),
) -> Result<Opened> {
    let loaded = load_model(options, progress)?;
    let worker = Worker::spawn(loaded.model.clone(), options.worker.clone(), waker)?;
    Ok(Opened { loaded, worker })
}
