//! Finding, fetching and loading models for the command line, with a progress bar.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use thinkscope_engine::device::DevicePref;
use thinkscope_engine::fetch::{self, FetchProgress, ModelSource};
use thinkscope_engine::frontend::{self, OpenOptions, OpenProgress};
use thinkscope_engine::Model;

/// A progress bar for fetching `src`, fed by [`show`].
fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn show(bar: &ProgressBar, p: &FetchProgress) {
    match p {
        FetchProgress::Downloading { bytes, total } => {
            bar.set_message("downloading");
            bar.set_length(*total);
            bar.set_position(*bytes);
        }
        FetchProgress::Unpacking { bytes, total } => {
            bar.set_message("unpacking");
            bar.set_length(*total);
            bar.set_position(*bytes);
        }
        FetchProgress::Verifying => bar.set_message("verifying"),
        FetchProgress::Done { .. } => bar.finish_and_clear(),
    }
}

/// Fetch `src` into `dir` with a progress bar.
pub fn fetch_with_bar(src: &ModelSource, dir: &Path) -> anyhow::Result<PathBuf> {
    let bar = bar(src.download_bytes);
    let path = fetch::fetch(src, dir, &mut |p| show(&bar, &p))?;
    bar.finish_and_clear();
    Ok(path)
}

fn options(path: Option<&Path>, device: DevicePref) -> OpenOptions {
    OpenOptions {
        model: path.map(Path::to_owned),
        device,
        ..OpenOptions::default()
    }
}

/// The file `--model` names, or the default model (fetched when missing).
pub fn model_path(path: Option<&Path>) -> anyhow::Result<PathBuf> {
    let options = options(path, DevicePref::Auto);
    if path.is_none() && !fetch::default_model_path(&options.models_dir).is_file() {
        eprintln!(
            "Default model not found; fetching {} into {}",
            fetch::SMOLLM2_135M.file_name,
            options.models_dir.display()
        );
    }
    let bar = bar(fetch::SMOLLM2_135M.download_bytes);
    let path = frontend::model_path(&options, &mut |p| {
        if let OpenProgress::Fetch(p) = p {
            show(&bar, &p);
        }
    })?;
    bar.finish_and_clear();
    Ok(path)
}

/// Load the model `--model` names (or the default one) onto `device`.
pub fn load_model(path: Option<&Path>, device: DevicePref) -> anyhow::Result<Arc<Model>> {
    let path = model_path(path)?;
    let loaded =
        frontend::load(&path, device).with_context(|| format!("loading {}", path.display()))?;
    if let Some(note) = loaded.device_note {
        eprintln!("note: {note}");
    }
    Ok(loaded.model)
}
