//! The sequence service over HTTP: [`RemoteService`] serves seam 2 from an OpenAI-compatible
//! server, so every strategy, the live tree, the meters and the lab run against vLLM, SGLang,
//! llama.cpp's server or llama-cpp-python.
//!
//! A sequence is a path held here, client-side: its token ids and their exact text. Forking
//! copies the path (the server's prefix cache makes the shared prefix cheap on the next
//! request); extending a branch is one streaming request whose prompt is the path (token ids
//! where the server takes them, else text); a branch reads one token past its stop, whose top
//! alternatives are the next-token distribution at its end (that token is dropped; the server did
//! compute it, so it counts). Step ends and entropy thresholds are checked client-side as tokens
//! arrive, the stream closed when they fire. Many branches are in flight at once on a bounded
//! pool; branches sharing a path go in one request with `n` where the server honours it.
//!
//! Servers that name tokens only by their text (llama-cpp-python) get ids from this service:
//! stable ids from [`SYNTHETIC_BASE`] up, one per distinct text, mapped back to text when a path
//! is sent. Costs are the server's `usage` where it sends one, else counted here; entropy is
//! estimated from the top alternatives; energy is unknown unless the user gives watts per GPU.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use thinkscope_engine::error::{EngineError, Result as EngineResult};
use thinkscope_engine::generate::PromptFormat;
use thinkscope_engine::model::sampling::{Alternative, TokenInfo};
use thinkscope_engine::model::template::{ChatTemplate, Message};
use thinkscope_engine::service::{
    Appended, BranchOutcome, BranchStop, Capabilities, GenerateRequest, NextToken, OpCost,
    Prefilled, RunControl, SeqId, SequenceService, Served, ServiceInfo, StopRule,
};

use crate::client::{
    Client, CompletionOutcome, CompletionParams, RemoteAlternative, StreamedToken,
};
use crate::error::RemoteError;
use crate::estimate::entropy_from_top;
use crate::pool::run_bounded;
use crate::wire::Prompt;
use crate::Session;

/// First id this service hands out for a token the server named only by its text.
pub const SYNTHETIC_BASE: u32 = 0xF000_0000;

/// Context window assumed when the server does not say (llama-cpp-python's default `n_ctx`).
pub const ASSUMED_CONTEXT: usize = 2048;

/// A chat template to render prompts with, for servers that render none over HTTP.
#[derive(Clone, Debug)]
pub struct TemplateSource {
    /// The Jinja source (a GGUF's `tokenizer.chat_template`).
    pub source: String,
    /// `bos_token` as the template sees it.
    pub bos: String,
    /// `eos_token` as the template sees it.
    pub eos: String,
}

impl TemplateSource {
    /// The chat template a GGUF file carries (`tokenizer.chat_template`, with its BOS/EOS
    /// pieces): the same template the in-process engine uses for that model. `None` when the
    /// file has none.
    pub fn from_gguf(path: &std::path::Path) -> EngineResult<Option<Self>> {
        let gguf = thinkscope_engine::model::gguf::GgufFile::open(path)?;
        if gguf.get_opt("tokenizer.chat_template").is_none() {
            return Ok(None);
        }
        let source = gguf.string("tokenizer.chat_template")?;
        let tokenizer = thinkscope_engine::model::tokenizer::Tokenizer::from_gguf(&gguf)?;
        let piece = |id: Option<u32>| {
            id.and_then(|id| tokenizer.piece(id))
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Some(Self {
            source,
            bos: piece(tokenizer.bos_id),
            eos: piece(tokenizer.eos_id),
        }))
    }

    /// A template from a file: a GGUF's own, or a Jinja template as text (BOS/EOS empty).
    pub fn from_file(path: &std::path::Path) -> EngineResult<Self> {
        let is_gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if is_gguf {
            return Self::from_gguf(path)?.ok_or_else(|| {
                EngineError::Template(format!("{} has no chat template", path.display()))
            });
        }
        let source = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            source,
            bos: String::new(),
            eos: String::new(),
        })
    }
}

/// A user-configured energy estimate: watts per GPU × GPUs × wall time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuEnergy {
    /// Assumed draw of one GPU under load.
    pub watts_per_gpu: f64,
    /// GPUs serving the model.
    pub gpus: u32,
}

