//! Finding a diffusers pipeline directory and memory-mapping its components' weights.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::config::read_json;
use super::error::{Result, WanError};
use super::lora::{LoraSpec, MergedWeights, Pending};

/// Resolves `model` to a pipeline directory: an existing directory, or a Hugging Face
/// repository id (`owner/name`) already present in the local cache (`HF_HUB_CACHE`, else
/// `HF_HOME/hub`, else `~/.cache/huggingface/hub`, as huggingface_hub looks).
///
/// Nothing is downloaded, so `HF_HUB_OFFLINE` holds by construction.
pub fn resolve(model: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let cache = match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) => hf_hub::Cache::new(dir.into()),
        None => hf_hub::Cache::from_env(),
    };
    cache
        .model(model.to_string())
        .get("model_index.json")
        .and_then(|index| index.parent().map(Path::to_path_buf))
        .ok_or_else(|| WanError::ModelNotFound(model.to_string()))
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::HashMap<String, String>,
}

/// The safetensors files of one component directory, whichever of the diffusers
/// (`diffusion_pytorch_model`) or transformers (`model`) names it uses, and the shard
/// index when it is sharded.
pub fn weight_files(dir: &Path) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
    for stem in ["diffusion_pytorch_model", "model"] {
        let single = dir.join(format!("{stem}.safetensors"));
        if single.is_file() {
            return Ok((vec![single], None));
        }
        let index_path = dir.join(format!("{stem}.safetensors.index.json"));
        if index_path.is_file() {
            let index: ShardIndex = read_json(&index_path)?;
            let shards: BTreeSet<&String> = index.weight_map.values().collect();
            let files = shards
                .into_iter()
                .map(|shard| {
                    let path = dir.join(shard);
                    if path.is_file() {
                        Ok(path)
                    } else {
                        Err(WanError::MissingFile { path })
                    }
                })
                .collect::<Result<_>>()?;
            return Ok((files, Some(index_path)));
        }
    }
    Err(WanError::MissingFile {
        path: dir.join("diffusion_pytorch_model.safetensors"),
    })
}

/// A component's weights, memory-mapped and converted to `dtype` tensor by tensor as
/// they are read, so that only the converted copy is ever held.
pub struct ComponentWeights {
    /// The file errors name: the single weight file, or the shard index.
    file: PathBuf,
    pub vb: VarBuilder<'static>,
    /// The LoRA targets to check once the component is built.
    loras: Option<Pending>,
}

impl ComponentWeights {
    pub fn open(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let (files, index) = weight_files(dir)?;
        let file = index.unwrap_or_else(|| files[0].clone());
        // SAFETY: the files are only read, and a checkpoint that changes while it is
        // mapped is outside what any loader can guard against.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }.map_err(
            |source| WanError::Weight {
                file: file.clone(),
                source: Box::new(source),
            },
        )?;
        Ok(Self {
            file,
            vb,
            loras: None,
        })
    }

    /// Like [`Self::open`], with `loras` merged into the weights as they are read (in
    /// f32, then converted to `dtype`). Call [`Self::check_loras`] once the component
    /// is built.
    pub fn open_merged(
        dir: &Path,
        dtype: DType,
        device: &Device,
        loras: &[LoraSpec],
    ) -> Result<Self> {
        if loras.is_empty() {
            return Self::open(dir, dtype, device);
        }
        let (files, index) = weight_files(dir)?;
        let file = index.unwrap_or_else(|| files[0].clone());
        // SAFETY: as in `open`.
        let base = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }.map_err(
            |source| WanError::Weight {
                file: file.clone(),
                source: Box::new(source),
            },
        )?;
        let (merged, pending) = MergedWeights::new(base, loras)?;
        let vb = VarBuilder::from_backend(Box::new(merged), dtype, device.clone());
        Ok(Self {
            file,
            vb,
            loras: Some(pending),
        })
    }

    /// Fails when a LoRA changed a weight the component did not read.
    pub fn check_loras(&self) -> Result<()> {
        self.loras.as_ref().map_or(Ok(()), Pending::check)
    }

    /// Wraps an error raised while building the component, naming its weight file
    /// (the index, for sharded weights: the tensor's shard is in its `weight_map`).
    pub fn error(&self, source: candle_core::Error) -> WanError {
        WanError::Weight {
            file: self.file.clone(),
            source: Box::new(source),
        }
    }
}
