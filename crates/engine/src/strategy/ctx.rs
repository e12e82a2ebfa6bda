//! The strategy side of a run: branches, tree events and costs, over a [`SequenceService`].
//!
//! A strategy holds [`Branch`]es (a service sequence and the tree node it writes into) and asks
//! the context to fork, generate, force text, verify and finish them. The context turns each into
//! one service call, emits the tree events every viewer replays, and keeps the run's cost meters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::RunConfig;
use crate::answer::extract_answer;
use crate::cost::CostSnapshot;
use crate::error::{EngineError, Result};
use crate::events::{Event, RunId};
use crate::generate::PromptFormat;
use crate::model::sampling::{Sampler, SamplingParams, TokenInfo};
use crate::model::template::Message;
use crate::model::thinking::ThinkingFormat;
use crate::progress::{self, Probe, Progress, ProgressBasis, ProgressConfig};
pub use crate::service::{BranchStop, StopRule};
use crate::service::{
    GenBranch, GenerateRequest, NextToken, OpCost, RunControl, SeqId, SequenceService, Served,
    ServiceInfo,
};
use crate::tree::{NodeId, NodeKind, NodeStatus, Scores, Segment, Tree};
use crate::worker::EventSink;

/// Where a run's prompt leaves a thinking model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptThinking {
    /// No thinking to speak of: the model has no delimiters, or the prompt is plain text.
    Plain,
    /// The prompt ends inside the thinking (R1-Distill's `<think>\n`).
    Open,
    /// The prompt holds a whole (empty) thought: thinking is switched off.
    Closed,
    /// The model opens its thinking itself (Qwen3 or SmolLM3 with thinking on).
    Ahead,
}

/// Segment marks for `tokens` appended at token `start` of a node: a token opening the thinking
/// starts a thinking segment, one closing it ends the segment after itself.
fn delimiter_marks(
    thinking: Option<&ThinkingFormat>,
    start: usize,
    tokens: &[TokenInfo],
) -> Vec<(usize, Segment)> {
    let Some(f) = thinking else {
        return Vec::new();
    };
    tokens
        .iter()
        .enumerate()
        .filter_map(|(k, t)| {
            if t.id == f.open_id {
                Some((start + k, Segment::Thinking))
            } else if t.id == f.close_id {
                Some((start + k + 1, Segment::Answer))
            } else {
                None
            }
        })
        .collect()
}

/// A live sequence and the tree node it is writing into.
#[derive(Clone, Debug)]
pub struct Branch {
    /// Engine sequence.
    pub seq: SeqId,
    /// Node receiving its tokens.
    pub node: NodeId,
    /// The model's next-token distribution at the branch's end (entropy and top alternatives).
    pub next: NextToken,
    /// Its sampler (seeded per branch).
    pub sampler: Sampler,
    /// Why it stopped in the last `generate` call (`None` while it can go on).
    pub stop: Option<BranchStop>,
    /// Sequence length in tokens.
    pub len: usize,
}

impl Branch {
    /// Whether the model ended this branch (no further generation possible).
    pub fn ended(&self) -> bool {
        matches!(
            self.stop,
            Some(BranchStop::EndOfText | BranchStop::Budget | BranchStop::ContextFull)
        )
    }
}

/// The strategy's handle on its run.
pub struct Ctx {
    run: RunId,
    config: RunConfig,
    service: Arc<dyn SequenceService>,
    control: Arc<RunControl>,
    events: EventSink,
    tree: Tree,
    cost: CostSnapshot,
    started: Instant,
    last_cost_event: Instant,
    branches_made: u64,
    live: Vec<SeqId>,
    prompt_ids: Vec<u32>,
    thinking: Option<ThinkingFormat>,
    prompt_thinking: PromptThinking,
}

impl Ctx {
    pub(crate) fn new(
        run: RunId,
        config: RunConfig,
        service: Arc<dyn SequenceService>,
        control: Arc<RunControl>,
        events: EventSink,
        tree: Tree,
    ) -> Self {
        let now = Instant::now();
        let info = service.info();
        let cost = CostSnapshot {
            energy_source: info.energy_source.clone(),
            energy_measured: info.energy_measured,
            tokens_reused_unknown: !info.capabilities.reuse_reported,
            ..CostSnapshot::default()
        };
        let thinking = info.thinking.clone();
        Self {
            run,
            config,
            service,
            control,
            events,
            tree,
            cost,
            started: now,
            last_cost_event: now,
            branches_made: 0,
            live: Vec::new(),
            prompt_ids: Vec::new(),
            thinking,
            prompt_thinking: PromptThinking::Plain,
        }
    }

