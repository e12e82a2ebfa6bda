//! Seam 2, the sequence service: what a strategy asks of whatever holds its sequences.
//!
//! A strategy is plain sequential code that needs a handful of operations: prefill a prompt, fork
//! a sequence, extend some branches by up to N tokens under a stop rule (the tokens streaming back
//! as they are chosen), append given tokens (forced text) and learn their log-probabilities, read
//! the log-probabilities of chosen next tokens (verifiers), and release sequences. Each is one
//! blocking call on the strategy's thread with its own typed reply and the work it cost.
//!
//! The protocol is pitched at the level an OpenAI-compatible server can serve too — it cannot run
//! per-step batched forward passes for us, only "continue this text by up to N tokens with these
//! stops" — so nothing here mentions logits or forward passes. The local implementation
//! ([`crate::local::LocalService`]) batches every run's branches into shared forward passes
//! underneath; a remote one turns the same calls into streaming HTTP requests.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::generate::PromptFormat;
use crate::model::sampling::{Alternative, Sampler, TokenInfo};
use crate::model::template::Message;

/// A sequence held by a service, on behalf of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeqId(pub u64);

impl std::fmt::Display for SeqId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A run's controls, shared by the run manager (which sets them) and the service (which obeys
/// them): cancel ends the run's requests within one forward pass; pause holds them; each step
/// lets a paused run do one more pass.
#[derive(Debug, Default)]
pub struct RunControl {
    cancelled: AtomicBool,
    paused: AtomicBool,
    steps: AtomicU32,
}

impl RunControl {
    /// Controls of a new, running run.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// End the run: its pending and future requests fail with [`EngineError::Cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Hold the run after its current pass.
    pub fn pause(&self) {
        self.steps.store(0, Ordering::Relaxed);
        self.paused.store(true, Ordering::Relaxed);
    }

    /// Let a paused run go on.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// Let a paused run do one more pass (pausing it first if it runs).
    pub fn step(&self) {
        self.paused.store(true, Ordering::Relaxed);
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the run is paused (it may still hold step credits).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Whether the run may take part in the next pass: running, or paused with a step left.
    pub fn may_proceed(&self) -> bool {
        !self.is_paused() || self.steps.load(Ordering::Relaxed) > 0
    }

    /// Record that the run took part in a pass (uses up a step when paused).
    pub fn used_pass(&self) {
        if self.is_paused() {
            let _ = self
                .steps
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_sub(1));
        }
    }

    /// `Err(Cancelled)` once the run is cancelled.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Work an operation cost, attributed to the run that asked.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpCost {
    /// Prompt or inserted tokens run through the model.
    pub prompt_tokens_computed: u64,
    /// Tokens whose KV came from a cache instead of being computed.
    pub tokens_reused: u64,
    /// Tokens chosen by a sampler.
    pub generated_tokens: u64,
    /// Forward passes (or requests) the operation took part in.
    pub forward_passes: u64,
    /// Estimated floating-point operations.
    pub flops: f64,
    /// Energy in joules (measured or estimated, as the service's info says).
    pub energy_joules: f64,
}

impl OpCost {
    /// Add `other` to `self`.
    pub fn add(&mut self, other: &OpCost) {
        self.prompt_tokens_computed += other.prompt_tokens_computed;
        self.tokens_reused += other.tokens_reused;
        self.generated_tokens += other.generated_tokens;
        self.forward_passes += other.forward_passes;
        self.flops += other.flops;
        self.energy_joules += other.energy_joules;
    }
}

/// A reply and the work it cost.
#[derive(Clone, Debug)]
pub struct Served<T> {
    /// The reply.
    pub value: T,
    /// Its cost.
    pub cost: OpCost,
}

impl<T> Served<T> {
    /// A reply that cost nothing.
    pub fn free(value: T) -> Self {
        Self {
            value,
            cost: OpCost::default(),
        }
    }
}

/// The model's view of the next token after a sequence's last one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NextToken {
    /// Entropy of the next-token distribution, nats (estimated from `top` where the service
    /// knows only the top alternatives).
    pub entropy: f32,
    /// The most likely next tokens, most likely first.
    pub top: Vec<Alternative>,
}

/// Alternatives a service reports in [`NextToken::top`].
pub const NEXT_TOP: usize = 8;

/// When [`SequenceService::generate`] stops a branch.
#[derive(Clone, Debug, PartialEq)]
pub struct StopRule {
    /// Most tokens to add in this call.
    pub max_tokens: usize,
    /// Stop after a line break once the node holds some text (one reasoning step).
    pub step_end: bool,
    /// Stop before sampling when the next-token entropy (nats) exceeds this (never before the
    /// first token of the call).
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

/// Why a branch stopped generating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchStop {
    /// The model ended its turn.
    EndOfText,
    /// A reasoning step ended (a line break).
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

/// One branch of a [`GenerateRequest`].
#[derive(Clone, Debug)]
pub struct GenBranch {
    /// The sequence to extend.
    pub seq: SeqId,
    /// Its sampler (parameters and random state; the state comes back in the outcome).
    pub sampler: Sampler,
    /// Text already in the branch's node, for the step-end rule ("some text, then a line break").
    pub prior_text: String,
}

/// Extend branches in lockstep until each stops.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// The branches.
    pub branches: Vec<GenBranch>,
    /// When each stops.
    pub rule: StopRule,
    /// Tokens the run may still generate in total, over all branches (`None`: no budget).
    pub budget: Option<usize>,
}

