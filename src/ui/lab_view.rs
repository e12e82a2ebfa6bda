//! The scaling lab view: accuracy against test-time compute, one curve per strategy; the
//! verification gap (pass@N against the rules that pick an answer, the gap shaded); the same per
//! difficulty level; and where each curve flattens.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver};
use eframe::egui::{self, Color32, RichText, Ui};
use egui_plot::{
    FilledArea, HLine, HoverPosition, Legend, Line, LineStyle, Plot, PlotPoints, Points,
};
use serde::{Deserialize, Serialize};

use crate::ui::theme;
use thinkscope_engine::lab::sweep::{format_walls, run_sweep, SweepMode};
use thinkscope_engine::lab::{
    difficulty_bins, summarize, summarize_problems, walls, write_csv, DifficultyBin, GeneratorKind,
    GeneratorSpec, ProblemSet, SweepConfig, SweepEngine, SweepPoint, SweepProgress, Wall,
};
use thinkscope_engine::model::thinking::ThinkingFormat;

/// A doubling of N that gains less than this counts as flat.
const WALL_GAIN: f64 = 0.02;

/// One figure of a sweep point (pass@N, maj@N, …), where it has one.
type Figure = dyn Fn(&SweepPoint) -> Option<f64>;

/// Which chart the lab shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabPlot {
    /// Accuracy against compute, one curve per strategy.
    #[default]
    Curves,
    /// pass@N against maj@N, the weighted vote and best-of-N, the gap shaded.
    Gap,
    /// The gap chart once per difficulty level.
    Difficulty,
}

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
    /// Best-of-N by the self-verifier's P(yes).
    pub verifier_best_of_n: bool,
    /// The verifier-weighted vote (weighted best-of-N).
    pub weighted_vote: bool,
    /// Beam search that keeps the branches whose progress probes gained most (one run per N).
    pub beam_progress: bool,
    /// Which chart is shown.
    pub plot: LabPlot,
    /// Difficulty levels.
    pub bins: usize,
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
            verifier_best_of_n: true,
            weighted_vote: true,
            beam_progress: false,
            plot: LabPlot::Curves,
            bins: 4,
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
    Finished(Result<LabResults, String>),
}

/// What a finished sweep shows.
#[derive(Default)]
pub struct LabResults {
    /// The curves' points.
    pub points: Vec<SweepPoint>,
    /// Difficulty levels with their points.
    pub levels: Vec<(DifficultyBin, Vec<SweepPoint>)>,
    /// Where the curves flatten.
    pub walls: Vec<Wall>,
    /// The first pool strategy (whose samples the gap chart shows).
    pub pool: Option<String>,
    /// A note on the pairs that failed and were left out, if any did.
    pub note: Option<String>,
}

impl LabResults {
    fn new(
        config: &SweepConfig,
        records: &[thinkscope_engine::lab::ProblemRecord],
        bins: usize,
    ) -> Self {
        let points = summarize(config, records);
        let levels = difficulty_bins(config, records, bins)
            .into_iter()
            .map(|b| {
                let p = summarize_problems(config, records, |i| b.problems.contains(&i));
                (b, p)
            })
            .collect();
        let pool = config
            .lab_strategies()
            .unwrap_or_default()
            .into_iter()
            .find(|s| matches!(s.mode, SweepMode::Pool { .. }))
            .map(|s| s.label);
        Self {
            walls: walls(&points, WALL_GAIN),
            points,
            levels,
            pool,
            note: None,
        }
    }
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
    /// Everything else the sweep showed.
    pub results: LabResults,
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
                Ok(results) => {
                    self.points = results.points.clone();
                    self.error = results.note.clone();
                    self.results = results;
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
        if s.verifier_best_of_n {
            strategies.push("best-of-n:scorer=self-verify".to_owned());
        }
        if s.weighted_vote {
            strategies.push("weighted-vote".to_owned());
        }
        if s.beam_progress {
            strategies.push("beam:scorer=progress".to_owned());
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
        let bins = s.bins.max(1);
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
                        let mut results = LabResults::new(&config, &outcome.records, bins);
                        results.note = outcome.failed.first().map(|first| {
                            format!(
                                "{} run(s) failed and were left out of the curves; start the sweep again to retry them. First: {first}",
                                outcome.failed.len()
                            )
                        });
                        results
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
    ui.checkbox(&mut s.verifier_best_of_n, "Best-of-N by verifier (P(yes))")
        .on_hover_text("The model is asked whether each sample's answer is correct; the sample it trusts most wins.");
    ui.checkbox(&mut s.weighted_vote, "Verifier-weighted vote")
        .on_hover_text(
        "Snell et al.'s weighted best-of-N: each answer scores the summed P(yes) of its samples.",
    );
    ui.checkbox(&mut s.beam_progress, "Beam by progress (Δp̂)")
        .on_hover_text("Beam search that keeps the partial solutions whose forced-answer probes agree most with the run's consensus. One run per N, and every step is probed: slow.");
    ui.add(egui::Slider::new(&mut s.bins, 1..=8).text("Difficulty levels"))
        .on_hover_text("Problems binned by the pool's pass@1 (Snell et al. use 5), easiest first.");
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
        ui.selectable_value(&mut s.plot, LabPlot::Curves, "Accuracy vs compute");
        ui.selectable_value(&mut s.plot, LabPlot::Gap, "Verification gap")
            .on_hover_text("pass@N (some sample right) against the rules that pick one answer");
        ui.selectable_value(&mut s.plot, LabPlot::Difficulty, "By difficulty")
            .on_hover_text("The gap chart per level of problem difficulty (pass@1 bins)");
    });
    if s.plot != LabPlot::Curves && !state.points.is_empty() {
        gap_views_ui(ui, s.plot, state);
        return;
    }
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
    // Two tables below the plot: the marginal gains and the energy per correct answer.
    let table_height = 2.0 * (26.0 + 20.0 * names.len() as f32) + 40.0;
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
    energy_per_correct_ui(ui, points, &names);
}

