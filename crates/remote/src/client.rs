//! A connected server: its models, what it can do (probed once at connect), its tokenizer
//! endpoints, and streaming completions with per-token log-probs and top alternatives.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use crate::error::{one_line, RemoteError, Result};
use crate::http::{parse_json, ServerConfig, Session};
use crate::sse::{SseError, SseItem, SseReader};
use crate::wire::{
    Chunk, CompletionRequest, DetokenizeAnswer, Logprobs, ModelCard, ModelList, Prompt,
    StreamOptions, TokenizeAnswer, Usage,
};

/// Which server software answers, as far as it can be told. It picks the request knobs each one
/// understands; everything else is probed, not assumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// llama-cpp-python's `llama_cpp.server` (FastAPI).
    LlamaCppPython,
    /// llama.cpp's own `llama-server`.
    LlamaCppServer,
    /// vLLM's OpenAI-compatible server.
    Vllm,
    /// SGLang's OpenAI-compatible server.
    Sglang,
    /// Anything else that speaks `/v1/completions`: only standard fields are sent.
    Generic,
}

impl Dialect {
    /// A short name for device lines and logs.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::LlamaCppPython => "llama-cpp-python",
            Dialect::LlamaCppServer => "llama.cpp server",
            Dialect::Vllm => "vLLM",
            Dialect::Sglang => "SGLang",
            Dialect::Generic => "OpenAI-compatible server",
        }
    }
}

/// Where a server tokenizes text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizeRoute {
    /// `POST /tokenize` (vLLM `{"prompt"}`, llama.cpp server `{"content"}`; both fields are sent),
    /// with `POST /detokenize` beside it.
    Root,
    /// llama-cpp-python's `POST /extras/tokenize` `{"input"}` and `/extras/detokenize`.
    Extras,
}

/// What the server was seen to do at connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Per-token log-probabilities come back in streams.
    pub logprobs: bool,
    /// Most top alternatives per token it returned when asked for [`PROBE_TOP_LOGPROBS`].
    pub top_logprobs: usize,
    /// Generated tokens and alternatives come back with their token ids (else only their text).
    pub token_ids_in_output: bool,
    /// It accepts prompts as lists of token ids.
    pub token_id_prompts: bool,
    /// It honours `n` (several samples from one request); otherwise requests are fanned out.
    pub n: bool,
    /// Its tokenize endpoint, if any.
    pub tokenize: Option<TokenizeRoute>,
    /// Streams end with a `usage` chunk.
    pub usage_in_stream: bool,
    /// Usage reports prompt tokens served from the prefix cache.
    pub cached_tokens_reported: bool,
}

impl Capabilities {
    /// One line for logs and the device line: what is there and what is not.
    pub fn describe(&self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        format!(
            "logprobs: {}, top alternatives: {}, ids in output: {}, token-id prompts: {}, n: {}, tokenize: {}, usage in stream: {}, cached tokens: {}",
            yes_no(self.logprobs),
            self.top_logprobs,
            yes_no(self.token_ids_in_output),
            yes_no(self.token_id_prompts),
            yes_no(self.n),
            match self.tokenize {
                Some(TokenizeRoute::Root) => "/tokenize",
                Some(TokenizeRoute::Extras) => "/extras/tokenize",
                None => "none",
            },
            yes_no(self.usage_in_stream),
            yes_no(self.cached_tokens_reported),
        )
    }
}

/// How many alternatives the connect probe asks for (vLLM's default cap is 20).
pub const PROBE_TOP_LOGPROBS: usize = 20;

/// The server as found at connect.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// Server root URL (no `/v1`).
    pub root: String,
    /// The model requests go to.
    pub model: String,
    /// Every model it serves.
    pub models: Vec<String>,
    /// Which software it seems to be.
    pub dialect: Dialect,
    /// Context window, where the server says.
    pub context_length: Option<usize>,
    /// What it can do.
    pub capabilities: Capabilities,
}