    /// The run's configuration.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The model and what its service can do.
    pub fn info(&self) -> &ServiceInfo {
        self.service.info()
    }

    /// The tree so far.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The model's thinking delimiters, for a thinking model.
    pub fn thinking(&self) -> Option<&ThinkingFormat> {
        self.thinking.as_ref()
    }

    /// Where the prompt leaves the model's thinking (after `start`).
    pub fn prompt_thinking(&self) -> PromptThinking {
        self.prompt_thinking
    }

    /// The segment the branch's next token goes into (`None` without thinking delimiters).
    pub fn segment(&self, b: &Branch) -> Option<Segment> {
        let n = self.tree.node(b.node)?;
        n.segment_at(n.tokens.len())
    }

    /// Prompt token ids (after `start`).
    pub fn prompt_ids(&self) -> &[u32] {
        &self.prompt_ids
    }

    /// Cost so far.
    pub fn cost(&mut self) -> CostSnapshot {
        self.cost.wall_secs = self.started.elapsed().as_secs_f64();
        self.cost.tok_per_sec = self.cost.generated_tokens as f64 / self.cost.wall_secs.max(1e-9);
        self.cost.clone()
    }

    /// Tokens the run may still generate, if it has a budget.
    pub fn budget_left(&self) -> Option<usize> {
        self.config
            .budget_tokens
            .map(|b| b.saturating_sub(self.cost.generated_tokens as usize))
    }

    /// Whether the run's budget is spent.
    pub fn budget_spent(&self) -> bool {
        self.budget_left() == Some(0)
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.tree.apply(&event);
        self.events.send(event);
    }

    /// Append `tokens` to `node` (one event) and mark where they open or close the thinking.
    fn emit_tokens(&mut self, node: NodeId, tokens: Vec<TokenInfo>) {
        let start = self.tree.node(node).map_or(0, |n| n.tokens.len());
        let marks = delimiter_marks(self.thinking.as_ref(), start, &tokens);
        self.emit(Event::TokensAppended {
            run: self.run,
            node,
            tokens,
        });
        for (at, segment) in marks {
            self.emit(Event::SegmentStarted {
                run: self.run,
                node,
                at,
                segment,
            });
        }
    }

    fn maybe_emit_cost(&mut self, force: bool) {
        if force || self.last_cost_event.elapsed() >= Duration::from_millis(100) {
            self.last_cost_event = Instant::now();
            let cost = self.cost();
            self.emit(Event::Cost {
                run: self.run,
                cost,
            });
        }
    }

    /// Book a reply's cost and pass its value on.
    fn served<T>(&mut self, served: Served<T>) -> T {
        self.add_cost(&served.cost);
        self.maybe_emit_cost(false);
        served.value
    }

    fn add_cost(&mut self, c: &OpCost) {
        self.cost.prompt_tokens_computed += c.prompt_tokens_computed;
        self.cost.tokens_reused += c.tokens_reused;
        self.cost.generated_tokens += c.generated_tokens;
        self.cost.forward_passes += c.forward_passes;
        self.cost.flops += c.flops;
        self.cost.energy_joules += c.energy_joules;
    }

    /// Prefill `tokens` into a new sequence (reusing any cached prefix) that this run holds.
    fn prefill_ids(&mut self, tokens: Vec<u32>) -> Result<(SeqId, usize, NextToken)> {
        let served = self.service.prefill(&self.control, tokens)?;
        let p = self.served(served);
        self.live.push(p.seq);
        Ok((p.seq, p.len, p.next))
    }

    /// `n` forks of `seq`, held by this run.
    fn fork_seqs(&mut self, seq: SeqId, n: usize) -> Result<Vec<SeqId>> {
        let served = self.service.fork(&self.control, seq, n)?;
        let seqs = self.served(served);
        if seqs.len() != n {
            return Err(EngineError::WorkerGone(format!(
                "asked for {n} forks, got {}",
                seqs.len()
            )));
        }
        self.live.extend(&seqs);
        Ok(seqs)
    }

