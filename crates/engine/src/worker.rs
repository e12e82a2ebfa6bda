//! The run manager: one named thread that takes [`Command`]s, starts each run's strategy on a
//! thread of its own over a [`SequenceService`], and reports every run's end.
//!
//! Strategies are plain sequential code; the service they call decides how their work is batched
//! (the local service merges every run's decode steps into one forward pass; a remote one keeps
//! several requests in flight). Pause, step and cancel go straight to the run's [`RunControl`],
//! which the service obeys within one pass.
//!
//! Runs are supervised: a strategy that panics ends `Failed` with the panic's message, like one
//! that returns an error, so no pane, CLI run or lab sweep ever waits for a run that is gone.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};

use crate::cost::CostSnapshot;
use crate::error::{EngineError, Result};
use crate::events::{Event, RunId, RunOutcome};
use crate::local::{panic_message, LocalOptions, LocalService};
use crate::model::Model;
use crate::service::{RunControl, SeqId, SequenceService};
use crate::strategy::{Ctx, ManualBranch, RunConfig};
use crate::tree::{NodeId, Tree};

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

/// What a frontend asks of the worker.
#[derive(Clone, Debug)]
pub enum Command {
    /// Start a run.
    Run {
        /// Id chosen by the caller.
        run: RunId,
        /// What to run.
        config: Box<RunConfig>,
    },
    /// Hold a run after its current forward pass.
    Pause(RunId),
    /// Let a paused run go on.
    Resume(RunId),
    /// Let a paused run do one more forward pass.
    Step(RunId),
    /// Stop a run; takes effect within one forward pass.
    Cancel(RunId),
    /// Continue a finished run with a branch made by hand: at token `index` of `node`, take
    /// `token` instead, and let the model go on from there. The new node joins the same tree.
    BranchFrom {
        /// The finished run.
        run: RunId,
        /// Node holding the token.
        node: NodeId,
        /// Token index inside the node (the alternative replaces this token).
        index: usize,
        /// The alternative token.
        token: u32,
    },
    /// Drop a run's cached sequences.
    Forget(RunId),
    /// End the worker thread.
    Shutdown,
}

/// A run's thread is done. The manager records the run (so it can be branched from) and only
/// then tells viewers it finished: a `BranchFrom` sent on seeing `RunFinished` always finds it.
struct Finished {
    run: RunId,
    outcome: RunOutcome,
    cost: CostSnapshot,
    tree: Tree,
    prompt_ids: Vec<u32>,
    config: RunConfig,
    seqs: Vec<SeqId>,
}

/// Options for [`Worker::spawn`].
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// KV cache budget in bytes (local models).
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

