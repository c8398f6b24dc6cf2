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
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            WanError::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            WanError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
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
    #[serde(default)]
    pub qk_norm: Option<String>,
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default)]
    pub image_dim: Option<usize>,
    #[serde(default)]
    pub added_kv_proj_dim: Option<usize>,
    #[serde(default = "default_rope_max_seq_len")]
    pub rope_max_seq_len: usize,
}

impl TransformerConfig {
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
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
