//! Wan VACE (diffusers' `WanVACEPipeline` with a `WanVACETransformer3DModel`): generation
//! conditioned on a video, a mask of where to generate and reference images.
//!
//! The conditions become control latents beside the noise: the VAE latents of the video
//! outside the mask ("inactive") and inside it ("reactive"), the mask packed 8x8 onto the
//! channels and downsampled in time, and each reference image's latents as an extra
//! leading latent frame (with a zero mask), dropped from the result. A VACE branch of Wan
//! blocks turns them into one hint per VACE layer, added after the main blocks that
//! `vace_layers` names, each times its conditioning scale.

mod conditioning;
mod transformer;

use candle_core::Tensor;

pub(super) use transformer::VaceBranch;

use super::WanModel;
use super::error::{Result, WanError};
use super::pipeline::{Condition, Generation, Progress, PromptEmbeds, Sampling, Start};

/// What a VACE generation is conditioned on.
#[derive(Debug, Clone)]
pub struct VaceConditions {
    /// The frames passed as `video`: [F, H, W, 3] f32 in [0, 1].
    pub video: Tensor,
    /// [F, H, W] f32 in [0, 1]: 1 = the model generates there, 0 = keep the video.
    /// None = no mask passed (diffusers then generates everywhere).
    pub mask: Option<Tensor>,
    /// [R, H, W, 3] f32 in [0, 1], already at the video's height and width (the caller
    /// letterboxes), or None.
    pub reference_images: Option<Tensor>,
    /// One number for every VACE layer, or one per layer, as diffusers takes it.
    pub conditioning_scale: Vec<f64>,
}

impl WanModel {
    /// VACE: denoises pure noise (reference latent frames included) with the control
    /// latents of `conditions`; the result leaves the reference frames out, both in
    /// `video` and in `final_latents`. Latent anchors are refused: VACE windows are
    /// anchored with known frames (mask 0) instead.
    pub fn vace(
        &self,
        conditions: &VaceConditions,
        embeds: &PromptEmbeds,
        sampling: &Sampling,
        progress: Progress,
    ) -> Result<Generation> {
        if sampling.anchor.is_some() {
            return Err(WanError::InvalidInput(
                "vace takes no latent anchor: anchor a VACE window with known frames (mask 0) instead"
                    .into(),
            ));
        }
        let layers = self.transformer.vace_layers().ok_or_else(|| {
            WanError::InvalidInput(
                "vace needs a VACE checkpoint (WanVACETransformer3DModel with vace_layers)".into(),
            )
        })?;
        let scales = conditioning::scales(&conditions.conditioning_scale, layers)?;
        let (control, refs) = self.vace_control(conditions)?;
        let (_, _, frames, h, w) = control.dims5()?;
        let noise = self.noise(
            &sampling.noise,
            &[1, self.transformer.config().in_channels, frames, h, w],
        )?;
        let condition = Condition::Vace {
            control: &control,
            scales: &scales,
        };
        let (latents, first_noise_pred) =
            self.sample(Start::Noise(noise), condition, embeds, sampling, progress)?;
        let final_latents = latents.narrow(2, refs, frames - refs)?.contiguous()?;
        self.decoded((final_latents, first_noise_pred))
    }
}

#[cfg(test)]
mod tests;