    fn new_sampler(&mut self, greedy: bool) -> Result<Sampler> {
        let seed = self
            .config
            .seed
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(self.branches_made);
        self.branches_made += 1;
        Sampler::new(SamplingParams {
            temperature: if greedy { 0.0 } else { self.config.temperature },
            top_p: self.config.top_p,
            seed,
            ..SamplingParams::default()
        })
    }

    fn add_node(
        &mut self,
        parent: Option<NodeId>,
        kind: NodeKind,
        label: &str,
        text: &str,
        fork_at: Option<usize>,
    ) -> NodeId {
        let node = NodeId(self.tree.nodes.len());
        self.emit(Event::NodeAdded {
            run: self.run,
            node,
            parent,
            kind,
            label: label.to_owned(),
            text: text.to_owned(),
            fork_at,
        });
        // A node starts in the segment its parent's kept tokens end in.
        let inherited = parent.and_then(|p| {
            let keep = fork_at.unwrap_or_else(|| self.tree.nodes[p].tokens.len());
            self.tree.segment_after(p, keep)
        });
        if let Some(segment) = inherited {
            self.emit(Event::SegmentStarted {
                run: self.run,
                node,
                at: 0,
                segment,
            });
        }
        node
    }

    /// Prompt text for a question, with or without a reasoning instruction.
    pub fn prompt_text(&self, reasoning: bool) -> String {
        let q = self.config.prompt.trim();
        if !reasoning {
            return q.to_owned();
        }
        match (self.info().has_chat_template, self.config.format) {
            (true, PromptFormat::Auto) => format!(
                "{q}\nThink step by step. End with \"The answer is\" followed by the answer."
            ),
            _ => format!("Question: {q}\nAnswer: Let's think step by step."),
        }
    }

    /// Prefill the prompt and create the root node. `greedy` picks the root branch's sampler.
    pub fn start(&mut self, reasoning: bool, greedy: bool) -> Result<Branch> {
        let text = self.prompt_text(reasoning);
        let ids = self.service.prompt_ids_thinking(
            &[Message::new("user", text.clone())],
            self.config.format,
            self.config.thinking,
        )?;
        self.prompt_thinking = self.read_prompt_thinking(&ids);
        self.prompt_ids = ids.clone();
        let (seq, len, next) = self.prefill_ids(ids)?;
        let node = self.add_node(None, NodeKind::Prompt, "prompt", &text, None);
        let segment = match self.prompt_thinking {
            PromptThinking::Open => Some(Segment::Thinking),
            _ if self.thinking.is_some() => Some(Segment::Answer),
            _ => None,
        };
        if let Some(segment) = segment {
            self.emit(Event::SegmentStarted {
                run: self.run,
                node,
                at: 0,
                segment,
            });
        }
        let root = Branch {
            seq,
            node,
            next,
            sampler: self.new_sampler(greedy)?,
            stop: None,
            len,
        };
        // The prompt's probes are the baseline the first step's Δp̂ is measured against.
        self.auto_probe(&root)?;
        Ok(root)
    }

    /// Where the prompt `ids` leave the model's thinking: after its last delimiter, or ahead of
    /// it when a chat template wrote none.
    fn read_prompt_thinking(&self, ids: &[u32]) -> PromptThinking {
        let Some(f) = &self.thinking else {
            return PromptThinking::Plain;
        };
        match ids
            .iter()
            .rev()
            .find(|&&t| t == f.open_id || t == f.close_id)
        {
            Some(&t) if t == f.open_id => PromptThinking::Open,
            Some(_) => PromptThinking::Closed,
            None if self.config.format == PromptFormat::Auto && self.info().has_chat_template => {
                PromptThinking::Ahead
            }
            None => PromptThinking::Plain,
        }
    }

