//! The engine worker: one named thread that owns the model's sequences and batches the forward
//! passes of every running strategy.
//!
//! Each run's strategy executes on its own named thread as plain sequential code; every engine
//! operation it needs becomes a [`Request`]. The worker gathers the requests of all runs, merges
//! their decode steps into one batched forward pass, and answers each. Pausing a run means holding
//! its requests; cancelling means answering them with [`EngineError::Cancelled`], so a cancel takes
//! effect within one forward pass and leaves the tree consistent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};

use crate::cost::{flops_for, CostSnapshot, EnergyMeter};
use crate::error::{EngineError, Result};
use crate::events::{Command, Event, RunId, RunOutcome};
use crate::model::Model;
use crate::sequences::{Engine, SeqId};
use crate::strategy::{Ctx, ManualBranch, RunConfig};
use crate::tree::Tree;

/// Called after events are sent, so a GUI can repaint. The engine knows nothing else of the GUI.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Sends events and wakes the viewer.
#[derive(Clone)]
pub struct EventSink {
    tx: Sender<Event>,
    waker: Waker,
}

impl EventSink {
    /// Send one event (dropped silently when nobody listens any more).
    pub fn send(&self, event: Event) {
        if self.tx.send(event).is_ok() {
            (self.waker)();
        }
    }
}

/// One engine operation a strategy asks for.
pub(crate) enum Op {
    Prefill { tokens: Vec<u32> },
    Fork { seq: SeqId, n: usize },
    Decode { steps: Vec<(SeqId, u32)> },
    Extend { seq: SeqId, tokens: Vec<u32> },
    Release { seqs: Vec<SeqId> },
}

/// The answer to an [`Op`].
pub(crate) enum Reply {
    Prefilled { seq: SeqId, logits: Vec<f32> },
    Seqs(Vec<SeqId>),
    Logits(Vec<Vec<f32>>),
    Done,
}

/// Work an operation cost, attributed to the run that asked.
#[derive(Default, Clone, Copy)]
pub(crate) struct OpCost {
    pub prompt_tokens_computed: u64,
    pub tokens_reused: u64,
    pub forward_passes: u64,
    pub flops: f64,
    pub energy_joules: f64,
}

pub(crate) struct Request {
    pub run: RunId,
    pub op: Op,
    pub reply: Sender<Result<(Reply, OpCost)>>,
}

enum Internal {
    /// A run's thread is done. The worker records the run (so it can be branched from) and only
    /// then tells viewers it finished: a `BranchFrom` sent on seeing `RunFinished` always finds it.
    Finished {
        run: RunId,
        outcome: RunOutcome,
        cost: CostSnapshot,
        tree: Tree,
        prompt_ids: Vec<u32>,
        config: RunConfig,
        seqs: Vec<SeqId>,
    },
}

/// Options for [`Worker::spawn`].
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// KV cache budget in bytes.
    pub kv_budget_bytes: usize,
    /// Capacity of the event channel.
    pub event_capacity: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            kv_budget_bytes: crate::sequences::DEFAULT_KV_BUDGET_BYTES,
            event_capacity: 65_536,
        }
    }
}

/// Handle to the engine worker thread. Dropping it shuts the worker down and joins it.
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Start the worker for `model`. `waker` is called whenever events are sent.
    pub fn spawn(model: Arc<Model>, options: WorkerOptions, waker: Waker) -> Result<Self> {
        let (cmd_tx, cmd_rx) = bounded::<Command>(256);
        let (ev_tx, ev_rx) = bounded::<Event>(options.event_capacity.max(16));
        let sink = EventSink { tx: ev_tx, waker };
        let thread = std::thread::Builder::new()
            .name("thinkscope-engine".into())
            .spawn(move || {
                let mut w = WorkerLoop::new(model, options, sink, cmd_rx);
                w.run();
            })
            .map_err(|e| EngineError::WorkerGone(format!("could not start worker thread: {e}")))?;
        Ok(Self {
            commands: cmd_tx,
            events: ev_rx,
            thread: Some(thread),
        })
    }

    /// Send a command.
    pub fn send(&self, cmd: Command) -> Result<()> {
        self.commands
            .send(cmd)
            .map_err(|_| EngineError::WorkerGone("command channel closed".into()))
    }

    /// The event stream. Drain it with `try_recv` once a frame.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        // Unblock strategy threads stuck on a full event channel.
        while self.events.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct ActiveRun {
    cancel: Arc<AtomicBool>,
    paused: bool,
    steps: u32,
    thread: Option<JoinHandle<()>>,
}

