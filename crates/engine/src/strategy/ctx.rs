//! The strategy side of the worker protocol: branches, batched generation, tree events, costs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::RunConfig;
use crate::answer::extract_answer;
use crate::cost::CostSnapshot;
use crate::error::{EngineError, Result};
use crate::events::{Event, RunId};
use crate::generate::{build_chat, PromptFormat};
use crate::model::sampling::{describe, log_softmax, Sampler, SamplingParams, TokenInfo};
use crate::model::template::Message;
use crate::model::Model;
use crate::sequences::SeqId;
use crate::tree::{NodeId, NodeKind, Scores, Tree};
use crate::worker::{EventSink, Op, OpCost, Reply, Request};

/// Why a branch stopped generating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BranchStop {
    /// The model ended its turn.
    EndOfText,
    /// A reasoning step ended (newline) or a stop text appeared.
    StepEnd,
    /// The per-call token limit was reached.
    MaxTokens,
    /// The run's token budget is spent.
    Budget,
    /// The context window is full.
    ContextFull,
    /// The next-token entropy passed the rule's threshold (before sampling).
    HighEntropy,
}

/// When [`Ctx::generate`] stops a branch.
#[derive(Clone, Debug)]
pub struct StopRule {
    /// Most tokens to add in this call.
    pub max_tokens: usize,
    /// Stop after a line break (one reasoning step).
    pub step_end: bool,
    /// Stop before sampling when the next-token entropy (nats) exceeds this.
    pub entropy_above: Option<f32>,
}

impl StopRule {
    /// Generate to the end of the answer (or `max_tokens`).
    pub fn to_end(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            step_end: false,
            entropy_above: None,
        }
    }

    /// Generate one reasoning step (one line).
    pub fn one_step(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            step_end: true,
            entropy_above: None,
        }
    }
}

/// A live sequence and the tree node it is writing into.
#[derive(Clone, Debug)]
pub struct Branch {
    /// Engine sequence.
    pub seq: SeqId,
    /// Node receiving its tokens.
    pub node: NodeId,
    /// Logits for the next token.
    pub logits: Vec<f32>,
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

/// The strategy's handle on the engine.
pub struct Ctx {
    run: RunId,
    config: RunConfig,
    model: Arc<Model>,
    requests: Sender<Request>,
    events: EventSink,
    cancel: Arc<AtomicBool>,
    tree: Tree,
    cost: CostSnapshot,
    started: Instant,
    last_cost_event: Instant,
    branches_made: u64,
    live: Vec<SeqId>,
    prompt_ids: Vec<u32>,
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        run: RunId,
        config: RunConfig,
        model: Arc<Model>,
        requests: Sender<Request>,
        events: EventSink,
        cancel: Arc<AtomicBool>,
        tree: Tree,
        energy_source: String,
        energy_measured: bool,
    ) -> Self {
        let now = Instant::now();
        Self {
            run,
            config,
            model,
            requests,
            events,
            cancel,
            tree,
            cost: CostSnapshot {
                energy_source,
                energy_measured,
                ..CostSnapshot::default()
            },
            started: now,
            last_cost_event: now,
            branches_made: 0,
            live: Vec::new(),
            prompt_ids: Vec::new(),
        }
    }

    /// The run's configuration.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tree so far.
    pub fn tree(&self) -> &Tree {
        &self.tree
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

    fn request(&mut self, op: Op) -> Result<Reply> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.requests
            .send(Request {
                run: self.run,
                op,
                reply: tx,
            })
            .map_err(|_| EngineError::WorkerGone("request channel closed".into()))?;
        let (reply, cost) = rx
            .recv()
            .map_err(|_| EngineError::WorkerGone("no reply".into()))??;
        self.add_cost(&cost);
        self.maybe_emit_cost(false);
        Ok(reply)
    }

    /// Prefill `tokens` into a new sequence (reusing any cached prefix) that this run holds.
    fn prefill_ids(&mut self, tokens: Vec<u32>) -> Result<(SeqId, Vec<f32>)> {
        match self.request(Op::Prefill { tokens })? {
            Reply::Prefilled { seq, logits } => {
                self.live.push(seq);
                Ok((seq, logits))
            }
            _ => Err(EngineError::WorkerGone(
                "unexpected reply to prefill".into(),
            )),
        }
    }

    /// One decode step for each `(sequence, token)`; the logits after each.
    fn decode_steps(&mut self, steps: Vec<(SeqId, u32)>) -> Result<Vec<Vec<f32>>> {
        match self.request(Op::Decode { steps })? {
            Reply::Logits(rows) => Ok(rows),
            _ => Err(EngineError::WorkerGone("unexpected reply to decode".into())),
        }
    }

    /// `n` forks of `seq`, held by this run.
    fn fork_seqs(&mut self, seq: SeqId, n: usize) -> Result<Vec<SeqId>> {
        match self.request(Op::Fork { seq, n })? {
            Reply::Seqs(seqs) => {
                self.live.extend(&seqs);
                Ok(seqs)
            }
            _ => Err(EngineError::WorkerGone("unexpected reply to fork".into())),
        }
    }