/// Energy per correct answer: the sweep's energy over the problems it got right, per strategy
/// and N, labelled measured or estimated (and derived where N is below the sampled pool).
fn energy_per_correct_ui(ui: &mut Ui, points: &[SweepPoint], names: &[&str]) {
    let measured = !points.is_empty() && points.iter().all(|p| p.energy_measured);
    ui.label(
        RichText::new(format!(
            "Energy per correct answer, J ({}):",
            if measured { "measured" } else { "estimated" }
        ))
        .strong(),
    )
    .on_hover_text("Energy of the whole sweep for a strategy and N, divided by the answers it got right. Costs below the largest N are derived from the pool's samples, not measured; \"–\": no answer was right.");
    let mut ns: Vec<usize> = points.iter().map(|p| p.n).collect();
    ns.sort_unstable();
    ns.dedup();
    egui::Grid::new("energy_per_correct")
        .striped(true)
        .show(ui, |ui| {
            ui.label("strategy");
            for n in &ns {
                ui.label(format!("N = {n}"));
            }
            ui.end_row();
            for name in names {
                ui.label(*name);
                for &n in &ns {
                    let cell = points
                        .iter()
                        .find(|p| p.strategy == *name && p.n == n)
                        .map_or_else(String::new, |p| {
                            p.energy_per_correct.map_or_else(
                                || "–".to_owned(),
                                |j| format!("{j:.1}{}", if p.cost_derived { "*" } else { "" }),
                            )
                        });
                    ui.label(cell);
                }
                ui.end_row();
            }
        });
    ui.label(
        RichText::new("* derived from a subset of the largest N's samples")
            .small()
            .weak(),
    );
}

/// The verification gap or the difficulty view, and the walls.
fn gap_views_ui(ui: &mut Ui, plot: LabPlot, state: &mut LabState) {
    let r = &state.results;
    let Some(pool) = r.pool.clone() else {
        ui.label(RichText::new("The gap needs a sampled pool: tick self-consistency, best-of-N or the weighted vote.").weak());
        return;
    };
    let notes = 30.0 + 18.0 * r.walls.len() as f32;
    let height = (ui.available_height() - notes).max(160.0);
    if plot == LabPlot::Gap {
        let resp = gap_plot_ui(ui, "lab_gap", &r.points, &pool, height, true);
        state.plot_rect = Some(resp);
    } else if r.levels.is_empty() {
        ui.label(RichText::new("No difficulty levels: the sweep has no pool to bin by.").weak());
    } else {
        let levels = &r.levels;
        let rect = ui.columns(levels.len(), |cols| {
            let mut rect: Option<egui::Rect> = None;
            for (i, (bin, points)) in levels.iter().enumerate() {
                cols[i].label(RichText::new(bin.label()).small().strong());
                let h = height - 24.0;
                let r = gap_plot_ui(
                    &mut cols[i],
                    &format!("lab_level_{i}"),
                    points,
                    &pool,
                    h,
                    i == 0,
                );
                rect = Some(rect.map_or(r, |a| a.union(r)));
            }
            rect
        });
        state.plot_rect = rect;
    }
    ui.label(
        RichText::new("Where the curves flatten (a doubling of N gains under 2 points):").strong(),
    );
    ui.label(RichText::new(format_walls(&r.walls, WALL_GAIN)).small());
}

