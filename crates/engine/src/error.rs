//! The engine's error type: every failure a user can cause has its own variant.

use std::path::PathBuf;

/// Errors from loading models, tokenising, decoding and fetching weights.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No file at the given path.
    #[error("model file not found: {}", path.display())]
    ModelNotFound { path: PathBuf },

    /// The file does not start with the GGUF magic or has an unknown version.
    #[error("not a GGUF model file ({reason}): {}", path.display())]
    NotGguf { path: PathBuf, reason: String },

    /// The header promises more data than the file holds, or a tensor cannot be read.
    #[error("GGUF file is truncated or corrupt ({reason}): {}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// `general.architecture` names a model family thinkscope cannot run.
    #[error(
        "unsupported model architecture '{0}' (supported: {supported})",
        supported = crate::model::config::Arch::supported()
    )]
    UnsupportedArchitecture(String),

    /// A metadata key is missing, of the wrong type or out of range.
    #[error("invalid model metadata: {0}")]
    InvalidMetadata(String),

    /// A tensor is missing or its shape disagrees with the metadata.
    #[error("invalid tensor: {0}")]
    InvalidTensor(String),

    /// Building or running the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Rendering the chat template failed.
    #[error("chat template: {0}")]
    Template(String),

    /// A prompt (plus what must still be generated) does not fit the context window.
    #[error("prompt is {tokens} tokens, more than the model's context window of {context} tokens")]
    ContextOverflow { tokens: usize, context: usize },

    /// Allocating more KV cache would exceed the configured memory budget.
    #[error(
        "KV cache budget exceeded: {needed_bytes} more bytes needed, {used_bytes} of {budget_bytes} in use \
         (raise the budget or run fewer branches)"
    )]
    KvBudgetExceeded {
        needed_bytes: usize,
        used_bytes: usize,
        budget_bytes: usize,
    },

    /// A token id outside the vocabulary.
    #[error("token id {id} is out of range (vocabulary has {vocab} tokens)")]
    InvalidToken { id: u32, vocab: usize },

    /// A sequence id that does not exist (released or never created).
    #[error("unknown sequence {0}")]
    UnknownSequence(crate::service::SeqId),

    /// A user-supplied parameter is out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),

    /// The user cancelled the run.
    #[error("cancelled")]
    Cancelled,

    /// A batched pass failed for a reason reported to every run in it.
    #[error("{0}")]
    Failed(String),

    /// The engine worker is gone (shut down or crashed).
    #[error("the engine worker stopped: {0}")]
    WorkerGone(String),

    /// Downloading or verifying model weights failed.
    #[error("model fetch failed: {0}")]
    Fetch(String),

    /// Reading or writing a file failed.
    #[error("{source}: {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An error from the tensor library.
    #[error("{}", candle_message(.0))]
    Candle(#[from] candle_core::Error),
}

/// A candle error's message without the backtrace candle appends when `RUST_BACKTRACE` is set:
/// people read these in the status bar and on the command line.
pub fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        e => e.to_string(),
    }
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