struct FinishedRun {
    tree: Tree,
    prompt_ids: Vec<u32>,
    config: RunConfig,
    seqs: Vec<SeqId>,
}

struct WorkerLoop {
    model: Arc<Model>,
    engine: Engine,
    energy: EnergyMeter,
    sink: EventSink,
    commands: Receiver<Command>,
    req_tx: Sender<Request>,
    req_rx: Receiver<Request>,
    int_tx: Sender<Internal>,
    int_rx: Receiver<Internal>,
    active: HashMap<RunId, ActiveRun>,
    finished: HashMap<RunId, FinishedRun>,
    /// Order in which finished runs may give their cached sequences back.
    finished_order: Vec<RunId>,
    held: Vec<Request>,
    /// Sequences a continuing run inherits from its earlier part.
    inherited: HashMap<RunId, Vec<SeqId>>,
}

impl WorkerLoop {
    fn new(
        model: Arc<Model>,
        options: WorkerOptions,
        sink: EventSink,
        commands: Receiver<Command>,
    ) -> Self {
        let (req_tx, req_rx) = unbounded();
        let (int_tx, int_rx) = unbounded();
        let gpu = model.backend().info().gpu;
        let energy = EnergyMeter::detect(rayon::current_num_threads(), gpu);
        Self {
            engine: Engine::new(model.clone(), options.kv_budget_bytes).expect("engine"),
            model,
            energy,
            sink,
            commands,
            req_tx,
            req_rx,
            int_tx,
            int_rx,
            active: HashMap::new(),
            finished: HashMap::new(),
            finished_order: Vec::new(),
            held: Vec::new(),
            inherited: HashMap::new(),
        }
    }

    fn run(&mut self) {
        loop {
            let mut pending = std::mem::take(&mut self.held);
            if pending.is_empty() {
                select! {
                    recv(self.commands) -> cmd => match cmd {
                        Ok(Command::Shutdown) | Err(_) => break,
                        Ok(cmd) => self.command(cmd),
                    },
                    recv(self.req_rx) -> req => if let Ok(r) = req { pending.push(r) },
                    recv(self.int_rx) -> msg => if let Ok(m) = msg { self.internal(m) },
                }
            } else {
                // Requests are held (paused runs): wait for a command or new work, briefly.
                select! {
                    recv(self.commands) -> cmd => match cmd {
                        Ok(Command::Shutdown) | Err(_) => { self.held = pending; break }
                        Ok(cmd) => self.command(cmd),
                    },
                    recv(self.req_rx) -> req => if let Ok(r) = req { pending.push(r) },
                    recv(self.int_rx) -> msg => if let Ok(m) = msg { self.internal(m) },
                    default(Duration::from_millis(50)) => {}
                }
            }
            while let Ok(cmd) = self.commands.try_recv() {
                if matches!(cmd, Command::Shutdown) {
                    self.held = pending;
                    self.shutdown();
                    return;
                }
                self.command(cmd);
            }
            while let Ok(m) = self.int_rx.try_recv() {
                self.internal(m);
            }
            self.gather(&mut pending);
            self.serve(pending);
        }
        self.shutdown();
    }