/// One gap chart: x = log2 N; the area between pass@N and the best picking rule shaded.
fn gap_plot_ui(
    ui: &mut Ui,
    id: &str,
    points: &[SweepPoint],
    pool: &str,
    height: f32,
    legend: bool,
) -> egui::Rect {
    let mut rows: Vec<&SweepPoint> = points.iter().filter(|p| p.strategy == pool).collect();
    rows.sort_by_key(|p| p.n);
    let x: Vec<f64> = rows.iter().map(|p| (p.n.max(1) as f64).log2()).collect();
    let picked: Vec<f64> = rows
        .iter()
        .map(|p| {
            [
                Some(p.accuracy_maj),
                Some(p.accuracy_best_of_n),
                p.accuracy_weighted_maj,
                p.accuracy_verifier,
            ]
            .into_iter()
            .flatten()
            .fold(0.0, f64::max)
        })
        .collect();
    let pass: Vec<f64> = rows.iter().map(|p| p.accuracy_pass).collect();
    let baselines: Vec<(String, f64)> = {
        let mut names: Vec<&str> = points.iter().map(|p| p.strategy.as_str()).collect();
        names.dedup();
        names
            .into_iter()
            .filter(|n| *n == "greedy" || *n == "system1")
            .filter_map(|n| {
                points
                    .iter()
                    .find(|p| p.strategy == n)
                    .map(|p| (n.to_owned(), p.accuracy))
            })
            .collect()
    };
    let mut plot = Plot::new(id.to_owned())
        .height(height)
        .include_y(0.0)
        .include_y(1.0)
        .x_axis_label("samples N")
        .y_axis_label("accuracy")
        .x_axis_formatter(|m, _| format!("{}", 2f64.powf(m.value).round()));
    if legend {
        plot = plot.legend(Legend::default());
    }
    let resp = plot.show(ui, |plot| {
        if x.len() > 1 {
            plot.add(
                FilledArea::new("verification gap", &x, &picked, &pass)
                    .fill_color(Color32::from_rgba_unmultiplied(230, 90, 90, 50)),
            );
        }
        let series: [(&str, Color32, Box<Figure>); 5] = [
            ("pass@N", Color32::GRAY, Box::new(|p| Some(p.accuracy_pass))),
            (
                "maj@N",
                theme::category(0),
                Box::new(|p| Some(p.accuracy_maj)),
            ),
            (
                "weighted maj@N",
                theme::category(2),
                Box::new(|p| p.accuracy_weighted_maj),
            ),
            (
                "best-of-N by verifier",
                theme::category(4),
                Box::new(|p| p.accuracy_verifier),
            ),
            (
                "best-of-N by confidence",
                theme::category(1),
                Box::new(|p| Some(p.accuracy_best_of_n)),
            ),
        ];
        for (name, color, f) in series {
            let pts: Option<Vec<[f64; 2]>> = rows
                .iter()
                .zip(&x)
                .map(|(p, &xx)| f(p).map(|v| [xx, v]))
                .collect();
            let Some(pts) = pts.filter(|p| !p.is_empty()) else {
                continue;
            };
            let style = if name == "pass@N" {
                LineStyle::dotted_dense()
            } else {
                LineStyle::Solid
            };
            plot.line(
                Line::new(name, PlotPoints::from(pts.clone()))
                    .color(color)
                    .width(2.0)
                    .style(style),
            );
            plot.points(
                Points::new(name, PlotPoints::from(pts))
                    .color(color)
                    .radius(3.0),
            );
        }
        for (i, (name, a)) in baselines.iter().enumerate() {
            plot.hline(
                HLine::new(format!("{name} (System 1 baseline)"), *a)
                    .color(theme::category(5 + i))
                    .style(LineStyle::dashed_loose()),
            );
        }
    });
    resp.response.rect
}

/// Write the curves' points as CSV.
pub fn export_csv(state: &LabState, path: &std::path::Path) -> anyhow::Result<()> {
    write_csv(&state.points, path).map_err(|e| anyhow::anyhow!("{e}"))
}