/// How one branch of a [`GenerateRequest`] ended.
#[derive(Clone, Debug)]
pub struct BranchOutcome {
    /// Why it stopped.
    pub stop: BranchStop,
    /// Its sequence's length in tokens now.
    pub len: usize,
    /// Its sampler, advanced past every token it chose.
    pub sampler: Sampler,
    /// The next-token distribution at its end (for a `HighEntropy` stop: the one it would have
    /// sampled from).
    pub next: NextToken,
}

/// The result of appending tokens to a sequence.
#[derive(Clone, Debug)]
pub struct Appended {
    /// Each appended token with the model's log-probability, entropy and alternatives for it.
    pub tokens: Vec<TokenInfo>,
    /// The sequence's length now.
    pub len: usize,
    /// The next-token distribution after the last appended token.
    pub next: NextToken,
}

/// A prefilled prompt.
#[derive(Clone, Debug)]
pub struct Prefilled {
    /// The new sequence.
    pub seq: SeqId,
    /// Its length (the prompt's tokens).
    pub len: usize,
    /// The next-token distribution after the prompt.
    pub next: NextToken,
}

/// What a service offers, probed when it starts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Capabilities {
    /// Top alternatives reported per token (0: none, so no entropy estimates either).
    pub top_alternatives: usize,
    /// Whether entropies are exact (the whole distribution) or estimated from the top tokens.
    pub exact_entropy: bool,
    /// Whether [`SequenceService::next_logprobs`] knows every token (not only the top ones).
    pub full_logprobs: bool,
    /// Whether `tokens_reused` is reported (a server that reports no cached prompt tokens: the
    /// meters show reuse as unknown, not as 0).
    pub reuse_reported: bool,
}

/// What a user and a strategy need to know about a service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceInfo {
    /// The model's name.
    pub model: String,
    /// The device line: "CPU (2 threads)", "GPU: …", "server http://…".
    pub device: String,
    /// Which kernels run the weights (local models).
    pub kernels: String,
    /// Context window in tokens.
    pub context_length: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Whether prompts go through a chat template.
    pub has_chat_template: bool,
    /// How energy is obtained, in words.
    pub energy_source: String,
    /// Whether energy is measured by a counter (false: estimated).
    pub energy_measured: bool,
    /// What the service can do.
    pub capabilities: Capabilities,
}

/// KV cache use, where the service knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvUsage {
    /// Bytes in use.
    pub used_bytes: usize,
    /// The budget.
    pub budget_bytes: usize,
}

/// Holds sequences and extends them for strategies. Every call blocks its (strategy) thread.
pub trait SequenceService: Send + Sync {
    /// The model and what the service can do.
    fn info(&self) -> &ServiceInfo;

    /// Token ids of a conversation, opened for the assistant's reply.
    fn prompt_ids(&self, messages: &[Message], format: PromptFormat) -> Result<Vec<u32>>;

    /// The chat template's text for a conversation, when the model has a template (a server
    /// applies its own and has none to show).
    fn render_chat(&self, messages: &[Message]) -> Option<Result<String>>;

    /// Token ids of plain text (no special tokens added).
    fn encode(&self, text: &str) -> Result<Vec<u32>>;

    /// A new sequence holding `tokens` (reusing any cached prefix).
    fn prefill(&self, run: &Arc<RunControl>, tokens: Vec<u32>) -> Result<Served<Prefilled>>;

    /// `n` sequences continuing `seq`, sharing its cache.
    fn fork(&self, run: &Arc<RunControl>, seq: SeqId, n: usize) -> Result<Served<Vec<SeqId>>>;

    /// Extend the branches until each stops by the rule, the end of text, the budget or the
    /// context; `on_token(branch, token)` sees each token as it is chosen (end tokens excluded).
    /// The cost comes back even when the generation ends in an error (a cancel, say): the tokens
    /// streamed until then were computed.
    fn generate(
        &self,
        run: &Arc<RunControl>,
        request: GenerateRequest,
        on_token: &mut dyn FnMut(usize, TokenInfo),
    ) -> Served<Result<Vec<BranchOutcome>>>;

    /// Append given tokens to sequences (one pass for all); per item, the tokens' log-probs.
    fn append(
        &self,
        run: &Arc<RunControl>,
        items: Vec<(SeqId, Vec<u32>)>,
    ) -> Result<Served<Vec<Appended>>>;

    /// Log-probabilities of `ids` as the next token after `seq` (`None` where unknown, e.g. a
    /// token outside a server's top alternatives).
    fn next_logprobs(
        &self,
        run: &Arc<RunControl>,
        seq: SeqId,
        ids: &[u32],
    ) -> Result<Served<Vec<Option<f32>>>>;

    /// Free sequences (their shared prefixes stay with the others).
    fn release(&self, seqs: &[SeqId]);

    /// KV cache use, where known (to free old runs' caches before the budget runs out).
    fn kv_usage(&self) -> Option<KvUsage> {
        None
    }

    /// Return once every earlier call's effects (releases, say) show in [`Self::kv_usage`].
    fn sync(&self) {}
}