    /// Append `tokens` to `seq` in one pass; the logits after each.
    fn extend_seq(&mut self, seq: SeqId, tokens: Vec<u32>) -> Result<Vec<Vec<f32>>> {
        match self.request(Op::Extend { seq, tokens })? {
            Reply::Logits(rows) => Ok(rows),
            _ => Err(EngineError::WorkerGone("unexpected reply to extend".into())),
        }
    }

    fn add_cost(&mut self, c: &OpCost) {
        self.cost.prompt_tokens_computed += c.prompt_tokens_computed;
        self.cost.tokens_reused += c.tokens_reused;
        self.cost.forward_passes += c.forward_passes;
        self.cost.flops += c.flops;
        self.cost.energy_joules += c.energy_joules;
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
        let node = self.tree.nodes.len();
        self.emit(Event::NodeAdded {
            run: self.run,
            node,
            parent,
            kind,
            label: label.to_owned(),
            text: text.to_owned(),
            fork_at,
        });
        node
    }

    /// Prompt text for a question, with or without a reasoning instruction.
    pub fn prompt_text(&self, reasoning: bool) -> String {
        let q = self.config.prompt.trim();
        if !reasoning {
            return q.to_owned();
        }
        match (&self.model.template, self.config.format) {
            (Some(_), PromptFormat::Auto) => format!(
                "{q}\nThink step by step. End with \"The answer is\" followed by the answer."
            ),
            _ => format!("Question: {q}\nAnswer: Let's think step by step."),
        }
    }

