//! The local sequence service: one named engine thread owns the model's sequences and serves
//! every run's requests, merging the decode steps of all running generations into one batched
//! forward pass.
//!
//! A strategy's `generate` becomes an active generation inside the engine thread: each pass
//! samples the next token of every unfinished branch of every generation whose run may proceed
//! (not paused, or paused with a step left), streams the chosen tokens back to the strategy
//! thread, and runs one forward pass over all of them. Pausing a run holds its generations and
//! requests; cancelling answers them with [`EngineError::Cancelled`] within one pass.
//!
//! The engine thread is supervised: a panic inside a pass fails the requests in flight with a
//! message, and the thread starts over with an empty cache, so one bad request never leaves the
//! app without an engine.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};

use crate::cost::{flops_for, EnergyMeter};
use crate::error::{EngineError, Result};
use crate::generate::{build_chat, PromptFormat};
use crate::model::sampling::{describe, log_softmax, top_k_ids, Alternative, TokenInfo};
use crate::model::template::Message;
use crate::model::Model;
use crate::sequences::{Engine, DEFAULT_KV_BUDGET_BYTES};
use crate::service::{
    Appended, BranchOutcome, BranchStop, Capabilities, GenerateRequest, KvUsage, NextToken, OpCost,
    Prefilled, RunControl, SeqId, SequenceService, Served, ServiceInfo, NEXT_TOP,
};

/// Alternatives recorded with every token.
const TOKEN_ALTERNATIVES: usize = 5;

/// How long the engine thread sleeps between checks while it holds only paused work.
const HELD_POLL: Duration = Duration::from_millis(20);

type Reply<T> = Sender<Result<Served<T>>>;

/// A request to the engine thread.
enum Job {
    Prefill {
        run: Arc<RunControl>,
        tokens: Vec<u32>,
        reply: Reply<Prefilled>,
    },
    Fork {
        run: Arc<RunControl>,
        seq: SeqId,
        n: usize,
        reply: Reply<Vec<SeqId>>,
    },
    Append {
        run: Arc<RunControl>,
        items: Vec<(SeqId, Vec<u32>)>,
        reply: Reply<Vec<Appended>>,
    },
    NextLogprobs {
        run: Arc<RunControl>,
        seq: SeqId,
        ids: Vec<u32>,
        reply: Reply<Vec<Option<f32>>>,
    },
    Generate {
        run: Arc<RunControl>,
        request: GenerateRequest,
        updates: Sender<GenUpdate>,
    },
    Release {
        seqs: Vec<SeqId>,
    },
    /// Answered once every earlier job has been served.
    Sync {
        reply: Sender<()>,
    },
    Shutdown,
}

impl Job {
    fn run(&self) -> Option<&Arc<RunControl>> {
        match self {
            Job::Prefill { run, .. }
            | Job::Fork { run, .. }
            | Job::Append { run, .. }
            | Job::NextLogprobs { run, .. }
            | Job::Generate { run, .. } => Some(run),
            Job::Release { .. } | Job::Sync { .. } | Job::Shutdown => None,
        }
    }

    /// Answer the job with an error instead of serving it.
    fn refuse(self, e: EngineError) {
        match self {
            Job::Prefill { reply, .. } => drop(reply.send(Err(e))),
            Job::Fork { reply, .. } => drop(reply.send(Err(e))),
            Job::Append { reply, .. } => drop(reply.send(Err(e))),
            Job::NextLogprobs { reply, .. } => drop(reply.send(Err(e))),
            Job::Generate { updates, .. } => drop(updates.send(GenUpdate::failed(e))),
            Job::Sync { reply } => drop(reply.send(())),
            Job::Release { .. } | Job::Shutdown => {}
        }
    }
}

/// What a generation streams back to its strategy thread.
enum GenUpdate {
    /// Tokens chosen in one pass: (branch index, token).
    Tokens(Vec<(usize, TokenInfo)>),
    /// The generation is over.
    Done(Served<Result<Vec<BranchOutcome>>>),
}

impl GenUpdate {
    fn failed(e: EngineError) -> Self {
        Self::Done(Served::free(Err(e)))
    }
}

