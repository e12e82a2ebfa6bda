//! Finding an adapter, opening a device on it, and the feature tiers the shaders may use.
//!
//! Adapters come from Vulkan, Metal and DX12 (the backends with compute shaders worth using).
//! [`AdapterChoice::Hardware`] takes a discrete GPU, else an integrated one, and never a software
//! rasteriser (lavapipe is ~100× slower than the CPU kernels); [`AdapterChoice::Any`] also takes
//! a software adapter, for correctness tests. The tier is every optional feature the adapter has,
//! unless `THINKSCOPE_GPU_TIER` asks for less.

use std::sync::{Arc, Mutex};

use crate::error::GpuError;

/// Optional shader features a pipeline may use. The plain f32 baseline (all false) runs on every
/// adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tier {
    /// Subgroup reductions (`subgroupAdd`, any subgroup size) in the row norms and the q/k
    /// norms; the mat-vecs reduce across at most 8 invocations and do not need them.
    pub subgroup: bool,
    /// f16 loads of the cache in attention (`enable f16`).
    pub f16: bool,
    /// 8-bit activations and packed int8 dot products (`dot4I8Packed`) for quantized weights.
    pub int8: bool,
}

impl Tier {
    /// The f32 baseline.
    pub const F32: Tier = Tier {
        subgroup: false,
        f16: false,
        int8: false,
    };

    /// For people and logs: "f32", "subgroup+f16+int8", ...
    pub fn name(self) -> String {
        let parts: Vec<&str> = [
            (self.subgroup, "subgroup"),
            (self.f16, "f16"),
            (self.int8, "int8"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        if parts.is_empty() {
            "f32".into()
        } else {
            parts.join("+")
        }
    }

    /// Parse "f32" or feature names joined by '+' (or ','), e.g. "subgroup+f16".
    pub fn parse(s: &str) -> Result<Tier, String> {
        let mut t = Tier::F32;
        for part in s.split(['+', ',']).map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "f32" => {}
                "subgroup" => t.subgroup = true,
                "f16" => t.f16 = true,
                "int8" => t.int8 = true,
                other => {
                    return Err(format!(
                        "unknown GPU tier feature '{other}' (f32, subgroup, f16, int8)"
                    ))
                }
            }
        }
        Ok(t)
    }

    /// Features of both.
    pub fn min(self, other: Tier) -> Tier {
        Tier {
            subgroup: self.subgroup && other.subgroup,
            f16: self.f16 && other.f16,
            int8: self.int8 && other.int8,
        }
    }

    /// Every tier using only features of `self`, the baseline first.
    pub fn subsets(self) -> Vec<Tier> {
        let mut v = Vec::new();
        for bits in 0..8u8 {
            let t = Tier {
                subgroup: bits & 1 != 0,
                f16: bits & 2 != 0,
                int8: bits & 4 != 0,
            };
            if t.min(self) == t {
                v.push(t);
            }
        }
        v
    }
}

/// Which adapters may be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterChoice {
    /// A hardware GPU: discrete, else integrated, else virtual. Never a software adapter.
    Hardware,
    /// The best adapter there is, software included.
    Any,
}

/// What an adapter is, for people.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Driver's name, e.g. "NVIDIA GeForce RTX 4070" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// "Vulkan", "Metal", "Dx12".
    pub backend: String,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub device_type: wgpu::DeviceType,
    /// A software rasteriser (lavapipe, SwiftShader, WARP).
    pub software: bool,
}

impl AdapterSummary {
    fn of(info: &wgpu::AdapterInfo) -> Self {
        let lower = info.name.to_lowercase();
        let software = info.device_type == wgpu::DeviceType::Cpu
            || [
                "llvmpipe",
                "lavapipe",
                "swiftshader",
                "warp",
                "basic render",
            ]
            .iter()
            .any(|s| lower.contains(s));
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: info.device_type,
            software,
        }
    }

    /// A discrete (not integrated, virtual or software) GPU.
    pub fn is_discrete(&self) -> bool {
        !self.software && self.device_type == wgpu::DeviceType::DiscreteGpu
    }

    /// Short name: "llvmpipe" rather than "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub fn short_name(&self) -> &str {
        match self.name.find(" (") {
            Some(i) if i > 0 => &self.name[..i],
            _ => &self.name,
        }
    }

    fn rank(&self) -> u8 {
        match (self.software, self.device_type) {
            (true, _) => 0,
            (_, wgpu::DeviceType::DiscreteGpu) => 4,
            (_, wgpu::DeviceType::IntegratedGpu) => 3,
            (_, wgpu::DeviceType::VirtualGpu) => 2,
            _ => 1,
        }
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: BACKENDS,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    })
}

const BACKENDS: wgpu::Backends = wgpu::Backends::VULKAN
    .union(wgpu::Backends::METAL)
    .union(wgpu::Backends::DX12);

/// Every adapter the backends report.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(BACKENDS))
        .iter()
        .map(|a| AdapterSummary::of(&a.get_info()))
        .collect()
}

/// Options for [`GpuContext::open`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Which adapters may be taken.
    pub choice: AdapterChoice,
    /// Largest buffer binding to use, below the adapter's own limit (tests use it to split
    /// small matrices into parts).
    pub max_binding_bytes: Option<u64>,
    /// Kernel shapes for a CPU (one row per invocation, no tiles) or for a GPU; `None` follows
    /// the adapter (CPU shapes on a software adapter). Tests use it to run both on lavapipe.
    pub cpu_shapes: Option<bool>,
}

