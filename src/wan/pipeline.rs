//! The three Wan pipelines: Lucy-Edit, video-to-video and text-to-video, and what they
//! share with VACE ([`super::vace`]).
//!
//! Each follows its diffusers pipeline step for step: prompts encoded to 512 tokens,
//! the VAE's normalised latent space, the scheduler of `scheduler/`, and classifier-free
//! guidance `uncond + g * (cond - uncond)` whenever `g > 1`.

use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::WanModel;
use super::anchor::LatentAnchor;
use super::error::{Result, WanError};
use super::scheduler::Scheduler;
use super::transformer::WanTransformer;

/// The text conditioning of one generation: `[1, 512, D]` each.
#[derive(Debug, Clone)]
pub struct PromptEmbeds {
    pub cond: Tensor,
    /// Present when the generation uses classifier-free guidance.
    pub uncond: Option<Tensor>,
}

/// Where the initial noise comes from.
#[derive(Debug, Clone)]
pub enum Noise {
    /// Standard-normal values drawn from a seeded generator.
    Seed(u64),
    /// The caller's tensor, shaped as diffusers draws it: `[1, C, T, h, w]`.
    Tensor(Tensor),
}

/// Standard-normal values of `shape` from a generator seeded with `seed`, drawn on the CPU
/// (the same values on every device).
pub(super) fn standard_normal(shape: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?.to_device(device)?)
}

/// The settings every pipeline shares.
#[derive(Debug, Clone)]
pub struct Sampling {
    pub num_inference_steps: usize,
    pub guidance_scale: f64,
    pub noise: Noise,
    /// Replaces the scheduler's shift (`shift` of FlowMatchEuler, `flow_shift` of UniPC).
    pub flow_shift: Option<f64>,
    /// The generation before, held over the latent frames this one shares with it.
    pub anchor: Option<LatentAnchor>,
}

/// A pipeline's output and the stage tensors the parity cases check.
#[derive(Debug, Clone)]
pub struct Generation {
    /// `[F, H, W, 3]` f32 in [0, 1].
    pub video: Tensor,
    /// Normalised VAE latents of the input video, where the pipeline has one.
    pub source_latents: Option<Tensor>,
    /// The transformer's conditional output at the first step.
    pub first_noise_pred: Tensor,
    /// The scheduler's output after the last step (normalised latent space).
    pub final_latents: Tensor,
}

/// `[F, H, W, 3]` f32 frames in [0, 1] of packed 8-bit RGB images (`width * height * 3`
/// bytes each), the form the pipelines take.
pub fn frames_from_rgb8(
    frames: &[Vec<u8>],
    width: usize,
    height: usize,
    device: &Device,
) -> Result<Tensor> {
    let expected = width * height * 3;
    if let Some(bad) = frames.iter().find(|f| f.len() != expected) {
        return Err(WanError::InvalidInput(format!(
            "a {width}x{height} RGB frame has {expected} bytes, not {}",
            bad.len()
        )));
    }
    let bytes: Vec<u8> = frames.concat();
    let video = Tensor::from_vec(bytes, (frames.len(), height, width, 3), device)?;
    Ok(video.to_dtype(DType::F32)?.affine(1.0 / 255.0, 0.0)?)
}

/// Packed 8-bit RGB images of `[F, H, W, 3]` frames in [0, 1], rounded to nearest.
pub fn frames_to_rgb8(video: &Tensor) -> Result<Vec<Vec<u8>>> {
    let (f, ..) = video.dims4()?;
    let bytes = video
        .to_dtype(DType::F32)?
        .clamp(0f32, 1f32)?
        .affine(255.0, 0.5)?
        .floor()?
        .to_dtype(DType::U8)?;
    (0..f)
        .map(|i| Ok(bytes.get(i)?.flatten_all()?.to_vec1::<u8>()?))
        .collect()
}

