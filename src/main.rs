//! thinkscope: the desktop app.

use std::path::PathBuf;

use clap::Parser;
use eframe::egui;
use thinkscope::ui::state::Settings;
use thinkscope::ui::{AppOptions, ThinkscopeApp};
use thinkscope_engine::fetch;

#[derive(Parser)]
#[command(name = "thinkscope", version, about = "Watch a language model think")]
struct Args {
    /// GGUF model to open (default: the last one, else SmolLM2-135M-Instruct, fetched if missing).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Folder of GGUF models (default: ./models).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Where the model runs: auto (a hardware GPU, else the CPU), cpu, or gpu (the best
    /// adapter, even a software one). Default: the last choice, else auto.
    #[arg(long)]
    device: Option<thinkscope_engine::device::DevicePref>,
    /// Worker threads for the CPU kernels (default: all cores but one, left to the UI).
    #[arg(long)]
    threads: Option<usize>,
}

struct App(ThinkscopeApp);

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.0.ui(ui);
    }

    fn on_exit(&mut self) {
        self.0.save_now();
    }
}

fn main() -> eframe::Result {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // The UI needs a core of its own; the engine's kernels get the rest.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = args
            .threads
            .unwrap_or_else(|| cores.saturating_sub(1).max(1));
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // candle's pool spins while idle; it only runs the formats without an own kernel.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let options = AppOptions {
        model_path: args.model,
        config_dir: Settings::default_dir(),
        models_dir: args.models_dir.unwrap_or_else(fetch::models_dir),
        device: args.device,
    };
    let icon = eframe::icon_data::from_png_bytes(include_bytes!("../assets/icon.png")).ok();
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("thinkscope")
        .with_app_id("thinkscope")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([720.0, 480.0]);
    if let Some(icon) = icon {
        viewport = viewport.with_icon(icon);
    }
    let native = eframe::NativeOptions {
        viewport,
        ..Default::default()
    };
    eframe::run_native(
        "thinkscope",
        native,
        Box::new(move |_cc| Ok(Box::new(App(ThinkscopeApp::new(options))))),
    )
}
