//! The Wan video diffusion family in Candle: Lucy-Edit (Wan2.2 5B architecture, Wan2.2
//! VAE), Wan2.1 text- and video-to-video, and Wan2.1 VACE (generation conditioned on a
//! video, a mask and reference images: [`WanModel::vace`] with [`VaceConditions`]), read
//! from diffusers pipeline directories and numerically equal to diffusers (see
//! `tests/parity.rs`).
//!
//! ```no_run
//! # fn main() -> Result<(), gstwanedit::wan::WanError> {
//! use std::ops::ControlFlow;
//!
//! use candle_core::{DType, Device, Tensor};
//! use gstwanedit::wan::{self, Noise, Sampling};
//!
//! let mut model = wan::load("decart-ai/Lucy-Edit-Dev", &Device::Cpu, DType::F32)?;
//! let embeds = model.encode_prompts("make the shirt red", "", 5.0)?;
//! model.drop_text_encoder();
//! let video = Tensor::zeros((81, 480, 832, 3), DType::F32, &Device::Cpu)?;
//! let sampling = Sampling { num_inference_steps: 50, guidance_scale: 5.0, noise: Noise::Seed(0), flow_shift: None, anchor: None };
//! let out = model.lucy_edit(&video, &embeds, &sampling, &mut |done, all| {
//!     println!("{done}/{all}");
//!     ControlFlow::Continue(()) // or Break(()) to stop at this step
//! })?;
//! # let _ = out; Ok(()) }
//! ```

mod anchor;
mod attention;
mod config;
mod embeddings;
mod error;
#[cfg(feature = "cuda")]
pub mod flash_attn;
mod loader;
pub mod lora;
pub mod parity;
mod pipeline;
mod rope;
mod scheduler;
mod tokenizer;
mod transformer;
mod umt5;
mod vace;
mod vae;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

pub use anchor::LatentAnchor;
pub use attention::{attention, blocked_attention};
pub use config::{TransformerConfig, Umt5Config, VaeConfig};
pub use embeddings::timestep_embedding;
pub use error::{Result, WanError};
pub use loader::resolve;
pub use lora::LoraSpec;
pub use pipeline::{
    Generation, Noise, Progress, PromptEmbeds, Sampling, frames_from_rgb8, frames_to_rgb8,
};
pub use rope::Rope3d;
pub use scheduler::{Scheduler, SchedulerConfig};
pub use tokenizer::{MAX_SEQUENCE_LENGTH, PromptTokenizer, clean_prompt};
pub use transformer::WanTransformer;
pub use umt5::Umt5Encoder;
pub use vace::VaceConditions;
pub use vae::WanVae;

use config::read_json;
use loader::ComponentWeights;

/// The pipeline a checkpoint's `model_index.json` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineKind {
    LucyEdit,
    VideoToVideo,
    TextToVideo,
    Vace,
}

impl PipelineKind {
    fn from_class(class: &str) -> Option<Self> {
        match class {
            "LucyEditPipeline" => Some(Self::LucyEdit),
            "WanVideoToVideoPipeline" => Some(Self::VideoToVideo),
            "WanPipeline" => Some(Self::TextToVideo),
            "WanVACEPipeline" => Some(Self::Vace),
            _ => None,
        }
    }

    /// The name the parity cases and the element use.
    pub fn name(self) -> &'static str {
        match self {
            Self::LucyEdit => "lucy-edit",
            Self::VideoToVideo => "video2video",
            Self::TextToVideo => "text2video",
            Self::Vace => "vace",
        }
    }
}

/// A loaded Wan pipeline: tokenizer, text encoder (until dropped), transformer, VAE and
/// scheduler configuration.
pub struct WanModel {
    kind: PipelineKind,
    root: PathBuf,
    tokenizer: PromptTokenizer,
    text_encoder: Option<Umt5Encoder>,
    transformer: WanTransformer,
    vae: WanVae,
    scheduler: SchedulerConfig,
    device: Device,
    dtype: DType,
}

/// Loads a pipeline from a directory or a repository id in the local Hugging Face
/// cache, with every weight converted to `dtype` on `device`.
pub fn load(model: &str, device: &Device, dtype: DType) -> Result<WanModel> {
    load_with_loras(model, &[], device, dtype)
}

