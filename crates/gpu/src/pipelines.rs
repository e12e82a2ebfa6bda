//! Compiled kernels (cached by their specialisation), buffers with ids, bind groups, and the
//! recorder that turns a list of dispatches into one compute pass.
//!
//! Every shader follows one binding convention: group 0 holds `reads` read-only storage buffers
//! (bindings 1..), then `writes` read-write ones; group 1 binding 0 is a 64-byte uniform block
//! of parameters at a dynamic offset. So one bind group serves every pipeline with the same
//! buffers (all row buckets and tiers of a matvec), and one uniform buffer holds the parameters
//! of a whole pass, growing as needed without touching the cached bind groups.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::context::{GpuContext, Tier};
use crate::error::GpuError;
use crate::shader;

/// Bytes between parameter blocks: the largest uniform offset alignment WebGPU allows.
pub(crate) const SLOT: u64 = 256;
/// Most workgroups along x in one dispatch; more go along y.
const MAX_X: u32 = 32768;

/// Storage bindings after the uniform: `reads` read-only, then `writes` read-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Sig {
    pub reads: u8,
    pub writes: u8,
}

/// A compiled pipeline.
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub sig: Sig,
}

/// What to compile.
pub(crate) struct KernelSpec {
    pub shader: &'static str,
    pub flags: Vec<&'static str>,
    pub consts: Vec<(&'static str, String)>,
    pub sig: Sig,
    pub tier: Tier,
}

#[derive(Default)]
pub(crate) struct KernelCache {
    kernels: HashMap<String, Arc<Kernel>>,
    layouts: HashMap<Sig, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    params: Option<wgpu::BindGroupLayout>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A buffer and a process-unique id (bind groups are cached by ids).
pub(crate) struct Buf {
    pub id: u64,
    pub raw: wgpu::Buffer,
    pub bytes: u64,
}

fn entry(binding: u32, ty: wgpu::BufferBindingType, dynamic: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: dynamic,
            min_binding_size: None,
        },
        count: None,
    }
}

