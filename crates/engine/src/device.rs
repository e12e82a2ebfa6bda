//! Choosing where the forward pass runs: the CPU kernels, or the whole pass on a GPU through
//! wgpu (Vulkan, Metal, DX12; the `thinkscope-gpu` crate).
//!
//! `auto` takes a hardware GPU (discrete, else integrated) and otherwise the CPU, and says why;
//! it never takes a software adapter such as lavapipe, which computes correctly but about 100×
//! slower than the CPU kernels. `gpu` takes the best adapter there is, software included, or
//! fails with a message naming what was found.

use std::sync::Arc;

use candle_core::Device;
use thinkscope_gpu::{AdapterChoice, GpuContext, OpenOptions};

use crate::error::{EngineError, Result};

/// The user's device preference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevicePref {
    /// A hardware GPU if there is one, else the CPU.
    #[default]
    Auto,
    /// Always the CPU kernels.
    Cpu,
    /// The best GPU adapter, even a software one, or an error.
    Gpu,
}

impl DevicePref {
    /// Every preference, for menus.
    pub const ALL: [DevicePref; 3] = [DevicePref::Auto, DevicePref::Cpu, DevicePref::Gpu];

    /// "auto", "cpu", "gpu".
    pub fn name(self) -> &'static str {
        match self {
            DevicePref::Auto => "auto",
            DevicePref::Cpu => "cpu",
            DevicePref::Gpu => "gpu",
        }
    }
}

impl std::str::FromStr for DevicePref {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            other => Err(format!("unknown device '{other}' (auto, cpu, gpu)")),
        }
    }
}

impl std::fmt::Display for DevicePref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a model's forward passes run.
#[derive(Clone, Debug)]
pub enum ComputeDevice {
    /// The CPU kernels.
    Cpu,
    /// A wgpu device (its own, apart from any the GUI draws with).
    Gpu(Arc<GpuContext>),
}

impl ComputeDevice {
    /// Whether this is a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self, ComputeDevice::Gpu(_))
    }

    /// The device line: "CPU (2 threads)" or "GPU: llvmpipe (Vulkan, software) · subgroup+f16".
    pub fn describe(&self) -> String {
        match self {
            ComputeDevice::Cpu => describe(&Device::Cpu),
            ComputeDevice::Gpu(ctx) => ctx.description(),
        }
    }
}

/// A device and, when `auto` did not take a GPU, why.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Where the model will run.
    pub device: ComputeDevice,
    /// Why `auto` chose the CPU (no hardware GPU, or the GPU failed to open), for the user.
    pub note: Option<String>,
}

/// Pick a device for `pref`. Only `gpu` fails, when no adapter at all can be opened.
pub fn select(pref: DevicePref) -> Result<Selection> {
    match pref {
        DevicePref::Cpu => Ok(Selection {
            device: ComputeDevice::Cpu,
            note: None,
        }),
        DevicePref::Auto => match GpuContext::open(&OpenOptions::new(AdapterChoice::Hardware)) {
            Ok(ctx) => Ok(Selection {
                device: ComputeDevice::Gpu(ctx),
                note: None,
            }),
            Err(e) => Ok(Selection {
                device: ComputeDevice::Cpu,
                note: Some(format!("{e}; running on the CPU kernels")),
            }),
        },
        DevicePref::Gpu => GpuContext::open(&OpenOptions::new(AdapterChoice::Any))
            .map(|ctx| Selection {
                device: ComputeDevice::Gpu(ctx),
                note: None,
            })
            .map_err(|e| EngineError::Failed(format!("--device gpu: {e}"))),
    }
}

/// A short human description of the CPU (or a candle) device.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => match rayon::current_num_threads() {
            1 => "CPU (1 thread)".into(),
            n => format!("CPU ({n} threads)"),
        },
        other => format!("{other:?}"),
    }
}