/// [`load`] with LoRA files merged into the transformer's weights, in order.
pub fn load_with_loras(
    model: &str,
    loras: &[LoraSpec],
    device: &Device,
    dtype: DType,
) -> Result<WanModel> {
    let root = loader::resolve(model)?;
    let index_path = root.join("model_index.json");
    let index: Value = read_json(&index_path)?;
    let class = index
        .get("_class_name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = PipelineKind::from_class(class).ok_or_else(|| WanError::UnknownClass {
        path: index_path.clone(),
        class: class.to_string(),
    })?;
    if index
        .get("transformer_2")
        .is_some_and(|v| !v.is_null() && v[0].is_string())
    {
        return Err(WanError::InvalidConfig {
            path: index_path,
            message: "two-expert checkpoints (transformer_2) are not supported".into(),
        });
    }
    let component = |name: &str| -> Result<PathBuf> {
        let dir = root.join(name);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(WanError::MissingFile { path: dir })
        }
    };

    let tokenizer = PromptTokenizer::load(&component("tokenizer")?)?;
    let text_encoder = load_text_encoder(&component("text_encoder")?, device, dtype)?;
    let transformer = {
        let dir = component("transformer")?;
        let mut cfg: TransformerConfig = read_json(&dir.join("config.json"))?;
        if kind == PipelineKind::Vace {
            cfg = cfg.with_vace_defaults();
        }
        let weights = ComponentWeights::open_merged(&dir, dtype, device, loras)?;
        let transformer =
            WanTransformer::new(&cfg, weights.vb.clone()).map_err(|e| weights.error(e))?;
        weights.check_loras()?;
        transformer
    };
    let vae = {
        let dir = component("vae")?;
        let cfg: VaeConfig = read_json(&dir.join("config.json"))?;
        let weights = ComponentWeights::open(&dir, dtype, device)?;
        WanVae::new(&cfg, weights.vb.clone()).map_err(|e| weights.error(e))?
    };
    let scheduler = SchedulerConfig::load(&component("scheduler")?)?;
    if transformer.config().text_dim != text_encoder.hidden_size() {
        return Err(WanError::InvalidConfig {
            path: root.join("transformer/config.json"),
            message: format!(
                "text_dim {} differs from the text encoder's d_model {}",
                transformer.config().text_dim,
                text_encoder.hidden_size()
            ),
        });
    }
    Ok(WanModel {
        kind,
        root,
        tokenizer,
        text_encoder: Some(text_encoder),
        transformer,
        vae,
        scheduler,
        device: device.clone(),
        dtype,
    })
}

fn load_text_encoder(dir: &Path, device: &Device, dtype: DType) -> Result<Umt5Encoder> {
    let cfg: Umt5Config = read_json(&dir.join("config.json"))?;
    let weights = ComponentWeights::open(dir, dtype, device)?;
    Umt5Encoder::new(&cfg, weights.vb.clone()).map_err(|e| weights.error(e))
}

impl WanModel {
    /// The pipeline `model_index.json` names.
    pub fn kind(&self) -> PipelineKind {
        self.kind
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn transformer(&self) -> &WanTransformer {
        &self.transformer
    }

    pub fn vae(&self) -> &WanVae {
        &self.vae
    }

    /// The UMT5 embedding `[1, 512, D]` of a prompt: cleaned, tokenized, truncated to
    /// 512 tokens, encoded, and zero-padded.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Tensor> {
        let encoder = self
            .text_encoder
            .as_ref()
            .ok_or_else(|| WanError::InvalidInput("the text encoder was dropped".into()))?;
        let ids = self.tokenizer.encode(prompt)?;
        let hidden = encoder.forward(&ids, &self.device)?.to_dtype(DType::F32)?;
        Ok(hidden.pad_with_zeros(1, 0, MAX_SEQUENCE_LENGTH - ids.len())?)
    }

    /// The conditioning of one generation; the negative prompt is only encoded when
    /// `guidance_scale > 1`, as the pipelines do.
    pub fn encode_prompts(
        &self,
        prompt: &str,
        negative_prompt: &str,
        guidance_scale: f64,
    ) -> Result<PromptEmbeds> {
        Ok(PromptEmbeds {
            cond: self.encode_prompt(prompt)?,
            uncond: if guidance_scale > 1.0 {
                Some(self.encode_prompt(negative_prompt)?)
            } else {
                None
            },
        })
    }

    /// Frees the text encoder once the prompt embeddings are computed (and cached).
    pub fn drop_text_encoder(&mut self) {
        self.text_encoder = None;
    }

    pub fn has_text_encoder(&self) -> bool {
        self.text_encoder.is_some()
    }

    /// Loads the text encoder again after [`WanModel::drop_text_encoder`], for a prompt
    /// whose embedding was not computed before.
    pub fn reload_text_encoder(&mut self) -> Result<()> {
        if self.text_encoder.is_none() {
            let dir = self.root.join("text_encoder");
            self.text_encoder = Some(load_text_encoder(&dir, &self.device, self.dtype)?);
        }
        Ok(())
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// What frame sides must be a multiple of: the VAE's spatial compression times the
    /// transformer's spatial patch (16 for Wan2.1, 32 for Wan2.2).
    pub fn size_multiple(&self) -> (usize, usize) {
        let s = self.vae.config().spatial_factor();
        let [_, ph, pw] = self.transformer.config().patch_size;
        (s * pw, s * ph)
    }
}