/// How the service uses its server.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Requests in flight at once (branches stream concurrently; the server batches them).
    pub concurrency: usize,
    /// Top alternatives asked for per token (capped by what the server gives).
    pub top_alternatives: usize,
    /// Context window, when the server does not say.
    pub context_length: Option<usize>,
    /// Chat template for servers that render none.
    pub chat_template: Option<TemplateSource>,
    /// Energy estimate, if the user gives one.
    pub gpu_energy: Option<GpuEnergy>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            top_alternatives: thinkscope_engine::service::NEXT_TOP,
            context_length: None,
            chat_template: None,
            gpu_energy: None,
        }
    }
}

/// Consecutive tokens of a path with their exact text (a rendered prompt is one piece: its text
/// keeps special tokens that a detokenizer may drop).
#[derive(Clone, Debug)]
struct Piece {
    ids: Vec<u32>,
    text: String,
}

#[derive(Clone, Debug, Default)]
struct Path {
    pieces: Vec<Piece>,
    len: usize,
    /// The next-token distribution at its end, when a request has shown it.
    next: Option<NextToken>,
}

impl Path {
    fn ids(&self) -> Vec<u32> {
        self.pieces
            .iter()
            .flat_map(|p| p.ids.iter().copied())
            .collect()
    }

    fn text(&self) -> String {
        self.pieces.iter().map(|p| p.text.as_str()).collect()
    }

    fn push(&mut self, piece: Piece) {
        self.len += piece.ids.len();
        self.pieces.push(piece);
        self.next = None;
    }

    fn synthetic(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| p.ids.iter().any(|&i| i >= SYNTHETIC_BASE))
    }
}

#[derive(Default)]
struct State {
    next_seq: u64,
    paths: HashMap<SeqId, Path>,
    /// Id runs this service handed out (prompts, encodings) with their exact text.
    runs: HashMap<Vec<u32>, String>,
    /// Text of synthetic id `SYNTHETIC_BASE + i`.
    synthetic: Vec<String>,
    synthetic_ids: HashMap<String, u32>,
    /// Text of real ids seen with their text.
    id_text: HashMap<u32, String>,
}

impl State {
    fn synthetic_id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.synthetic_ids.get(text) {
            return id;
        }
        let id = SYNTHETIC_BASE.saturating_add(self.synthetic.len() as u32);
        self.synthetic.push(text.to_owned());
        self.synthetic_ids.insert(text.to_owned(), id);
        id
    }

    fn new_seq(&mut self, path: Path) -> SeqId {
        self.next_seq += 1;
        let id = SeqId(self.next_seq);
        self.paths.insert(id, path);
        id
    }
}

/// Seam 2 served by an OpenAI-compatible server.
pub struct RemoteService {
    client: Client,
    options: RemoteOptions,
    info: ServiceInfo,
    template: Option<ChatTemplate>,
    state: Mutex<State>,
    sessions: Mutex<Vec<(Weak<RunControl>, Session)>>,
    top: usize,
    counted_here: bool,
}

fn remote_err(e: RemoteError) -> EngineError {
    match e {
        RemoteError::Cancelled => EngineError::Cancelled,
        other => EngineError::Failed(other.to_string()),
    }
}

