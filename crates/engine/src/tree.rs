//! The reasoning tree: nodes are spans of generated tokens, children are branches.
//!
//! A tree is built only by applying [`crate::events::Event`]s (`Tree::apply`, in `view.rs`), in the
//! strategy thread and in every viewer alike, so what the GUI, the CLI and the tests see is the
//! same tree by construction. A tree read from a file was not built that way: [`Tree::validate`]
//! checks that it could have been.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::sampling::TokenInfo;

/// Index of a node in its tree.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub usize);

impl NodeId {
    /// The index into [`Tree::nodes`].
    pub fn index(self) -> usize {
        self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

// Per-node tables (the tree's nodes, a layout's positions) are indexed by node id.
impl<T> std::ops::Index<NodeId> for [T] {
    type Output = T;

    fn index(&self, id: NodeId) -> &T {
        &self[id.0]
    }
}

impl<T> std::ops::IndexMut<NodeId> for [T] {
    fn index_mut(&mut self, id: NodeId) -> &mut T {
        &mut self[id.0]
    }
}

impl<T> std::ops::Index<NodeId> for Vec<T> {
    type Output = T;

    fn index(&self, id: NodeId) -> &T {
        &self[id.0]
    }
}

impl<T> std::ops::IndexMut<NodeId> for Vec<T> {
    fn index_mut(&mut self, id: NodeId) -> &mut T {
        &mut self[id.0]
    }
}

/// Life cycle of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Still generating.
    Running,
    /// Done generating.
    Finished,
    /// Abandoned by the strategy (low score, over budget, cancelled).
    Pruned,
    /// On the path of the chosen answer.
    Chosen,
}

/// What a node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// The prompt.
    Prompt,
    /// Generated reasoning or answer text.
    Generated,
    /// Text the strategy inserted (e.g. "Wait" in budget forcing, an answer cue).
    Forced,
    /// A verification or self-evaluation query and its reply.
    Evaluation,
    /// A branch made by hand.
    Manual,
}

/// Which part of a thinking model's reply a token is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// Between the thinking delimiters, the delimiters included.
    Thinking,
    /// Outside them: the answer (and, for a model that opens its thinking itself, the little
    /// before it).
    Answer,
}

/// From token `at` of its node on, the node's tokens are in `segment` (until the next mark).
/// A mark at the node's length says where the next token will go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMark {
    /// Index of the first token in the segment.
    pub at: usize,
    /// The segment.
    pub segment: Segment,
}

/// Scores a strategy attached to a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scores {
    /// Mean log-probability of the node's tokens (its path's, for leaves scored by path).
    pub mean_logprob: Option<f32>,
    /// Votes for this node's answer (self-consistency).
    pub votes: Option<u32>,
    /// Strategy value (verifier score, self-evaluation, MCTS mean value).
    pub value: Option<f32>,
    /// MCTS visit count.
    pub visits: Option<u32>,
}

/// One node of the tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Its index.
    pub id: NodeId,
    /// Parent, `None` for the root.
    pub parent: Option<NodeId>,
    /// Children in creation order.
    pub children: Vec<NodeId>,
    /// What it holds.
    pub kind: NodeKind,
    /// Short label (strategy role: "sample 3", "Wait", "step 2").
    pub label: String,
    /// For a branch made inside its parent's span: how many of the parent's tokens it keeps.
    #[serde(default)]
    pub fork_at: Option<usize>,
    /// Text of the node (prompt text for the root).
    pub text: String,
    /// Tokens generated or inserted in this node.
    pub tokens: Vec<TokenInfo>,
    /// Life cycle.
    pub status: NodeStatus,
    /// Strategy scores.
    pub scores: Scores,
    /// Answer extracted from the path ending here, if any.
    pub answer: Option<String>,
    /// Where the node's tokens enter the thinking or the answer, in token order; empty for
    /// models without thinking delimiters (and trees saved before there were segments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentMark>,
    /// MRT-style progress probes from the node's end (runs with progress probes on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::Progress>,
}