/// f32 pixels `[1, 3, F, H, W]` in [-1, 1] on `device` of `[F, H, W, 3]` frames in [0, 1].
pub(super) fn pixels(frames: &Tensor, device: &Device) -> Result<Tensor> {
    Ok(frames
        .to_device(device)?
        .to_dtype(DType::F32)?
        .permute((3, 0, 1, 2))?
        .unsqueeze(0)?
        .affine(2.0, -1.0)?)
}

/// Hears `(steps done, steps in all)`: `(0, N)` before the first step (once the source
/// video is encoded), then `(k, N)` after step k. Returning `Break` stops the pipeline there
/// (before the next step, or before the decode) with [`WanError::Cancelled`]: a step of
/// a real model takes seconds, so this is how a caller that no longer wants the result
/// frees the device.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize) -> ControlFlow<()>;

/// Where a pipeline's denoising starts.
pub(super) enum Start<'a> {
    /// From pure noise, at the first step.
    Noise(Tensor),
    /// From `source` noised with `noise` to the timestep of `step`, at that step.
    Renoised {
        source: &'a Tensor,
        noise: Tensor,
        step: usize,
    },
}

/// What the transformer sees beside the latents at every step.
#[derive(Debug, Clone, Copy)]
pub(super) enum Condition<'a> {
    None,
    /// Latents concatenated on the channel axis (Lucy-Edit's source latents).
    Channels(&'a Tensor),
    /// VACE control latents, and one conditioning scale per VACE layer.
    Vace {
        control: &'a Tensor,
        scales: &'a [f64],
    },
}

impl Condition<'_> {
    /// The transformer's input of one step.
    fn input(self, latents: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Channels(c) => Tensor::cat(&[latents, c], 1)?,
            Self::None | Self::Vace { .. } => latents.clone(),
        })
    }

    /// The f32 flow prediction for `input` (from [`Self::input`]).
    fn predict(
        self,
        transformer: &WanTransformer,
        input: &Tensor,
        timestep: f32,
        context: &Tensor,
    ) -> Result<Tensor> {
        let pred = match self {
            Self::Vace { control, scales } => {
                transformer.forward_vace(input, timestep, context, control, scales)?
            }
            Self::None | Self::Channels(_) => transformer.forward(input, timestep, context)?,
        };
        Ok(pred.to_dtype(DType::F32)?)
    }
}

/// Passes `(done, all)` to `progress`, and stops the run where it breaks.
fn report(progress: Progress, done: usize, all: usize) -> Result<()> {
    match progress(done, all) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(WanError::Cancelled),
    }
}

impl WanModel {
    /// Lucy-Edit: pure noise, with the source video's latents concatenated on the
    /// channel axis at every step. `video` is `[F, H, W, 3]` in [0, 1].
    pub fn lucy_edit(
        &self,
        video: &Tensor,
        embeds: &PromptEmbeds,
        sampling: &Sampling,
        progress: Progress,
    ) -> Result<Generation> {
        let cfg = self.transformer.config();
        if cfg.in_channels != 2 * cfg.out_channels {
            return Err(WanError::InvalidInput(format!(
                "lucy-edit needs a transformer taking noise and source latents (in_channels = 2 * out_channels), this one has {} and {}",
                cfg.in_channels, cfg.out_channels
            )));
        }
        let source = self.encode_video(video)?;
        let noise = self.noise(&sampling.noise, source.dims())?;
        let generation = self.decoded(self.sample(
            Start::Noise(noise),
            Condition::Channels(&source),
            embeds,
            sampling,
            progress,
        )?)?;
        Ok(Generation {
            source_latents: Some(source),
            ..generation
        })
    }