impl RemoteService {
    /// Serve from a connected client.
    pub fn new(client: Client, options: RemoteOptions) -> EngineResult<Self> {
        let server = client.info().clone();
        let caps = &server.capabilities;
        let top = options.top_alternatives.min(caps.top_logprobs);
        let server_renders = client
            .render_chat(&[("user", "hi")])
            .map_err(remote_err)?
            .is_some();
        // llama-cpp-python names its model by the GGUF's path: on the same machine, that file's
        // own template is the one the server would use for chat.
        let source = match &options.chat_template {
            Some(t) => Some(t.clone()),
            None if !server_renders && std::path::Path::new(&server.model).is_file() => {
                TemplateSource::from_gguf(std::path::Path::new(&server.model)).unwrap_or(None)
            }
            None => None,
        };
        let template = match &source {
            Some(t) => Some(ChatTemplate::new(&t.source, &t.bos, &t.eos)?),
            None => None,
        };
        let has_chat_template = template.is_some() || server_renders;
        let (context_length, context_note) = match (server.context_length, options.context_length) {
            (_, Some(n)) => (n, "context as configured"),
            (Some(n), None) => (n, "context from the server"),
            (None, None) => (
                ASSUMED_CONTEXT,
                "context assumed 2048 (the server does not say)",
            ),
        };
        let counted_here = !caps.usage_in_stream;
        let tokens_note = if counted_here {
            "tokens counted by thinkscope (no usage in the server's streams)"
        } else {
            "tokens from the server's usage"
        };
        let reuse_note = if caps.cached_tokens_reported {
            "reused = the server's cached prompt tokens"
        } else {
            "reused: unknown (the server reports no cached tokens)"
        };
        let (energy_source, _) = match options.gpu_energy {
            Some(g) => (
                format!(
                    "estimated: {:.0} W × {} GPU(s) × wall time (configured by the user)",
                    g.watts_per_gpu, g.gpus
                ),
                (),
            ),
            None => ("unknown: a remote server reports no energy".to_owned(), ()),
        };
        let info = ServiceInfo {
            model: server.model.clone(),
            device: format!("server: {}", server.describe()),
            kernels: format!(
                "remote ({}; {context_note}; {tokens_note}; {reuse_note}; entropy {})",
                caps.describe(),
                crate::estimate::ENTROPY_LABEL
            ),
            context_length,
            vocab: 0,
            has_chat_template,
            energy_source,
            energy_measured: false,
            capabilities: Capabilities {
                top_alternatives: top,
                exact_entropy: false,
                full_logprobs: false,
                reuse_reported: caps.cached_tokens_reported,
            },
        };
        Ok(Self {
            client,
            options,
            info,
            template,
            state: Mutex::new(State::default()),
            sessions: Mutex::new(Vec::new()),
            top,
            counted_here,
        })
    }

