//! Folding a run's events into what a viewer shows: its tree, its cost and how it ended.
//!
//! Every viewer — the app's panes, `thinkscope-cli run`, the lab's sweeps, the tests — reads the
//! same events through [`RunView`], so they all show the same tree by construction, and
//! [`run_to_end`] is the one loop that sends a run and waits for its end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

use crate::cost::CostSnapshot;
use crate::error::{EngineError, Result};
use crate::events::{Event, RunId, RunOutcome};
use crate::strategy::RunConfig;
use crate::tree::{Node, NodeStatus, Scores, Tree};
use crate::worker::{Command, Worker};

impl Tree {
    /// Apply one event. Events for other runs or unknown nodes are ignored.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::NodeAdded {
                node,
                parent,
                kind,
                label,
                text,
                fork_at,
                ..
            } => {
                if node.index() != self.nodes.len()
                    || parent.is_some_and(|p| p.index() >= self.nodes.len())
                {
                    return;
                }
                if let Some(p) = parent {
                    self.nodes[*p].children.push(*node);
                }
                self.nodes.push(Node {
                    id: *node,
                    parent: *parent,
                    children: Vec::new(),
                    kind: *kind,
                    label: label.clone(),
                    fork_at: *fork_at,
                    text: text.clone(),
                    tokens: Vec::new(),
                    status: NodeStatus::Running,
                    scores: Scores::default(),
                    answer: None,
                    segments: Vec::new(),
                    progress: None,
                });
            }
            Event::TokensAppended { node, tokens, .. } => {
                if let Some(n) = self.nodes.get_mut(node.index()) {
                    for t in tokens {
                        n.text.push_str(&t.text);
                    }
                    n.tokens.extend(tokens.iter().cloned());
                }
            }
            Event::SegmentStarted {
                node, at, segment, ..
            } => {
                if let Some(n) = self.nodes.get_mut(node.index()) {
                    n.mark_segment(*at, *segment);
                }
            }
            Event::NodeScored { node, scores, .. } => {
                if let Some(n) = self.nodes.get_mut(node.index()) {
                    n.scores = scores.clone();
                }
            }
            Event::NodeFinished { node, answer, .. } => {
                if let Some(n) = self.nodes.get_mut(node.index()) {
                    if n.status == NodeStatus::Running {
                        n.status = NodeStatus::Finished;
                    }
                    n.answer = answer.clone();
                }
            }
            Event::NodePruned { node, .. } => {
                if let Some(n) = self.nodes.get_mut(node.index()) {
                    n.status = NodeStatus::Pruned;
                }
            }
            Event::NodeProgress { node, progress, .. } => {
                if let Some(n) = self.nodes.get_mut(node.index()) {
                    n.progress = Some(progress.clone());
                }
            }
            Event::AnswerChosen {
                node,
                answer,
                tally,
                ..
            } => {
                self.chosen = *node;
                self.answer = answer.clone();
                self.tally = tally.clone();
                let mut cur = *node;
                while let Some(id) = cur {
                    let Some(n) = self.nodes.get_mut(id.index()) else {
                        break;
                    };
                    n.status = NodeStatus::Chosen;
                    cur = n.parent;
                }
            }
            Event::RunFinished { .. } => {
                for n in &mut self.nodes {
                    if n.status == NodeStatus::Running {
                        n.status = NodeStatus::Finished;
                    }
                }
            }
            Event::RunStarted { .. } | Event::Cost { .. } | Event::Error { .. } => {}
        }
    }
}

/// One run as a viewer sees it.
#[derive(Clone, Debug, Default)]
pub struct RunView {
    /// The run.
    pub run: RunId,
    /// Its strategy's name, once it started.
    pub strategy: Option<String>,
    /// The tree so far.
    pub tree: Tree,
    /// The latest cost figures.
    pub cost: CostSnapshot,
    /// How it ended, once it has.
    pub outcome: Option<RunOutcome>,
    /// Error messages it reported.
    pub errors: Vec<String>,
}

impl RunView {
    /// A view of `run`, before any event.
    pub fn new(run: RunId) -> Self {
        Self {
            run,
            ..Self::default()
        }
    }

    /// Fold one event in; `false` (and nothing changes) when it belongs to another run.
    pub fn apply(&mut self, event: &Event) -> bool {
        if event.run() != Some(self.run) {
            return false;
        }
        self.tree.apply(event);
        match event {
            Event::RunStarted { strategy, .. } => {
                self.strategy = Some(strategy.clone());
                self.outcome = None;
            }
            Event::Cost { cost, .. } => self.cost = cost.clone(),
            Event::RunFinished { outcome, cost, .. } => {
                self.cost = cost.clone();
                self.outcome = Some(*outcome);
            }
            Event::Error { message, .. } => self.errors.push(message.clone()),
            _ => {}
        }
        true
    }

    /// Whether the run has ended.
    pub fn finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// The run's errors in one line.
    pub fn error_line(&self) -> String {
        if self.errors.is_empty() {
            "the run failed".into()
        } else {
            self.errors.join("; ")
        }
    }
}

/// How [`run_to_end`] waits.
#[derive(Default)]
pub struct Watch<'a> {
    /// Set to cancel the run (checked every 50 ms).
    pub cancel: Option<&'a AtomicBool>,
    /// Give up when no event arrives for this long (`None`: wait as long as it takes).
    pub idle_timeout: Option<Duration>,
}

/// Start `config` as run `run` on `worker` and fold its events until it ends; `on_event` sees
/// each of the run's events after it is folded in. Events of other runs are skipped. The view
/// comes back whatever the outcome (check [`RunView::outcome`]).
pub fn run_to_end(
    worker: &Worker,
    run: RunId,
    config: RunConfig,
    watch: Watch<'_>,
    mut on_event: impl FnMut(&RunView, &Event),
) -> Result<RunView> {
    worker.send(Command::Run {
        run,
        config: Box::new(config),
    })?;
    let mut view = RunView::new(run);
    let mut cancel_sent = false;
    let mut idle = Duration::ZERO;
    let tick = Duration::from_millis(50);
    while !view.finished() {
        if !cancel_sent && watch.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            worker.send(Command::Cancel(run))?;
            cancel_sent = true;
        }
        let event = match worker.events().recv_timeout(tick) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => {
                idle += tick;
                if watch.idle_timeout.is_some_and(|t| idle >= t) {
                    return Err(EngineError::WorkerGone(format!(
                        "run {run} sent nothing for {} s",
                        idle.as_secs()
                    )));
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(EngineError::WorkerGone("the event channel closed".into()))
            }
        };
        idle = Duration::ZERO;
        if view.apply(&event) {
            on_event(&view, &event);
        }
    }
    Ok(view)
}
