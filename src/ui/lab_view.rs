//! The scaling lab view: accuracy against test-time compute, one curve per strategy.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver};
use eframe::egui::{self, Color32, RichText, Ui};
use egui_plot::{HLine, HoverPosition, Legend, Line, LineStyle, Plot, PlotPoints, Points};
use serde::{Deserialize, Serialize};

use crate::ui::theme;
use thinkscope_engine::lab::sweep::run_sweep;
use thinkscope_engine::lab::{
    summarize, write_csv, GeneratorKind, GeneratorSpec, ProblemSet, SweepConfig, SweepEngine,
    SweepPoint, SweepProgress,
};
use thinkscope_engine::model::thinking::ThinkingFormat;

/// Which compute measure the x-axis shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum XAxis {
    /// Tokens computed per problem.
    #[default]
    Tokens,
    /// Wall seconds per problem.
    Seconds,
    /// Joules per problem.
    Joules,
}

impl XAxis {
    fn label(self) -> &'static str {
        match self {
            Self::Tokens => "tokens per problem",
            Self::Seconds => "seconds per problem",
            Self::Joules => "joules per problem",
        }
    }

    fn value(self, p: &SweepPoint) -> f64 {
        match self {
            Self::Tokens => p.tokens,
            Self::Seconds => p.wall_secs,
            Self::Joules => p.energy_joules,
        }
    }
}

/// Lab settings that persist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabSettings {
    /// Word problems instead of bare arithmetic.
    pub word_problems: bool,
    /// Number of generated problems.
    pub count: usize,
    /// Generator difficulty (1..=3).
    pub difficulty: u8,
    /// A JSONL problem set to use instead of the generator.
    pub set_path: Option<PathBuf>,
    /// Strategies to sweep.
    pub greedy: bool,
    /// Self-consistency (maj@N).
    pub self_consistency: bool,
    /// Best-of-N by the model's confidence.
    pub best_of_n: bool,
    /// Largest N.
    pub max_n: usize,
    /// Tokens per sample.
    pub max_tokens: usize,
    /// Seed.
    pub seed: u64,
    /// x-axis measure.
    pub x_axis: XAxis,
    /// Thinking on or off for a thinking model with the switch (`None`: the template's default).
    pub thinking: Option<bool>,
}

impl Default for LabSettings {
    fn default() -> Self {
        Self {
            word_problems: false,
            count: 8,
            difficulty: 1,
            set_path: None,
            greedy: true,
            self_consistency: true,
            best_of_n: true,
            max_n: 8,
            max_tokens: 96,
            seed: 1,
            x_axis: XAxis::Tokens,
            thinking: None,
        }
    }
}

enum Msg {
    Progress {
        done: usize,
        total: usize,
        current: String,
    },
    /// The points, and a note on the pairs that failed.
    Finished(Result<(Vec<SweepPoint>, Option<String>), String>),
}

/// A running or finished sweep.
#[derive(Default)]
pub struct LabState {
    rx: Option<Receiver<Msg>>,
    cancel: Option<Arc<AtomicBool>>,
    /// Finished pairs and the total.
    pub progress: (usize, usize),
    current: String,
    /// The curves' points.
    pub points: Vec<SweepPoint>,
    error: Option<String>,
    plot_rect: Option<egui::Rect>,
}

impl LabState {
    /// Whether a sweep runs.
    pub fn running(&self) -> bool {
        self.rx.is_some()
    }

    /// Screen rectangle of the plot (PNG export).
    pub fn plot_rect(&self) -> Option<egui::Rect> {
        self.plot_rect
    }