    /// Video-to-video: the source latents noised to the first kept sigma, skipping the
    /// first `N - int(N * strength)` steps.
    pub fn video2video(
        &self,
        video: &Tensor,
        embeds: &PromptEmbeds,
        sampling: &Sampling,
        strength: f64,
        progress: Progress,
    ) -> Result<Generation> {
        self.expect_plain_transformer("video2video")?;
        if !(0.0..=1.0).contains(&strength) {
            return Err(WanError::InvalidInput(format!(
                "strength {strength} is outside [0, 1]"
            )));
        }
        let steps = sampling.num_inference_steps;
        let kept = ((steps as f64 * strength) as usize).min(steps);
        if kept == 0 {
            return Err(WanError::InvalidInput(format!(
                "strength {strength} with {steps} steps leaves no step to run"
            )));
        }
        let source = self.encode_video(video)?;
        let noise = self.noise(&sampling.noise, source.dims())?;
        let start = Start::Renoised {
            source: &source,
            noise,
            step: steps - kept,
        };
        let generation =
            self.decoded(self.sample(start, Condition::None, embeds, sampling, progress)?)?;
        Ok(Generation {
            source_latents: Some(source),
            ..generation
        })
    }

    /// Text-to-video of `num_frames` frames of `height` x `width`.
    pub fn text2video(
        &self,
        embeds: &PromptEmbeds,
        num_frames: usize,
        height: usize,
        width: usize,
        sampling: &Sampling,
        progress: Progress,
    ) -> Result<Generation> {
        self.expect_plain_transformer("text2video")?;
        let shape = self.latent_shape(num_frames, height, width)?;
        let noise = self.noise(&sampling.noise, &shape)?;
        self.decoded(self.sample(
            Start::Noise(noise),
            Condition::None,
            embeds,
            sampling,
            progress,
        )?)
    }

    /// The generation of final latents and the first conditional prediction: decoded,
    /// without source latents (the pipelines that have them add them).
    pub(super) fn decoded(
        &self,
        (final_latents, first_noise_pred): (Tensor, Tensor),
    ) -> Result<Generation> {
        Ok(Generation {
            video: self.decode_video(&final_latents)?,
            source_latents: None,
            first_noise_pred,
            final_latents,
        })
    }

    /// Sets up the scheduler and denoises from `start` with `condition` at each step;
    /// returns the final latents and the first conditional prediction.
    pub(super) fn sample(
        &self,
        start: Start,
        condition: Condition,
        embeds: &PromptEmbeds,
        sampling: &Sampling,
        progress: Progress,
    ) -> Result<(Tensor, Tensor)> {
        let mut scheduler = Scheduler::new(
            &self.scheduler_config(sampling),
            sampling.num_inference_steps,
        );
        // Video-to-video's latents are noised to the timestep it starts at.
        let (latents, first_step) = match start {
            Start::Noise(noise) => (noise, 0),
            Start::Renoised {
                source,
                noise,
                step,
            } => (
                scheduler.add_noise(source, &noise, scheduler.timesteps()[step])?,
                step,
            ),
        };
        if let Some(anchor) = &sampling.anchor {
            anchor.check(latents.dims())?;
        }
        self.denoise(
            latents,
            condition,
            embeds,
            &mut scheduler,
            first_step,
            sampling,
            progress,
        )
    }

    /// The scheduler configuration with the sampling's shift, where it sets one.
    fn scheduler_config(&self, sampling: &Sampling) -> super::SchedulerConfig {
        let mut cfg = self.scheduler.clone();
        if let Some(shift) = sampling.flow_shift {
            cfg.shift = shift;
            cfg.flow_shift = shift;
        }
        cfg
    }

    fn expect_plain_transformer(&self, pipeline: &str) -> Result<()> {
        let cfg = self.transformer.config();
        if cfg.in_channels != cfg.out_channels || cfg.in_channels != self.vae.config().z_dim {
            return Err(WanError::InvalidInput(format!(
                "{pipeline} needs a transformer whose in_channels and out_channels equal the VAE's z_dim"
            )));
        }
        if self.transformer.vace_layers().is_some() {
            return Err(WanError::InvalidInput(format!(
                "{pipeline} needs a plain transformer; this VACE one runs with `vace` only"
            )));
        }
        Ok(())
    }