/// Options for [`LocalService::start`].
#[derive(Clone, Debug)]
pub(crate) struct LocalOptions {
    /// KV cache budget in bytes.
    pub kv_budget_bytes: usize,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            kv_budget_bytes: DEFAULT_KV_BUDGET_BYTES,
        }
    }
}

/// The in-process sequence service over a loaded model.
pub(crate) struct LocalService {
    info: ServiceInfo,
    model: Arc<Model>,
    jobs: Sender<Job>,
    kv: Arc<Mutex<KvUsage>>,
}

impl LocalService {
    /// Start the engine thread for `model`.
    pub(crate) fn start(model: Arc<Model>, options: LocalOptions) -> Result<Self> {
        let backend = model.backend().info();
        let energy = model
            .backend()
            .energy_meter()
            .unwrap_or_else(|| EnergyMeter::detect(rayon::current_num_threads(), backend.gpu));
        let info = ServiceInfo {
            model: model.info.name.clone(),
            device: backend.device,
            kernels: backend.kernels,
            context_length: model.config.context_length,
            vocab: model.config.vocab,
            has_chat_template: model.template.is_some(),
            energy_source: energy.describe(),
            energy_measured: energy.measured(),
            capabilities: Capabilities {
                top_alternatives: TOKEN_ALTERNATIVES,
                exact_entropy: true,
                full_logprobs: true,
                reuse_reported: true,
            },
        };
        // The first engine is made here, so a backend that cannot make one fails the start.
        let engine = Engine::new(model.clone(), options.kv_budget_bytes)?;
        let kv = Arc::new(Mutex::new(KvUsage {
            used_bytes: 0,
            budget_bytes: engine.kv_budget_bytes(),
        }));
        let (tx, rx) = unbounded();
        {
            let (model, kv) = (model.clone(), kv.clone());
            std::thread::Builder::new()
                .name("thinkscope-engine".into())
                .spawn(move || EngineThread::new(model, engine, energy, options, kv, rx).run())
                .map_err(|e| EngineError::WorkerGone(format!("could not start the engine: {e}")))?;
        }
        Ok(Self {
            info,
            model,
            jobs: tx,
            kv,
        })
    }

    fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<Served<T>> {
        let (tx, rx) = bounded(1);
        self.jobs
            .send(job(tx))
            .map_err(|_| EngineError::WorkerGone("the engine thread has stopped".into()))?;
        rx.recv()
            .map_err(|_| EngineError::WorkerGone("the engine thread gave no reply".into()))?
    }
}

impl Drop for LocalService {
    fn drop(&mut self) {
        // The engine thread finishes the pass in flight, answers what is left and ends. It is
        // not joined: the last holder of the service may be a UI thread, which must not wait
        // for a pass (seconds, on a software GPU).
        let _ = self.jobs.send(Job::Shutdown);
    }
}

impl SequenceService for LocalService {
    fn info(&self) -> &ServiceInfo {
        &self.info
    }

    fn prompt_ids(&self, messages: &[Message], format: PromptFormat) -> Result<Vec<u32>> {
        build_chat(&self.model, messages, format)
    }

    fn render_chat(&self, messages: &[Message]) -> Option<Result<String>> {
        self.model.template.as_ref().map(|t| t.render(messages))
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.model.tokenizer.encode(text)
    }

    fn prefill(&self, run: &Arc<RunControl>, tokens: Vec<u32>) -> Result<Served<Prefilled>> {
        run.check()?;
        self.ask(|reply| Job::Prefill {
            run: run.clone(),
            tokens,
            reply,
        })
    }

    fn fork(&self, run: &Arc<RunControl>, seq: SeqId, n: usize) -> Result<Served<Vec<SeqId>>> {
        run.check()?;
        self.ask(|reply| Job::Fork {
            run: run.clone(),
            seq,
            n,
            reply,
        })
    }