    /// The connected client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run's session: its own connections, closed together when the run is cancelled.
    fn session_for(&self, run: &Arc<RunControl>) -> EngineResult<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|(w, _)| w.strong_count() > 0);
        if let Some((_, s)) = sessions
            .iter()
            .find(|(w, _)| w.upgrade().is_some_and(|r| Arc::ptr_eq(&r, run)))
        {
            return Ok(s.clone());
        }
        let session = self.client.session().map_err(remote_err)?;
        sessions.push((Arc::downgrade(run), session.clone()));
        Ok(session)
    }

    fn energy(&self, wall_secs: f64) -> f64 {
        self.options
            .gpu_energy
            .map_or(0.0, |g| g.watts_per_gpu * f64::from(g.gpus) * wall_secs)
    }

    fn path(&self, seq: SeqId) -> EngineResult<Path> {
        self.state()
            .paths
            .get(&seq)
            .cloned()
            .ok_or(EngineError::UnknownSequence(seq))
    }

    /// The prompt a server gets for a path.
    fn prompt_of(&self, path: &Path) -> Prompt {
        if self.client.info().capabilities.token_id_prompts && !path.synthetic() {
            Prompt::Ids(path.ids())
        } else {
            Prompt::Text(path.text())
        }
    }

    /// Text for ids that came from outside this service's pieces (a prefix of a path, say).
    fn pieces_for(&self, ids: &[u32]) -> EngineResult<Vec<Piece>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        {
            let st = self.state();
            if let Some(text) = st.runs.get(ids) {
                return Ok(vec![Piece {
                    ids: ids.to_vec(),
                    text: text.clone(),
                }]);
            }
            // A prefix of a live path, cut at piece boundaries where it can be.
            let mut best: Option<Vec<Piece>> = None;
            for path in st.paths.values() {
                let mut taken = Vec::new();
                let mut at = 0;
                for p in &path.pieces {
                    if at + p.ids.len() <= ids.len() && ids[at..at + p.ids.len()] == p.ids[..] {
                        taken.push(p.clone());
                        at += p.ids.len();
                    } else {
                        break;
                    }
                }
                if at > 0
                    && best
                        .as_ref()
                        .is_none_or(|b| b.iter().map(|p| p.ids.len()).sum::<usize>() < at)
                {
                    best = Some(taken);
                }
            }
            if let Some(mut pieces) = best {
                let covered: usize = pieces.iter().map(|p| p.ids.len()).sum();
                if covered == ids.len() {
                    return Ok(pieces);
                }
                drop(st);
                pieces.extend(self.pieces_for_ids(&ids[covered..])?);
                return Ok(pieces);
            }
        }
        self.pieces_for_ids(ids)
    }

    /// One piece per id, text from the tables or the server's detokenizer.
    fn pieces_for_ids(&self, ids: &[u32]) -> EngineResult<Vec<Piece>> {
        let unknown: Vec<u32> = {
            let st = self.state();
            ids.iter()
                .copied()
                .filter(|&i| i < SYNTHETIC_BASE && !st.id_text.contains_key(&i))
                .collect()
        };
        let mut fetched = HashMap::new();
        for id in unknown {
            if let std::collections::hash_map::Entry::Vacant(e) = fetched.entry(id) {
                e.insert(self.client.detokenize(&[id]).map_err(remote_err)?);
            }
        }
        let mut st = self.state();
        st.id_text.extend(fetched);
        ids.iter()
            .map(|&i| {
                let text = if i >= SYNTHETIC_BASE {
                    st.synthetic
                        .get((i - SYNTHETIC_BASE) as usize)
                        .cloned()
                        .ok_or(EngineError::InvalidToken {
                            id: i,
                            vocab: SYNTHETIC_BASE as usize + st.synthetic.len(),
                        })?
                } else {
                    st.id_text.get(&i).cloned().unwrap_or_default()
                };
                Ok(Piece { ids: vec![i], text })
            })
            .collect()
    }

    /// Ids for text: the server's tokenizer where it has one, else one synthetic id.
    fn ids_for_text(&self, text: &str) -> EngineResult<Vec<u32>> {
        let ids = if self.client.info().capabilities.tokenize.is_some() {
            self.client.tokenize(text).map_err(remote_err)?
        } else {
            vec![self.state().synthetic_id(text)]
        };
        self.state().runs.insert(ids.clone(), text.to_owned());
        Ok(ids)
    }

    fn alt_of(&self, st: &mut State, a: &RemoteAlternative) -> Alternative {
        let id = match a.id {
            Some(id) => {
                st.id_text.entry(id).or_insert_with(|| a.text.clone());
                id
            }
            None => st.synthetic_id(&a.text),
        };
        Alternative {
            id,
            text: a.text.clone(),
            logprob: a.logprob,
        }
    }

    fn next_of(&self, top: &[RemoteAlternative]) -> NextToken {
        let mut st = self.state();
        let lps: Vec<f32> = top.iter().map(|a| a.logprob).collect();
        NextToken {
            entropy: entropy_from_top(&lps).unwrap_or(0.0),
            top: top.iter().map(|a| self.alt_of(&mut st, a)).collect(),
        }
    }

    /// A streamed token as the tree records it; `logprob` 0 where the server gave none.
    fn info_of(&self, t: &StreamedToken) -> TokenInfo {
        let mut st = self.state();
        let id = match t.id {
            Some(id) => {
                st.id_text.entry(id).or_insert_with(|| t.text.clone());
                id
            }
            None => st.synthetic_id(&t.text),
        };
        let lps: Vec<f32> = t.top.iter().map(|a| a.logprob).collect();
        TokenInfo {
            id,
            text: t.text.clone(),
            logprob: t.logprob.unwrap_or(0.0),
            entropy: entropy_from_top(&lps).unwrap_or(0.0),
            top: t.top.iter().map(|a| self.alt_of(&mut st, a)).collect(),
        }
    }

    /// Cost of one request from its outcome: the server's usage, or counted here.
    fn cost_of(
        &self,
        outcome: Option<&CompletionOutcome>,
        prompt_len: usize,
        received: usize,
        wall_secs: f64,
    ) -> OpCost {
        let usage = outcome.and_then(|o| o.usage);
        let cached = outcome.and_then(|o| o.cached_tokens).unwrap_or(0);
        let (prompt, generated) = match usage {
            Some(u) => (u.prompt_tokens, u.completion_tokens),
            None => (prompt_len as u64, received as u64),
        };
        OpCost {
            prompt_tokens_computed: prompt.saturating_sub(cached),
            tokens_reused: cached,
            generated_tokens: generated,
            forward_passes: 1,
            flops: 0.0,
            energy_joules: self.energy(wall_secs),
        }
    }

    /// The next-token distribution after `path`: a one-token greedy request with alternatives
    /// (unstreamed, so llama-cpp-python reports usage).
    fn peek(&self, run: &Arc<RunControl>, path: &Path) -> EngineResult<(NextToken, OpCost)> {
        run.check()?;
        let session = self.session_for(run)?;
        let mut params = CompletionParams::new(self.prompt_of(path), 1);
        params.top_logprobs = self.top;
        let started = Instant::now();
        let client = &self.client;
        let result = run_bounded(
            vec![()],
            1,
            &|(), _emit: &dyn Fn(())| client.complete_unstreamed(&session, &params),
            &mut |()| {},
            &mut || run.is_cancelled(),
            &|| session.cancel(),
        )
        .pop()
        .unwrap_or(Err(RemoteError::Cancelled));
        let (tokens, outcome) = result.map_err(remote_err)?;
        let wall = started.elapsed().as_secs_f64();
        let next = match tokens.first() {
            Some(t) => self.next_of(&t.top),
            // The server's most likely next token ended the text: nothing to show after it.
            None => NextToken::default(),
        };
        let cost = self.cost_of(Some(&outcome), path.len, tokens.len(), wall);
        Ok((next, cost))
    }
}