impl ServerInfo {
    /// "vLLM at http://host:8000, model Qwen/…": for device lines.
    pub fn describe(&self) -> String {
        format!(
            "{} at {}, model {}",
            self.dialect.name(),
            self.root,
            self.model
        )
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionParams {
    /// The prompt (the whole path of the branch).
    pub prompt: Prompt,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus sampling (1 = off).
    pub top_p: f32,
    /// Top-k (0 = off).
    pub top_k: usize,
    /// Min-p (0 = off).
    pub min_p: f32,
    /// Seed, for servers that honour one.
    pub seed: Option<u64>,
    /// Stop texts (the server stops before them and leaves them out).
    pub stop: Vec<String>,
    /// Top alternatives wanted per token (0 = none; capped at what the server gives).
    pub top_logprobs: usize,
    /// Samples from this prompt; more than 1 only where [`Capabilities::n`].
    pub n: usize,
}

impl CompletionParams {
    /// Greedy, `max_tokens` tokens, no alternatives.
    pub fn new(prompt: Prompt, max_tokens: usize) -> Self {
        Self {
            prompt,
            max_tokens,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            stop: Vec::new(),
            top_logprobs: 0,
            n: 1,
        }
    }
}

/// One alternative the server reported for a position.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteAlternative {
    /// Token id, where the server says.
    pub id: Option<u32>,
    /// Its text.
    pub text: String,
    /// Natural-log probability.
    pub logprob: f32,
}

/// A token as it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamedToken {
    /// Token id, where the server says (llama-cpp-python only sends text).
    pub id: Option<u32>,
    /// Its text (for servers without logprobs: the chunk's text span, maybe several tokens).
    pub text: String,
    /// Its log-probability, where reported.
    pub logprob: Option<f32>,
    /// Top alternatives at this position, most likely first.
    pub top: Vec<RemoteAlternative>,
}

/// How one choice of a completion ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ChoiceOutcome {
    /// Tokens received (spans, without logprobs).
    pub tokens: usize,
    /// Its text.
    pub text: String,
    /// The server's `finish_reason` (`stop`, `length`, ...), `None` if we closed it first.
    pub finish_reason: Option<String>,
    /// We stopped reading it before the server finished (a client-side stop rule).
    pub closed_early: bool,
}

/// A finished (or client-stopped) completion.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionOutcome {
    /// One per choice (`n`).
    pub choices: Vec<ChoiceOutcome>,
    /// The server's usage, when it sent one.
    pub usage: Option<Usage>,
    /// Prompt tokens served from cache, as reported (`prompt_tokens_details.cached_tokens` or
    /// llama.cpp's `timings.cache_n`); `None` = not reported.
    pub cached_tokens: Option<u64>,
    /// Wall seconds from request to last byte.
    pub wall_secs: f64,
}

/// A connected server.
pub struct Client {
    config: ServerConfig,
    session: Session,
    info: ServerInfo,
    /// id → text, filled from `/detokenize` for servers that send ids without text.
    id_text: Mutex<HashMap<u32, String>>,
    /// Which chat-template endpoint works, once known (`Some(None)`: none does).
    chat_route: Mutex<Option<Option<ChatRoute>>>,
}

/// Where a server renders its own chat template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChatRoute {
    /// llama.cpp server: `POST /apply-template {"messages"}` → `{"prompt"}`.
    ApplyTemplate,
    /// vLLM: `POST /tokenize {"messages", "add_generation_prompt"}` → `{"tokens"}`.
    TokenizeMessages,
}

/// The models a server lists, without probing anything else.
pub fn list_models(config: &ServerConfig) -> Result<Vec<String>> {
    let session = Session::new(config)?;
    Ok(fetch_models(&session)?.into_iter().map(|m| m.id).collect())
}

fn fetch_models(session: &Session) -> Result<Vec<ModelCard>> {
    let list: ModelList = session.get_json("/v1/models")?;
    Ok(list.data)
}

