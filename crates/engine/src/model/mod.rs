//! A GGUF transformer: loading its configuration, tokenizer and chat template, and the backend that
//! runs its forward passes ([`crate::backend`]; the CPU kernels in `cpu.rs`).

mod attention;
pub mod config;
mod cpu;
pub mod describe;
pub mod gguf;
mod gpu;
pub mod math;
pub(crate) mod rope;
pub mod sampling;
pub mod template;
pub mod thinking;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use self::config::ModelConfig;
use self::gguf::GgufFile;
use self::template::ChatTemplate;
use self::thinking::ThinkingFormat;
use self::tokenizer::Tokenizer;
pub use crate::backend::LogitsWanted;
use crate::backend::{ForwardBackend, KvLayout};
use crate::device::{ComputeDevice, DevicePref};
use crate::error::Result;

/// What a user sees about a loaded model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// File the weights came from.
    pub path: PathBuf,
    /// `general.name`, or the file stem.
    pub name: String,
    /// Size of the file.
    pub file_bytes: u64,
    /// Parameters (approximate, from the shapes).
    pub params: u64,
    /// Device the matmuls run on.
    pub device: String,
    /// Whether the model has a chat template.
    pub has_chat_template: bool,
}

/// A loaded model: its configuration, tokenizer and chat template, and the backend that runs its
/// forward passes.
pub struct Model {
    /// Hyper-parameters.
    pub config: ModelConfig,
    /// Tokenizer from the GGUF metadata.
    pub tokenizer: Tokenizer,
    /// Chat template, when the file has one (base models have none).
    pub template: Option<ChatTemplate>,
    /// The thinking delimiters, for a model that thinks before it answers.
    pub thinking: Option<ThinkingFormat>,
    /// Description for the UI.
    pub info: ModelInfo,
    backend: Box<dyn ForwardBackend>,
}

impl Model {
    /// Load a GGUF file for the CPU kernels (`device` is the CPU, or a candle device for the
    /// matmuls candle runs).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::load_with(path, |gguf, config| {
            Ok(Box::new(cpu::CpuBackend::load(gguf, config, device)?))
        })
    }

    /// Load a GGUF file on `device`: the CPU kernels, or every weight on a GPU and the whole
    /// forward pass in its shaders.
    pub fn load_on(path: &Path, device: &ComputeDevice) -> Result<Self> {
        match device {
            ComputeDevice::Cpu => Self::load(path, &Device::Cpu),
            ComputeDevice::Gpu(ctx) => Self::load_with(path, |gguf, config| {
                Ok(Box::new(gpu::GpuBackend::load(gguf, config, ctx.clone())?))
            }),
        }
    }

    /// Choose a device for `pref` ([`crate::device::select`]) and load there. With `auto`, a
    /// model the GPU cannot take (a weight format its kernels lack, too little GPU memory) loads
    /// on the CPU instead. The note, when there is one, says why the CPU was used.
    pub fn load_pref(path: &Path, pref: DevicePref) -> Result<(Self, Option<String>)> {
        let sel = crate::device::select(pref)?;
        match (&sel.device, pref) {
            (ComputeDevice::Gpu(_), DevicePref::Auto) => match Self::load_on(path, &sel.device) {
                Ok(m) => Ok((m, sel.note)),
                Err(e) => {
                    let note = format!(
                        "the GPU could not run this model ({e}); running on the CPU kernels"
                    );
                    Ok((Self::load(path, &Device::Cpu)?, Some(note)))
                }
            },
            _ => Ok((Self::load_on(path, &sel.device)?, sel.note)),
        }
    }

    /// Load a GGUF file, letting `backend` read the weights it runs from the open file (after the
    /// configuration and tokenizer are read and checked).
    pub fn load_with(
        path: &Path,
        backend: impl FnOnce(&mut GgufFile, &ModelConfig) -> Result<Box<dyn ForwardBackend>>,
    ) -> Result<Self> {
        let _span = tracing::info_span!("load_model", path = %path.display()).entered();
        let mut gguf = GgufFile::open(path)?;
        let config = ModelConfig::load(&mut gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let backend = backend(&mut gguf, &config)?;

        let template_source = match gguf.get_opt("tokenizer.chat_template") {
            Some(_) => Some(gguf.string("tokenizer.chat_template")?),
            None => None,
        };
        let template = match &template_source {
            Some(source) => {
                let piece = |id: Option<u32>| {
                    id.and_then(|id| tokenizer.piece(id))
                        .unwrap_or_default()
                        .to_owned()
                };
                Some(ChatTemplate::new(
                    source,
                    &piece(tokenizer.bos_id),
                    &piece(tokenizer.eos_id),
                )?)
            }
            None => None,
        };
        let thinking =
            ThinkingFormat::detect(&tokenizer, template.as_ref(), template_source.as_deref());
        let name = gguf
            .get_opt("general.name")
            .and_then(|_| gguf.string("general.name").ok())
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let info = ModelInfo {
            path: path.to_owned(),
            name,
            file_bytes,
            params: config.param_count(),
            device: backend.info().device,
            has_chat_template: template.is_some(),
        };
        tracing::info!(name = %info.name, arch = ?config.arch, "model loaded");
        Ok(Self {
            config,
            tokenizer,
            template,
            thinking,
            info,
            backend,
        })
    }

    /// Shape of this model's KV cache.
    pub fn kv_layout(&self) -> KvLayout {
        KvLayout {
            n_layer: self.config.n_layer,
            n_kv_head: self.config.n_kv_head,
            head_dim: self.config.head_dim,
        }
    }

    /// The backend that runs this model's forward passes.
    pub fn backend(&self) -> &dyn ForwardBackend {
        &*self.backend
    }

    /// Which kernels run the matmuls, for benchmarks and the UI.
    pub fn kernel_summary(&self) -> String {
        self.backend.info().kernels
    }
}