/// One streaming request: the branches (one, or several sharing a path with `n`) it serves.
struct Job {
    branches: Vec<usize>,
    params: CompletionParams,
    prompt_len: usize,
}

/// A branch's progress inside its request.
#[derive(Default)]
struct Progress {
    kept: Vec<StreamedToken>,
    text: String,
    stop: Option<BranchStop>,
    next: Option<Vec<RemoteAlternative>>,
    received: usize,
}

/// What the main thread hears from the request threads.
enum Heard {
    Token(usize, TokenInfo),
}

impl SequenceService for RemoteService {
    fn info(&self) -> &ServiceInfo {
        &self.info
    }

    fn prompt_ids(&self, messages: &[Message], format: PromptFormat) -> EngineResult<Vec<u32>> {
        if messages.iter().all(|m| m.content.trim().is_empty()) {
            return Err(EngineError::InvalidParameter("the prompt is empty".into()));
        }
        let text = match format {
            PromptFormat::Auto => match self.render_chat(messages) {
                Some(text) => Some(text?),
                None => {
                    // vLLM renders to ids directly.
                    let pairs: Vec<(&str, &str)> = messages
                        .iter()
                        .map(|m| (m.role.as_str(), m.content.as_str()))
                        .collect();
                    match self.client.render_chat(&pairs).map_err(remote_err)? {
                        Some(Prompt::Ids(ids)) => {
                            let pieces = self.pieces_for_ids(&ids)?;
                            let text: String = pieces.iter().map(|p| p.text.as_str()).collect();
                            self.state().runs.insert(ids.clone(), text);
                            return self.check_len(ids);
                        }
                        Some(Prompt::Text(t)) => Some(t),
                        None => None,
                    }
                }
            },
            PromptFormat::Raw => None,
        };
        let text = text.unwrap_or_else(|| {
            messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n")
        });
        let ids = self.ids_for_text(&text)?;
        self.check_len(ids)
    }

    fn render_chat(&self, messages: &[Message]) -> Option<EngineResult<String>> {
        if let Some(t) = &self.template {
            return Some(t.render(messages));
        }
        let pairs: Vec<(&str, &str)> = messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect();
        match self.client.render_chat(&pairs) {
            Ok(Some(Prompt::Text(t))) => Some(Ok(t)),
            Ok(_) => None,
            Err(e) => Some(Err(remote_err(e))),
        }
    }

