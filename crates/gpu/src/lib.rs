//! thinkscope's GPU backend: the whole forward pass of a transformer in WGSL compute shaders,
//! through wgpu (Vulkan, Metal, DX12), so `cargo run --release` uses whatever GPU the machine
//! has with nothing to install.
//!
//! - [`context`]: adapters (hardware first; software only when asked), feature tiers
//!   (f32 baseline, subgroup reductions, f16 loads, packed int8 dot products) and the device line.
//! - [`format`]: GGML weights (Q4_0 … Q6_K, F16, F32) repacked into code and scale arrays.
//! - [`GpuMatrix`]: a weight matrix on the device, split by rows above the binding limit.
//! - [`GpuModel`]: one ragged batched forward pass in one submission, over a paged f16 KV
//!   cache ([`GpuKv`]), described by a plain [`GpuModelSpec`] so the engine's GGUF loader can
//!   feed it without this crate knowing GGUF.
//! - [`ops`]: single kernels on host data, for tests against the CPU kernels.
//! - [`power`]: the adapter's energy and memory counters (NVML, hwmon), where readable.
//!
//! This is the only crate of the workspace that depends on wgpu for compute.

pub mod context;
mod error;
pub mod format;
mod kv;
mod matrix;
mod model;
pub mod ops;
mod pipelines;
pub mod power;
mod shader;

pub use context::{list_adapters, AdapterChoice, AdapterSummary, GpuContext, OpenOptions, Tier};
pub use error::GpuError;
pub use format::{WeightFormat, ALL_FORMATS};
pub use kv::GpuKv;
pub use matrix::GpuMatrix;
pub use model::{
    Activation, ForwardBatch, ForwardItem, GpuModel, GpuModelBuilder, GpuModelSpec, LayerSlot,
    RopeStyle, Slot, BLOCK_TOKENS,
};
pub use thinkscope_kernels::Source;
