//! `backend=candle`: the Wan port of [`crate::wan`] in-process, on CUDA or the CPU.
//!
//! The pipeline is the one `model_index.json` names: Lucy-Edit edits by instruction,
//! `WanVideoToVideoPipeline` and `WanPipeline` checkpoints edit by partial re-noising
//! with `strength`. Elements that load the same model on the same device in the same
//! precision share one copy ([`registry`]); prompt embeddings are computed once per
//! model and prompt.

pub mod registry;
mod settings;
mod shared;
mod sizes;
mod vace;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use candle_core::Tensor;
use futures::future::BoxFuture;

use super::{
    Backend, BackendConfig, BackendError, Capabilities, ConfigError, Continuation, EditRequest,
    EditedClip, FrameCounts, InputFormat, JobUpdate, Resolution, RgbFrame, Size, WindowAnchor,
};
use crate::wan::{self, LatentAnchor, PipelineKind, Sampling, WanError};
pub use settings::{CandleSettings, DeviceSpec, ModelDType};
pub use shared::{ModelKey, SharedModel};

/// diffusers' defaults of the Wan pipelines, used where the element leaves a parameter
/// unset.
const DEFAULT_STEPS: u32 = 50;
const DEFAULT_GUIDANCE: f64 = 5.0;
const DEFAULT_STRENGTH: f64 = 0.8;

/// Whether `path` is a diffusers pipeline directory this backend can be asked to load
/// (`backend=auto` uses it to pick candle).
pub fn is_model_dir(path: impl AsRef<Path>) -> bool {
    path.as_ref().join("model_index.json").is_file()
}

/// The key of the model a configuration names.
pub fn model_key(config: &BackendConfig) -> Result<ModelKey, ConfigError> {
    let model = config
        .model
        .as_deref()
        .ok_or_else(|| ConfigError::Invalid {
            property: "model",
            why: "backend=candle needs model=<pipeline directory or Hugging Face repo id>".into(),
        })?;
    let device = DeviceSpec::parse(&config.candle.device)?;
    let dtype = device.dtype(config.candle.dtype)?;
    let loras =
        wan::LoraSpec::parse_list(&config.candle.lora).map_err(|e| ConfigError::Invalid {
            property: "lora",
            why: e.to_string(),
        })?;
    Ok(ModelKey::new(model, device, dtype)
        .map_err(|e| model_error(&e))?
        .with_loras(loras))
}

fn model_error(e: &WanError) -> ConfigError {
    ConfigError::Invalid {
        property: "model",
        why: e.to_string(),
    }
}

/// Loads (or finds already loaded) the configured model and computes the embeddings of
/// the configured prompts. Slow: the element calls it on a worker thread.
pub fn create(config: &BackendConfig) -> Result<Arc<dyn Backend>, ConfigError> {
    Ok(Arc::new(CandleBackend::new(config)?))
}

pub struct CandleBackend {
    model: Arc<SharedModel>,
    keep_text_encoder: bool,
    jobs: AtomicU64,
    /// What a VACE model is given besides the windows (nothing for other models).
    stills: Arc<vace::Stills>,
}

impl CandleBackend {
    pub fn new(config: &BackendConfig) -> Result<Self, ConfigError> {
        let key = model_key(config)?;
        let model =
            registry::acquire(&key, || SharedModel::load(&key)).map_err(|e| model_error(&e))?;
        let keep_text_encoder = config.candle.keep_text_encoder;
        if keep_text_encoder {
            model.add_keeper();
        }
        // Other models refuse these settings at READY->PAUSED, saying which can take
        // them, which a file error here would hide.
        let stills = if model.model().kind() == PipelineKind::Vace {
            let params = &config.params;
            vace::Stills::open(&params.reference_images, params.first_frame.as_deref())?
        } else {
            vace::Stills::default()
        };
        let backend = Self {
            model,
            keep_text_encoder,
            jobs: AtomicU64::new(0),
            stills: Arc::new(stills),
        };
        let params = &config.params;
        backend
            .model
            .prompt_embeds(
                &params.prompt,
                params.negative_prompt.as_deref().unwrap_or_default(),
                params.guidance_scale.unwrap_or(DEFAULT_GUIDANCE),
            )
            .map_err(|e| ConfigError::Invalid {
                property: "prompt",
                why: e.to_string(),
            })?;
        Ok(backend)
    }