    /// Give other running runs a moment to submit their next step, so it joins this pass.
    fn gather(&mut self, pending: &mut Vec<Request>) {
        let deadline = Instant::now() + Duration::from_millis(3);
        loop {
            while let Ok(r) = self.req_rx.try_recv() {
                pending.push(r);
            }
            let waiting_for = self
                .active
                .iter()
                .filter(|(id, r)| {
                    !r.cancel.load(Ordering::Relaxed)
                        && (!r.paused || r.steps > 0)
                        && !pending.iter().any(|p| p.run == **id)
                })
                .count();
            if waiting_for == 0 || pending.is_empty() || Instant::now() >= deadline {
                return;
            }
            if let Ok(r) = self.req_rx.recv_timeout(Duration::from_micros(500)) {
                pending.push(r);
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Run { run, config } => {
                if let Err(e) = config.validate() {
                    self.sink.send(Event::Error {
                        run: Some(run),
                        message: format!("{e}"),
                    });
                    self.sink.send(Event::RunFinished {
                        run,
                        outcome: RunOutcome::Failed,
                        cost: Default::default(),
                    });
                    return;
                }
                self.start_run(run, *config, Tree::default(), None);
            }
            Command::BranchFrom {
                run,
                node,
                index,
                token,
            } => {
                let Some(f) = self.finished.remove(&run) else {
                    self.sink.send(Event::Error {
                        run: Some(run),
                        message: format!(
                            "run {run} is still running or unknown: branch from a finished run"
                        ),
                    });
                    return;
                };
                self.finished_order.retain(|r| *r != run);
                let tree = f.tree.clone();
                let manual = ManualBranch {
                    source: f.tree.clone(),
                    prompt_ids: f.prompt_ids.clone(),
                    node,
                    index,
                    token,
                };
                let config = f.config.clone();
                // The run's cached sequences stay alive until the branch has reused its prefix.
                let keep = f.seqs;
                self.start_run(run, config, tree, Some(manual));
                self.inherited.insert(run, keep);
            }
            Command::Pause(run) => {
                if let Some(r) = self.active.get_mut(&run) {
                    r.paused = true;
                    r.steps = 0;
                }
            }
            Command::Resume(run) => {
                if let Some(r) = self.active.get_mut(&run) {
                    r.paused = false;
                }
            }
            Command::Step(run) => {
                if let Some(r) = self.active.get_mut(&run) {
                    r.paused = true;
                    r.steps += 1;
                }
            }
            Command::Cancel(run) => {
                if let Some(r) = self.active.get_mut(&run) {
                    r.cancel.store(true, Ordering::Relaxed);
                }
            }
            Command::Forget(run) => {
                if let Some(f) = self.finished.remove(&run) {
                    for s in f.seqs {
                        self.engine.release(s);
                    }
                }
                self.finished_order.retain(|r| *r != run);
            }
            Command::Shutdown => {}
        }
    }

    fn start_run(
        &mut self,
        run: RunId,
        config: RunConfig,
        tree: Tree,
        manual: Option<ManualBranch>,
    ) {
        self.make_room();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut ctx = Ctx::new(
            run,
            config.clone(),
            self.model.clone(),
            self.req_tx.clone(),
            self.sink.clone(),
            cancel.clone(),
            tree,
            self.energy.describe(),
            self.energy.measured(),
        );
        let sink = self.sink.clone();
        let int_tx = self.int_tx.clone();
        let name = if manual.is_some() {
            "manual"
        } else {
            config.strategy.name()
        };
        let thread = std::thread::Builder::new()
            .name(format!("thinkscope-run-{run}"))
            .spawn(move || {
                sink.send(Event::RunStarted {
                    run,
                    strategy: name.into(),
                });
                let result = match &manual {
                    Some(m) => m.run(&mut ctx),
                    None => config.strategy.run(&mut ctx),
                };
                let outcome = match result {
                    Ok(()) => RunOutcome::Completed,
                    Err(EngineError::Cancelled) => {
                        ctx.prune_running();
                        RunOutcome::Cancelled
                    }
                    Err(e) => {
                        ctx.prune_running();
                        sink.send(Event::Error {
                            run: Some(run),
                            message: format!("{e}"),
                        });
                        RunOutcome::Failed
                    }
                };
                let seqs = ctx.live_sequences();
                let (tree, prompt_ids, cost) = ctx.finish_run();
                let _ = int_tx.send(Internal::Finished {
                    run,
                    outcome,
                    cost,
                    tree,
                    prompt_ids,
                    config,
                    seqs,
                });
            });
        match thread {
            Ok(t) => {
                self.active.insert(
                    run,
                    ActiveRun {
                        cancel,
                        paused: false,
                        steps: 0,
                        thread: Some(t),
                    },
                );
            }
            Err(e) => self.sink.send(Event::Error {
                run: Some(run),
                message: format!("could not start run thread: {e}"),
            }),
        }
    }

    /// Free cached sequences of old finished runs while the KV cache is more than half full.
    fn make_room(&mut self) {
        let budget = self.engine_budget();
        while self.engine.kv_used_bytes() > budget / 2 && !self.finished_order.is_empty() {
            let old = self.finished_order.remove(0);
            if let Some(f) = self.finished.get_mut(&old) {
                for s in f.seqs.drain(..) {
                    self.engine.release(s);
                }
            }
        }
    }

    fn engine_budget(&self) -> usize {
        crate::sequences::DEFAULT_KV_BUDGET_BYTES
    }

    fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::Finished {
                run,
                outcome,
                cost,
                tree,
                prompt_ids,
                config,
                mut seqs,
            } => {
                seqs.extend(self.inherited.remove(&run).unwrap_or_default());
                if let Some(mut r) = self.active.remove(&run) {
                    if let Some(t) = r.thread.take() {
                        let _ = t.join();
                    }
                }
                self.finished.insert(
                    run,
                    FinishedRun {
                        tree,
                        prompt_ids,
                        config,
                        seqs,
                    },
                );
                self.finished_order.retain(|r| *r != run);
                self.finished_order.push(run);
                self.sink.send(Event::RunFinished { run, outcome, cost });
            }
        }
    }

    fn serve(&mut self, pending: Vec<Request>) {
        let mut decodes = Vec::new();
        for req in pending {
            let state = self
                .active
                .get_mut(&req.run)
                .map(|r| (r.cancel.load(Ordering::Relaxed), r.paused, r.steps));
            match state {
                Some((true, _, _)) => {
                    let _ = req.reply.send(Err(EngineError::Cancelled));
                }
                Some((false, true, 0)) => self.held.push(req),
                _ => {
                    if matches!(req.op, Op::Decode { .. }) {
                        decodes.push(req);
                    } else {
                        let is_pass = matches!(req.op, Op::Prefill { .. } | Op::Extend { .. });
                        let run = req.run;
                        let result = self.single(req.op);
                        if is_pass {
                            self.used_step(run);
                        }
                        let _ = req.reply.send(result);
                    }
                }
            }
        }
        if !decodes.is_empty() {
            self.merged_decode(decodes);
        }
    }

    fn used_step(&mut self, run: RunId) {
        if let Some(r) = self.active.get_mut(&run) {
            if r.paused && r.steps > 0 {
                r.steps -= 1;
            }
        }
    }

    fn single(&mut self, op: Op) -> Result<(Reply, OpCost)> {
        let before = self.engine.counters();
        let t = Instant::now();
        let energy_before = self.energy.read();
        let cfg = &self.model.config;
        match op {
            Op::Prefill { tokens } => {
                let (seq, logits) = self.engine.prefill_shared(&tokens)?;
                let d = self.engine.counters().since(&before);
                let reused = d.tokens_reused as usize;
                Ok((
                    Reply::Prefilled { seq, logits },
                    OpCost {
                        prompt_tokens_computed: d.prompt_tokens_computed,
                        tokens_reused: d.tokens_reused,
                        forward_passes: d.forward_passes,
                        flops: flops_for(cfg, reused, d.prompt_tokens_computed as usize, 1),
                        energy_joules: self
                            .energy
                            .joules_since(energy_before, t.elapsed().as_secs_f64()),
                    },
                ))
            }
            Op::Extend { seq, tokens } => {
                let start = self.engine.len(seq)?;
                let rows = self.engine.score(seq, &tokens)?;
                Ok((
                    Reply::Logits(rows),
                    OpCost {
                        prompt_tokens_computed: tokens.len() as u64,
                        tokens_reused: 0,
                        forward_passes: 1,
                        flops: flops_for(cfg, start, tokens.len(), tokens.len()),
                        energy_joules: self
                            .energy
                            .joules_since(energy_before, t.elapsed().as_secs_f64()),
                    },
                ))
            }
            Op::Fork { seq, n } => {
                let mut seqs = Vec::with_capacity(n);
                for _ in 0..n {
                    match self.engine.fork(seq) {
                        Ok(s) => seqs.push(s),
                        Err(e) => {
                            for s in seqs {
                                self.engine.release(s);
                            }
                            return Err(e);
                        }
                    }
                }
                let d = self.engine.counters().since(&before);
                Ok((
                    Reply::Seqs(seqs),
                    OpCost {
                        tokens_reused: d.tokens_reused,
                        ..OpCost::default()
                    },
                ))
            }
            Op::Release { seqs } => {
                for s in seqs {
                    self.engine.release(s);
                }
                Ok((Reply::Done, OpCost::default()))
            }
            Op::Decode { .. } => Err(EngineError::InvalidParameter("decode is batched".into())),
        }
    }

    /// All runs' decode steps in one forward pass.
    fn merged_decode(&mut self, reqs: Vec<Request>) {
        let mut steps = Vec::new();
        let mut spans = Vec::new();
        let mut positions = Vec::new();
        for r in &reqs {
            let Op::Decode { steps: s } = &r.op else {
                continue;
            };
            spans.push((steps.len(), s.len()));
            for &(seq, _) in s {
                positions.push(self.engine.len(seq).unwrap_or(0));
            }
            steps.extend_from_slice(s);
        }
        let t = Instant::now();
        let energy_before = self.energy.read();
        let result = self.engine.decode(&steps);
        let secs = t.elapsed().as_secs_f64();
        let joules = self.energy.joules_since(energy_before, secs);
        let total = steps.len().max(1) as f64;
        match result {
            Ok(mut rows) => {
                // Hand each run its rows, back to front so `split_off` keeps order.
                let mut parts: Vec<Vec<Vec<f32>>> = Vec::with_capacity(spans.len());
                for &(start, _) in spans.iter().rev() {
                    parts.push(rows.split_off(start));
                }
                parts.reverse();
                for ((req, rows), &(start, len)) in reqs.into_iter().zip(parts).zip(&spans) {
                    let flops: f64 = positions[start..start + len]
                        .iter()
                        .map(|&p| flops_for(&self.model.config, p, 1, 1))
                        .sum();
                    let cost = OpCost {
                        prompt_tokens_computed: 0,
                        tokens_reused: 0,
                        forward_passes: 1,
                        flops,
                        energy_joules: joules * len as f64 / total,
                    };
                    self.used_step(req.run);
                    let _ = req.reply.send(Ok((Reply::Logits(rows), cost)));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for req in reqs {
                    let _ = req.reply.send(Err(EngineError::Failed(msg.clone())));
                }
            }
        }
    }

    fn shutdown(&mut self) {
        for r in self.active.values() {
            r.cancel.store(true, Ordering::Relaxed);
        }
        for req in self.held.drain(..) {
            let _ = req.reply.send(Err(EngineError::Cancelled));
        }
        // Answer everything until the run threads are gone.
        let threads: Vec<JoinHandle<()>> = self
            .active
            .values_mut()
            .filter_map(|r| r.thread.take())
            .collect();
        for t in threads {
            while !t.is_finished() {
                while let Ok(req) = self.req_rx.try_recv() {
                    let _ = req.reply.send(Err(EngineError::Cancelled));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = t.join();
        }
        // Their last word: each run's `RunFinished`.
        while let Ok(m) = self.int_rx.try_recv() {
            self.internal(m);
        }
    }
}
