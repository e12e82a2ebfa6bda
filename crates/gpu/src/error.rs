//! The crate's error type.

/// What can go wrong on the GPU side.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter could be used; the text says what was found.
    #[error("no usable GPU: {0}")]
    NoAdapter(String),
    /// The device refused an operation or was lost.
    #[error("GPU device error: {0}")]
    Device(String),
    /// A shader failed to build (a bug: the sources are part of the binary).
    #[error("GPU shader {name}: {reason}")]
    Shader {
        /// Which shader.
        name: String,
        /// The compiler's message.
        reason: String,
    },
    /// GPU memory could not be had.
    #[error("GPU out of memory allocating {bytes} bytes for {what}")]
    OutOfMemory {
        /// Bytes asked for.
        bytes: u64,
        /// What for.
        what: String,
    },
    /// Weights or a request do not fit the model.
    #[error("{0}")]
    Invalid(String),
}