    pub fn shared_model(&self) -> &Arc<SharedModel> {
        &self.model
    }
}

impl Drop for CandleBackend {
    fn drop(&mut self) {
        if self.keep_text_encoder {
            self.model.remove_keeper();
        }
    }
}

impl Backend for CandleBackend {
    fn name(&self) -> &str {
        "candle"
    }

    fn capabilities(&self, resolution: Resolution) -> Capabilities {
        let model = self.model.model();
        let multiple = model.size_multiple();
        let vace = model.kind() == PipelineKind::Vace;
        Capabilities {
            sizes: sizes::model_buckets(resolution, multiple),
            frame_counts: FrameCounts::WAN,
            input: InputFormat::Rgb,
            reference_images: if vace { vace::MAX_REFERENCES } else { 0 },
            first_frame: vace,
            // One window at a time: a second would only share the same GPU and double
            // its memory.
            max_concurrency: 1,
        }
    }

    fn edit(&self, request: EditRequest) -> BoxFuture<'static, Result<EditedClip, BackendError>> {
        let model = self.model.clone();
        let stills = self.stills.clone();
        let job = self.jobs.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            request.reporter.report(JobUpdate::Submitted {
                job_id: format!("candle-{job}"),
            });
            // Dropped with this future (flush, stop, timeout): the model thread then stops
            // at its next step, and its result, which nobody waits for, goes unseen.
            let cancel = CancelOnDrop::default();
            let cancelled = cancel.flag();
            tokio::task::spawn_blocking(move || {
                let _turn = model.turn();
                run(&model, &stills, request, &cancelled)
            })
            .await
            .map_err(|e| BackendError::Model(format!("the model thread failed: {e}")))?
        })
    }
}

/// Raises its flag when dropped.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl CancelOnDrop {
    fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Edits one window with the model (blocking: minutes on a GPU for a real model), until
/// `cancelled` is raised: then it stops at the next step with [`WanError::Cancelled`].
fn run(
    shared: &SharedModel,
    stills: &vace::Stills,
    mut request: EditRequest,
    cancelled: &AtomicBool,
) -> Result<EditedClip, BackendError> {
    let failed = |e: WanError| BackendError::Model(e.to_string());
    // A window flushed while it waited for a thread or its turn: not even the prompt is
    // encoded.
    if cancelled.load(Ordering::Relaxed) {
        return Err(failed(WanError::Cancelled));
    }
    let mask = request.mask.take();
    let params = &request.params;
    let guidance_scale = params.guidance_scale.unwrap_or(DEFAULT_GUIDANCE);
    let embeds = shared
        .prompt_embeds(
            &params.prompt,
            params.negative_prompt.as_deref().unwrap_or_default(),
            guidance_scale,
        )
        .map_err(failed)?;
    let model = shared.model();
    let vace = model.kind() == PipelineKind::Vace;
    let sampling = Sampling {
        num_inference_steps: params.num_inference_steps.unwrap_or(DEFAULT_STEPS) as usize,
        guidance_scale,
        noise: shared.noise(params.seed.unwrap_or_else(rand::random)),
        flow_shift: params.flow_shift,
        // A VACE window keeps the frames it shares as known frames instead.
        anchor: request
            .anchor
            .as_ref()
            .filter(|_| !vace)
            .and_then(|anchor| latent_anchor(anchor, params.seed)),
    };
    if request.frames.len() == 0 {
        return Err(BackendError::Frames("a window without frames".into()));
    }
    let Size { width, height } = request.frames.size();
    let pixels = request
        .frames
        .rgb()
        .map(|frame| frame.map(|f| f.data))
        .collect::<Result<Vec<_>, _>>()?;
    let video = wan::frames_from_rgb8(&pixels, width as usize, height as usize, model.device())
        .map_err(failed)?;
    drop(pixels);
    let reporter = request.reporter;
    // The pipeline reports (0, N) itself, once the source is encoded.
    let mut progress = |done: usize, all: usize| {
        if cancelled.load(Ordering::Relaxed) {
            return ControlFlow::Break(());
        }
        reporter.report(JobUpdate::Running {
            progress: Some(done as f64 / all as f64),
        });
        ControlFlow::Continue(())
    };
    let generation = match model.kind() {
        PipelineKind::Vace => {
            let conditions =
                stills.conditions(video, request.window.index, request.anchor.as_ref(), mask)?;
            model.vace(&conditions, &embeds, &sampling, &mut progress)
        }
        PipelineKind::LucyEdit => model.lucy_edit(&video, &embeds, &sampling, &mut progress),
        // A text-to-video checkpoint edits as video-to-video: same components.
        PipelineKind::VideoToVideo | PipelineKind::TextToVideo => model.video2video(
            &video,
            &embeds,
            &sampling,
            params.strength.unwrap_or(DEFAULT_STRENGTH),
            &mut progress,
        ),
    }
    .map_err(failed)?;
    let frames = wan::frames_to_rgb8(&generation.video)
        .map_err(failed)?
        .into_iter()
        .map(|data| RgbFrame {
            width,
            height,
            data,
        })
        .collect();
    Ok(EditedClip::at_rate(frames, request.frame_rate)
        .continued_by(Continuation::new(FinalLatents(generation.final_latents))))
}