impl Client {
    /// Connect: list the models, pick `model` (or the only one), and probe what the server can
    /// do with a few tiny requests (a couple of generated tokens each).
    pub fn connect(config: ServerConfig, model: Option<&str>) -> Result<Self> {
        let session = Session::new(&config)?;
        let cards = fetch_models(&session)?;
        let root = session.root().to_owned();
        let served: Vec<String> = cards.iter().map(|c| c.id.clone()).collect();
        let listing = || {
            served
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let card =
            match model {
                Some(want) => cards.iter().find(|c| c.id == want).ok_or_else(|| {
                    RemoteError::UnknownModel {
                        url: root.clone(),
                        model: want.to_owned(),
                        served: listing(),
                    }
                })?,
                None => match cards.as_slice() {
                    [] => return Err(RemoteError::NoModels { url: root }),
                    [one] => one,
                    many => {
                        return Err(RemoteError::AmbiguousModel {
                            url: root.clone(),
                            count: many.len(),
                            served: listing(),
                        })
                    }
                },
            }
            .clone();
        let hinted = match card.owned_by.as_deref() {
            Some("vllm") => Some(Dialect::Vllm),
            Some("sglang") => Some(Dialect::Sglang),
            Some("llamacpp") => Some(Dialect::LlamaCppServer),
            _ => None,
        };
        let context_length = card
            .max_model_len
            .or_else(|| {
                card.meta
                    .as_ref()
                    .and_then(|m| m.get("n_ctx_train"))
                    .and_then(Value::as_u64)
            })
            .and_then(|n| usize::try_from(n).ok());
        let mut client = Self {
            config,
            session,
            info: ServerInfo {
                root,
                model: card.id.clone(),
                models: served.clone(),
                dialect: hinted.unwrap_or(Dialect::Generic),
                context_length,
                capabilities: Capabilities {
                    logprobs: false,
                    top_logprobs: 0,
                    token_ids_in_output: false,
                    token_id_prompts: false,
                    n: false,
                    tokenize: None,
                    usage_in_stream: false,
                    cached_tokens_reported: false,
                },
            },
            id_text: Mutex::new(HashMap::new()),
            chat_route: Mutex::new(None),
        };
        client.probe(hinted)?;
        tracing::info!(
            server = %client.info.describe(),
            capabilities = %client.info.capabilities.describe(),
            "connected"
        );
        Ok(client)
    }

    /// What was found at connect.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// A new session (its own connections, cancelled together) for one run.
    pub fn session(&self) -> Result<Session> {
        Session::new(&self.config)
    }

    /// Close every connection of the client's own session (probes, tokenize).
    pub fn cancel(&self) {
        self.session.cancel();
    }

    fn probe(&mut self, hinted: Option<Dialect>) -> Result<()> {
        // Tokenizer first: it tells llama-cpp-python apart and gives ids for the next probe.
        let probe_text = "Hello, world";
        let mut ids = None;
        for route in [TokenizeRoute::Root, TokenizeRoute::Extras] {
            match self.tokenize_via(&self.session, route, probe_text) {
                Ok(t) if !t.is_empty() => {
                    self.info.capabilities.tokenize = Some(route);
                    ids = Some(t);
                    break;
                }
                Ok(_) => {}
                Err(RemoteError::Rejected { .. } | RemoteError::Server { .. }) => {}
                Err(RemoteError::Malformed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if hinted.is_none() && self.info.capabilities.tokenize == Some(TokenizeRoute::Extras) {
            self.info.dialect = Dialect::LlamaCppPython;
        }

        // Logprobs, alternatives, n and usage from one short streamed completion; fall back
        // step by step when the server refuses a field.
        let attempts: [(Option<usize>, usize); 3] =
            [(Some(PROBE_TOP_LOGPROBS), 2), (Some(5), 1), (None, 1)];
        let mut last_err = None;
        let mut seen = None;
        for (logprobs, n) in attempts {
            let mut params = CompletionParams::new(Prompt::Text(probe_text.into()), 2);
            params.temperature = 1.0;
            params.seed = Some(7);
            params.top_logprobs = logprobs.unwrap_or(0);
            params.n = n;
            match self.probe_once(&params) {
                Ok(found) => {
                    seen = Some(found);
                    break;
                }
                Err(e @ (RemoteError::Rejected { .. } | RemoteError::Server { .. })) => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        let Some(found) = seen else {
            return Err(last_err.unwrap_or_else(|| {
                RemoteError::Unsupported("the server refused every streamed completion".into())
            }));
        };
        let caps = &mut self.info.capabilities;
        caps.logprobs = found.logprobs;
        caps.top_logprobs = found.top;
        caps.token_ids_in_output = found.ids;
        caps.n = found.choices > 1;
        caps.usage_in_stream = found.usage;
        caps.cached_tokens_reported = found.cached;

        // Token-id prompts: only meaningful with real ids from the server's tokenizer.
        if let Some(ids) = ids {
            let mut params = CompletionParams::new(Prompt::Ids(ids), 1);
            params.seed = Some(7);
            self.info.capabilities.token_id_prompts = match self.probe_once(&params) {
                Ok(_) => true,
                Err(RemoteError::Rejected { .. } | RemoteError::Server { .. }) => false,
                Err(e) => return Err(e),
            };
        }
        Ok(())
    }

    fn probe_once(&self, params: &CompletionParams) -> Result<ProbeFindings> {
        let mut found = ProbeFindings::default();
        let mut choices = BTreeSet::new();
        let outcome = self.stream_raw(&self.session, params, &mut |choice, tok| {
            choices.insert(choice);
            if tok.logprob.is_some() {
                found.logprobs = true;
            }
            found.top = found.top.max(tok.top.len());
            if tok.id.is_some() {
                found.ids = true;
            }
            ControlFlow::Continue(())
        })?;
        found.choices = choices.len().max(outcome.choices.len().min(1));
        found.usage = outcome.usage.is_some();
        found.cached = outcome.cached_tokens.is_some();
        Ok(found)
    }

    /// Token ids of `text` from the server's tokenizer (special tokens parsed, nothing added).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let Some(route) = self.info.capabilities.tokenize else {
            return Err(RemoteError::Unsupported(format!(
                "{} has no tokenize endpoint (/tokenize or /extras/tokenize)",
                self.info.root
            )));
        };
        self.tokenize_via(&self.session, route, text)
    }

    fn tokenize_via(
        &self,
        session: &Session,
        route: TokenizeRoute,
        text: &str,
    ) -> Result<Vec<u32>> {
        let model = &self.info.model;
        let answer: TokenizeAnswer = match route {
            TokenizeRoute::Root => session.post_json(
                "/tokenize",
                &json!({"model": model, "prompt": text, "content": text,
                        "add_special_tokens": false, "add_special": false, "parse_special": true}),
            )?,
            TokenizeRoute::Extras => {
                session.post_json("/extras/tokenize", &json!({"model": model, "input": text}))?
            }
        };
        Ok(answer.tokens.iter().map(|t| t.id()).collect())
    }

    /// The conversation rendered by the server's own chat template, ending with the assistant's
    /// turn opened: token ids from vLLM (`/tokenize` with messages), text from llama.cpp server
    /// (`/apply-template`). `None` when the server renders no templates (llama-cpp-python).
    pub fn render_chat(&self, messages: &[(&str, &str)]) -> Result<Option<Prompt>> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        let known = self.chat_route.lock().ok().and_then(|g| *g);
        let candidates: Vec<ChatRoute> = match known {
            Some(Some(route)) => vec![route],
            Some(None) => return Ok(None),
            None => vec![ChatRoute::ApplyTemplate, ChatRoute::TokenizeMessages],
        };
        for route in candidates {
            let result = match route {
                ChatRoute::ApplyTemplate => self
                    .session
                    .post_json::<Value>("/apply-template", &json!({"messages": msgs}))
                    .and_then(|v| {
                        v.get("prompt")
                            .and_then(Value::as_str)
                            .map(|p| Prompt::Text(p.to_owned()))
                            .ok_or_else(|| RemoteError::Malformed {
                                url: self.session.url("/apply-template"),
                                reason: "no \"prompt\" in the answer".into(),
                                snippet: one_line(&v.to_string(), 120),
                            })
                    }),
                ChatRoute::TokenizeMessages => self
                    .session
                    .post_json::<TokenizeAnswer>(
                        "/tokenize",
                        &json!({"model": self.info.model, "messages": msgs,
                                "add_generation_prompt": true, "add_special_tokens": false}),
                    )
                    .map(|a| Prompt::Ids(a.tokens.iter().map(|t| t.id()).collect())),
            };
            match result {
                Ok(prompt) => {
                    if let Ok(mut g) = self.chat_route.lock() {
                        *g = Some(Some(route));
                    }
                    return Ok(Some(prompt));
                }
                Err(
                    RemoteError::Rejected { .. }
                    | RemoteError::Server { .. }
                    | RemoteError::Malformed { .. },
                ) => {}
                Err(e) => return Err(e),
            }
        }
        if let Ok(mut g) = self.chat_route.lock() {
            *g = Some(None);
        }
        Ok(None)
    }

    /// Text of token ids from the server's detokenizer.
    pub fn detokenize(&self, ids: &[u32]) -> Result<String> {
        let path = match self.info.capabilities.tokenize {
            Some(TokenizeRoute::Root) => "/detokenize",
            Some(TokenizeRoute::Extras) => "/extras/detokenize",
            None => {
                return Err(RemoteError::Unsupported(format!(
                    "{} has no detokenize endpoint",
                    self.info.root
                )))
            }
        };
        let answer: DetokenizeAnswer = self
            .session
            .post_json(path, &json!({"model": self.info.model, "tokens": ids}))?;
        Ok(answer.text)
    }

    fn text_of(&self, session: &Session, id: u32) -> String {
        if let Some(t) = self.id_text.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return t;
        }
        let path = match self.info.capabilities.tokenize {
            Some(TokenizeRoute::Root) => "/detokenize",
            _ => return String::new(),
        };
        let text = session
            .post_json::<DetokenizeAnswer>(path, &json!({"model": self.info.model, "tokens": [id]}))
            .map(|a| a.text)
            .unwrap_or_default();
        if let Ok(mut m) = self.id_text.lock() {
            m.insert(id, text.clone());
        }
        text
    }

    /// Stream a completion on `session`. `on_token(choice, token)` sees every token as it
    /// arrives; returning `Break` closes that choice (and the stream once every choice is
    /// closed or finished). Tokens already delivered stay delivered whatever error follows.
    pub fn complete(
        &self,
        session: &Session,
        params: &CompletionParams,
        on_token: &mut dyn FnMut(usize, StreamedToken) -> ControlFlow<()>,
    ) -> Result<CompletionOutcome> {
        if params.n > 1 && !self.info.capabilities.n {
            return Err(RemoteError::Unsupported(format!(
                "{} ignores `n`; send one request per sample",
                self.info.dialect.name()
            )));
        }
        if matches!(params.prompt, Prompt::Ids(_)) && !self.info.capabilities.token_id_prompts {
            return Err(RemoteError::Unsupported(format!(
                "{} takes text prompts only, not token ids",
                self.info.dialect.name()
            )));
        }
        self.stream_raw(session, params, on_token)
    }

    /// One completion without streaming (for short probes such as the next-token distribution
    /// after a path: `max_tokens` 1 with alternatives). Servers that send no usage in streams
    /// (llama-cpp-python) do send it here.
    pub fn complete_unstreamed(
        &self,
        session: &Session,
        params: &CompletionParams,
    ) -> Result<(Vec<StreamedToken>, CompletionOutcome)> {
        if params.n > 1 {
            return Err(RemoteError::Unsupported(
                "unstreamed completions take one sample".into(),
            ));
        }
        let started = Instant::now();
        let mut body = self.request_body(params);
        body.stream = false;
        body.stream_options = None;
        let answer: Chunk = session.post_json("/v1/completions", &body)?;
        let mut tokens = Vec::new();
        let mut outcome = ChoiceOutcome {
            tokens: 0,
            text: String::new(),
            finish_reason: None,
            closed_early: false,
        };
        if let Some(choice) = answer.choices.into_iter().find(|c| c.index == 0) {
            tokens = self.tokens_of(session, &choice, params.top_logprobs);
            outcome.tokens = tokens.len();
            outcome.text = choice.text;
            outcome.finish_reason = choice.finish_reason;
        }
        let cached = answer
            .usage
            .and_then(|u| u.prompt_tokens_details)
            .and_then(|d| d.cached_tokens)
            .or(answer.timings.and_then(|t| t.cache_n));
        Ok((
            tokens,
            CompletionOutcome {
                choices: vec![outcome],
                usage: answer.usage,
                cached_tokens: cached,
                wall_secs: started.elapsed().as_secs_f64(),
            },
        ))
    }

    fn request_body<'a>(&'a self, params: &'a CompletionParams) -> CompletionRequest<'a> {
        let dialect = self.info.dialect;
        let mut extra = serde_json::Map::new();
        let llama_family = matches!(dialect, Dialect::LlamaCppPython | Dialect::LlamaCppServer);
        if llama_family {
            // Their defaults (repeat penalty 1.1, top-k 40, min-p 0.05) would change the
            // distribution the strategies think they sample from.
            extra.insert("repeat_penalty".into(), json!(1.0));
        }
        if dialect == Dialect::Vllm && params.top_logprobs > 0 {
            extra.insert("return_tokens_as_token_ids".into(), json!(true));
        }
        let knobs = dialect != Dialect::Generic;
        CompletionRequest {
            model: &self.info.model,
            prompt: &params.prompt,
            max_tokens: params.max_tokens.max(1),
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: (knobs && (llama_family || params.top_k > 0)).then_some(params.top_k),
            min_p: (knobs && (llama_family || params.min_p > 0.0)).then_some(params.min_p),
            // 31 bits: every server's seed type holds it.
            seed: params.seed.map(|s| s & 0x7fff_ffff),
            stop: &params.stop,
            stream: true,
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
            logprobs: (params.top_logprobs > 0).then_some(params.top_logprobs),
            n: (params.n > 1).then_some(params.n),
            extra,
        }
    }

    fn stream_raw(
        &self,
        session: &Session,
        params: &CompletionParams,
        on_token: &mut dyn FnMut(usize, StreamedToken) -> ControlFlow<()>,
    ) -> Result<CompletionOutcome> {
        let started = Instant::now();
        let url = session.url("/v1/completions");
        let body = self.request_body(params);
        let _span = tracing::debug_span!("completion", max_tokens = params.max_tokens).entered();
        let reader = session.post_stream("/v1/completions", &body)?;
        let mut sse = SseReader::new(reader);
        let n = params.n.max(1);
        let mut choices: Vec<ChoiceOutcome> = (0..n)
            .map(|_| ChoiceOutcome {
                tokens: 0,
                text: String::new(),
                finish_reason: None,
                closed_early: false,
            })
            .collect();
        let mut usage = None;
        let mut cached = None;
        let total_tokens = |c: &[ChoiceOutcome]| c.iter().map(|c| c.tokens).sum::<usize>();
        let cut = |choices: &[ChoiceOutcome], reason: String| RemoteError::StreamCut {
            url: url.clone(),
            tokens: total_tokens(choices),
            reason,
        };
        loop {
            let item = match sse.next_item() {
                Ok(item) => item,
                Err(SseError::Io(e)) => {
                    let err = session.map_io(url.clone(), &e, "streaming");
                    return Err(match err {
                        RemoteError::Unreachable { reason, .. } => cut(&choices, reason),
                        other => other,
                    });
                }
                Err(SseError::TooLong) => {
                    return Err(RemoteError::Malformed {
                        url,
                        reason: "an event longer than 4 MiB".into(),
                        snippet: String::new(),
                    })
                }
                Err(SseError::NotUtf8) => {
                    return Err(RemoteError::Malformed {
                        url,
                        reason: "bytes that are not UTF-8".into(),
                        snippet: String::new(),
                    })
                }
            };
            let data = match item {
                SseItem::Data(d) => d,
                SseItem::Done => break,
                SseItem::Eof => {
                    if choices.iter().all(|c| c.finish_reason.is_some()) {
                        break;
                    }
                    return Err(cut(&choices, "connection closed before the end".into()));
                }
            };
            let chunk: Chunk = match parse_chunk(&url, &data) {
                Ok(c) => c,
                Err(e) => {
                    // A chunk cut by a dying connection is a cut stream, not bad JSON.
                    return Err(match sse.next_item() {
                        Ok(SseItem::Eof) | Err(SseError::Io(_)) => {
                            cut(&choices, "the last event was cut mid-token".into())
                        }
                        _ => e,
                    });
                }
            };
            if let Some(err) = chunk.error {
                let message = err
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| err.to_string());
                return Err(RemoteError::Server {
                    url,
                    status: 200,
                    message: one_line(&message, 240),
                });
            }
            if let Some(u) = chunk.usage {
                cached = u
                    .prompt_tokens_details
                    .and_then(|d| d.cached_tokens)
                    .or(cached);
                usage = Some(u);
            }
            if let Some(t) = chunk.timings {
                cached = t.cache_n.or(cached);
            }
            for choice in chunk.choices {
                let Some(slot) = choices.get_mut(choice.index) else {
                    continue; // an index we did not ask for
                };
                if slot.closed_early {
                    continue;
                }
                let tokens = self.tokens_of(session, &choice, params.top_logprobs);
                for tok in tokens {
                    slot.tokens += 1;
                    slot.text.push_str(&tok.text);
                    if on_token(choice.index, tok).is_break() {
                        slot.closed_early = true;
                        break;
                    }
                }
                if let Some(reason) = choice.finish_reason {
                    if !slot.closed_early {
                        slot.finish_reason = Some(reason);
                    }
                }
            }
            if choices
                .iter()
                .all(|c| c.closed_early || c.finish_reason.is_some())
                && choices.iter().any(|c| c.closed_early)
            {
                break; // dropping the reader closes the connection; the server stops
            }
        }
        Ok(CompletionOutcome {
            choices,
            usage,
            cached_tokens: cached,
            wall_secs: started.elapsed().as_secs_f64(),
        })
    }

    /// The tokens in one chunk's choice, in order.
    fn tokens_of(
        &self,
        session: &Session,
        choice: &crate::wire::ChunkChoice,
        want_top: usize,
    ) -> Vec<StreamedToken> {
        let sort_cut = |mut top: Vec<RemoteAlternative>| {
            top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            top.truncate(want_top);
            top
        };
        match &choice.logprobs {
            Some(Logprobs::Content { content }) if !content.is_empty() => content
                .iter()
                .map(|t| StreamedToken {
                    id: t.id,
                    text: bytes_text(&t.token, t.bytes.as_deref()),
                    logprob: t.logprob,
                    top: sort_cut(
                        t.top_logprobs
                            .iter()
                            .map(|a| RemoteAlternative {
                                id: a.id,
                                text: bytes_text(&a.token, a.bytes.as_deref()),
                                logprob: a.logprob.unwrap_or(f32::NEG_INFINITY),
                            })
                            .collect(),
                    ),
                })
                .collect(),
            Some(Logprobs::Legacy {
                tokens,
                token_logprobs,
                top_logprobs,
            }) if !tokens.is_empty() => {
                let single = tokens.len() == 1;
                tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let id = token_id_form(t);
                        let text = match id {
                            // vLLM with `return_tokens_as_token_ids`: text from the chunk when
                            // it holds one token, else from the detokenizer.
                            Some(_) if single => choice.text.clone(),
                            Some(id) => self.text_of(session, id),
                            None => t.clone(),
                        };
                        let top = top_logprobs
                            .get(i)
                            .and_then(Option::as_ref)
                            .map(|m| {
                                m.iter()
                                    .map(|(k, &lp)| {
                                        let id = token_id_form(k);
                                        RemoteAlternative {
                                            id,
                                            text: match id {
                                                Some(id) => self.text_of(session, id),
                                                None => k.clone(),
                                            },
                                            logprob: lp,
                                        }
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        StreamedToken {
                            id,
                            text,
                            logprob: token_logprobs.get(i).copied().flatten(),
                            top: sort_cut(top),
                        }
                    })
                    .collect()
            }
            // No logprobs: the chunk's text is one span.
            _ if !choice.text.is_empty() => vec![StreamedToken {
                id: None,
                text: choice.text.clone(),
                logprob: None,
                top: Vec::new(),
            }],
            _ => Vec::new(),
        }
    }
}

#[derive(Default)]
struct ProbeFindings {
    logprobs: bool,
    top: usize,
    ids: bool,
    choices: usize,
    usage: bool,
    cached: bool,
}

/// Parse a chunk; Python's `json` writes `-Infinity` and `NaN`, which are not JSON, so a chunk
/// that fails is tried once more with those read as a very negative log-prob.
fn parse_chunk(url: &str, data: &str) -> Result<Chunk> {
    match parse_json::<Chunk>(url, data) {
        Ok(c) => Ok(c),
        Err(e) if data.contains("Infinity") || data.contains("NaN") => {
            let fixed = data
                .replace("-Infinity", "-1e30")
                .replace("Infinity", "1e30")
                .replace("NaN", "-1e30");
            parse_json(url, &fixed).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

/// vLLM's `token_id:123` form.
fn token_id_form(s: &str) -> Option<u32> {
    s.strip_prefix("token_id:")?.parse().ok()
}

/// Token text from its bytes where given (a token may hold part of a UTF-8 character).
fn bytes_text(token: &str, bytes: Option<&[u8]>) -> String {
    match bytes {
        Some(b) if !b.is_empty() => String::from_utf8_lossy(b).into_owned(),
        _ => token.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_token_id_strings_parse() {
        assert_eq!(token_id_form("token_id:42"), Some(42));
        assert_eq!(token_id_form(" the"), None);
    }

    #[test]
    fn python_infinity_is_read_as_a_very_negative_logprob() {
        let c = parse_chunk(
            "http://x",
            r#"{"choices":[{"text":"a","index":0,"logprobs":{"tokens":["a"],"token_logprobs":[-Infinity],"top_logprobs":[{"a":-Infinity}]}}]}"#,
        )
        .expect("parse");
        assert!(matches!(
            c.choices[0].logprobs,
            Some(Logprobs::Legacy { ref token_logprobs, .. }) if token_logprobs[0] == Some(-1e30)
        ));
    }
}
