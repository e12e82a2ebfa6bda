//! thinkscope over an OpenAI-compatible server (vLLM, SGLang, llama.cpp's server,
//! llama-cpp-python): models listed from `/v1/models`, completions streamed from
//! `/v1/completions` with per-token log-probs and top alternatives, tokenization through the
//! server's own endpoint, and what the server can do probed once at connect.
//!
//! Blocking HTTP (ureq with rustls) on a bounded pool of threads, no async runtime: each run has
//! its own [`Session`], so Stop closes all of that run's streams at once. No GUI crate is a
//! dependency (CI checks the resolved tree).

pub mod client;
pub mod error;
pub mod estimate;
pub mod http;
pub mod llama_server;
pub mod pool;
pub mod service;
mod sse;
pub mod wire;

pub use self::client::{
    list_models, Capabilities, ChoiceOutcome, Client, CompletionOutcome, CompletionParams, Dialect,
    RemoteAlternative, ServerInfo, StreamedToken, TokenizeRoute,
};
pub use self::error::{RemoteError, Result};
pub use self::http::{normalize_base_url, ApiKey, RetryPolicy, ServerConfig, Session};
pub use self::wire::{Prompt, Usage};