    fn generate(
        &self,
        run: &Arc<RunControl>,
        request: GenerateRequest,
        on_token: &mut dyn FnMut(usize, TokenInfo),
    ) -> Served<Result<Vec<BranchOutcome>>> {
        if let Err(e) = run.check() {
            return Served::free(Err(e));
        }
        let (tx, rx) = unbounded();
        let job = Job::Generate {
            run: run.clone(),
            request,
            updates: tx,
        };
        if self.jobs.send(job).is_err() {
            return Served::free(Err(EngineError::WorkerGone(
                "the engine thread has stopped".into(),
            )));
        }
        loop {
            match rx.recv() {
                Ok(GenUpdate::Tokens(tokens)) => {
                    for (branch, token) in tokens {
                        on_token(branch, token);
                    }
                }
                Ok(GenUpdate::Done(result)) => return result,
                Err(_) => {
                    return Served::free(Err(EngineError::WorkerGone(
                        "the engine thread ended a generation without a reply".into(),
                    )))
                }
            }
        }
    }

    fn append(
        &self,
        run: &Arc<RunControl>,
        items: Vec<(SeqId, Vec<u32>)>,
    ) -> Result<Served<Vec<Appended>>> {
        run.check()?;
        self.ask(|reply| Job::Append {
            run: run.clone(),
            items,
            reply,
        })
    }

    fn next_logprobs(
        &self,
        run: &Arc<RunControl>,
        seq: SeqId,
        ids: &[u32],
    ) -> Result<Served<Vec<Option<f32>>>> {
        run.check()?;
        self.ask(|reply| Job::NextLogprobs {
            run: run.clone(),
            seq,
            ids: ids.to_vec(),
            reply,
        })
    }

    fn release(&self, seqs: &[SeqId]) {
        if !seqs.is_empty() {
            let _ = self.jobs.send(Job::Release {
                seqs: seqs.to_vec(),
            });
        }
    }

    fn kv_usage(&self) -> Option<KvUsage> {
        self.kv.lock().ok().map(|k| *k)
    }