/// Handle to the run manager. Dropping it cancels every run and shuts the worker down.
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    service: Arc<dyn SequenceService>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Start a worker over a local model (the in-process service). `waker` is called whenever
    /// events are sent.
    pub fn spawn(model: Arc<Model>, options: WorkerOptions, waker: Waker) -> Result<Self> {
        let service = LocalService::start(
            model,
            LocalOptions {
                kv_budget_bytes: options.kv_budget_bytes,
            },
        )?;
        Self::with_service(Arc::new(service), options, waker)
    }

    /// Start a worker over any sequence service (a remote server, say).
    pub fn with_service(
        service: Arc<dyn SequenceService>,
        options: WorkerOptions,
        waker: Waker,
    ) -> Result<Self> {
        let (cmd_tx, cmd_rx) = bounded::<Command>(256);
        let (ev_tx, ev_rx) = bounded::<Event>(options.event_capacity.max(16));
        let sink = EventSink { tx: ev_tx, waker };
        let svc = service.clone();
        let thread = std::thread::Builder::new()
            .name("thinkscope-runs".into())
            .spawn(move || Manager::new(svc, sink, cmd_rx).run())
            .map_err(|e| EngineError::WorkerGone(format!("could not start worker thread: {e}")))?;
        Ok(Self {
            commands: cmd_tx,
            events: ev_rx,
            service,
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

    /// The service the runs use (model name, device, capabilities).
    pub fn service(&self) -> &Arc<dyn SequenceService> {
        &self.service
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            // Cancelled runs end within one pass; a strategy stuck elsewhere (a slow template,
            // say) must not hold up the caller, usually the UI thread: the manager is joined by
            // a thread of its own, which keeps the event channel drained meanwhile.
            let events = self.events.clone();
            let reaper = std::thread::Builder::new()
                .name("thinkscope-reaper".into())
                .spawn(move || {
                    while !t.is_finished() {
                        while events.try_recv().is_ok() {}
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    let _ = t.join();
                });
            if reaper.is_err() {
                tracing::warn!("could not start a thread to join the worker; leaving it");
            }
        }
    }
}

struct ActiveRun {
    control: Arc<RunControl>,
    thread: Option<JoinHandle<()>>,
}

struct FinishedRun {
    tree: Tree,
    prompt_ids: Vec<u32>,
    config: RunConfig,
    seqs: Vec<SeqId>,
}

struct Manager {
    service: Arc<dyn SequenceService>,
    sink: EventSink,
    commands: Receiver<Command>,
    done_tx: Sender<Finished>,
    done_rx: Receiver<Finished>,
    active: HashMap<RunId, ActiveRun>,
    finished: HashMap<RunId, FinishedRun>,
    /// Order in which finished runs may give their cached sequences back.
    finished_order: Vec<RunId>,
    /// Sequences a continuing run inherits from its earlier part.
    inherited: HashMap<RunId, Vec<SeqId>>,
}

impl Manager {
    fn new(
        service: Arc<dyn SequenceService>,
        sink: EventSink,
        commands: Receiver<Command>,
    ) -> Self {
        let (done_tx, done_rx) = unbounded();
        Self {
            service,
            sink,
            commands,
            done_tx,
            done_rx,
            active: HashMap::new(),
            finished: HashMap::new(),
            finished_order: Vec::new(),
            inherited: HashMap::new(),
        }
    }

    fn run(mut self) {
        loop {
            select! {
                recv(self.commands) -> cmd => match cmd {
                    Ok(Command::Shutdown) | Err(_) => break,
                    Ok(cmd) => self.command(cmd),
                },
                recv(self.done_rx) -> msg => if let Ok(m) = msg { self.finished(m) },
            }
        }
        self.shutdown();
    }

    fn fail(&self, run: RunId, message: String) {
        self.sink.send(Event::Error {
            run: Some(run),
            message,
        });
        self.sink.send(Event::RunFinished {
            run,
            outcome: RunOutcome::Failed,
            cost: Default::default(),
        });
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Run { run, config } => {
                if self.active.contains_key(&run) {
                    return self.sink.send(Event::Error {
                        run: Some(run),
                        message: format!("run {run} is already running"),
                    });
                }
                if let Err(e) = config.validate() {
                    return self.fail(run, e.to_string());
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
                let manual = ManualBranch {
                    source: f.tree.clone(),
                    prompt_ids: f.prompt_ids.clone(),
                    node,
                    index,
                    token,
                };
                // The run's cached sequences stay alive until the branch has reused its prefix.
                self.start_run(run, f.config, f.tree, Some(manual));
                self.inherited.insert(run, f.seqs);
            }
            Command::Pause(run) => self.control(run, |c| c.pause()),
            Command::Resume(run) => self.control(run, |c| c.resume()),
            Command::Step(run) => self.control(run, |c| c.step()),
            Command::Cancel(run) => self.control(run, |c| c.cancel()),
            Command::Forget(run) => {
                if let Some(f) = self.finished.remove(&run) {
                    self.service.release(&f.seqs);
                }
                self.finished_order.retain(|r| *r != run);
            }
            Command::Shutdown => {}
        }
    }

    fn control(&self, run: RunId, f: impl Fn(&RunControl)) {
        if let Some(r) = self.active.get(&run) {
            f(&r.control);
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
        let control = RunControl::new();
        let mut ctx = Ctx::new(
            run,
            config.clone(),
            self.service.clone(),
            control.clone(),
            self.sink.clone(),
            tree,
        );
        let sink = self.sink.clone();
        let done = self.done_tx.clone();
        let name = match &manual {
            Some(_) => "manual",
            None => config.strategy.name(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("thinkscope-run-{run}"))
            .spawn(move || {
                sink.send(Event::RunStarted {
                    run,
                    strategy: name.into(),
                });
                let result = catch_unwind(AssertUnwindSafe(|| {
                    crate::fault::point(crate::fault::Fault::StrategyPanic);
                    match &manual {
                        Some(m) => m.run(&mut ctx),
                        None => config.strategy.run(&mut ctx),
                    }
                }))
                .unwrap_or_else(|panic| {
                    Err(EngineError::Failed(format!(
                        "the {name} strategy crashed: {}",
                        panic_message(&*panic)
                    )))
                });
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
                            message: e.to_string(),
                        });
                        RunOutcome::Failed
                    }
                };
                let seqs = ctx.live_sequences();
                let (tree, prompt_ids, cost) = ctx.finish_run();
                let _ = done.send(Finished {
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
                        control,
                        thread: Some(t),
                    },
                );
            }
            Err(e) => self.fail(run, format!("could not start run thread: {e}")),
        }
    }

    /// Free cached sequences of old finished runs while the KV cache is more than half full.
    fn make_room(&mut self) {
        while !self.finished_order.is_empty() {
            let Some(kv) = self.service.kv_usage() else {
                return;
            };
            if kv.used_bytes <= kv.budget_bytes / 2 {
                return;
            }
            let old = self.finished_order.remove(0);
            if let Some(f) = self.finished.get_mut(&old) {
                self.service.release(&std::mem::take(&mut f.seqs));
            }
            // Releases are served in order: the next reading sees this one's effect.
            self.service.sync();
        }
    }

    fn finished(&mut self, msg: Finished) {
        let Finished {
            run,
            outcome,
            cost,
            tree,
            prompt_ids,
            config,
            mut seqs,
        } = msg;
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

    fn shutdown(&mut self) {
        for r in self.active.values() {
            r.control.cancel();
        }
        // Each run ends within one pass of its service; its last word is its `RunFinished`.
        while !self.active.is_empty() {
            match self.done_rx.recv() {
                Ok(m) => self.finished(m),
                Err(_) => break,
            }
        }
    }
}