impl GpuContext {
    /// Group 1: the parameter block, at a dynamic offset.
    fn params_layout(&self, cache: &mut KernelCache) -> wgpu::BindGroupLayout {
        cache
            .params
            .get_or_insert_with(|| {
                self.device
                    .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                        label: Some("thinkscope parameters"),
                        entries: &[entry(0, wgpu::BufferBindingType::Uniform, true)],
                    })
            })
            .clone()
    }

    fn layouts(
        &self,
        cache: &mut KernelCache,
        sig: Sig,
    ) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        if let Some(l) = cache.layouts.get(&sig) {
            return l.clone();
        }
        let params = self.params_layout(cache);
        let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..sig.reads + sig.writes)
            .map(|i| {
                let read_only = i < sig.reads;
                entry(
                    1 + i as u32,
                    wgpu::BufferBindingType::Storage { read_only },
                    false,
                )
            })
            .collect();
        let bgl = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("thinkscope buffers"),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("thinkscope"),
                bind_group_layouts: &[Some(&bgl), Some(&params)],
                immediate_size: 0,
            });
        cache.layouts.insert(sig, (bgl.clone(), pl.clone()));
        (bgl, pl)
    }

    /// The pipeline for `spec`, compiled on first use.
    pub(crate) fn kernel(&self, spec: &KernelSpec) -> Result<Arc<Kernel>, GpuError> {
        let mut flags = spec.flags.clone();
        if spec.tier.subgroup {
            flags.push("SUBGROUP");
        }
        if spec.tier.f16 {
            flags.push("F16");
        }
        flags.sort_unstable();
        let key = format!("{}|{}|{:?}", spec.shader, flags.join(","), spec.consts);
        let mut cache = self
            .kernels
            .lock()
            .map_err(|_| GpuError::Device("kernel cache poisoned".into()))?;
        if let Some(k) = cache.kernels.get(&key) {
            return Ok(k.clone());
        }
        let _span = tracing::debug_span!("compile", key = %key).entered();
        let src = shader::build(spec.shader, &flags, &spec.consts).map_err(|reason| {
            GpuError::Shader {
                name: key.clone(),
                reason,
            }
        })?;
        let (_, layout) = self.layouts(&mut cache, spec.sig);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(spec.shader),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(spec.shader),
                layout: Some(&layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader {
                name: key,
                reason: e.to_string(),
            });
        }
        let k = Arc::new(Kernel {
            pipeline,
            sig: spec.sig,
        });
        cache.kernels.insert(key, k.clone());
        Ok(k)
    }

    /// A bind-group layout for `sig` (same object the kernels of `sig` were built with).
    pub(crate) fn bind_layout(&self, sig: Sig) -> Result<wgpu::BindGroupLayout, GpuError> {
        let mut cache = self
            .kernels
            .lock()
            .map_err(|_| GpuError::Device("kernel cache poisoned".into()))?;
        Ok(self.layouts(&mut cache, sig).0)
    }

    fn params_bind_layout(&self) -> Result<wgpu::BindGroupLayout, GpuError> {
        let mut cache = self
            .kernels
            .lock()
            .map_err(|_| GpuError::Device("kernel cache poisoned".into()))?;
        Ok(self.params_layout(&mut cache))
    }

    /// A buffer of `bytes` (rounded up to 16) for `usage`; out-of-memory is an error, not a panic.
    pub(crate) fn buffer(
        &self,
        what: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<Buf, GpuError> {
        let bytes = bytes.max(16).div_ceil(16) * 16;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let raw = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage,
            mapped_at_creation: false,
        });
        if pollster::block_on(scope.pop()).is_some() {
            return Err(GpuError::OutOfMemory {
                bytes,
                what: what.to_owned(),
            });
        }
        Ok(Buf {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            raw,
            bytes,
        })
    }

    /// A storage buffer holding `data`.
    pub(crate) fn upload(&self, what: &str, data: &[u8]) -> Result<Buf, GpuError> {
        let b = self.buffer(
            what,
            data.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        )?;
        // Whole multiples of 4 bytes, as write_buffer wants.
        let whole = data.len() / 4 * 4;
        if whole > 0 {
            self.queue.write_buffer(&b.raw, 0, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.queue.write_buffer(&b.raw, whole as u64, &tail);
        }
        Ok(b)
    }

    /// Read back `bytes` of `src` from `offset` (submits and waits).
    pub(crate) fn read(&self, src: &Buf, offset: u64, bytes: u64) -> Result<Vec<u8>, GpuError> {
        let staging = self.buffer(
            "readback",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&src.raw, offset, &staging.raw, 0, bytes.div_ceil(4) * 4);
        let idx = self.queue.submit([enc.finish()]);
        self.map_read(&staging, bytes, idx)
    }

    /// Wait for submission `idx`, then map `staging` and copy out its first `bytes`.
    pub(crate) fn map_read(
        &self,
        staging: &Buf,
        bytes: u64,
        idx: wgpu::SubmissionIndex,
    ) -> Result<Vec<u8>, GpuError> {
        let slice = staging.raw.slice(..bytes.div_ceil(4) * 4);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map_err(|e| GpuError::Device(format!("waiting for the GPU: {e}")))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Device(format!("mapping results: {e}"))),
            Err(_) => return Err(GpuError::Device("mapping results: no answer".into())),
        }
        self.check("forward pass")?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Device(format!("reading results: {e}")))?;
        let out = view[..bytes as usize].to_vec();
        drop(view);
        staging.raw.unmap();
        Ok(out)
    }
}

/// Bind groups cached by the buffers they bind, and the parameter buffer of the passes.
pub(crate) struct Binder {
    params: Option<(Buf, wgpu::BindGroup, usize)>,
    cache: HashMap<(Sig, Vec<u64>), wgpu::BindGroup>,
}

impl Binder {
    pub(crate) fn new() -> Self {
        Self {
            params: None,
            cache: HashMap::new(),
        }
    }

    /// Forget cached bind groups (a bound buffer was replaced).
    pub(crate) fn clear(&mut self) {
        self.cache.clear();
    }

