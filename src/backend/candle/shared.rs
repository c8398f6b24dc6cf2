//! One loaded model, the key that says which, and what every element using it shares:
//! the prompt embeddings computed so far, and whether the text encoder must stay loaded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use candle_core::{DType, Tensor};

use super::settings::DeviceSpec;
use crate::wan::{self, LoraSpec, Noise, PromptEmbeds, WanError, WanModel};

/// What makes two loads the same model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    /// The resolved, canonical pipeline directory (a repo id and its cache directory are
    /// the same model).
    pub root: PathBuf,
    pub device: DeviceSpec,
    pub dtype: DType,
    /// The LoRA files merged into the weights (canonical paths) and their scales, in
    /// order: a model with another set, or none, is another model.
    pub loras: Vec<LoraSpec>,
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
            loras: Vec::new(),
        })
    }

    /// The same model with `loras` merged into it.
    pub fn with_loras(self, loras: Vec<LoraSpec>) -> Self {
        Self { loras, ..self }
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
    /// Held by the thread running a window, see [`SharedModel::turn`].
    turn: Mutex<()>,
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
        let model = wan::load_with_loras(&root, &key.loras, &device, key.dtype)?;
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
            turn: Mutex::default(),
        })
    }

    /// Taken by the thread running a window: the windows of every element sharing the
    /// model run one after another, as they would share its device anyway. A window
    /// dropped mid-step keeps its thread until the step ends; the next one, from this
    /// element or another (a server's next request), waits for it instead of running
    /// beside it with twice the activations.
    pub fn turn(&self) -> MutexGuard<'_, ()> {
        self.turn.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// cases are. It holds for every element sharing the model, whose windows of another
    /// length then fail on the noise's shape: pin only a model no other element uses.
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::backend::BackendConfig;
    use crate::backend::candle::{CandleSettings, model_key};

    fn case() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/parity/v2v_square_f5_lora_diffusers")
    }

    fn key(lora: &str) -> Result<ModelKey, crate::backend::ConfigError> {
        model_key(&BackendConfig {
            model: Some(case().join("model").display().to_string()),
            candle: CandleSettings {
                device: "cpu".into(),
                lora: lora.into(),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn models_are_keyed_by_their_lora_set() {
        let file = case().join("lora.safetensors");
        let plain = key("").unwrap();
        let one = key(&file.display().to_string()).unwrap();
        // Another spelling of the same file and scale is the same model.
        let same = key(&format!(
            "{}/../{}/lora.safetensors:1.0",
            case().display(),
            case().file_name().unwrap().to_string_lossy()
        ))
        .unwrap();
        let half = key(&format!("{}:0.5", file.display())).unwrap();
        let twice = key(&format!("{0},{0}", file.display())).unwrap();
        assert_eq!(one, same);
        assert_eq!(one.loras[0].path, file.canonicalize().unwrap());
        assert_ne!(plain, one);
        assert_ne!(one, half);
        assert_ne!(one, twice);
        let set: std::collections::HashSet<ModelKey> = [plain, one.clone(), same, half, twice]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 4);
        assert_eq!(one.root, case().join("model").canonicalize().unwrap());
    }

    #[test]
    fn a_bad_lora_list_is_a_property_error() {
        let file = case().join("lora.safetensors");
        assert_eq!(
            key(&format!("{}:abc", file.display()))
                .unwrap_err()
                .to_string(),
            format!(
                "lora: lora `{}:abc`: `abc` is not a scale (a number after the last ':')",
                file.display()
            )
        );
        assert_eq!(
            key("/nonexistent/x.safetensors").unwrap_err().to_string(),
            "lora: /nonexistent/x.safetensors: missing file"
        );
    }

    #[test]
    fn a_model_with_a_lora_loads_and_differs() {
        let file = case().join("lora.safetensors");
        let plain = SharedModel::load(&key("").unwrap()).unwrap();
        let merged = SharedModel::load(&key(&format!("{}:0.7", file.display())).unwrap()).unwrap();
        let text = Tensor::zeros((1, 4, 32), DType::F32, &candle_core::Device::Cpu).unwrap();
        let a = plain.model().transformer().embed_text(&text).unwrap();
        let b = merged.model().transformer().embed_text(&text).unwrap();
        // The LoRA touches no text-embedder weight...
        assert_eq!(a.to_vec3::<f32>().unwrap(), b.to_vec3::<f32>().unwrap());
        let latents =
            Tensor::ones((1, 16, 1, 2, 2), DType::F32, &candle_core::Device::Cpu).unwrap();
        let fa = plain
            .model()
            .transformer()
            .forward(&latents, 500.0, &a)
            .unwrap();
        let fb = merged
            .model()
            .transformer()
            .forward(&latents, 500.0, &b)
            .unwrap();
        // ...but changes the blocks' output.
        let diff = (fa - fb)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff > 1e-3, "{diff}");
    }
}