impl OpenOptions {
    /// Open with `choice` and the adapter's own limits.
    pub fn new(choice: AdapterChoice) -> Self {
        Self {
            choice,
            max_binding_bytes: None,
            cpu_shapes: None,
        }
    }
}

/// An open device: queue, limits, tier, and the errors it reported.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    adapter: AdapterSummary,
    info: wgpu::AdapterInfo,
    available: Tier,
    tier: Tier,
    /// Largest storage binding (and buffer) in bytes.
    pub(crate) max_binding: u64,
    /// Kernel shapes for a CPU (see [`OpenOptions::cpu_shapes`]).
    pub(crate) cpu_shapes: bool,
    errors: Arc<Mutex<Option<String>>>,
    pub(crate) kernels: Mutex<crate::pipelines::KernelCache>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter.name)
            .field("tier", &self.tier.name())
            .finish()
    }
}

impl GpuContext {
    /// Open the best adapter `options.choice` allows. The error says what was found and why none
    /// was taken.
    pub fn open(options: &OpenOptions) -> Result<Arc<Self>, GpuError> {
        let inst = instance();
        let adapters = pollster::block_on(inst.enumerate_adapters(BACKENDS));
        let mut seen: Vec<String> = Vec::new();
        let mut best: Option<(u8, wgpu::Adapter, AdapterSummary)> = None;
        for a in adapters {
            let s = AdapterSummary::of(&a.get_info());
            seen.push(format!(
                "{} ({}{})",
                s.name,
                s.backend,
                if s.software { ", software" } else { "" }
            ));
            if s.software && options.choice == AdapterChoice::Hardware {
                continue;
            }
            let rank = s.rank();
            if best.as_ref().is_none_or(|(r, _, _)| rank > *r) {
                best = Some((rank, a, s));
            }
        }
        let Some((_, adapter, summary)) = best else {
            let why = if seen.is_empty() {
                "no Vulkan, Metal or DX12 adapter was found".to_owned()
            } else {
                format!("only software adapters were found: {}", seen.join(", "))
            };
            return Err(GpuError::NoAdapter(why));
        };
        Self::on_adapter(adapter, summary, options)
    }

    fn on_adapter(
        adapter: wgpu::Adapter,
        summary: AdapterSummary,
        options: &OpenOptions,
    ) -> Result<Arc<Self>, GpuError> {
        let feats = adapter.features();
        let info = adapter.get_info();
        let available = Tier {
            subgroup: feats.contains(wgpu::Features::SUBGROUP),
            f16: feats.contains(wgpu::Features::SHADER_F16),
            // Naga emits the hardware instruction where the driver has integer dot products
            // (Vulkan 1.3 / VK_KHR_shader_integer_dot_product, DX12 SM 6.4) and an exact
            // polyfill elsewhere; Metal has only the polyfill.
            int8: matches!(info.backend, wgpu::Backend::Vulkan | wgpu::Backend::Dx12),
        };
        let tier = match std::env::var("THINKSCOPE_GPU_TIER").as_deref() {
            Err(_) | Ok("") => available,
            Ok(s) => match Tier::parse(s) {
                Ok(t) => t.min(available),
                Err(e) => {
                    tracing::warn!("THINKSCOPE_GPU_TIER: {e}; using {}", available.name());
                    available
                }
            },
        };
        let mut features = wgpu::Features::empty();
        if available.subgroup {
            features |= wgpu::Features::SUBGROUP;
        }
        if available.f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("thinkscope compute"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device(format!("opening {}: {e}", summary.name)))?;
        let errors: Arc<Mutex<Option<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!("GPU error: {e}");
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));
        let mut max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            & !255;
        if let Some(m) = options.max_binding_bytes {
            max_binding = max_binding.min(m.max(256));
        }
        tracing::info!(
            adapter = %summary.name,
            backend = %summary.backend,
            tier = %tier.name(),
            max_binding,
            "GPU device open"
        );
        let cpu_shapes = options.cpu_shapes.unwrap_or(summary.software);
        Ok(Arc::new(Self {
            device,
            queue,
            info,
            adapter: summary,
            available,
            tier,
            max_binding,
            cpu_shapes,
            errors,
            kernels: Mutex::default(),
        }))
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// What wgpu reports about the adapter (vendor, PCI bus, driver).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The tier the model's passes use.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Every optional feature the adapter offers.
    pub fn available(&self) -> Tier {
        self.available
    }

    /// Whether kernels take the shapes that suit a CPU (see [`OpenOptions::cpu_shapes`]).
    pub fn cpu_shapes(&self) -> bool {
        self.cpu_shapes
    }

    /// Largest storage binding in bytes (matrices above it are split by rows).
    pub fn max_binding_bytes(&self) -> u64 {
        self.max_binding
    }

    /// The device line: `GPU: llvmpipe (Vulkan, software) · subgroup+f16+int8`.
    pub fn description(&self) -> String {
        self.describe_tier(self.tier)
    }

    /// The device line for another tier.
    pub fn describe_tier(&self, tier: Tier) -> String {
        format!(
            "GPU: {} ({}{}) · {}",
            self.adapter.short_name(),
            self.adapter.backend,
            if self.adapter.software {
                ", software"
            } else {
                ""
            },
            tier.name()
        )
    }

    /// The first error the device reported since the last call, if any.
    pub(crate) fn take_error(&self) -> Option<String> {
        self.errors.lock().ok().and_then(|mut e| e.take())
    }

    /// Fail with the device's error if it reported one.
    pub(crate) fn check(&self, what: &str) -> Result<(), GpuError> {
        match self.take_error() {
            Some(e) => Err(GpuError::Device(format!("{what}: {e}"))),
            None => Ok(()),
        }
    }
}