    fn encode(&self, text: &str) -> EngineResult<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        self.ids_for_text(text)
    }

    fn prefill(&self, run: &Arc<RunControl>, tokens: Vec<u32>) -> EngineResult<Served<Prefilled>> {
        run.check()?;
        if tokens.is_empty() {
            return Err(EngineError::InvalidParameter("empty prompt".into()));
        }
        let mut path = Path::default();
        for p in self.pieces_for(&tokens)? {
            path.push(p);
        }
        let (next, cost) = self.peek(run, &path)?;
        let len = path.len;
        path.next = Some(next.clone());
        let seq = self.state().new_seq(path);
        Ok(Served {
            value: Prefilled { seq, len, next },
            cost,
        })
    }

    fn fork(
        &self,
        run: &Arc<RunControl>,
        seq: SeqId,
        n: usize,
    ) -> EngineResult<Served<Vec<SeqId>>> {
        run.check()?;
        let path = self.path(seq)?;
        let mut st = self.state();
        let seqs = (0..n).map(|_| st.new_seq(path.clone())).collect();
        // Nothing is computed: the server's prefix cache (where it has one) serves the shared
        // prefix on the next request, and that request's usage says how much it reused.
        Ok(Served::free(seqs))
    }

    fn generate(
        &self,
        run: &Arc<RunControl>,
        request: GenerateRequest,
        on_token: &mut dyn FnMut(usize, TokenInfo),
    ) -> Served<EngineResult<Vec<BranchOutcome>>> {
        let mut cost = OpCost::default();
        let value = self.generate_into(run, request, on_token, &mut cost);
        Served { value, cost }
    }

    fn append(
        &self,
        run: &Arc<RunControl>,
        items: Vec<(SeqId, Vec<u32>)>,
    ) -> EngineResult<Served<Vec<Appended>>> {
        run.check()?;
        let mut out = Vec::with_capacity(items.len());
        let mut cost = OpCost::default();
        for (seq, ids) in items {
            let mut path = self.path(seq)?;
            let known = path.next.take();
            let pieces = self.pieces_for(&ids)?;
            let mut tokens = Vec::with_capacity(ids.len());
            for p in &pieces {
                // Servers report no log-probs for text they were given: 0 and no alternatives.
                // A piece of several ids keeps its text on the first (its split is unknown).
                for (k, &id) in p.ids.iter().enumerate() {
                    tokens.push(TokenInfo {
                        id,
                        text: if k == 0 {
                            p.text.clone()
                        } else {
                            String::new()
                        },
                        logprob: 0.0,
                        entropy: 0.0,
                        top: Vec::new(),
                    });
                }
            }
            // The first token's log-prob is known when it was among the alternatives at the
            // path's end (a child started from a top token, as beam search and MCTS make).
            if let (Some(first), Some(next)) = (tokens.first_mut(), known.as_ref()) {
                if let Some(alt) = next.top.iter().find(|a| a.id == first.id) {
                    first.logprob = alt.logprob;
                    first.entropy = next.entropy;
                    first.top = next.top.clone();
                }
            }
            for p in pieces {
                path.push(p);
            }
            let (next, c) = self.peek(run, &path)?;
            cost.add(&c);
            let len = path.len;
            path.next = Some(next.clone());
            self.state().paths.insert(seq, path);
            out.push(Appended { tokens, len, next });
        }
        Ok(Served { value: out, cost })
    }

    fn next_logprobs(
        &self,
        run: &Arc<RunControl>,
        seq: SeqId,
        ids: &[u32],
    ) -> EngineResult<Served<Vec<Option<f32>>>> {
        run.check()?;
        let path = self.path(seq)?;
        // The distribution at the path's end is usually known from the request that made it.
        let (next, cost) = match path.next.clone() {
            Some(next) if !next.top.is_empty() => (next, OpCost::default()),
            _ => self.peek(run, &path)?,
        };
        let texts: Vec<Option<String>> = {
            let st = self.state();
            ids.iter()
                .map(|&i| {
                    if i >= SYNTHETIC_BASE {
                        st.synthetic.get((i - SYNTHETIC_BASE) as usize).cloned()
                    } else {
                        st.id_text.get(&i).cloned()
                    }
                })
                .collect()
        };
        let found = ids
            .iter()
            .zip(texts)
            .map(|(&id, text)| {
                next.top
                    .iter()
                    .find(|a| a.id == id || text.as_deref().is_some_and(|t| t == a.text))
                    .map(|a| a.logprob)
            })
            .collect();
        Ok(Served { value: found, cost })
    }

    fn release(&self, seqs: &[SeqId]) {
        let mut st = self.state();
        for s in seqs {
            st.paths.remove(s);
        }
    }
}

