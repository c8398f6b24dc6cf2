//! The `config.json` files of a diffusers pipeline directory, as serde types.
//!
//! Field names and defaults follow the `register_to_config` signatures of the diffusers
//! and transformers classes, so that a config written by `save_pretrained` reads back
//! with the same meaning.

use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{Result, WanError};

/// Reads and parses one JSON file, naming it in every error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| WanError::reading(path, source))?;
    serde_json::from_str(&text).map_err(|source| WanError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// `WanTransformer3DModel`.
#[derive(Debug, Clone, Deserialize)]
pub struct TransformerConfig {
    #[serde(default = "default_patch_size")]
    pub patch_size: [usize; 3],
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub text_dim: usize,
    #[serde(default = "default_freq_dim")]
    pub freq_dim: usize,
    pub ffn_dim: usize,
    pub num_layers: usize,
    #[serde(default = "default_true")]
    pub cross_attn_norm: bool,
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default)]
    pub image_dim: Option<usize>,
    #[serde(default)]
    pub added_kv_proj_dim: Option<usize>,
    #[serde(default = "default_rope_max_seq_len")]
    pub rope_max_seq_len: usize,
    /// `WanVACETransformer3DModel`: the main blocks after which the VACE hints are added.
    #[serde(default)]
    pub vace_layers: Option<Vec<usize>>,
    /// `WanVACETransformer3DModel`: the channels of the control latents.
    #[serde(default)]
    pub vace_in_channels: Option<usize>,
}

impl TransformerConfig {
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Fills in `WanVACETransformer3DModel`'s defaults for the VACE fields a config leaves
    /// out (every layer a multiple of 5 below 40, 96 control channels).
    pub fn with_vace_defaults(mut self) -> Self {
        self.vace_layers
            .get_or_insert_with(|| (0..8).map(|i| 5 * i).collect());
        self.vace_in_channels.get_or_insert(96);
        self
    }
}

fn default_patch_size() -> [usize; 3] {
    [1, 2, 2]
}
fn default_freq_dim() -> usize {
    256
}
fn default_true() -> bool {
    true
}
fn default_eps() -> f64 {
    1e-6
}
fn default_rope_max_seq_len() -> usize {
    1024
}

/// transformers' `UMT5Config` (encoder part).
#[derive(Debug, Clone, Deserialize)]
pub struct Umt5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_ff_proj")]
    pub feed_forward_proj: String,
}

fn default_ff_proj() -> String {
    "gated-gelu".to_string()
}

/// diffusers' `AutoencoderKLWan`: the Wan2.1 VAE, or with `is_residual` and
/// `patch_size` the Wan2.2 one.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "default_base_dim")]
    pub base_dim: usize,
    #[serde(default)]
    pub decoder_base_dim: Option<usize>,
    #[serde(default = "default_z_dim")]
    pub z_dim: usize,
    #[serde(default = "default_dim_mult")]
    pub dim_mult: Vec<usize>,
    #[serde(default = "default_num_res_blocks")]
    pub num_res_blocks: usize,
    #[serde(default)]
    pub attn_scales: Vec<f64>,
    #[serde(default = "default_temperal_downsample")]
    pub temperal_downsample: Vec<bool>,
    pub latents_mean: Vec<f64>,
    pub latents_std: Vec<f64>,
    #[serde(default)]
    pub is_residual: bool,
    #[serde(default = "default_rgb")]
    pub in_channels: usize,
    #[serde(default = "default_rgb")]
    pub out_channels: usize,
    #[serde(default)]
    pub patch_size: Option<usize>,
    #[serde(default)]
    pub scale_factor_temporal: Option<usize>,
    #[serde(default)]
    pub scale_factor_spatial: Option<usize>,
}

impl VaeConfig {
    /// Frames per latent frame (after the first): 2 per temporal downsampling.
    pub fn temporal_factor(&self) -> usize {
        self.scale_factor_temporal
            .unwrap_or(1 << self.temperal_downsample.iter().filter(|&&d| d).count())
    }

    /// Pixels per latent pixel along each axis.
    pub fn spatial_factor(&self) -> usize {
        self.scale_factor_spatial
            .unwrap_or((1 << (self.dim_mult.len() - 1)) * self.patch_size.unwrap_or(1))
    }
}

fn default_base_dim() -> usize {
    96
}
fn default_z_dim() -> usize {
    16
}
fn default_dim_mult() -> Vec<usize> {
    vec![1, 2, 4, 4]
}
fn default_num_res_blocks() -> usize {
    2
}
fn default_temperal_downsample() -> Vec<bool> {
    vec![false, true, true]
}
fn default_rgb() -> usize {
    3
}