    /// `[1, z, 1 + (F-1)/t, H/s, W/s]` for a clip, checking that the sizes divide.
    pub(super) fn latent_shape(
        &self,
        frames: usize,
        height: usize,
        width: usize,
    ) -> Result<Vec<usize>> {
        let vae = self.vae.config();
        let (t, s) = (vae.temporal_factor(), vae.spatial_factor());
        let [_, ph, pw] = self.transformer.config().patch_size;
        if frames == 0 || !(frames - 1).is_multiple_of(t) {
            return Err(WanError::InvalidInput(format!(
                "{frames} frames: the frame count must be 1 + a multiple of {t}"
            )));
        }
        if !height.is_multiple_of(s * ph) || !width.is_multiple_of(s * pw) {
            return Err(WanError::InvalidInput(format!(
                "{width}x{height}: the frame size must be a multiple of {}x{}",
                s * pw,
                s * ph
            )));
        }
        Ok(vec![
            1,
            vae.z_dim,
            (frames - 1) / t + 1,
            height / s,
            width / s,
        ])
    }

    /// The normalised latents of `[F, H, W, 3]` frames in [0, 1].
    fn encode_video(&self, video: &Tensor) -> Result<Tensor> {
        let (f, h, w, c) = video.dims4()?;
        if c != 3 {
            return Err(WanError::InvalidInput(format!(
                "frames must have 3 channels, not {c}"
            )));
        }
        self.latent_shape(f, h, w)?;
        self.encode_pixels(&pixels(video, &self.device)?)
    }

    /// The normalised latents of f32 pixels `[1, 3, F, H, W]` in [-1, 1].
    pub(super) fn encode_pixels(&self, x: &Tensor) -> Result<Tensor> {
        let latents = self
            .vae
            .encode(&x.to_dtype(self.dtype)?)?
            .to_dtype(DType::F32)?;
        Ok(self.vae.normalize(&latents)?)
    }

    /// `[F, H, W, 3]` frames in [0, 1] of normalised latents.
    fn decode_video(&self, latents: &Tensor) -> Result<Tensor> {
        let latents = self.vae.denormalize(latents)?.to_dtype(self.dtype)?;
        let video = self.vae.decode(&latents)?.to_dtype(DType::F32)?;
        Ok(video
            .squeeze(0)?
            .permute((1, 2, 3, 0))?
            .affine(0.5, 0.5)?
            .clamp(0f32, 1f32)?
            .contiguous()?)
    }

    pub(super) fn noise(&self, noise: &Noise, shape: &[usize]) -> Result<Tensor> {
        match noise {
            Noise::Tensor(t) if t.dims() == shape => {
                Ok(t.to_device(&self.device)?.to_dtype(DType::F32)?)
            }
            Noise::Tensor(t) => Err(WanError::InvalidInput(format!(
                "noise has shape {:?}, the pipeline draws {shape:?}",
                t.dims()
            ))),
            Noise::Seed(seed) => standard_normal(shape, *seed, &self.device),
        }
    }