impl RemoteService {
    fn check_len(&self, ids: Vec<u32>) -> EngineResult<Vec<u32>> {
        let context = self.info.context_length;
        if ids.len() >= context {
            return Err(EngineError::ContextOverflow {
                tokens: ids.len(),
                context,
            });
        }
        Ok(ids)
    }

    /// [`SequenceService::generate`], adding what was computed to `cost` whatever the result.
    fn generate_into(
        &self,
        run: &Arc<RunControl>,
        request: GenerateRequest,
        on_token: &mut dyn FnMut(usize, TokenInfo),
        cost: &mut OpCost,
    ) -> EngineResult<Vec<BranchOutcome>> {
        run.check()?;

        let session = self.session_for(run)?;
        let context = self.info.context_length;
        let rule: StopRule = request.rule.clone();
        let budget = request.budget;
        let caps_n = self.client.info().capabilities.n;
        let paths: Vec<Path> = request
            .branches
            .iter()
            .map(|b| self.path(b.seq))
            .collect::<EngineResult<_>>()?;

        // Branches that may not generate at all stop here, as the local service would.
        let mut early: Vec<Option<BranchStop>> = vec![None; paths.len()];
        for (i, p) in paths.iter().enumerate() {
            if budget == Some(0) {
                early[i] = Some(BranchStop::Budget);
            } else if p.len + 1 >= context {
                early[i] = Some(BranchStop::ContextFull);
            }
        }

        // One request per branch, or per group of branches on one path where `n` works.
        let mut jobs: Vec<Job> = Vec::new();
        let mut by_text: HashMap<String, usize> = HashMap::new();
        for (i, b) in request.branches.iter().enumerate() {
            if early[i].is_some() {
                continue;
            }
            let path = &paths[i];
            let room = context.saturating_sub(path.len + 1);
            let limit = rule
                .max_tokens
                .min(budget.unwrap_or(usize::MAX))
                .min(room)
                .max(1);
            let s = b.sampler.params();
            let mut params = CompletionParams::new(self.prompt_of(path), limit + 1);
            params.temperature = s.temperature;
            params.top_p = s.top_p;
            params.top_k = s.top_k;
            params.min_p = s.min_p;
            // Per branch and position: reproducible, and different for every branch and step.
            params.seed = Some(
                s.seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(path.len as u64),
            );
            params.top_logprobs = self.top;
            let key = format!(
                "{}|{:?}|{}|{}|{}|{}",
                path.text(),
                path.ids(),
                s.temperature,
                s.top_p,
                s.top_k,
                s.min_p
            );
            if caps_n && s.temperature > 0.0 {
                if let Some(&j) = by_text.get(&key) {
                    jobs[j].branches.push(i);
                    jobs[j].params.n += 1;
                    continue;
                }
                by_text.insert(key, jobs.len());
            }
            jobs.push(Job {
                branches: vec![i],
                params,
                prompt_len: path.len,
            });
        }

        let used = AtomicUsize::new(0);
        let started = Instant::now();
        let client = &self.client;
        let this = self;
        let rule_ref = &rule;
        let priors: Vec<&str> = request
            .branches
            .iter()
            .map(|b| b.prior_text.as_str())
            .collect();
        let priors = &priors;
        let work = |job: Job,
                    emit: &dyn Fn(Heard)|
         -> (
            Vec<usize>,
            Vec<Progress>,
            Result<CompletionOutcome, RemoteError>,
            f64,
        ) {
            let t0 = Instant::now();
            let mut progress: Vec<Progress> =
                job.branches.iter().map(|_| Progress::default()).collect();
            let limit = job.params.max_tokens - 1;
            let result = client.complete(&session, &job.params, &mut |choice, tok| {
                let Some(p) = progress.get_mut(choice) else {
                    return ControlFlow::Break(());
                };
                let branch = job.branches[choice];
                p.received += 1;
                if p.stop.is_some() {
                    // The look-ahead token: its alternatives are the distribution at the end.
                    p.next = Some(tok.top);
                    return ControlFlow::Break(());
                }
                if let Some(limit_h) = rule_ref.entropy_above {
                    let lps: Vec<f32> = tok.top.iter().map(|a| a.logprob).collect();
                    if !p.kept.is_empty() && entropy_from_top(&lps).is_some_and(|h| h > limit_h) {
                        p.stop = Some(BranchStop::HighEntropy);
                        p.next = Some(tok.top);
                        return ControlFlow::Break(());
                    }
                }
                if let Some(b) = budget {
                    if used.load(Ordering::SeqCst) >= b {
                        p.stop = Some(BranchStop::Budget);
                        p.next = Some(tok.top);
                        return ControlFlow::Break(());
                    }
                }
                used.fetch_add(1, Ordering::SeqCst);
                emit(Heard::Token(branch, this.info_of(&tok)));
                p.text.push_str(&tok.text);
                let newline = tok.text.contains('\n');
                p.kept.push(tok);
                let node_has_text = format!("{}{}", priors[branch], p.text).trim().len() > 1;
                if rule_ref.step_end && newline && node_has_text {
                    p.stop = Some(BranchStop::StepEnd);
                } else if p.kept.len() >= limit {
                    p.stop = Some(BranchStop::MaxTokens);
                }
                ControlFlow::Continue(())
            });
            (job.branches, progress, result, t0.elapsed().as_secs_f64())
        };
        let jobs_len: Vec<usize> = jobs.iter().map(|j| j.prompt_len).collect();
        let mut pending_pause = false;
        let results = run_bounded(
            jobs,
            self.options.concurrency,
            &work,
            &mut |heard| {
                let Heard::Token(branch, info) = heard;
                // Pause holds delivery (the server goes on up to its max_tokens; Stop closes).
                while !run.may_proceed() && !run.is_cancelled() {
                    pending_pause = true;
                    std::thread::sleep(Duration::from_millis(20));
                }
                run.used_pass();
                on_token(branch, info);
            },
            &mut || run.is_cancelled(),
            &|| session.cancel(),
        );
        let _ = pending_pause;

        let mut outcomes: Vec<Option<BranchOutcome>> = vec![None; paths.len()];
        let mut first_err = None;
        for ((branches, progress, result, wall), prompt_len) in results.into_iter().zip(jobs_len) {
            let received: usize = progress.iter().map(|p| p.received).sum();
            let outcome = match result {
                Ok(o) => Some(o),
                Err(e) => {
                    first_err.get_or_insert(e);
                    None
                }
            };
            let mut c = self.cost_of(outcome.as_ref(), prompt_len, received, wall);
            if self.counted_here || outcome.as_ref().is_none_or(|o| o.usage.is_none()) {
                c.prompt_tokens_computed = prompt_len as u64;
            }
            cost.add(&c);
            for (k, (branch, p)) in branches.into_iter().zip(progress).enumerate() {
                let finish = outcome
                    .as_ref()
                    .and_then(|o| o.choices.get(k))
                    .and_then(|c| c.finish_reason.clone());
                let mut path = paths[branch].clone();
                {
                    let mut st = self.state();
                    for t in &p.kept {
                        let id = match t.id {
                            Some(id) => id,
                            None => st.synthetic_id(&t.text),
                        };
                        path.push(Piece {
                            ids: vec![id],
                            text: t.text.clone(),
                        });
                    }
                }
                let stop = match (p.stop, finish.as_deref()) {
                    (Some(s), _) => s,
                    (None, Some("stop")) => BranchStop::EndOfText,
                    (None, _) if path.len + 1 >= context => BranchStop::ContextFull,
                    (None, _) => BranchStop::MaxTokens,
                };
                let next = match (&p.next, stop) {
                    (Some(top), _) => self.next_of(top),
                    _ => NextToken::default(),
                };
                let len = path.len;
                let seq = request.branches[branch].seq;
                path.next = Some(next.clone());
                self.state().paths.insert(seq, path);
                outcomes[branch] = Some(BranchOutcome {
                    stop,
                    len,
                    sampler: request.branches[branch].sampler.clone(),
                    next,
                });
            }
        }
        let wall = started.elapsed().as_secs_f64();
        cost.energy_joules = self.energy(wall);
        run.check()?;
        if let Some(e) = first_err {
            return Err(remote_err(e));
        }
        let outcomes = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| BranchOutcome {
                    stop: early[i].unwrap_or(BranchStop::MaxTokens),
                    len: paths[i].len,
                    sampler: request.branches[i].sampler.clone(),
                    next: NextToken::default(),
                })
            })
            .collect();
        Ok(outcomes)
    }
}