impl Node {
    /// Mean log-probability of this node's own tokens.
    pub fn own_mean_logprob(&self) -> Option<f32> {
        (!self.tokens.is_empty())
            .then(|| self.tokens.iter().map(|t| t.logprob).sum::<f32>() / self.tokens.len() as f32)
    }

    /// Mean entropy of this node's own tokens.
    pub fn mean_entropy(&self) -> Option<f32> {
        (!self.tokens.is_empty())
            .then(|| self.tokens.iter().map(|t| t.entropy).sum::<f32>() / self.tokens.len() as f32)
    }

    /// The segment of token `index` (an index at the node's end: where the next token goes);
    /// `None` when the node has no segment marks.
    pub fn segment_at(&self, index: usize) -> Option<Segment> {
        self.segments
            .iter()
            .take_while(|m| m.at <= index)
            .last()
            .map(|m| m.segment)
    }

    /// The node's tokens as runs of one segment: (first token, end, segment), in order, empty
    /// runs left out. Empty when the node has no segment marks.
    pub fn segment_runs(&self) -> Vec<(usize, usize, Segment)> {
        let len = self.tokens.len();
        let mut runs: Vec<(usize, usize, Segment)> = Vec::new();
        for (k, m) in self.segments.iter().enumerate() {
            let end = self.segments.get(k + 1).map_or(len, |n| n.at).min(len);
            let start = m.at.min(len);
            if start >= end {
                continue;
            }
            match runs.last_mut() {
                Some(last) if last.2 == m.segment && last.1 == start => last.1 = end,
                _ => runs.push((start, end, m.segment)),
            }
        }
        runs
    }

    /// Record that the node's tokens from `at` on are in `segment`. A mark out of order or past
    /// the node's tokens is ignored (events are checked like file input); one that changes
    /// nothing is not stored.
    pub fn mark_segment(&mut self, at: usize, segment: Segment) {
        if at > self.tokens.len() || self.segments.last().is_some_and(|m| m.at > at) {
            return;
        }
        if let Some(last) = self.segments.last_mut().filter(|m| m.at == at) {
            last.segment = segment;
        } else if self.segment_at(at) != Some(segment) {
            self.segments.push(SegmentMark { at, segment });
        }
        // A replaced mark may now repeat the one before it.
        let n = self.segments.len();
        if n >= 2 && self.segments[n - 2].segment == self.segments[n - 1].segment {
            self.segments.pop();
        }
    }

    /// How many of the node's tokens are in the thinking.
    pub fn thinking_tokens(&self) -> usize {
        self.segment_runs()
            .iter()
            .filter(|r| r.2 == Segment::Thinking)
            .map(|r| r.1 - r.0)
            .sum()
    }
}

/// Most nodes a tree read from a file may have.
pub const MAX_NODES: usize = 1 << 20;
/// Most tokens (over all nodes) a tree read from a file may hold.
pub const MAX_TREE_TOKENS: usize = 1 << 24;
/// Most alternatives one token may list.
pub const MAX_ALTERNATIVES: usize = 1024;

/// Why a tree (read from a file) is impossible.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("impossible tree: {0}")]
pub struct TreeError(pub String);

/// A reasoning tree.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Nodes by id; the root is node 0.
    pub nodes: Vec<Node>,
    /// The chosen answer, once there is one.
    pub chosen: Option<NodeId>,
    /// The final answer text.
    pub answer: Option<String>,
    /// Answer tally (self-consistency and other voting strategies).
    pub tally: BTreeMap<String, u32>,
}