    /// The denoising loop from step `start`, holding the sampling's anchor (if any) over
    /// its first steps; returns the final latents and the first conditional prediction.
    #[allow(clippy::too_many_arguments)]
    fn denoise(
        &self,
        mut latents: Tensor,
        condition: Condition,
        embeds: &PromptEmbeds,
        scheduler: &mut Scheduler,
        start: usize,
        sampling: &Sampling,
        progress: Progress,
    ) -> Result<(Tensor, Tensor)> {
        let guidance_scale = sampling.guidance_scale;
        let guided = guidance_scale > 1.0;
        let cond = self
            .transformer
            .embed_text(&embeds.cond.to_device(&self.device)?)?;
        let uncond = match (&embeds.uncond, guided) {
            (Some(uncond), true) => Some(
                self.transformer
                    .embed_text(&uncond.to_device(&self.device)?)?,
            ),
            (None, true) => {
                return Err(WanError::InvalidInput(
                    "guidance_scale > 1 needs negative prompt embeddings".into(),
                ));
            }
            (_, false) => None,
        };
        let timesteps = scheduler.timesteps()[start..].to_vec();
        let sigmas = scheduler.sigmas()[start..].to_vec();
        let anchor = sampling.anchor.as_ref();
        let held = anchor.map_or(0, |a| a.held_steps(timesteps.len()));
        if let Some(anchor) = anchor.filter(|_| held > 0) {
            latents = anchor.hold(&latents, sigmas[0], 0)?;
        }
        report(progress, 0, timesteps.len())?;
        let mut first = None;
        for (i, &t) in timesteps.iter().enumerate() {
            let input = condition.input(&latents)?;
            let mut pred = condition.predict(&self.transformer, &input, t, &cond)?;
            if first.is_none() {
                first = Some(pred.clone());
            }
            if let Some(uncond) = &uncond {
                let pred_u = condition.predict(&self.transformer, &input, t, uncond)?;
                pred = (&pred_u + ((pred - &pred_u)? * guidance_scale)?)?;
            }
            latents = scheduler.step(&pred, t, &latents)?;
            if let Some(anchor) = anchor.filter(|_| i < held) {
                latents = anchor.hold(&latents, sigmas[i + 1], i as u64 + 1)?;
            }
            report(progress, i + 1, timesteps.len())?;
        }
        let first =
            first.ok_or_else(|| WanError::InvalidInput("no denoising step to run".into()))?;
        Ok((latents, first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiny model of a committed parity case (`tests/fixtures/parity/<case>/model`).
    fn fixture_model(case: &str) -> WanModel {
        let dir = format!(
            "{}/tests/fixtures/parity/{case}/model",
            env!("CARGO_MANIFEST_DIR")
        );
        crate::wan::load(&dir, &Device::Cpu, DType::F32).unwrap()
    }

    /// Runs `pipeline` with a case's model for 4 steps and a callback that breaks at
    /// `(stop, 4)`: the run ends there with `Cancelled`, having heard each call once.
    fn assert_stops_at(
        stop: usize,
        case: &str,
        pipeline: impl Fn(&WanModel, &PromptEmbeds, &Sampling, Progress) -> Result<Generation>,
    ) {
        let model = fixture_model(case);
        let embeds = model.encode_prompts("a red ball", "", 1.0).unwrap();
        let sampling = Sampling {
            num_inference_steps: 4,
            guidance_scale: 1.0,
            noise: Noise::Seed(1),
            flow_shift: None,
            anchor: None,
        };
        let mut heard = Vec::new();
        let result = pipeline(&model, &embeds, &sampling, &mut |done, all| {
            heard.push((done, all));
            if done == stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(
            matches!(result, Err(WanError::Cancelled)),
            "{case}: {result:?}"
        );
        let expected: Vec<(usize, usize)> = (0..=stop).map(|done| (done, 4)).collect();
        assert_eq!(heard, expected, "{case}: {stop} steps run, then nothing");
    }

    fn video(size: usize) -> Tensor {
        Tensor::zeros((5, size, size, 3), DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn a_break_after_step_1_cancels_every_pipeline() {
        assert_stops_at(1, "lucy_square_f5_1step", |m, e, s, p| {
            m.lucy_edit(&video(64), e, s, p)
        });
        assert_stops_at(1, "v2v_square_f5_4steps_cfg", |m, e, s, p| {
            m.video2video(&video(32), e, s, 1.0, p)
        });
        assert_stops_at(1, "t2v_square_f5_1step", |m, e, s, p| {
            m.text2video(e, 5, 32, 32, s, p)
        });
        let conditions = crate::wan::VaceConditions {
            video: video(32),
            mask: None,
            reference_images: None,
            conditioning_scale: vec![1.0],
        };
        assert_stops_at(1, "vace_square_f9_first_frame", |m, e, s, p| {
            m.vace(&conditions, e, s, p)
        });
    }

    /// The first call comes once the source is encoded: breaking there runs no step.
    #[test]
    fn a_break_before_the_first_step_runs_none() {
        assert_stops_at(0, "lucy_square_f5_1step", |m, e, s, p| {
            m.lucy_edit(&video(64), e, s, p)
        });
    }

    /// The last call comes before the decode: breaking there skips it.
    #[test]
    fn a_break_after_the_last_step_skips_the_decode() {
        assert_stops_at(4, "t2v_square_f5_1step", |m, e, s, p| {
            m.text2video(e, 5, 32, 32, s, p)
        });
    }

    /// Video-to-video of the 5 black frames with a case's model for 4 steps, anchored
    /// by `anchor`.
    fn anchored_run(model: &WanModel, anchor: Option<LatentAnchor>) -> Result<Generation> {
        let embeds = model.encode_prompts("a red ball", "", 1.0)?;
        let sampling = Sampling {
            num_inference_steps: 4,
            guidance_scale: 1.0,
            noise: Noise::Seed(1),
            flow_shift: None,
            anchor,
        };
        model.video2video(&video(32), &embeds, &sampling, 1.0, &mut |_, _| {
            ControlFlow::Continue(())
        })
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn an_anchor_held_through_the_last_step_ends_as_the_anchor_and_strength_0_is_no_anchor()
    -> Result<()> {
        let model = fixture_model("v2v_square_f5_4steps_cfg");
        let plain = anchored_run(&model, None)?;
        let dims = plain.final_latents.dims().to_vec();
        assert_eq!(dims[2], 2, "5 frames are 2 latent frames");
        // Latent frame 1 (frames 1-4) held to latents of another generation.
        let earlier = standard_normal(&[1, dims[1], 1, dims[3], dims[4]], 7, &Device::Cpu)?;
        let anchor = |strength| {
            Some(LatentAnchor {
                latents: earlier.clone(),
                first: 1,
                strength,
                seed: 3,
            })
        };

        let held = anchored_run(&model, anchor(1.0))?;
        assert_eq!(
            values(&held.final_latents.narrow(2, 1, 1)?),
            values(&earlier)
        );
        assert_ne!(
            values(&held.final_latents.narrow(2, 0, 1)?),
            values(&plain.final_latents.narrow(2, 0, 1)?),
            "the free latent frame denoises around the held one"
        );

        let none = anchored_run(&model, anchor(0.0))?;
        assert_eq!(values(&none.final_latents), values(&plain.final_latents));
        assert_eq!(values(&none.video), values(&plain.video));

        // Held through the first half only: the last steps move the frame off the anchor.
        let half = anchored_run(&model, anchor(0.5))?;
        assert_ne!(
            values(&half.final_latents.narrow(2, 1, 1)?),
            values(&earlier)
        );
        Ok(())
    }

    #[test]
    fn an_anchor_that_does_not_fit_the_latents_is_refused() -> Result<()> {
        let model = fixture_model("v2v_square_f5_4steps_cfg");
        let dims = anchored_run(&model, None)?.final_latents.dims().to_vec();
        let latents = Tensor::zeros((1, dims[1], 2, dims[3], dims[4]), DType::F32, &Device::Cpu)?;
        let anchor = LatentAnchor {
            latents,
            first: 1,
            strength: 1.0,
            seed: 0,
        };
        let error = anchored_run(&model, Some(anchor)).unwrap_err().to_string();
        assert!(error.contains("does not fit latents"), "{error}");
        Ok(())
    }

    #[test]
    fn rgb8_frames_round_trip() -> Result<()> {
        let frames = vec![
            (0..12).map(|v| (v * 21) as u8).collect::<Vec<u8>>(),
            vec![255; 12],
        ];
        let video = frames_from_rgb8(&frames, 2, 2, &Device::Cpu)?;
        assert_eq!(video.dims(), &[2, 2, 2, 3]);
        assert_eq!(
            video.get(0)?.get(0)?.get(0)?.get(1)?.to_scalar::<f32>()?,
            21.0 / 255.0
        );
        assert_eq!(frames_to_rgb8(&video)?, frames);
        assert!(frames_from_rgb8(&frames, 3, 2, &Device::Cpu).is_err());
        Ok(())
    }
}
