//! The panes' runs: starting them on the worker, pausing, stepping and stopping them, and folding
//! the worker's events into each pane's [`RunView`].

use thinkscope_engine::events::{Event, RunId, RunOutcome};
use thinkscope_engine::strategy::{Knobs, RunConfig};
use thinkscope_engine::tree::NodeId;
use thinkscope_engine::view::RunView;
use thinkscope_engine::worker::Command;

use crate::ui::app::ThinkscopeApp;
use crate::ui::inspector::BranchRequest;
use crate::ui::loader::ModelSlot;
use crate::ui::meters::SpeedHistory;
use crate::ui::state::PaneSettings;
use crate::ui::tree_view::TreeView;

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
    /// The run: its tree, cost and outcome, folded from the worker's events.
    pub run: RunView,
    /// Whether `run` was ever started on the current worker.
    pub started: bool,
    /// Run state.
    pub status: PaneStatus,
    /// Configuration of the last run.
    pub config: Option<RunConfig>,
    /// Selected node.
    pub selected: Option<NodeId>,
    pub(crate) view: TreeView,
    pub(crate) speed: SpeedHistory,
    pub(crate) canvas: Option<eframe::egui::Rect>,
}

impl Default for Pane {
    fn default() -> Self {
        Self {
            run: RunView::default(),
            started: false,
            status: PaneStatus::Idle,
            config: None,
            selected: None,
            view: TreeView::default(),
            speed: SpeedHistory::default(),
            canvas: None,
        }
    }
}

impl Pane {
    /// Screen pixels per world unit on the pane's canvas.
    pub fn zoom(&self) -> f32 {
        self.view.zoom
    }

    /// Whether the pane's run is under way (running or paused).
    pub fn active(&self) -> bool {
        matches!(self.status, PaneStatus::Running | PaneStatus::Paused)
    }
}

/// The letter that names pane `i`.
pub fn pane_letter(i: usize) -> &'static str {
    ["A", "B", "C", "D"].get(i).copied().unwrap_or("?")
}

const PANE_DEFAULTS: [&str; 4] = ["self-consistency", "system1", "beam", "budget-forcing"];

impl ThinkscopeApp {
    pub(crate) fn send(&mut self, cmd: Command) {
        let ModelSlot::Ready { worker, .. } = &self.model else {
            self.notify("The model is not loaded yet.", true);
            return;
        };
        if let Err(e) = worker.send(cmd) {
            self.notify(format!("{e}"), true);
        }
    }

    fn send_quiet(&self, cmd: Command) {
        if let ModelSlot::Ready { worker, .. } = &self.model {
            let _ = worker.send(cmd);
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
        let config = match self.settings.panes[i]
            .run_config_with(&self.settings.prompt, Some(&self.settings.expected_answer))
        {
            Ok(c) => c,
            Err(e) => {
                self.notify(format!("Pane {}: {e}", pane_letter(i)), true);
                return;
            }
        };
        let old = &self.panes[i];
        if old.started {
            let id = old.run.run;
            if old.active() {
                self.send(Command::Cancel(id));
            }
            self.send(Command::Forget(id));
        }
        let run = self.next_run;
        self.next_run.0 += 1;
        self.edits += 1;
        self.panes[i] = Pane {
            run: RunView::new(run),
            started: true,
            status: PaneStatus::Running,
            config: Some(config.clone()),
            ..Pane::default()
        };
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
            .filter(|(_, p)| p.active())
            .map(|(i, p)| (i, p.run.run))
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
        self.panes.iter().any(Pane::active)
    }

    /// Use `n` panes (1 to 4).
    pub fn set_pane_count(&mut self, n: usize) {
        let n = n.clamp(1, 4);
        while self.settings.panes.len() < n {
            let name = PANE_DEFAULTS[self.settings.panes.len() % PANE_DEFAULTS.len()];
            self.settings.panes.push(PaneSettings::for_strategy(name));
        }
        self.settings.panes.truncate(n);
        while self.panes.len() < n {
            self.panes.push(Pane::default());
        }
        if self.panes.len() > n {
            self.edits += 1;
        }
        for p in self.panes.drain(n..).collect::<Vec<_>>() {
            if p.active() {
                self.send_quiet(Command::Cancel(p.run.run));
            }
        }
        self.focus = self.focus.min(n - 1);
    }

    /// The teaching preset: greedy System 1 beside self-consistency.
    pub fn system1_vs_system2(&mut self) {
        self.set_pane_count(2);
        // A thinking model with the switch answers at once in System 1 and thinks in System 2;
        // other models keep their template's default.
        let switchable = self.thinking_format().is_some_and(|f| f.switchable);
        let thinking = |on: bool| switchable.then_some(on);
        self.settings.panes[0] = PaneSettings::for_strategy("system1");
        self.settings.panes[0].thinking = thinking(false);
        let mut sc = PaneSettings::for_strategy("self-consistency");
        let five = Knobs {
            samples: Some(5),
            ..Knobs::default()
        };
        if let Err(e) = sc.apply_roles(&five) {
            self.notify(format!("{e}"), true);
        }
        sc.thinking = thinking(true);
        self.settings.panes[1] = sc;
        self.settings.teaching_note = true;
    }

    /// Continue a finished pane's tree with a token chosen by hand.
    pub(crate) fn branch(&mut self, pane: usize, b: BranchRequest) {
        let Some(p) = self.panes.get_mut(pane).filter(|p| p.started) else {
            return;
        };
        p.status = PaneStatus::Running;
        p.run.outcome = None;
        self.edits += 1;
        let run = p.run.run;
        self.send(Command::BranchFrom {
            run,
            node: b.node,
            index: b.index,
            token: b.token,
        });
    }

    /// Fold the worker's events into the panes, a bounded number per frame.
    pub(crate) fn poll_events(&mut self) {
        let ModelSlot::Ready { worker, .. } = &self.model else {
            return;
        };
        let mut errors = Vec::new();
        let mut applied = 0u64;
        let mut finished = false;
        // Bounded per frame so a burst of events never stalls the UI.
        for _ in 0..20_000 {
            let Ok(event) = worker.events().try_recv() else {
                break;
            };
            if event.run().is_none() {
                if let Event::Error { message, .. } = event {
                    errors.push(message);
                }
                continue;
            }
            let Some(pane) = self
                .panes
                .iter_mut()
                .find(|p| p.started && p.run.run == event.run().unwrap_or_default())
            else {
                continue;
            };
            pane.run.apply(&event);
            applied += 1;
            match &event {
                Event::Cost { cost, .. } => pane.speed.push(cost),
                Event::RunFinished { outcome, cost, .. } => {
                    pane.speed.push(cost);
                    pane.status = PaneStatus::Done(*outcome);
                    finished = true;
                }
                Event::Error { message, .. } => errors.push(message.clone()),
                _ => {}
            }
        }
        self.edits += applied;
        // A finished run is autosaved at once, not a few seconds later.
        self.autosave_now |= finished;
        for e in errors {
            self.notify(e, true);
        }
    }
}