    fn sync(&self) {
        let (tx, rx) = bounded(1);
        if self.jobs.send(Job::Sync { reply: tx }).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// One branch of an active generation.
struct GenState {
    seq: SeqId,
    sampler: crate::model::sampling::Sampler,
    text: String,
    added: usize,
    stop: Option<BranchStop>,
}

/// A generation in progress inside the engine thread.
struct ActiveGen {
    run: Arc<RunControl>,
    rule: crate::service::StopRule,
    budget: Option<usize>,
    generated: usize,
    branches: Vec<GenState>,
    updates: Sender<GenUpdate>,
    cost: OpCost,
    /// Already answered with an error.
    failed: bool,
}

impl ActiveGen {
    fn done(&self) -> bool {
        self.failed || self.branches.iter().all(|b| b.stop.is_some())
    }
}

/// State of the engine thread.
struct EngineThread {
    model: Arc<Model>,
    engine: Engine,
    energy: EnergyMeter,
    options: LocalOptions,
    kv: Arc<Mutex<KvUsage>>,
    jobs: Receiver<Job>,
    /// Next-token logits of every live sequence (shared by forks until they diverge).
    logits: HashMap<SeqId, Arc<Vec<f32>>>,
    gens: Vec<ActiveGen>,
    /// Requests of paused runs.
    held: Vec<Job>,
}

impl EngineThread {
    fn new(
        model: Arc<Model>,
        engine: Engine,
        energy: EnergyMeter,
        options: LocalOptions,
        kv: Arc<Mutex<KvUsage>>,
        jobs: Receiver<Job>,
    ) -> Self {
        Self {
            model,
            engine,
            energy,
            options,
            kv,
            jobs,
            logits: HashMap::new(),
            gens: Vec::new(),
            held: Vec::new(),
        }
    }

    fn run(mut self) {
        loop {
            let outcome = catch_unwind(AssertUnwindSafe(|| self.turn()));
            match outcome {
                Ok(true) => continue,
                Ok(false) => break,
                Err(panic) => self.recover(&panic_message(&*panic)),
            }
        }
        self.shutdown();
    }

    /// One turn: take new requests, serve what may proceed, run one decode pass. `false` once
    /// the service shuts down.
    fn turn(&mut self) -> bool {
        let mut incoming = Vec::new();
        let busy = self
            .gens
            .iter()
            .any(|g| g.run.may_proceed() || g.run.is_cancelled());
        if !busy {
            let first = if self.held.is_empty() && self.gens.is_empty() {
                self.jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                self.jobs.recv_timeout(HELD_POLL)
            };
            match first {
                Ok(job) => incoming.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        incoming.extend(self.jobs.try_iter());
        let mut jobs = std::mem::take(&mut self.held);
        jobs.extend(incoming);
        for job in jobs {
            if matches!(job, Job::Shutdown) {
                return false;
            }
            self.serve(job);
        }
        self.decode_pass();
        self.publish_kv();
        true
    }

    fn publish_kv(&self) {
        if let Ok(mut k) = self.kv.lock() {
            *k = KvUsage {
                used_bytes: self.engine.kv_used_bytes(),
                budget_bytes: self.engine.kv_budget_bytes(),
            };
        }
    }

    fn serve(&mut self, job: Job) {
        if let Some(run) = job.run() {
            if run.is_cancelled() {
                return job.refuse(EngineError::Cancelled);
            }
            let is_gen = matches!(job, Job::Generate { .. });
            if !is_gen && !run.may_proceed() {
                self.held.push(job);
                return;
            }
        }
        match job {
            Job::Prefill { run, tokens, reply } => {
                let r = self.prefill(&tokens);
                run.used_pass();
                let _ = reply.send(r);
            }
            Job::Fork { seq, n, reply, .. } => {
                let _ = reply.send(self.fork(seq, n));
            }
            Job::Append { run, items, reply } => {
                let r = self.append(&items);
                run.used_pass();
                let _ = reply.send(r);
            }
            Job::NextLogprobs {
                seq, ids, reply, ..
            } => {
                let _ = reply.send(self.next_logprobs(seq, &ids));
            }
            Job::Generate {
                run,
                request,
                updates,
            } => self.start_generation(run, request, updates),
            Job::Release { seqs } => {
                for s in seqs {
                    self.engine.release(s);
                    self.logits.remove(&s);
                }
                self.publish_kv();
            }
            Job::Sync { reply } => {
                let _ = reply.send(());
            }
            Job::Shutdown => {}
        }
    }

    fn next_of(&self, seq: SeqId) -> Result<Arc<Vec<f32>>> {
        self.logits
            .get(&seq)
            .cloned()
            .ok_or(EngineError::UnknownSequence(seq))
    }

    fn next_token(&self, logits: &[f32]) -> NextToken {
        let (lp, entropy) = log_softmax(logits);
        next_token(&lp, entropy, &self.model)
    }

    fn prefill(&mut self, tokens: &[u32]) -> Result<Served<Prefilled>> {
        let before = self.engine.counters();
        let t = Instant::now();
        let energy_before = self.energy.read();
        let (seq, logits) = self.engine.prefill_shared(tokens)?;
        let d = self.engine.counters().since(&before);
        let next = self.next_token(&logits);
        self.logits.insert(seq, Arc::new(logits));
        let cost = OpCost {
            prompt_tokens_computed: d.prompt_tokens_computed,
            tokens_reused: d.tokens_reused,
            generated_tokens: 0,
            forward_passes: d.forward_passes,
            flops: flops_for(
                &self.model.config,
                d.tokens_reused as usize,
                d.prompt_tokens_computed as usize,
                1,
            ),
            energy_joules: self
                .energy
                .joules_since(energy_before, t.elapsed().as_secs_f64()),
        };
        Ok(Served {
            value: Prefilled {
                seq,
                len: tokens.len(),
                next,
            },
            cost,
        })
    }

    fn fork(&mut self, seq: SeqId, n: usize) -> Result<Served<Vec<SeqId>>> {
        let logits = self.next_of(seq)?;
        let before = self.engine.counters();
        let mut seqs = Vec::with_capacity(n);
        for _ in 0..n {
            match self.engine.fork(seq) {
                Ok(s) => {
                    self.logits.insert(s, logits.clone());
                    seqs.push(s);
                }
                Err(e) => {
                    for s in seqs {
                        self.engine.release(s);
                        self.logits.remove(&s);
                    }
                    return Err(e);
                }
            }
        }
        let d = self.engine.counters().since(&before);
        Ok(Served {
            value: seqs,
            cost: OpCost {
                tokens_reused: d.tokens_reused,
                ..OpCost::default()
            },
        })
    }

    fn append(&mut self, items: &[(SeqId, Vec<u32>)]) -> Result<Served<Vec<Appended>>> {
        let mut firsts = Vec::with_capacity(items.len());
        let mut starts = Vec::with_capacity(items.len());
        for (seq, tokens) in items {
            if tokens.is_empty() {
                return Err(EngineError::InvalidParameter(
                    "append needs at least one token".into(),
                ));
            }
            firsts.push(self.next_of(*seq)?);
            starts.push(self.engine.len(*seq)?);
        }
        let t = Instant::now();
        let energy_before = self.energy.read();
        let refs: Vec<(SeqId, &[u32])> = items.iter().map(|(s, t)| (*s, t.as_slice())).collect();
        let rows = self.engine.extend(&refs)?;
        let joules = self
            .energy
            .joules_since(energy_before, t.elapsed().as_secs_f64());
        let mut out = Vec::with_capacity(items.len());
        let mut flops = 0.0;
        for (((seq, tokens), rows), (first, start)) in
            items.iter().zip(rows).zip(firsts.into_iter().zip(starts))
        {
            flops += flops_for(&self.model.config, start, tokens.len(), tokens.len());
            let mut infos = Vec::with_capacity(tokens.len());
            let mut before: &[f32] = &first;
            for (k, &id) in tokens.iter().enumerate() {
                let (lp, entropy) = log_softmax(before);
                infos.push(describe(
                    id,
                    &lp,
                    entropy,
                    TOKEN_ALTERNATIVES,
                    &self.model.tokenizer,
                ));
                before = &rows[k];
            }
            let last = rows.last().cloned().unwrap_or_default();
            let next = self.next_token(&last);
            self.logits.insert(*seq, Arc::new(last));
            out.push(Appended {
                tokens: infos,
                len: start + tokens.len(),
                next,
            });
        }
        let computed = items.iter().map(|(_, t)| t.len() as u64).sum();
        Ok(Served {
            value: out,
            cost: OpCost {
                prompt_tokens_computed: computed,
                forward_passes: 1,
                flops,
                energy_joules: joules,
                ..OpCost::default()
            },
        })
    }

    fn next_logprobs(&self, seq: SeqId, ids: &[u32]) -> Result<Served<Vec<Option<f32>>>> {
        let logits = self.next_of(seq)?;
        let (lp, _) = log_softmax(&logits);
        Ok(Served::free(
            ids.iter().map(|&i| lp.get(i as usize).copied()).collect(),
        ))
    }

    fn start_generation(
        &mut self,
        run: Arc<RunControl>,
        request: GenerateRequest,
        updates: Sender<GenUpdate>,
    ) {
        for b in &request.branches {
            if let Err(e) = self.next_of(b.seq) {
                let _ = updates.send(GenUpdate::failed(e));
                return;
            }
        }
        let branches = request
            .branches
            .into_iter()
            .map(|b| GenState {
                seq: b.seq,
                sampler: b.sampler,
                text: b.prior_text,
                added: 0,
                stop: None,
            })
            .collect();
        self.gens.push(ActiveGen {
            run,
            rule: request.rule,
            budget: request.budget,
            generated: 0,
            branches,
            updates,
            cost: OpCost::default(),
            failed: false,
        });
        // An empty request (or one whose branches all stop at once) ends without a pass.
        self.decode_pass_for_done();
    }

    /// Choose the next token of every unfinished branch of the generations that may proceed,
    /// stream them, and run one forward pass over all of them.
    fn decode_pass(&mut self) {
        // Cancelled generations end now; their streamed tokens stay with the strategy.
        for g in std::mem::take(&mut self.gens) {
            if g.run.is_cancelled() {
                let _ = g.updates.send(GenUpdate::Done(Served {
                    value: Err(EngineError::Cancelled),
                    cost: g.cost,
                }));
            } else {
                self.gens.push(g);
            }
        }
        let context = self.model.config.context_length;
        let mut steps: Vec<(SeqId, u32)> = Vec::new();
        // (generation, branch) of each step.
        let mut owners: Vec<(usize, usize)> = Vec::new();
        let mut stepping_gens = Vec::new();
        for (gi, g) in self.gens.iter_mut().enumerate() {
            if !g.run.may_proceed() {
                continue;
            }
            let mut streamed = Vec::new();
            for (bi, b) in g.branches.iter_mut().enumerate() {
                if b.stop.is_some() {
                    continue;
                }
                if g.budget.is_some_and(|t| g.generated >= t) {
                    b.stop = Some(BranchStop::Budget);
                    continue;
                }
                let Some(logits) = self.logits.get(&b.seq) else {
                    b.stop = Some(BranchStop::ContextFull);
                    continue;
                };
                let (lp, entropy) = log_softmax(logits);
                if let Some(limit) = g.rule.entropy_above {
                    if b.added > 0 && entropy > limit {
                        b.stop = Some(BranchStop::HighEntropy);
                        continue;
                    }
                }
                let id = b.sampler.choose(logits);
                let info = describe(
                    id,
                    &lp,
                    entropy,
                    b.sampler.params().top_alternatives,
                    &self.model.tokenizer,
                );
                g.generated += 1;
                g.cost.generated_tokens += 1;
                if self.model.tokenizer.stop_ids.contains(&id) {
                    b.stop = Some(BranchStop::EndOfText);
                    continue;
                }
                let newline = info.text.contains('\n');
                b.text.push_str(&info.text);
                streamed.push((bi, info));
                b.added += 1;
                let len = self.engine.len(b.seq).unwrap_or(context);
                if len + 1 >= context {
                    b.stop = Some(BranchStop::ContextFull);
                    continue;
                }
                if g.rule.step_end && newline && b.text.trim().len() > 1 {
                    b.stop = Some(BranchStop::StepEnd);
                } else if b.added >= g.rule.max_tokens {
                    b.stop = Some(BranchStop::MaxTokens);
                }
                // Fed even when the branch stops here, so it can be continued later.
                steps.push((b.seq, id));
                owners.push((gi, bi));
            }
            if !streamed.is_empty() {
                let _ = g.updates.send(GenUpdate::Tokens(streamed));
            }
            if owners.last().is_some_and(|o| o.0 == gi) {
                stepping_gens.push(gi);
            }
        }
        if !steps.is_empty() {
            crate::fault::point(crate::fault::Fault::EnginePanic);
            self.forward_steps(&steps, &owners);
        }
        for gi in stepping_gens {
            if let Some(g) = self.gens.get(gi) {
                g.run.used_pass();
            }
        }
        self.decode_pass_for_done();
    }

    /// One forward pass over `steps`; when the merged pass fails (a KV budget overflow, say),
    /// each generation's steps are retried alone so only the generations that cannot go on fail.
    fn forward_steps(&mut self, steps: &[(SeqId, u32)], owners: &[(usize, usize)]) {
        let t = Instant::now();
        let energy_before = self.energy.read();
        match self.engine.decode(steps) {
            Ok(rows) => {
                let joules = self
                    .energy
                    .joules_since(energy_before, t.elapsed().as_secs_f64());
                self.account(steps, owners, rows, joules);
            }
            Err(merged) => {
                let mut gens: Vec<usize> = owners.iter().map(|o| o.0).collect();
                gens.dedup();
                if gens.len() == 1 {
                    return self.fail_gen(gens[0], merged);
                }
                for gi in gens {
                    let idx: Vec<usize> = (0..steps.len()).filter(|&i| owners[i].0 == gi).collect();
                    let own: Vec<(SeqId, u32)> = idx.iter().map(|&i| steps[i]).collect();
                    let own_owners: Vec<(usize, usize)> = idx.iter().map(|&i| owners[i]).collect();
                    let t = Instant::now();
                    let energy_before = self.energy.read();
                    match self.engine.decode(&own) {
                        Ok(rows) => {
                            let joules = self
                                .energy
                                .joules_since(energy_before, t.elapsed().as_secs_f64());
                            self.account(&own, &own_owners, rows, joules);
                        }
                        Err(e) => self.fail_gen(gi, e),
                    }
                }
            }
        }
    }

    fn account(
        &mut self,
        steps: &[(SeqId, u32)],
        owners: &[(usize, usize)],
        rows: Vec<Vec<f32>>,
        joules: f64,
    ) {
        let total = steps.len().max(1) as f64;
        let mut passes_counted: Vec<usize> = Vec::new();
        for ((&(seq, _), &(gi, _)), row) in steps.iter().zip(owners).zip(rows) {
            let pos = self.engine.len(seq).unwrap_or(1).saturating_sub(1);
            self.logits.insert(seq, Arc::new(row));
            let g = &mut self.gens[gi];
            g.cost.flops += flops_for(&self.model.config, pos, 1, 1);
            g.cost.energy_joules += joules / total;
            if !passes_counted.contains(&gi) {
                passes_counted.push(gi);
                g.cost.forward_passes += 1;
            }
        }
    }

    fn fail_gen(&mut self, gi: usize, e: EngineError) {
        if let Some(g) = self.gens.get_mut(gi) {
            let msg = e.to_string();
            let err = match e {
                EngineError::KvBudgetExceeded { .. } => e,
                _ => EngineError::Failed(msg),
            };
            let _ = g.updates.send(GenUpdate::Done(Served {
                value: Err(err),
                cost: g.cost,
            }));
            g.failed = true;
        }
    }

    /// Send the outcomes of generations whose branches have all stopped.
    fn decode_pass_for_done(&mut self) {
        let mut i = 0;
        while i < self.gens.len() {
            if !self.gens[i].done() {
                i += 1;
                continue;
            }
            let g = self.gens.remove(i);
            if g.failed {
                continue;
            }
            let outcomes: Vec<BranchOutcome> = g
                .branches
                .into_iter()
                .map(|b| {
                    let next = self
                        .logits
                        .get(&b.seq)
                        .map(|l| self.next_token(l))
                        .unwrap_or_default();
                    BranchOutcome {
                        stop: b.stop.unwrap_or(BranchStop::MaxTokens),
                        len: self.engine.len(b.seq).unwrap_or(0),
                        sampler: b.sampler,
                        next,
                    }
                })
                .collect();
            let _ = g.updates.send(GenUpdate::Done(Served {
                value: Ok(outcomes),
                cost: g.cost,
            }));
        }
    }

    /// After a panic: fail everything in flight and start over with an empty cache.
    fn recover(&mut self, message: &str) {
        tracing::error!("engine thread panicked: {message}; restarting it");
        let err = || EngineError::Failed(format!("the engine failed ({message}) and restarted"));
        for g in self.gens.drain(..) {
            let _ = g.updates.send(GenUpdate::Done(Served {
                value: Err(err()),
                cost: g.cost,
            }));
        }
        for job in self.held.drain(..) {
            job.refuse(err());
        }
        self.logits.clear();
        match Engine::new(self.model.clone(), self.options.kv_budget_bytes) {
            Ok(engine) => self.engine = engine,
            Err(e) => tracing::error!("could not restart the engine: {e}"),
        }
        self.publish_kv();
    }

    fn shutdown(&mut self) {
        for g in self.gens.drain(..) {
            let _ = g.updates.send(GenUpdate::Done(Served {
                value: Err(EngineError::Cancelled),
                cost: g.cost,
            }));
        }
        for job in self.held.drain(..) {
            job.refuse(EngineError::Cancelled);
        }
        for job in self.jobs.try_iter() {
            job.refuse(EngineError::Cancelled);
        }
    }
}

/// The top [`NEXT_TOP`] alternatives and the entropy of a next-token distribution.
fn next_token(logprobs: &[f32], entropy: f32, model: &Model) -> NextToken {
    NextToken {
        entropy,
        top: top_k_ids(logprobs, NEXT_TOP)
            .into_iter()
            .map(|id| Alternative {
                id,
                text: model.tokenizer.token_text(id),
                logprob: logprobs[id as usize],
            })
            .collect(),
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
