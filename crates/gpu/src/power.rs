//! Energy and memory of the adapter, where the platform reports them: NVML on NVIDIA (the
//! library is loaded at run time; without it there are no counters), the kernel's hwmon files on
//! AMD and Intel (`energy1_input` in µJ, else `power1_average`/`power1_input` in µW). Every
//! figure says how it was obtained; callers estimate where nothing is readable.

use std::path::{Path, PathBuf};

use nvml_wrapper::Nvml;

use crate::context::GpuContext;

/// How the adapter's energy is read.
enum Source {
    /// NVML's board energy counter (mJ since the driver loaded), or its power reading (mW).
    Nvml {
        nvml: Box<Nvml>,
        index: u32,
        counter: bool,
    },
    /// A hwmon energy counter (µJ).
    HwmonEnergy(PathBuf),
    /// A hwmon power reading (µW).
    HwmonPower(PathBuf),
}

/// The adapter's own energy meter.
pub struct GpuPower {
    source: Source,
    what: String,
}

impl std::fmt::Debug for GpuPower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// Bytes of device memory, where reported.
#[derive(Clone, Copy, Debug)]
pub struct DeviceMemory {
    /// All of it.
    pub total_bytes: u64,
    /// Not in use by anyone now.
    pub free_bytes: u64,
}

/// "01:00.0" from "0000:01:00.0" or "00000000:01:00.0": bus, device and function.
fn bus_tail(id: &str) -> Option<String> {
    let id = id.trim().to_lowercase();
    let tail = id.rsplit_once(':').map(|(head, f)| {
        let bus = head.rsplit(':').next().unwrap_or("");
        format!("{bus}:{f}")
    })?;
    (tail.len() >= 4).then_some(tail)
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The sysfs directory of the adapter's PCI device, found by bus id or, failing that, the only
/// DRM card of the adapter's vendor.
fn pci_dir(ctx: &GpuContext) -> Option<PathBuf> {
    let info = ctx.adapter_info();
    if let Some(tail) = bus_tail(&info.device_pci_bus_id) {
        for e in std::fs::read_dir("/sys/bus/pci/devices").ok()?.flatten() {
            if bus_tail(&e.file_name().to_string_lossy()).as_deref() == Some(tail.as_str()) {
                return Some(e.path());
            }
        }
    }
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/class/drm").ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("card") || name.contains('-') {
            continue;
        }
        let dev = e.path().join("device");
        let vendor = std::fs::read_to_string(dev.join("vendor")).ok()?;
        if u32::from_str_radix(vendor.trim().trim_start_matches("0x"), 16).ok() == Some(info.vendor)
        {
            found.push(dev);
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

fn nvml_index(nvml: &Nvml, ctx: &GpuContext) -> Option<u32> {
    let info = ctx.adapter_info();
    let count = nvml.device_count().ok()?;
    let want = bus_tail(&info.device_pci_bus_id);
    for i in 0..count {
        let d = nvml.device_by_index(i).ok()?;
        let bus = d.pci_info().ok().and_then(|p| bus_tail(&p.bus_id));
        if want.is_some() && bus == want {
            return Some(i);
        }
        if want.is_none() && d.name().ok().as_deref() == Some(info.name.as_str()) {
            return Some(i);
        }
    }
    (count == 1).then_some(0)
}

impl GpuPower {
    /// The adapter's meter, if the platform has one readable by this process.
    pub fn detect(ctx: &GpuContext) -> Option<Self> {
        if ctx.adapter().software {
            return None;
        }
        let vendor = ctx.adapter_info().vendor;
        if vendor == 0x10de {
            if let Ok(nvml) = Nvml::init() {
                if let Some(index) = nvml_index(&nvml, ctx) {
                    let dev = nvml.device_by_index(index).ok()?;
                    let counter = dev.total_energy_consumption().is_ok();
                    let power = dev.power_usage().is_ok();
                    if counter || power {
                        let what = if counter {
                            "measured: NVML board energy counter (whole GPU)"
                        } else {
                            "measured: NVML board power × compute time (whole GPU)"
                        };
                        return Some(Self {
                            source: Source::Nvml {
                                nvml: Box::new(nvml),
                                index,
                                counter,
                            },
                            what: what.into(),
                        });
                    }
                }
            }
        }
        let hwmon = pci_dir(ctx)?.join("hwmon");
        for e in std::fs::read_dir(hwmon).ok()?.flatten() {
            let energy = e.path().join("energy1_input");
            if read_u64(&energy).is_some() {
                return Some(Self {
                    source: Source::HwmonEnergy(energy),
                    what: "measured: hwmon energy counter (whole GPU)".into(),
                });
            }
            for f in ["power1_average", "power1_input"] {
                let power = e.path().join(f);
                if read_u64(&power).is_some() {
                    return Some(Self {
                        source: Source::HwmonPower(power),
                        what: format!("measured: hwmon {f} × compute time (whole GPU)"),
                    });
                }
            }
        }
        None
    }

    /// How figures are obtained, in words.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// A cumulative energy counter in microjoules, when the source has one.
    pub fn energy_micro_joules(&self) -> Option<u64> {
        match &self.source {
            Source::Nvml {
                nvml,
                index,
                counter: true,
            } => nvml
                .device_by_index(*index)
                .ok()?
                .total_energy_consumption()
                .ok()
                .map(|mj| mj * 1000),
            Source::HwmonEnergy(f) => read_u64(f),
            _ => None,
        }
    }

    /// Power now, in watts, when the source reads power rather than energy.
    pub fn watts(&self) -> Option<f64> {
        match &self.source {
            Source::Nvml {
                nvml,
                index,
                counter: false,
            } => nvml
                .device_by_index(*index)
                .ok()?
                .power_usage()
                .ok()
                .map(|mw| mw as f64 / 1e3),
            Source::HwmonPower(f) => read_u64(f).map(|uw| uw as f64 / 1e6),
            _ => None,
        }
    }
}

/// The adapter's memory, where reported (NVML; amdgpu's `mem_info_vram_*`).
pub fn device_memory(ctx: &GpuContext) -> Option<DeviceMemory> {
    if ctx.adapter().software {
        return None;
    }
    if ctx.adapter_info().vendor == 0x10de {
        if let Ok(nvml) = Nvml::init() {
            if let Some(i) = nvml_index(&nvml, ctx) {
                if let Ok(m) = nvml.device_by_index(i).and_then(|d| d.memory_info()) {
                    return Some(DeviceMemory {
                        total_bytes: m.total,
                        free_bytes: m.free,
                    });
                }
            }
        }
    }
    let dir = pci_dir(ctx)?;
    let total = read_u64(&dir.join("mem_info_vram_total"))?;
    let used = read_u64(&dir.join("mem_info_vram_used"))?;
    Some(DeviceMemory {
        total_bytes: total,
        free_bytes: total.saturating_sub(used),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_compare_without_their_domain() {
        assert_eq!(bus_tail("0000:01:00.0").as_deref(), Some("01:00.0"));
        assert_eq!(bus_tail("00000000:01:00.0").as_deref(), Some("01:00.0"));
        assert_eq!(bus_tail(""), None);
    }
}