    /// Prefill the prompt and create the root node. `greedy` picks the root branch's sampler.
    pub fn start(&mut self, reasoning: bool, greedy: bool) -> Result<Branch> {
        let text = self.prompt_text(reasoning);
        let ids = build_chat(
            &self.model,
            &[Message::new("user", text.clone())],
            self.config.format,
        )?;
        self.prompt_ids = ids.clone();
        let (seq, logits) = self.prefill_ids(ids.clone())?;
        let node = self.add_node(None, NodeKind::Prompt, "prompt", &text, None);
        Ok(Branch {
            seq,
            node,
            logits,
            sampler: self.new_sampler(greedy)?,
            stop: None,
            len: ids.len(),
        })
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
        let (seq, logits) = self.prefill_ids(ids.clone())?;
        let (logprobs, entropy) = log_softmax(&logits);
        let info = describe(first, &logprobs, entropy, 5, &self.model.tokenizer);
        let node = self.add_node(Some(parent), NodeKind::Manual, "by hand", "", Some(fork_at));
        self.emit(Event::TokensAppended {
            run: self.run,
            node,
            tokens: vec![info],
        });
        let mut rows = self.decode_steps(vec![(seq, first)])?;
        self.cost.generated_tokens += 1;
        Ok(Branch {
            seq,
            node,
            logits: rows.pop().unwrap_or_default(),
            sampler: self.new_sampler(greedy)?,
            stop: None,
            len: ids.len() + 1,
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
                logits: from.logits.clone(),
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
        let (lp, entropy) = log_softmax(&from.logits);
        let mut steps = Vec::with_capacity(kids.len());
        for (k, &t) in kids.iter().zip(tokens) {
            let info = describe(t, &lp, entropy, 5, &self.model.tokenizer);
            self.cost.generated_tokens += 1;
            self.emit(Event::TokensAppended {
                run: self.run,
                node: k.node,
                tokens: vec![info],
            });
            steps.push((k.seq, t));
        }
        let rows = self.decode_steps(steps)?;
        for (k, logits) in kids.iter_mut().zip(rows) {
            k.logits = logits;
            k.len += 1;
        }
        Ok(kids)
    }

    /// Generate on all `branches` in lockstep, one batched forward pass per step, until each
    /// stops by `rule`, the model's end token, the budget or the context.
    pub fn generate(&mut self, branches: &mut [Branch], rule: &StopRule) -> Result<()> {
        let context = self.model.config.context_length;
        let stop_ids = self.model.tokenizer.stop_ids.clone();
        let mut added = vec![0usize; branches.len()];
        for b in branches.iter_mut() {
            if !b.ended() {
                b.stop = None;
            }
        }
        loop {
            let mut steps = Vec::new();
            let mut stepping = Vec::new();
            for (i, b) in branches.iter_mut().enumerate() {
                if b.stop.is_some() {
                    continue;
                }
                if self
                    .config
                    .budget_tokens
                    .is_some_and(|t| self.cost.generated_tokens as usize >= t)
                {
                    b.stop = Some(BranchStop::Budget);
                    continue;
                }
                if let Some(limit) = rule.entropy_above {
                    if added[i] > 0 && log_softmax(&b.logits).1 > limit {
                        b.stop = Some(BranchStop::HighEntropy);
                        continue;
                    }
                }
                let info = b.sampler.sample(&b.logits, &self.model.tokenizer);
                self.cost.generated_tokens += 1;
                if stop_ids.contains(&info.id) {
                    b.stop = Some(BranchStop::EndOfText);
                    continue;
                }
                let id = info.id;
                let newline = info.text.contains('\n');
                let node = b.node;
                self.emit(Event::TokensAppended {
                    run: self.run,
                    node,
                    tokens: vec![info],
                });
                added[i] += 1;
                let node_has_text = self.tree.nodes[node].text.trim().len() > 1;
                if b.len + 1 >= context {
                    b.stop = Some(BranchStop::ContextFull);
                    continue;
                }
                if rule.step_end && newline && node_has_text {
                    b.stop = Some(BranchStop::StepEnd);
                } else if added[i] >= rule.max_tokens {
                    b.stop = Some(BranchStop::MaxTokens);
                }
                // Feed the token even when the branch stops here, so it can be continued later.
                steps.push((b.seq, id));
                stepping.push(i);
            }
            if steps.is_empty() {
                break;
            }
            let rows = self.decode_steps(steps)?;
            for (i, logits) in stepping.into_iter().zip(rows) {
                branches[i].logits = logits;
                branches[i].len += 1;
            }
        }
        self.maybe_emit_cost(false);
        Ok(())
    }

    /// Insert `text` after `from` in a new forced node (e.g. "Wait"), computing it in one pass.
    /// The new node's tokens carry the model's log-probabilities for the inserted text.
    pub fn force(&mut self, from: &Branch, text: &str, label: &str) -> Result<Branch> {
        let ids = self.model.tokenizer.encode(text)?;
        let seq = self
            .fork_seqs(from.seq, 1)?
            .first()
            .copied()
            .ok_or_else(|| {
                EngineError::WorkerGone("a fork of one sequence returned none".into())
            })?;
        let node = self.add_node(Some(from.node), NodeKind::Forced, label, "", None);
        let mut branch = Branch {
            seq,
            node,
            logits: from.logits.clone(),
            sampler: from.sampler.clone(),
            stop: None,
            len: from.len,
        };
        if ids.is_empty() {
            return Ok(branch);
        }
        let rows = self.extend_seq(seq, ids.clone())?;
        let mut tokens = Vec::with_capacity(ids.len());
        let mut before = &from.logits;
        for (k, &id) in ids.iter().enumerate() {
            let (lp, entropy) = log_softmax(before);
            tokens.push(describe(id, &lp, entropy, 5, &self.model.tokenizer));
            before = &rows[k];
        }
        branch.logits = rows.last().cloned().unwrap_or_default();
        branch.len += ids.len();
        self.emit(Event::TokensAppended {
            run: self.run,
            node,
            tokens,
        });
        self.emit(Event::NodeFinished {
            run: self.run,
            node,
            answer: None,
        });
        Ok(branch)
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
        let answer = extract_answer(&self.tree.path_text(b.node));
        let mut scores = self.tree.nodes[b.node].scores.clone();
        scores.mean_logprob = self.path_mean_logprob(b.node);
        self.set_scores(b.node, scores);
        self.emit(Event::NodeFinished {
            run: self.run,
            node: b.node,
            answer: answer.clone(),
        });
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
        // Releasing cannot meaningfully fail; a cancelled run frees everything at its end anyway.
        let _ = self.request(Op::Release { seqs: vec![b.seq] });
    }

    /// Ask the model whether the answer on `b`'s path is correct; returns P(yes) / (P(yes) + P(no))
    /// and records the question as an evaluation node.
    pub fn verify(&mut self, b: &Branch) -> Result<f32> {
        let question = "Is the answer above correct? Reply with yes or no.";
        let suffix = match (&self.model.template, self.config.format) {
            (Some(t), PromptFormat::Auto) => {
                let user = Message::new("user", self.prompt_text(true));
                let answer = Message::new("assistant", self.tree.path_text(b.node));
                let before = t.render(std::slice::from_ref(&user))? + &answer.content;
                let after = t.render(&[user, answer, Message::new("user", question)])?;
                after.strip_prefix(&before).map(str::to_owned)
            }
            _ => None,
        }
        .unwrap_or_else(|| format!("\n\nQuestion: {question}\nReply:"));
        let eval = self.force(b, &suffix, "verify")?;
        let (lp, _) = log_softmax(&eval.logits);
        let prob = |words: &[&str]| -> f32 {
            let mut ids: Vec<u32> = words
                .iter()
                .filter_map(|w| self.model.tokenizer.encode(w).ok()?.first().copied())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids.iter()
                .map(|&i| lp.get(i as usize).map_or(0.0, |l| l.exp()))
                .sum()
        };
        let yes = prob(&["yes", "Yes", " yes", " Yes", "YES"]);
        let no = prob(&["no", "No", " no", " No", "NO"]);
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

    /// Finish the run: free sequences the strategy did not release and report the final cost.
    pub(crate) fn finish_run(&mut self) -> (Tree, Vec<u32>, CostSnapshot) {
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
            .filter(|n| n.status == crate::tree::NodeStatus::Running && n.kind != NodeKind::Prompt)
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