/// A window's final latents, `[1, C, T, h, w]`, which the next window of a `seam=anchor`
/// stream continues from.
struct FinalLatents(Tensor);

/// The latent anchor of a window that continues another: its latent frames that cover
/// only frames it shares with the window before, held to that window's latent frames of
/// the same frames. Wan's VAE gives frame 0 a latent frame of its own and each next 4
/// frames one more, so this window's latent frame `j >= 1` covers its frames `4j-3..=4j`;
/// those whole groups inside the shared frames are anchored, each on the window before's
/// latent frame nearest to the same frames (the same frames exactly where the offset
/// between the windows is a multiple of 4, as with 81 frames and 17 shared).
fn latent_anchor(anchor: &WindowAnchor, seed: Option<u64>) -> Option<LatentAnchor> {
    let FinalLatents(earlier) = anchor.continuation.as_ref()?.get::<FinalLatents>()?;
    let groups = anchor.shared.saturating_sub(1) / 4;
    let from = (anchor.offset + 2) / 4 + 1;
    let count = groups.min(earlier.dim(2).ok()?.saturating_sub(from));
    if count == 0 {
        return None;
    }
    Some(LatentAnchor {
        latents: earlier.narrow(2, from, count).ok()?,
        first: 1,
        strength: anchor.strength,
        seed: seed.unwrap_or_else(rand::random),
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// The latent frames an anchor holds, of a window before whose 81 frames are 21
    /// latent frames numbered by their value.
    fn anchored(offset: usize, shared: usize, continuation: Continuation) -> Option<Vec<f32>> {
        let anchor = WindowAnchor {
            shared,
            offset,
            continuation: Some(continuation),
            strength: 1.0,
        };
        latent_anchor(&anchor, Some(0)).map(|a| {
            assert_eq!(a.first, 1);
            a.latents.flatten_all().unwrap().to_vec1().unwrap()
        })
    }

    #[test]
    fn a_window_is_anchored_on_the_latents_of_the_frames_it_shares() {
        let earlier = Tensor::arange(0f32, 21.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 21, 1, 1))
            .unwrap();
        let latents = || Continuation::new(FinalLatents(earlier.clone()));
        // W=81, O=17: frames 1-16 of the next window are frames 65-80 of this one, its
        // latent frames 17-20.
        assert_eq!(
            anchored(64, 17, latents()),
            Some(vec![17.0, 18.0, 19.0, 20.0])
        );
        // O=16: three whole groups of 4 in frames 1-15, each on the nearest group.
        assert_eq!(anchored(65, 16, latents()), Some(vec![17.0, 18.0, 19.0]));
        // Under 5 shared frames there is no whole group past the first frame.
        assert_eq!(anchored(77, 4, latents()), None);
        // Another backend's continuation is no anchor.
        assert_eq!(anchored(64, 17, Continuation::new(7u8)), None);
    }
}
