//! Events from a run: the one stream every viewer (app, CLI, lab, tests) folds into its tree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cost::CostSnapshot;
use crate::model::sampling::TokenInfo;
use crate::tree::{NodeId, NodeKind, Scores, Segment};

/// Identifies a run (one strategy on one prompt), chosen by the frontend that starts it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct RunId(pub u64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The strategy finished.
    Completed,
    /// The user cancelled it.
    Cancelled,
    /// It failed; an `Error` event says why.
    Failed,
}

/// What the worker tells the UI.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run began.
    RunStarted {
        /// The run.
        run: RunId,
        /// Strategy name.
        strategy: String,
    },
    /// A node joined the tree.
    NodeAdded {
        /// The run.
        run: RunId,
        /// New node id (always the next index).
        node: NodeId,
        /// Its parent.
        parent: Option<NodeId>,
        /// What it holds.
        kind: NodeKind,
        /// Short label.
        label: String,
        /// Initial text (the prompt for the root).
        text: String,
        /// Set when the node branches inside its parent: how many parent tokens it keeps.
        #[serde(default)]
        fork_at: Option<usize>,
    },
    /// Tokens were generated (or inserted) in a node.
    TokensAppended {
        /// The run.
        run: RunId,
        /// The node.
        node: NodeId,
        /// The tokens.
        tokens: Vec<TokenInfo>,
    },
    /// From token `at` of a node on, its tokens are in `segment` (a thinking model's thinking
    /// or answer). Sent when a node starts and where a thinking delimiter opens or closes.
    SegmentStarted {
        /// The run.
        run: RunId,
        /// The node.
        node: NodeId,
        /// Index of the segment's first token in the node (its length when the next token
        /// starts the segment).
        at: usize,
        /// The segment.
        segment: Segment,
    },
    /// A node's scores changed.
    NodeScored {
        /// The run.
        run: RunId,
        /// The node.
        node: NodeId,
        /// All its scores.
        scores: Scores,
    },
    /// A node stopped generating.
    NodeFinished {
        /// The run.
        run: RunId,
        /// The node.
        node: NodeId,
        /// The answer extracted from its path.
        answer: Option<String>,
    },
    /// A node's progress probes were scored (or rescored against the run's final consensus).
    NodeProgress {
        /// The run.
        run: RunId,
        /// The node.
        node: NodeId,
        /// Its progress estimate.
        progress: crate::progress::Progress,
    },
    /// A node was abandoned.
    NodePruned {
        /// The run.
        run: RunId,
        /// The node.
        node: NodeId,
    },
    /// The strategy picked its answer.
    AnswerChosen {
        /// The run.
        run: RunId,
        /// The node whose path gives the answer.
        node: Option<NodeId>,
        /// The answer.
        answer: Option<String>,
        /// Vote tally, when the strategy votes.
        tally: BTreeMap<String, u32>,
    },
    /// Running cost figures.
    Cost {
        /// The run.
        run: RunId,
        /// The figures.
        cost: CostSnapshot,
    },
    /// The run is over.
    RunFinished {
        /// The run.
        run: RunId,
        /// How it ended.
        outcome: RunOutcome,
        /// Final cost.
        cost: CostSnapshot,
    },
    /// Something failed.
    Error {
        /// The run, if the error belongs to one.
        run: Option<RunId>,
        /// What went wrong, for the user.
        message: String,
    },
}

impl Event {
    /// The run an event belongs to.
    pub fn run(&self) -> Option<RunId> {
        match self {
            Event::RunStarted { run, .. }
            | Event::NodeAdded { run, .. }
            | Event::TokensAppended { run, .. }
            | Event::SegmentStarted { run, .. }
            | Event::NodeScored { run, .. }
            | Event::NodeFinished { run, .. }
            | Event::NodePruned { run, .. }
            | Event::NodeProgress { run, .. }
            | Event::AnswerChosen { run, .. }
            | Event::Cost { run, .. }
            | Event::RunFinished { run, .. } => Some(*run),
            Event::Error { run, .. } => *run,
        }
    }
}
