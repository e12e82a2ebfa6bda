//! Choosing where the matmuls run: a GPU when built with `cuda` or `metal` and one is present,
//! otherwise the CPU.

use candle_core::Device;

/// The user's device preference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevicePref {
    /// A GPU if one was compiled in and found, else the CPU.
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// A GPU or an error message explaining the fallback.
    Gpu,
}

impl std::str::FromStr for DevicePref {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" | "cuda" | "metal" => Ok(Self::Gpu),
            other => Err(format!("unknown device '{other}' (auto, cpu, gpu)")),
        }
    }
}

/// Pick a device. The second value explains a fallback to the CPU, if one happened.
pub fn select(pref: DevicePref) -> (Device, Option<String>) {
    if pref == DevicePref::Cpu {
        return (Device::Cpu, None);
    }
    let mut why: Vec<String> = Vec::new();
    #[cfg(feature = "cuda")]
    match Device::new_cuda(0) {
        Ok(d) => return (d, None),
        Err(e) => why.push(format!("CUDA unavailable: {e}")),
    }
    #[cfg(feature = "metal")]
    match Device::new_metal(0) {
        Ok(d) => return (d, None),
        Err(e) => why.push(format!("Metal unavailable: {e}")),
    }
    if why.is_empty() && pref == DevicePref::Gpu {
        why.push("this build has no GPU support (rebuild with --features cuda or metal)".into());
    }
    let note = (!why.is_empty()).then(|| format!("{}; running on the CPU", why.join("; ")));
    (Device::Cpu, note)
}

/// A short human description of a device.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => match rayon::current_num_threads() {
            1 => "CPU (1 thread)".into(),
            n => format!("CPU ({n} threads)"),
        },
        Device::Cuda(_) => "CUDA GPU 0".into(),
        Device::Metal(_) => "Metal GPU 0".into(),
    }
}