    /// Start from arbitrary token ids under an existing node (branch by hand).
    pub(crate) fn start_from_tokens(
        &mut self,
        ids: Vec<u32>,
        parent: NodeId,
        fork_at: usize,
        first: u32,
        greedy: bool,
    ) -> Result<Branch> {
        let (seq, _, _) = self.prefill_ids(ids)?;
        let node = self.add_node(Some(parent), NodeKind::Manual, "by hand", "", Some(fork_at));
        let served = self
            .service
            .append(&self.control, vec![(seq, vec![first])])?;
        let appended = one(self.served(served))?;
        self.cost.generated_tokens += 1;
        self.emit_tokens(node, appended.tokens);
        Ok(Branch {
            seq,
            node,
            next: appended.next,
            sampler: self.new_sampler(greedy)?,
            stop: None,
            len: appended.len,
        })
    }

    /// `n` children of `from`, each a new node continuing `from`'s sequence (forked, not
    /// recomputed). `label` names child `i`.
    pub fn fork(
        &mut self,
        from: &Branch,
        n: usize,
        greedy: bool,
        label: impl Fn(usize) -> String,
    ) -> Result<Vec<Branch>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let seqs = self.fork_seqs(from.seq, n)?;
        let mut out = Vec::with_capacity(n);
        for (i, seq) in seqs.into_iter().enumerate() {
            let node = self.add_node(Some(from.node), NodeKind::Generated, &label(i), "", None);
            out.push(Branch {
                seq,
                node,
                next: from.next.clone(),
                sampler: self.new_sampler(greedy)?,
                stop: None,
                len: from.len,
            });
        }
        Ok(out)
    }

    /// Children of `from` that start with the given tokens (one child per token), computed in one
    /// batched pass.
    pub fn fork_with_tokens(
        &mut self,
        from: &Branch,
        tokens: &[u32],
        greedy: bool,
        label: impl Fn(usize) -> String,
    ) -> Result<Vec<Branch>> {
        let mut kids = self.fork(from, tokens.len(), greedy, label)?;
        if kids.is_empty() {
            return Ok(kids);
        }
        let items = kids
            .iter()
            .zip(tokens)
            .map(|(k, &t)| (k.seq, vec![t]))
            .collect();
        let served = self.service.append(&self.control, items)?;
        let appended = self.served(served);
        if appended.len() != kids.len() {
            return Err(EngineError::WorkerGone(
                "an append answered for another number of sequences".into(),
            ));
        }
        for (k, a) in kids.iter_mut().zip(appended) {
            self.cost.generated_tokens += 1;
            self.emit_tokens(k.node, a.tokens);
            k.next = a.next;
            k.len = a.len;
        }
        Ok(kids)
    }

    /// Generate on all `branches` in lockstep, one batched forward pass per step, until each
    /// stops by `rule`, the model's end token, the budget or the context.
    pub fn generate(&mut self, branches: &mut [Branch], rule: &StopRule) -> Result<()> {
        let mut active = Vec::new();
        let mut request = Vec::new();
        for (i, b) in branches.iter_mut().enumerate() {
            if b.ended() {
                continue;
            }
            b.stop = None;
            active.push(i);
            request.push(GenBranch {
                seq: b.seq,
                sampler: b.sampler.clone(),
                prior_text: self.tree.nodes[b.node].text.clone(),
            });
        }
        if request.is_empty() {
            return Ok(());
        }
        let request = GenerateRequest {
            branches: request,
            rule: rule.clone(),
            budget: self.budget_left(),
        };
        let nodes: Vec<NodeId> = active.iter().map(|&i| branches[i].node).collect();
        let (run, events, tree) = (self.run, &self.events, &mut self.tree);
        let thinking = self.thinking.as_ref();
        let mut on_token = |i: usize, token: TokenInfo| {
            if let Some(&node) = nodes.get(i) {
                let start = tree.node(node).map_or(0, |n| n.tokens.len());
                let marks = delimiter_marks(thinking, start, std::slice::from_ref(&token));
                let event = Event::TokensAppended {
                    run,
                    node,
                    tokens: vec![token],
                };
                tree.apply(&event);
                events.send(event);
                for (at, segment) in marks {
                    let event = Event::SegmentStarted {
                        run,
                        node,
                        at,
                        segment,
                    };
                    tree.apply(&event);
                    events.send(event);
                }
            }
        };
        let result = self.service.generate(&self.control, request, &mut on_token);
        let outcomes = self.served(result)?;
        if outcomes.len() != active.len() {
            return Err(EngineError::WorkerGone(
                "a generation answered for another number of branches".into(),
            ));
        }
        for (i, o) in active.into_iter().zip(outcomes) {
            let b = &mut branches[i];
            b.stop = Some(o.stop);
            b.len = o.len;
            b.sampler = o.sampler;
            b.next = o.next;
        }
        self.maybe_emit_cost(false);
        Ok(())
    }

    /// Insert `text` after `from` in a new forced node (e.g. "Wait"), computing it in one pass.
    /// The new node's tokens carry the model's log-probabilities for the inserted text.
    pub fn force(&mut self, from: &Branch, text: &str, label: &str) -> Result<Branch> {
        self.force_as(from, text, label, NodeKind::Forced)
    }

    /// [`Self::force`] into a node of the given kind (an evaluation question, say).
    fn force_as(
        &mut self,
        from: &Branch,
        text: &str,
        label: &str,
        kind: NodeKind,
    ) -> Result<Branch> {
        let ids = self.service.encode(text)?;
        let seq = one(self.fork_seqs(from.seq, 1)?)?;
        let node = self.add_node(Some(from.node), kind, label, "", None);
        let mut branch = Branch {
            seq,
            node,
            next: from.next.clone(),
            sampler: from.sampler.clone(),
            stop: None,
            len: from.len,
        };
        if ids.is_empty() {
            return Ok(branch);
        }
        let served = self.service.append(&self.control, vec![(seq, ids)])?;
        let appended = one(self.served(served))?;
        branch.next = appended.next;
        branch.len = appended.len;
        self.emit_tokens(node, appended.tokens);
        self.emit(Event::NodeFinished {
            run: self.run,
            node,
            answer: None,
        });
        Ok(branch)
    }

    /// Append the token a stop rule held back ([`BranchStop::StopToken`]) to the branch's own
    /// node, as the model's own choice (budget forcing accepting a `</think>` once the thinking
    /// is long enough). Does nothing for a branch that stopped otherwise.
    pub fn accept_stop_token(&mut self, b: &mut Branch) -> Result<()> {
        let Some(BranchStop::StopToken { id }) = b.stop else {
            return Ok(());
        };
        let served = self
            .service
            .append(&self.control, vec![(b.seq, vec![id])])?;
        let appended = one(self.served(served))?;
        self.emit_tokens(b.node, appended.tokens);
        b.next = appended.next;
        b.len = appended.len;
        b.stop = None;
        Ok(())
    }

    /// Continue in a fresh generated node under `from` (e.g. after a forced node).
    pub fn continue_in_new_node(&mut self, from: &Branch, label: &str) -> Branch {
        let node = self.add_node(Some(from.node), NodeKind::Generated, label, "", None);
        Branch {
            node,
            stop: None,
            ..from.clone()
        }
    }

    /// Mark a branch's node finished; returns the answer extracted from its path.
    pub fn finish(&mut self, b: &Branch) -> Option<String> {
        let answer = extract_answer(&self.tree.path_answer_text(b.node));
        let mut scores = self.tree.nodes[b.node].scores.clone();
        scores.mean_logprob = self.path_mean_logprob(b.node);
        self.set_scores(b.node, scores);
        self.emit(Event::NodeFinished {
            run: self.run,
            node: b.node,
            answer: answer.clone(),
        });
        // A failed probe leaves the node without progress; a cancel shows in the next call.
        if let Err(e) = self.auto_probe(b) {
            tracing::debug!("progress probes of node {} stopped: {e}", b.node);
        }
        answer
    }

    /// Mean token log-probability along the path to `node` (generated tokens only).
    pub fn path_mean_logprob(&self, node: NodeId) -> Option<f32> {
        let lps: Vec<f32> = self
            .tree
            .path_spans(node)
            .into_iter()
            .filter(|(i, _)| {
                matches!(
                    self.tree.nodes[*i].kind,
                    NodeKind::Generated | NodeKind::Manual
                )
            })
            .flat_map(|(i, keep)| self.tree.nodes[i].tokens[..keep].iter().map(|t| t.logprob))
            .collect();
        (!lps.is_empty()).then(|| lps.iter().sum::<f32>() / lps.len() as f32)
    }

    /// Replace a node's scores.
    pub fn set_scores(&mut self, node: NodeId, scores: Scores) {
        self.emit(Event::NodeScored {
            run: self.run,
            node,
            scores,
        });
    }

    /// Abandon a node.
    pub fn prune(&mut self, node: NodeId) {
        self.emit(Event::NodePruned {
            run: self.run,
            node,
        });
    }

    /// Announce the answer.
    pub fn choose(
        &mut self,
        node: Option<NodeId>,
        answer: Option<String>,
        tally: BTreeMap<String, u32>,
    ) {
        self.emit(Event::AnswerChosen {
            run: self.run,
            node,
            answer,
            tally,
        });
    }

    /// Free a branch's sequence (its shared prefix stays with the others).
    pub fn release(&mut self, b: &Branch) {
        self.live.retain(|s| *s != b.seq);
        self.service.release(&[b.seq]);
    }

    /// Ask the model whether the answer on `b`'s path is correct; returns P(yes) / (P(yes) + P(no))
    /// and records the question as an evaluation node.
    pub fn verify(&mut self, b: &Branch) -> Result<f32> {
        // P(yes) is read from the next-token distribution, never from sampled text: a service
        // that reports no log-probabilities cannot verify, and says so instead of scoring 0.5.
        let caps = &self.info().capabilities;
        if caps.top_alternatives == 0 && !caps.full_logprobs {
            return Err(EngineError::InvalidParameter(format!(
                "the self-verifier reads P(\"yes\") from next-token log-probabilities, which {} does not report; choose another scorer",
                self.info().device
            )));
        }
        let question = "Is the answer above correct? Reply with yes or no.";
        let suffix = match self.config.format {
            PromptFormat::Auto => {
                let user = Message::new("user", self.prompt_text(true));
                let answer = Message::new("assistant", self.tree.path_text(b.node));
                let follow_up = [user.clone(), answer.clone(), Message::new("user", question)];
                match (
                    self.service.render_chat(std::slice::from_ref(&user)),
                    self.service.render_chat(&follow_up),
                ) {
                    (Some(before), Some(after)) => {
                        let before = before? + &answer.content;
                        after?.strip_prefix(&before).map(str::to_owned)
                    }
                    _ => None,
                }
            }
            PromptFormat::Raw => None,
        }
        .unwrap_or_else(|| format!("\n\nQuestion: {question}\nReply:"));
        let before = self.cost.prompt_tokens_computed;
        let eval = self.force_as(b, &suffix, "verify", NodeKind::Evaluation)?;
        self.cost.verify_tokens += self.cost.prompt_tokens_computed - before;
        let mut ids: Vec<u32> = Vec::new();
        let mut yes_ids = 0;
        for (k, words) in [
            &["yes", "Yes", " yes", " Yes", "YES"][..],
            &["no", "No", " no", " No", "NO"][..],
        ]
        .into_iter()
        .enumerate()
        {
            let mut group: Vec<u32> = words
                .iter()
                .filter_map(|w| self.service.encode(w).ok()?.first().copied())
                .collect();
            group.sort_unstable();
            group.dedup();
            if k == 0 {
                yes_ids = group.len();
            }
            ids.extend(group);
        }
        let served = self.service.next_logprobs(&self.control, eval.seq, &ids)?;
        let lps = self.served(served);
        let prob = |range: std::ops::Range<usize>| -> f32 {
            lps.get(range)
                .unwrap_or_default()
                .iter()
                .map(|l| l.map_or(0.0, f32::exp))
                .sum()
        };
        let (yes, no) = (prob(0..yes_ids), prob(yes_ids..ids.len()));
        let value = if yes + no > 0.0 {
            yes / (yes + no)
        } else {
            0.5
        };
        let scores = Scores {
            value: Some(value),
            ..Scores::default()
        };
        self.set_scores(eval.node, scores);
        self.release(&eval);
        Ok(value)
    }

    /// The run's progress-probe settings, when probes are on.
    pub fn progress_config(&self) -> Option<&ProgressConfig> {
        self.config.progress.as_ref()
    }

    /// Probe the node when the run has probes on and the node is the prompt or a step; only a
    /// cancel is an error (a probe that cannot run leaves the node without progress).
    fn auto_probe(&mut self, b: &Branch) -> Result<()> {
        let Some(settings) = self.config.progress.clone() else {
            return Ok(());
        };
        if !matches!(
            self.tree.nodes[b.node].kind,
            NodeKind::Prompt | NodeKind::Generated | NodeKind::Manual
        ) {
            return Ok(());
        }
        match self.probe(b, &settings) {
            Err(EngineError::Cancelled) => Err(EngineError::Cancelled),
            Err(e) => {
                tracing::warn!("no progress for node {}: {e}", b.node);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Estimate the progress of `b`'s node (unless it has an estimate): append the "time is up"
    /// cue to a fork of its sequence once, fork that K times (no prefix token is recomputed),
    /// sample a short answer in each, and score the answers against the expected answer or the
    /// run's consensus. The probes' cost goes to the `probe_*` meters, not the strategy's; they
    /// add no nodes and are not charged to the run's token budget.
    pub fn probe(&mut self, b: &Branch, settings: &ProgressConfig) -> Result<()> {
        settings.validate()?;
        if self.tree.nodes[b.node].progress.is_some() {
            return Ok(());
        }
        let _span =
            tracing::debug_span!("probe", node = b.node.index(), k = settings.probes).entered();
        let started = Instant::now();
        let mut held = Vec::new();
        let result = self.run_probes(b, settings, &mut held);
        if !held.is_empty() {
            self.service.release(&held);
        }
        self.cost.probe_secs += started.elapsed().as_secs_f64();
        let (probes, cue_tokens) = result?;
        self.cost.probed_nodes += 1;
        let (basis, expected) = match &self.config.expected_answer {
            Some(e) => (ProgressBasis::Expected, Some(e.clone())),
            None => (ProgressBasis::Consensus, None),
        };
        self.tree.nodes[b.node].progress = Some(Progress {
            p_hat: 0.0,
            delta: None,
            basis,
            reference: None,
            at_tokens: self.tree.path_tokens(b.node).len(),
            prefix_tokens: b.len,
            cue_tokens,
            temperature: settings.temperature,
            probes,
        });
        // In consensus mode the reference is the majority so far, this node's probes included;
        // the run's end rescores every node against the final majority.
        let reference = expected.or_else(|| progress::consensus(&self.tree));
        if let Some(p) = progress::rescored(&self.tree, b.node, basis, reference.as_deref()) {
            self.emit(Event::NodeProgress {
                run: self.run,
                node: b.node,
                progress: p,
            });
        }
        self.maybe_emit_cost(false);
        Ok(())
    }

    /// The probes themselves; every sequence they make goes into `held` for release.
    fn run_probes(
        &mut self,
        b: &Branch,
        settings: &ProgressConfig,
        held: &mut Vec<SeqId>,
    ) -> Result<(Vec<Probe>, usize)> {
        let cue = progress::cue_for(&self.tree.path_text(b.node));
        let ids = self.service.encode(&cue)?;
        let cue_tokens = ids.len();
        let served = self.service.fork(&self.control, b.seq, 1)?;
        self.add_probe_cost(&served.cost);
        held.extend(&served.value);
        let cue_seq = one(served.value)?;
        let served = self.service.append(&self.control, vec![(cue_seq, ids)])?;
        self.add_probe_cost(&served.cost);
        self.cost.probe_cue_tokens += served.cost.prompt_tokens_computed;
        let k = settings.probes;
        let served = self.service.fork(&self.control, cue_seq, k)?;
        self.add_probe_cost(&served.cost);
        held.extend(&served.value);
        if served.value.len() != k {
            return Err(EngineError::WorkerGone(format!(
                "asked for {k} probe forks, got {}",
                served.value.len()
            )));
        }
        let branches = served
            .value
            .iter()
            .enumerate()
            .map(|(i, &seq)| {
                let params = progress::probe_sampling(
                    settings,
                    self.config.top_p,
                    self.config.seed,
                    b.node,
                    i,
                );
                Ok(GenBranch {
                    seq,
                    sampler: Sampler::new(params)?,
                    prior_text: String::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let request = GenerateRequest {
            branches,
            rule: StopRule::one_step(settings.probe_tokens),
            budget: None,
        };
        let mut texts = vec![String::new(); k];
        let mut counts = vec![0usize; k];
        let mut on_token = |i: usize, t: TokenInfo| {
            if let (Some(text), Some(n)) = (texts.get_mut(i), counts.get_mut(i)) {
                text.push_str(&t.text);
                *n += 1;
            }
        };
        let generated = self.service.generate(&self.control, request, &mut on_token);
        self.add_probe_cost(&generated.cost);
        let outcomes = generated.value?;
        if outcomes.len() != k {
            return Err(EngineError::WorkerGone(
                "probes answered for another number of branches".into(),
            ));
        }
        let probes = texts
            .into_iter()
            .zip(counts)
            .zip(outcomes)
            .map(|((text, tokens), o)| Probe {
                answer: extract_answer(&format!("{cue}{text}")),
                text,
                tokens,
                stop: Some(o.stop),
                matched: false,
            })
            .collect();
        Ok((probes, cue_tokens))
    }

    fn add_probe_cost(&mut self, c: &OpCost) {
        self.cost.probe_tokens += c.prompt_tokens_computed + c.generated_tokens;
        self.cost.probe_tokens_reused += c.tokens_reused;
        self.cost.probe_flops += c.flops;
        self.cost.probe_energy_joules += c.energy_joules;
    }

    /// Progress as a search scorer: p̂ of `b`'s node (probing it first, with the run's settings
    /// or the defaults) against the run's consensus so far — never the expected answer, so a
    /// search guided by it does not peek at the answer.
    pub fn progress_score(&mut self, b: &Branch) -> Result<f32> {
        let settings = self.config.progress.clone().unwrap_or_default();
        self.probe(b, &settings)?;
        let reference = progress::consensus(&self.tree);
        Ok(progress::p_hat_against(&self.tree, b.node, reference.as_deref()).unwrap_or(0.0))
    }

    /// In consensus mode, score every probed node against the run's final consensus.
    fn rescore_progress(&mut self) {
        if self.config.expected_answer.is_some() {
            return;
        }
        let reference = progress::consensus(&self.tree);
        let probed: Vec<NodeId> = self
            .tree
            .nodes
            .iter()
            .filter(|n| n.progress.is_some())
            .map(|n| n.id)
            .collect();
        let updates: Vec<(NodeId, Progress)> = probed
            .into_iter()
            .filter_map(|id| {
                let p = progress::rescored(
                    &self.tree,
                    id,
                    ProgressBasis::Consensus,
                    reference.as_deref(),
                )?;
                (self.tree.nodes[id].progress.as_ref() != Some(&p)).then_some((id, p))
            })
            .collect();
        for (node, progress) in updates {
            self.emit(Event::NodeProgress {
                run: self.run,
                node,
                progress,
            });
        }
    }

    /// Finish the run: free sequences the strategy did not release and report the final cost.
    pub(crate) fn finish_run(&mut self) -> (Tree, Vec<u32>, CostSnapshot) {
        self.rescore_progress();
        self.maybe_emit_cost(true);
        (self.tree.clone(), self.prompt_ids.clone(), self.cost())
    }

    /// Sequences still held by this run.
    pub(crate) fn live_sequences(&self) -> Vec<SeqId> {
        self.live.clone()
    }

    /// Mark every running node pruned (after a cancel or an error).
    pub(crate) fn prune_running(&mut self) {
        let running: Vec<NodeId> = self
            .tree
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Running && n.kind != NodeKind::Prompt)
            .map(|n| n.id)
            .collect();
        for node in running {
            self.prune(node);
        }
    }

    /// Token info for inserted text (used by tests and manual branching).
    pub fn tokens_of(&self, infos: &[TokenInfo]) -> Vec<u32> {
        infos.iter().map(|t| t.id).collect()
    }
}

/// The single reply of a one-item request.
fn one<T>(mut items: Vec<T>) -> Result<T> {
    match (items.pop(), items.is_empty()) {
        (Some(item), true) => Ok(item),
        _ => Err(EngineError::WorkerGone(
            "a one-item request got another number of replies".into(),
        )),
    }
}
