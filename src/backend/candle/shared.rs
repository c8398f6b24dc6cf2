//! One loaded model, the key that says which, and what every element using it shares:
//! the prompt embeddings computed so far, and whether the text encoder must stay loaded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use candle_core::{DType, Tensor};

use super::settings::DeviceSpec;
use crate::wan::{self, Noise, PromptEmbeds, WanError, WanModel};

/// What makes two loads the same model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    /// The resolved, canonical pipeline directory (a repo id and its cache directory are
    /// the same model).
    pub root: PathBuf,
    pub device: DeviceSpec,
    pub dtype: DType,
}

impl ModelKey {
    /// Resolves `model` (a directory or a repository id in the local Hugging Face cache).
    pub fn new(model: &str, device: DeviceSpec, dtype: DType) -> Result<Self, WanError> {
        let root = wan::resolve(model)?;
        let root = root
            .canonicalize()
            .map_err(|source| WanError::Io { path: root, source })?;
        Ok(Self {
            root,
            device,
            dtype,
        })
    }
}

pub struct SharedModel {
    key: ModelKey,
    model: RwLock<WanModel>,
    /// UMT5 embeddings `[1, 512, D]` by prompt text: a prompt is encoded once per model.
    embeddings: Mutex<HashMap<String, Tensor>>,
    /// Backends holding this model with `keep-text-encoder=true`.
    keepers: AtomicUsize,
    /// Noise every edit starts from instead of a seeded draw.
    pinned_noise: Mutex<Option<Tensor>>,
}

/// Says in the debug log which attention the model runs with: a warning when the fused
/// kernel was refused, since the blocked attention is slower and holds score blocks in
/// memory.
#[cfg(feature = "cuda")]
fn log_attention_self_check(device: &candle_core::Device) {
    static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
        gst::DebugCategory::new(
            "wanedit-candle",
            gst::DebugColorFlags::empty(),
            Some("The in-process Wan model of wanedit"),
        )
    });
    let check = wan::flash_attn::self_check(device);
    if check.passed() {
        gst::info!(CAT, "{check}");
    } else {
        gst::warning!(CAT, "{check}");
    }
}

impl SharedModel {
    pub fn load(key: &ModelKey) -> Result<Self, WanError> {
        let device = key
            .device
            .open()
            .map_err(|e| WanError::InvalidInput(e.to_string()))?;
        let root = key.root.to_string_lossy();
        let model = wan::load(&root, &device, key.dtype)?;
        #[cfg(feature = "cuda")]
        if device.is_cuda() && key.dtype == candle_core::DType::BF16 {
            log_attention_self_check(&device);
        }
        Ok(Self {
            key: key.clone(),
            model: RwLock::new(model),
            embeddings: Mutex::default(),
            keepers: AtomicUsize::new(0),
            pinned_noise: Mutex::default(),
        })
    }

    pub fn key(&self) -> &ModelKey {
        &self.key
    }

    /// The model, for running it; several edits may run at once.
    pub fn model(&self) -> std::sync::RwLockReadGuard<'_, WanModel> {
        self.model.read().unwrap()
    }

    pub fn add_keeper(&self) {
        self.keepers.fetch_add(1, Ordering::SeqCst);
    }

    pub fn remove_keeper(&self) {
        self.keepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Makes every edit with this model start from `noise` (shaped as the pipeline draws
    /// it, `[1, C, T, h, w]`) instead of a draw from the seed, or from the seed again
    /// with `None`. This reproduces a reference run whose noise was saved, as the parity
    /// cases are.
    pub fn pin_noise(&self, noise: Option<Tensor>) {
        *self.pinned_noise.lock().unwrap() = noise;
    }

    /// Where the initial noise of an edit comes from.
    pub fn noise(&self, seed: u64) -> Noise {
        match &*self.pinned_noise.lock().unwrap() {
            Some(noise) => Noise::Tensor(noise.clone()),
            None => Noise::Seed(seed),
        }
    }

    pub fn has_text_encoder(&self) -> bool {
        self.model().has_text_encoder()
    }

    /// The conditioning of `prompt` (and of `negative` under guidance), from the cache
    /// where it was computed before.
    pub fn prompt_embeds(
        &self,
        prompt: &str,
        negative: &str,
        guidance_scale: f64,
    ) -> Result<PromptEmbeds, WanError> {
        let guided = guidance_scale > 1.0;
        let texts: &[&str] = if guided {
            &[prompt, negative]
        } else {
            &[prompt]
        };
        let mut found = self.embeddings(texts)?.into_iter();
        Ok(PromptEmbeds {
            cond: found.next().expect("one embedding a text"),
            uncond: found.next(),
        })
    }

    /// The embeddings of `texts`, encoding those not cached yet. The text encoder is
    /// loaded again if it was dropped, and dropped afterwards unless a holder keeps it:
    /// the UMT5-XXL encoder is as large as the 14B transformer's half.
    fn embeddings(&self, texts: &[&str]) -> Result<Vec<Tensor>, WanError> {
        let mut cache = self.embeddings.lock().unwrap();
        let missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !cache.contains_key(*t))
            .collect();
        if !missing.is_empty() {
            let mut model = self.model.write().unwrap();
            model.reload_text_encoder()?;
            for text in missing {
                let embedding = model.encode_prompt(text)?;
                cache.insert(text.to_owned(), embedding);
            }
            if self.keepers.load(Ordering::SeqCst) == 0 {
                model.drop_text_encoder();
            }
        }
        Ok(texts.iter().map(|t| cache[*t].clone()).collect())
    }
}