    fn poll(&mut self) {
        let Some(rx) = &self.rx else { return };
        let mut finished = None;
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Progress {
                    done,
                    total,
                    current,
                } => {
                    self.progress = (done, total);
                    self.current = current;
                }
                Msg::Finished(r) => finished = Some(r),
            }
        }
        if let Some(r) = finished {
            self.rx = None;
            self.cancel = None;
            match r {
                Ok((points, failures)) => {
                    self.points = points;
                    self.error = failures;
                }
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// Start a sweep on a background thread.
    pub fn start(
        &mut self,
        engine: SweepEngine,
        s: &LabSettings,
        results: PathBuf,
        ctx: egui::Context,
    ) {
        self.error = None;
        let problems = match &s.set_path {
            Some(p) => match ProblemSet::load(p) {
                Ok(set) => set,
                Err(e) => {
                    self.error = Some(format!("{e}"));
                    return;
                }
            },
            None => ProblemSet::generate(
                &GeneratorSpec {
                    kind: if s.word_problems {
                        GeneratorKind::Word
                    } else {
                        GeneratorKind::Arithmetic
                    },
                    count: s.count,
                    difficulty: s.difficulty,
                },
                s.seed,
            ),
        };
        let mut strategies = Vec::new();
        if s.greedy {
            strategies.push("greedy".to_owned());
        }
        if s.self_consistency {
            strategies.push("self-consistency".to_owned());
        }
        if s.best_of_n {
            strategies.push("best-of-n".to_owned());
        }
        if strategies.is_empty() {
            self.error = Some("choose at least one strategy".into());
            return;
        }
        let config = SweepConfig {
            strategies,
            max_n: s.max_n,
            problems,
            seed: s.seed,
            max_tokens: s.max_tokens,
            thinking: s.thinking,
            ..SweepConfig::default()
        };
        if let Err(e) = config.validate() {
            self.error = Some(format!("{e}"));
            return;
        }
        let (tx, rx) = unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("thinkscope-lab".into())
            .spawn(move || {
                let mut on_progress = |p: SweepProgress| {
                    let msg = match p {
                        SweepProgress::Started { total, done, .. } => Some(Msg::Progress {
                            done,
                            total,
                            current: String::new(),
                        }),
                        SweepProgress::PairStarted {
                            problem_id,
                            strategy,
                            ..
                        } => Some(Msg::Progress {
                            done: usize::MAX,
                            total: 0,
                            current: format!("{strategy} on {problem_id}"),
                        }),
                        SweepProgress::PairFinished { done, total, .. } => Some(Msg::Progress {
                            done,
                            total,
                            current: String::new(),
                        }),
                        SweepProgress::PairFailed {
                            failure,
                            done,
                            total,
                        } => Some(Msg::Progress {
                            done,
                            total,
                            current: format!("failed: {failure}"),
                        }),
                        SweepProgress::Engine(_) => None,
                    };
                    if let Some(m) = msg {
                        let _ = tx.send(m);
                        ctx.request_repaint();
                    }
                };
                let result = run_sweep(&engine, &config, &results, &flag, &mut on_progress)
                    .map(|outcome| {
                        let note = outcome.failed.first().map(|first| {
                            format!(
                                "{} run(s) failed and were left out of the curves; start the sweep again to retry them. First: {first}",
                                outcome.failed.len()
                            )
                        });
                        (summarize(&config, &outcome.records), note)
                    })
                    .map_err(|e| format!("{e}"));
                let _ = tx.send(Msg::Finished(result));
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.rx = Some(rx);
                self.cancel = Some(cancel);
                self.progress = (0, 0);
            }
            Err(e) => self.error = Some(format!("could not start the sweep: {e}")),
        }
    }

    /// Stop the sweep; finished problems stay in the results file.
    pub fn cancel(&self) {
        if let Some(c) = &self.cancel {
            c.store(true, Ordering::Relaxed);
        }
    }
}

/// The lab's controls (left panel); `thinking` is how the loaded model marks its thinking, if
/// it thinks. Returns true when Start was pressed.
pub fn lab_controls_ui(
    ui: &mut Ui,
    s: &mut LabSettings,
    state: &mut LabState,
    model_ready: bool,
    thinking: Option<&ThinkingFormat>,
) -> bool {
    state.poll();
    let mut start = false;
    ui.heading("Scaling lab");
    ui.label(RichText::new("Where does more thinking stop paying? Each problem is sampled once at the largest N; smaller N are derived from subsets with unbiased estimators.").small().weak());
    ui.separator();
    ui.label(RichText::new("Problems").strong());
    match &s.set_path {
        Some(p) => {
            ui.label(format!("Set: {}", p.display()));
            if ui.small_button("Use the generator instead").clicked() {
                s.set_path = None;
            }
        }
        None => {
            ui.horizontal(|ui| {
                ui.radio_value(&mut s.word_problems, false, "Arithmetic");
                ui.radio_value(&mut s.word_problems, true, "Word problems");
            });
            ui.add(
                egui::Slider::new(&mut s.count, 1..=200)
                    .logarithmic(true)
                    .text("Problems"),
            )
            .on_hover_text("How many problems the built-in generator makes.");
            ui.add(egui::Slider::new(&mut s.difficulty, 1..=3).text("Difficulty"))
                .on_hover_text("1: one small operation; 2: two operations; 3: three operations on larger numbers.");
        }
    }
    ui.separator();
    ui.label(RichText::new("Strategies").strong());
    ui.checkbox(&mut s.greedy, "Greedy (System 1 baseline)");
    ui.checkbox(&mut s.self_consistency, "Self-consistency (maj@N)");
    ui.checkbox(&mut s.best_of_n, "Best-of-N (model's confidence)");
    crate::ui::controls::thinking_switch_ui(ui, &mut s.thinking, thinking);
    let mut exp = (s.max_n.max(1) as f64).log2().round() as u32;
    ui.add(
        egui::Slider::new(&mut exp, 0..=6)
            .text("Largest N (2^k)")
            .custom_formatter(|v, _| format!("{}", 1u32 << v as u32)),
    )
    .on_hover_text("Budgets 1, 2, 4, … up to this N.");
    s.max_n = 1 << exp;
    ui.add(
        egui::Slider::new(&mut s.max_tokens, 16..=512)
            .logarithmic(true)
            .text("Tokens per sample"),
    );
    ui.horizontal(|ui| {
        let l = ui.label("Seed");
        ui.add(egui::DragValue::new(&mut s.seed)).labelled_by(l.id);
    });
    ui.separator();
    ui.horizontal(|ui| {
        if state.running() {
            if ui.button("Cancel sweep").clicked() {
                state.cancel();
            }
        } else if ui
            .add_enabled(
                model_ready,
                egui::Button::new(RichText::new("Start sweep").strong()),
            )
            .clicked()
        {
            start = true;
        }
    });
    if state.running() {
        let (done, total) = state.progress;
        let frac = if total > 0 && done != usize::MAX {
            done as f32 / total as f32
        } else {
            0.0
        };
        ui.add(egui::ProgressBar::new(frac).show_percentage());
        if !state.current.is_empty() {
            ui.label(RichText::new(format!("running {}", state.current)).small());
        }
        ui.label(RichText::new("Finished problems are kept: a cancelled or interrupted sweep resumes where it stopped.").small().weak());
    }
    if let Some(e) = &state.error {
        ui.label(RichText::new(e).color(Color32::from_rgb(230, 90, 90)));
    }
    start
}

/// The plot and the marginal-gain table (central panel).
pub fn lab_plot_ui(ui: &mut Ui, s: &mut LabSettings, state: &mut LabState) {
    ui.horizontal(|ui| {
        ui.label("Compute on the x-axis:");
        for x in [XAxis::Tokens, XAxis::Seconds, XAxis::Joules] {
            ui.selectable_value(&mut s.x_axis, x, x.label());
        }
    });
    let points = &state.points;
    if points.is_empty() {
        ui.centered_and_justified(|ui| {
            ui.label(
                RichText::new(
                    "Start a sweep: accuracy against compute appears here, one curve per strategy.",
                )
                .weak(),
            );
        });
        return;
    }
    let x_axis = s.x_axis;
    let mut names: Vec<&str> = points.iter().map(|p| p.strategy.as_str()).collect();
    names.dedup();
    let energy_note = if points.iter().all(|p| p.energy_measured) {
        "measured"
    } else {
        "estimated"
    };
    let table_height = 26.0 + 20.0 * names.len() as f32;
    let plot_height = (ui.available_height() - table_height - 30.0).max(150.0);
    let resp = Plot::new("lab_plot")
        .height(plot_height)
        .legend(Legend::default())
        .x_axis_label(format!(
            "{} (log scale){}",
            x_axis.label(),
            if x_axis == XAxis::Joules {
                format!(", {energy_note}")
            } else {
                String::new()
            }
        ))
        .y_axis_label("accuracy")
        .include_y(0.0)
        .include_y(1.0)
        .x_axis_formatter(|m, _| {
            let v = 10f64.powf(m.value);
            if v >= 100.0 {
                format!("{v:.0}")
            } else if v >= 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            }
        })
        .label_formatter(move |hover| match hover {
            HoverPosition::NearDataPoint {
                plot_name,
                position,
                ..
            } => Some(format!(
                "{plot_name}\n{:.3} {}\naccuracy {:.0}%",
                10f64.powf(position.x),
                x_axis.label(),
                position.y * 100.0
            )),
            HoverPosition::Elsewhere { .. } => None,
        })
        .show(ui, |plot| {
            for (i, name) in names.iter().enumerate() {
                let series: Vec<[f64; 2]> = points
                    .iter()
                    .filter(|p| p.strategy == *name)
                    .map(|p| [x_axis.value(p).max(1e-9).log10(), p.accuracy])
                    .collect();
                let color = theme::category(i);
                if *name == "greedy" || *name == "system1" {
                    if let Some(first) = series.first() {
                        plot.hline(
                            HLine::new(format!("{name} (System 1 baseline)"), first[1])
                                .color(color)
                                .style(LineStyle::dashed_loose()),
                        );
                        plot.points(
                            Points::new(*name, PlotPoints::from(vec![*first]))
                                .color(color)
                                .radius(4.0),
                        );
                    }
                    continue;
                }
                plot.line(
                    Line::new(*name, PlotPoints::from(series.clone()))
                        .color(color)
                        .width(2.0),
                );
                plot.points(
                    Points::new(*name, PlotPoints::from(series))
                        .color(color)
                        .radius(3.5),
                );
            }
        });
    state.plot_rect = Some(resp.response.rect);
    ui.label(RichText::new("Marginal gain per doubling of N (accuracy points):").strong());
    egui::Grid::new("gains").striped(true).show(ui, |ui| {
        ui.label("strategy");
        let ns: Vec<usize> = {
            let mut v: Vec<usize> = points.iter().map(|p| p.n).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        for w in ns.windows(2) {
            ui.label(format!("{} to {}", w[0], w[1]));
        }
        ui.end_row();
        for name in &names {
            ui.label(*name);
            let acc = |n: usize| {
                points
                    .iter()
                    .find(|p| p.strategy == *name && p.n == n)
                    .map(|p| p.accuracy)
            };
            for w in ns.windows(2) {
                match (acc(w[0]), acc(w[1])) {
                    (Some(a), Some(b)) => ui.label(format!("{:+.1}", (b - a) * 100.0)),
                    _ => ui.label("–"),
                };
            }
            ui.end_row();
        }
    });
}

/// Write the curves' points as CSV.
pub fn export_csv(state: &LabState, path: &std::path::Path) -> anyhow::Result<()> {
    write_csv(&state.points, path).map_err(|e| anyhow::anyhow!("{e}"))
}