    pub(crate) fn bind(
        &mut self,
        ctx: &GpuContext,
        kernel: &Kernel,
        bufs: &[&Buf],
    ) -> Result<wgpu::BindGroup, GpuError> {
        let sig = kernel.sig;
        if self.cache.len() > 4096 {
            self.cache.clear();
        }
        if bufs.len() != (sig.reads + sig.writes) as usize {
            return Err(GpuError::Invalid(format!(
                "{} buffers for a kernel that binds {}",
                bufs.len(),
                sig.reads + sig.writes
            )));
        }
        let key = (sig, bufs.iter().map(|b| b.id).collect::<Vec<_>>());
        if let Some(bg) = self.cache.get(&key) {
            return Ok(bg.clone());
        }
        let layout = ctx.bind_layout(sig)?;
        let entries: Vec<wgpu::BindGroupEntry<'_>> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource: b.raw.as_entire_binding(),
            })
            .collect();
        let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        self.cache.insert(key, bg.clone());
        Ok(bg)
    }

    /// The parameter buffer and its bind group, with room for `slots` blocks.
    fn params(
        &mut self,
        ctx: &GpuContext,
        slots: usize,
    ) -> Result<(&Buf, &wgpu::BindGroup), GpuError> {
        if self.params.as_ref().is_none_or(|(_, _, n)| *n < slots) {
            let n = slots.next_power_of_two().max(64);
            let buf = ctx.buffer(
                "parameters",
                n as u64 * SLOT,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            )?;
            let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("parameters"),
                layout: &ctx.params_bind_layout()?,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &buf.raw,
                        offset: 0,
                        size: NonZeroU64::new(64),
                    }),
                }],
            });
            self.params = Some((buf, bg, n));
        }
        match &self.params {
            Some((b, g, _)) => Ok((b, g)),
            None => Err(GpuError::Device("no parameter buffer".into())),
        }
    }

    /// Record `rec` into `enc` as one compute pass, its parameters written first.
    pub(crate) fn encode(
        &mut self,
        ctx: &GpuContext,
        rec: &Recorder,
        enc: &mut wgpu::CommandEncoder,
    ) -> Result<(), GpuError> {
        if rec.cmds.is_empty() {
            return Ok(());
        }
        let (params, params_bg) = self.params(ctx, rec.cmds.len())?;
        let mut bytes = Vec::with_capacity(rec.cmds.len() * SLOT as usize);
        for c in &rec.cmds {
            let mut slot = [0u8; SLOT as usize];
            for (i, v) in c.params.iter().enumerate() {
                slot[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
            }
            bytes.extend_from_slice(&slot);
        }
        ctx.queue.write_buffer(&params.raw, 0, &bytes);
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("forward"),
            timestamp_writes: None,
        });
        for (i, c) in rec.cmds.iter().enumerate() {
            pass.set_pipeline(&c.kernel.pipeline);
            pass.set_bind_group(0, &c.bind, &[]);
            pass.set_bind_group(1, params_bg, &[(i as u64 * SLOT) as u32]);
            pass.dispatch_workgroups(c.groups.0, c.groups.1, 1);
        }
        Ok(())
    }
}

struct Cmd {
    kernel: Arc<Kernel>,
    bind: wgpu::BindGroup,
    params: Vec<u32>,
    groups: (u32, u32),
}

/// Dispatches of one pass, in order.
#[derive(Default)]
pub(crate) struct Recorder {
    cmds: Vec<Cmd>,
}

impl Recorder {
    /// `workgroups` workgroups (split over x and y above 32768) with these parameters.
    pub(crate) fn dispatch(
        &mut self,
        kernel: &Arc<Kernel>,
        bind: wgpu::BindGroup,
        params: &[u32],
        workgroups: u32,
    ) {
        if workgroups == 0 {
            return;
        }
        let groups = if workgroups <= MAX_X {
            (workgroups, 1)
        } else {
            (MAX_X, workgroups.div_ceil(MAX_X))
        };
        self.dispatch_xy(kernel, bind, params, groups);
    }

    /// Explicit x and y workgroup counts.
    pub(crate) fn dispatch_xy(
        &mut self,
        kernel: &Arc<Kernel>,
        bind: wgpu::BindGroup,
        params: &[u32],
        groups: (u32, u32),
    ) {
        debug_assert!(params.len() <= 16, "parameter blocks are 64 bytes");
        self.cmds.push(Cmd {
            kernel: kernel.clone(),
            bind,
            params: params.to_vec(),
            groups,
        });
    }
}

/// f32 parameters travel as their bits.
pub(crate) fn f(v: f32) -> u32 {
    v.to_bits()
}

/// "none" for optional offsets.
pub(crate) const NONE: u32 = u32::MAX;