impl Tree {
    /// The node `id`, if the tree has it.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0)
    }

    /// Check that the tree could have been built by applying events, so that walking it cannot
    /// index out of range or loop: every node's id is its index, its parent an earlier node (so
    /// there are no cycles), every children list exactly the nodes naming that parent, in
    /// creation order, `fork_at` within the parent's tokens, the chosen node in range, and the
    /// sizes bounded.
    pub fn validate(&self) -> Result<(), TreeError> {
        let bad = |m: String| Err(TreeError(m));
        let n = self.nodes.len();
        if n > MAX_NODES {
            return bad(format!("{n} nodes, more than {MAX_NODES}"));
        }
        let mut tokens = 0usize;
        let mut child_count = 0usize;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id.index() != i {
                return bad(format!("node {i} has id {}", node.id));
            }
            match node.parent.map(NodeId::index) {
                Some(p) if p >= i => {
                    return bad(format!(
                    "node {i}'s parent {p} is not an earlier node (a cycle or an id out of range)"
                ))
                }
                Some(p) => {
                    child_count += 1;
                    if let Some(k) = node.fork_at {
                        let len = self.nodes[p].tokens.len();
                        if k > len {
                            return bad(format!(
                                "node {i} forks at token {k} of its parent {p}, which has {len}"
                            ));
                        }
                    }
                }
                None if node.fork_at.is_some() => {
                    return bad(format!("node {i} has no parent but forks from one"))
                }
                None => {}
            }
            let mut last = i;
            for c in node.children.iter().map(|c| c.index()) {
                if c <= last || c >= n {
                    return bad(format!(
                        "node {i}'s child {c} is out of range, out of order or repeated"
                    ));
                }
                if self.nodes[c].parent != Some(NodeId(i)) {
                    return bad(format!(
                        "node {i} lists {c} as a child, but {c}'s parent is {:?}",
                        self.nodes[c].parent
                    ));
                }
                last = c;
            }
            let mut last_mark = 0;
            for m in &node.segments {
                if m.at < last_mark || m.at > node.tokens.len() {
                    return bad(format!(
                        "node {i} has a segment mark at token {} (out of order, or past its {} tokens)",
                        m.at,
                        node.tokens.len()
                    ));
                }
                last_mark = m.at;
            }
            if node.segments.len() > node.tokens.len() + 2 {
                return bad(format!(
                    "node {i} has {} segment marks for {} tokens",
                    node.segments.len(),
                    node.tokens.len()
                ));
            }
            tokens = tokens.saturating_add(node.tokens.len());
            if let Some(Err(e)) = node.progress.as_ref().map(|p| p.validate()) {
                return bad(format!("node {i}'s progress: {e}"));
            }
            if let Some(t) = node.tokens.iter().find(|t| t.top.len() > MAX_ALTERNATIVES) {
                return bad(format!(
                    "node {i} has a token with {} alternatives, more than {MAX_ALTERNATIVES}",
                    t.top.len()
                ));
            }
        }
        // Every child names its parent and is listed once by it: the lists hold every child.
        let listed: usize = self.nodes.iter().map(|x| x.children.len()).sum();
        if listed != child_count {
            return bad(format!(
                "{child_count} nodes have a parent but the parents list {listed} children"
            ));
        }
        if tokens > MAX_TREE_TOKENS {
            return bad(format!("{tokens} tokens, more than {MAX_TREE_TOKENS}"));
        }
        if let Some(c) = self.chosen.filter(|c| c.index() >= n) {
            return bad(format!("the chosen node {c} does not exist ({n} nodes)"));
        }
        Ok(())
    }

    /// The root, if the tree has one.
    pub fn root(&self) -> Option<&Node> {
        self.nodes.first()
    }

    /// Node ids from the root to `id`.
    pub fn path(&self, id: NodeId) -> Vec<NodeId> {
        let mut path = Vec::new();
        let mut cur = Some(id);
        while let Some(i) = cur {
            // A tree from a file may hold a parent cycle: never walk more steps than nodes.
            let Some(n) = self.node(i).filter(|_| path.len() < self.nodes.len()) else {
                break;
            };
            path.push(i);
            cur = n.parent;
        }
        path.reverse();
        path
    }

    /// The path to `id` as (node, tokens of it that belong to the path): a child made with
    /// `fork_at` keeps only that many of its parent's tokens.
    pub fn path_spans(&self, id: NodeId) -> Vec<(NodeId, usize)> {
        let path = self.path(id);
        path.iter()
            .enumerate()
            .map(|(k, &i)| {
                let n = &self.nodes[i];
                let keep = path
                    .get(k + 1)
                    .and_then(|&c| self.nodes[c].fork_at)
                    .unwrap_or(n.tokens.len())
                    .min(n.tokens.len());
                (i, keep)
            })
            .collect()
    }

    /// Generated text along the path to `id` (the prompt excluded).
    pub fn path_text(&self, id: NodeId) -> String {
        let mut out = String::new();
        for (i, keep) in self.path_spans(id) {
            let n = &self.nodes[i];
            if n.kind == NodeKind::Prompt {
                continue;
            }
            if keep == n.tokens.len() {
                out.push_str(&n.text);
            } else {
                n.tokens[..keep].iter().for_each(|t| out.push_str(&t.text));
            }
        }
        out
    }

    /// The segment a token appended after the first `keep` tokens of `id` is in (`None` for a
    /// tree without segments).
    pub fn segment_after(&self, id: NodeId, keep: usize) -> Option<Segment> {
        self.node(id)?.segment_at(keep)
    }

    /// The answer part of the path to `id`: for a thinking model whose path has closed its
    /// thinking, the text after the last thought; otherwise (no segments, or a thought that
    /// never closed) the whole [`Self::path_text`], as for a model without thinking.
    pub fn path_answer_text(&self, id: NodeId) -> String {
        let spans = self.path_spans(id);
        let mut answer = String::new();
        let mut thought = false;
        for &(i, keep) in &spans {
            let n = &self.nodes[i];
            if n.kind == NodeKind::Prompt {
                continue;
            }
            for (k, t) in n.tokens[..keep].iter().enumerate() {
                match n.segment_at(k) {
                    Some(Segment::Thinking) => {
                        thought = true;
                        answer.clear();
                    }
                    _ => answer.push_str(&t.text),
                }
            }
        }
        let closed = spans
            .last()
            .and_then(|&(i, keep)| self.nodes[i].segment_at(keep))
            == Some(Segment::Answer);
        if thought && closed {
            answer
        } else {
            self.path_text(id)
        }
    }

    /// Whether any token on the path to `id` is in a thinking segment.
    pub fn path_thinks(&self, id: NodeId) -> bool {
        self.path_spans(id).into_iter().any(|(i, keep)| {
            let n = &self.nodes[i];
            (0..keep).any(|k| n.segment_at(k) == Some(Segment::Thinking))
        })
    }

    /// Tokens along the path to `id` (the prompt excluded).
    pub fn path_tokens(&self, id: NodeId) -> Vec<&TokenInfo> {
        self.path_spans(id)
            .into_iter()
            .flat_map(|(i, keep)| self.nodes[i].tokens[..keep].iter())
            .collect()
    }

    /// Leaves of the tree.
    pub fn leaves(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.children.is_empty())
    }

    /// Depth of a node (root = 0).
    pub fn depth(&self, id: NodeId) -> usize {
        self.path(id).len().saturating_sub(1)
    }

    /// Total tokens in all nodes.
    pub fn token_count(&self) -> usize {
        self.nodes.iter().map(|n| n.tokens.len()).sum()
    }

    /// The chosen path as a Markdown transcript.
    pub fn transcript_markdown(&self) -> String {
        let mut out = String::new();
        if let Some(root) = self.root() {
            out.push_str("## Prompt\n\n");
            out.push_str(root.text.trim());
            out.push_str("\n\n");
        }
        let Some(chosen) = self.chosen else {
            out.push_str("_No answer was chosen._\n");
            return out;
        };
        out.push_str("## Reasoning\n\n");
        for (id, keep) in self.path_spans(chosen).into_iter().skip(1) {
            let n = &self.nodes[id];
            let text: String = n.tokens[..keep].iter().map(|t| t.text.as_str()).collect();
            match n.kind {
                NodeKind::Forced => out.push_str(&format!("**{}**", text.trim())),
                NodeKind::Evaluation => {}
                _ => out.push_str(&text),
            }
        }
        out.push_str("\n\n## Answer\n\n");
        out.push_str(self.answer.as_deref().unwrap_or("(none)"));
        out.push('\n');
        if !self.tally.is_empty() {
            out.push_str("\n## Votes\n\n| answer | votes |\n|---|---|\n");
            for (a, v) in &self.tally {
                out.push_str(&format!("| {a} | {v} |\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> TokenInfo {
        TokenInfo {
            id: 1,
            text: text.into(),
            logprob: -0.5,
            entropy: 1.0,
            top: Vec::new(),
        }
    }

    fn ids(v: &[usize]) -> Vec<NodeId> {
        v.iter().copied().map(NodeId).collect()
    }

    fn node(id: usize, parent: Option<usize>, children: &[usize], tokens: usize) -> Node {
        Node {
            id: NodeId(id),
            parent: parent.map(NodeId),
            children: ids(children),
            kind: if parent.is_none() {
                NodeKind::Prompt
            } else {
                NodeKind::Generated
            },
            label: String::new(),
            fork_at: None,
            text: "a".repeat(tokens),
            tokens: (0..tokens).map(|_| token("a")).collect(),
            status: NodeStatus::Finished,
            scores: Scores::default(),
            answer: None,
            segments: Vec::new(),
            progress: None,
        }
    }

    /// root 0 with children 1 and 2; 3 under 1.
    fn good() -> Tree {
        Tree {
            nodes: vec![
                node(0, None, &[1, 2], 0),
                node(1, Some(0), &[3], 4),
                node(2, Some(0), &[], 2),
                node(3, Some(1), &[], 1),
            ],
            chosen: Some(NodeId(3)),
            answer: Some("4".into()),
            tally: BTreeMap::new(),
        }
    }

    fn marked(tokens: &[&str], marks: &[(usize, Segment)]) -> Node {
        let mut n = node(1, Some(0), &[], 0);
        n.text = tokens.concat();
        n.tokens = tokens.iter().map(|t| token(t)).collect();
        for &(at, s) in marks {
            n.mark_segment(at, s);
        }
        n
    }

    #[test]
    fn segment_marks_give_runs_and_drop_what_changes_nothing() {
        use Segment::{Answer, Thinking};
        let n = marked(
            &["a", "b", "</think>", "c", "d"],
            &[(0, Thinking), (1, Thinking), (3, Answer), (2, Thinking)],
        );
        // The repeated mark at 1 changes nothing; the one at 2 comes after 3 and is ignored.
        assert_eq!(n.segments.len(), 2);
        assert_eq!(n.segment_runs(), vec![(0, 3, Thinking), (3, 5, Answer)]);
        assert_eq!(n.thinking_tokens(), 3);
        assert_eq!(
            (n.segment_at(2), n.segment_at(3)),
            (Some(Thinking), Some(Answer))
        );
        assert_eq!(n.segment_at(5), Some(Answer), "where the next token goes");
        // A mark past the tokens is ignored; one at the end says where the next token goes.
        let mut m = marked(&["x"], &[(0, Thinking), (7, Answer)]);
        assert_eq!(m.segments.len(), 1);
        m.mark_segment(1, Answer);
        assert_eq!(
            (m.segment_at(0), m.segment_at(1)),
            (Some(Thinking), Some(Answer))
        );
        assert_eq!(m.segment_runs(), vec![(0, 1, Thinking)]);
        // Replacing the last mark with its predecessor's segment merges them.
        m.mark_segment(1, Thinking);
        assert_eq!(m.segments.len(), 1);
        assert!(
            node(1, None, &[], 3).segment_runs().is_empty(),
            "no marks, no runs"
        );
    }

    #[test]
    fn the_answer_is_read_after_a_closed_thought_only() {
        use Segment::{Answer, Thinking};
        let mut t = good();
        t.nodes[1] = Node {
            children: ids(&[3]),
            ..marked(
                &["so ", "7", "</think>", "The answer is "],
                &[(0, Thinking), (3, Answer)],
            )
        };
        t.nodes[3] = Node {
            id: NodeId(3),
            parent: Some(NodeId(1)),
            ..marked(&["8", "."], &[(0, Answer)])
        };
        t.validate().expect("valid");
        assert_eq!(t.path_answer_text(NodeId(3)), "The answer is 8.");
        assert!(t.path_thinks(NodeId(3)));
        // A thought that never closed: the whole text, as without segments.
        t.nodes[1].segments = vec![SegmentMark {
            at: 0,
            segment: Thinking,
        }];
        t.nodes[3].segments = vec![SegmentMark {
            at: 0,
            segment: Thinking,
        }];
        assert_eq!(t.path_answer_text(NodeId(3)), t.path_text(NodeId(3)));
        // No segments at all: the whole text.
        let plain = good();
        assert_eq!(
            plain.path_answer_text(NodeId(3)),
            plain.path_text(NodeId(3))
        );
        assert!(!plain.path_thinks(NodeId(3)));
    }

    #[track_caller]
    fn refused(t: &Tree, needle: &str) {
        let e = t.validate().expect_err("impossible tree accepted");
        assert!(e.to_string().contains(needle), "{e}");
    }

    #[test]
    fn a_possible_tree_validates_and_walks() {
        let t = good();
        t.validate().expect("valid");
        assert_eq!(t.path(NodeId(3)), ids(&[0, 1, 3]));
        assert_eq!(t.path_text(NodeId(3)), "aaaaa");
        Tree::default().validate().expect("empty is fine");
    }

    #[test]
    fn impossible_trees_are_refused() {
        let mut t = good();
        t.nodes[2].id = NodeId(7);
        refused(&t, "node 2 has id 7");

        // A parent cycle: 1 -> 3 -> 1.
        let mut t = good();
        t.nodes[1].parent = Some(NodeId(3));
        t.nodes[0].children = ids(&[2]);
        t.nodes[3].children = ids(&[1]);
        refused(&t, "node 1's parent 3 is not an earlier node");

        let mut t = good();
        t.nodes[3].parent = Some(NodeId(99));
        t.nodes[1].children.clear();
        refused(&t, "node 3's parent 99 is not an earlier node");

        let mut t = good();
        t.nodes[0].children = ids(&[1, 2, 99]);
        refused(&t, "out of range");

        let mut t = good();
        t.nodes[0].children = ids(&[2, 1]);
        refused(&t, "out of order");

        let mut t = good();
        t.nodes[0].children = ids(&[1, 1, 2]);
        refused(&t, "repeated");

        // Progress a drawing cannot map to a bar: NaN, outside [0, 1], a jump past ±1.
        for (p_hat, delta) in [(f32::NAN, None), (1.5, None), (0.5, Some(-3.0))] {
            let mut t = good();
            t.nodes[1].progress = Some(crate::progress::Progress {
                p_hat,
                delta,
                basis: crate::progress::ProgressBasis::Consensus,
                reference: None,
                at_tokens: 0,
                prefix_tokens: 0,
                cue_tokens: 0,
                temperature: 0.7,
                probes: Vec::new(),
            });
            refused(&t, "progress");
        }

        let mut t = good();
        t.nodes[0].children = ids(&[1, 2, 3]);
        refused(&t, "lists 3 as a child");

        let mut t = good();
        t.nodes[1].children.clear();
        refused(&t, "the parents list 2 children");

        let mut t = good();
        t.nodes[3].fork_at = Some(5);
        refused(&t, "forks at token 5");
        t.nodes[3].fork_at = Some(4);
        t.validate()
            .expect("forking after the parent's last token is fine");

        let mut t = good();
        t.nodes[0].fork_at = Some(0);
        refused(&t, "no parent");

        let mut t = good();
        t.chosen = Some(NodeId(4));
        refused(&t, "chosen node 4");

        let mut t = good();
        t.nodes[3].tokens[0].top = (0..MAX_ALTERNATIVES + 1)
            .map(|i| crate::model::sampling::Alternative {
                id: i as u32,
                text: String::new(),
                logprob: 0.0,
            })
            .collect();
        refused(&t, "alternatives");

        let mut t = good();
        t.nodes[1].segments = vec![SegmentMark {
            at: 5,
            segment: Segment::Thinking,
        }];
        refused(&t, "segment mark at token 5");
        t.nodes[1].segments = vec![
            SegmentMark {
                at: 2,
                segment: Segment::Thinking,
            },
            SegmentMark {
                at: 1,
                segment: Segment::Answer,
            },
        ];
        refused(&t, "out of order");
        t.nodes[1].segments = vec![
            SegmentMark {
                at: 0,
                segment: Segment::Thinking,
            };
            7
        ];
        refused(&t, "7 segment marks for 4 tokens");
    }
}
