//! The element's properties as plain values, and what they mean for a backend.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gst::glib;

use crate::backend::candle::CandleSettings;
use crate::backend::hosted::Resolve;
use crate::backend::{BackendConfig, BackendKind, ConfigError, EditParams, Resolution};
use crate::stream::blend::BlendMode;

/// How neighbouring windows join.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWanEditSeam")]
pub enum Seam {
    #[default]
    #[enum_value(
        name = "Windows edited independently (several at once), crossfaded over the overlap",
        nick = "crossfade"
    )]
    Crossfade,
    #[enum_value(
        name = "Windows edited one after another, each sent with the edit of the window \
                before in place of the frames they share, then crossfaded",
        nick = "anchor"
    )]
    Anchor,
}

/// What happens to a window whose edit fails.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWanEditOnError")]
pub enum OnError {
    #[default]
    #[enum_value(name = "Post an error and stop the stream", nick = "fail")]
    Fail,
    #[enum_value(
        name = "Output the window's original frames and post a warning",
        nick = "passthrough"
    )]
    Passthrough,
}

/// `mask`: where the edit applies; elsewhere the output is the input bit for bit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Mask {
    /// The whole frame is edited.
    #[default]
    None,
    /// Each input frame's alpha channel: 255 edits fully, 0 keeps the input.
    Alpha,
    /// One image for the whole stream, its luma stretched to the frame: white edits.
    File(PathBuf),
}

impl Mask {
    /// The property's value: `none`, `alpha`, or a path.
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            None | Some("" | "none") => Mask::None,
            Some("alpha") => Mask::Alpha,
            Some(path) => Mask::File(PathBuf::from(path)),
        }
    }

    pub fn to_property(&self) -> String {
        match self {
            Mask::None => "none".into(),
            Mask::Alpha => "alpha".into(),
            Mask::File(path) => path.display().to_string(),
        }
    }
}

pub const DEFAULT_WINDOW_FRAMES: u32 = 81;
pub const DEFAULT_OVERLAP_FRAMES: u32 = 16;
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 2;
pub const DEFAULT_JOB_TIMEOUT_S: u32 = 900;
pub const DEFAULT_WINDOW_RETRIES: u32 = 2;

#[derive(Clone)]
pub struct Settings {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub backend: BackendKind,
    pub model: Option<String>,
    pub endpoint: Option<String>,
    pub api_key: Option<String>,
    pub allow_insecure_http: bool,
    pub window_frames: u32,
    pub overlap_frames: u32,
    pub blend: BlendMode,
    pub seam: Seam,
    /// With `seam=anchor`: the share of denoising steps a latent-space backend holds the
    /// shared frames through.
    pub anchor_strength: f64,
    pub resolution: Resolution,
    /// 0: the model's default.
    pub num_inference_steps: u32,
    /// Negative: the model's default.
    pub guidance_scale: f64,
    /// Negative: the model's default.
    pub strength: f64,
    /// Negative: a random seed for every window.
    pub seed: i64,
    /// Negative: the model's default.
    pub flow_shift: f64,
    /// `reference-image`: the paths in the order given.
    pub reference_images: Vec<PathBuf>,
    /// `first-frame`: an image standing for the stream's edited first frame.
    pub first_frame: Option<PathBuf>,
    /// `mask`: where the edit applies.
    pub mask: Mask,
    /// `mask-invert`: 0 edits and 255 keeps.
    pub mask_invert: bool,
    pub max_in_flight: u32,
    pub job_timeout_s: u32,
    /// Further attempts at a window whose failure may pass.
    pub window_retries: u32,
    pub on_error: OnError,
    pub processing_latency_ms: u32,
    /// `device`, `dtype`, `keep-text-encoder`, `lora`.
    pub candle: CandleSettings,
    /// Set by `WanEdit::set_resolver`; `None`: the system's resolver.
    pub resolver: Option<Arc<dyn Resolve>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: None,
            backend: BackendKind::Auto,
            model: None,
            endpoint: None,
            api_key: None,
            allow_insecure_http: false,
            window_frames: DEFAULT_WINDOW_FRAMES,
            overlap_frames: DEFAULT_OVERLAP_FRAMES,
            blend: BlendMode::Linear,
            seam: Seam::Crossfade,
            anchor_strength: 1.0,
            resolution: Resolution::P480,
            num_inference_steps: 0,
            guidance_scale: -1.0,
            strength: -1.0,
            seed: -1,
            flow_shift: -1.0,
            reference_images: Vec::new(),
            first_frame: None,
            mask: Mask::None,
            mask_invert: false,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            job_timeout_s: DEFAULT_JOB_TIMEOUT_S,
            window_retries: DEFAULT_WINDOW_RETRIES,
            on_error: OnError::Fail,
            processing_latency_ms: 0,
            candle: CandleSettings::default(),
            resolver: None,
        }
    }
}

impl Settings {
    /// Checks what does not depend on the backend.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window_frames % 4 != 1 {
            return Err(ConfigError::WindowFrames(self.window_frames));
        }
        if self.overlap_frames >= self.window_frames {
            return Err(ConfigError::Overlap {
                overlap: self.overlap_frames,
                window: self.window_frames,
            });
        }
        Ok(())
    }

    pub fn job_timeout(&self) -> Duration {
        Duration::from_secs(self.job_timeout_s.into())
    }

    pub fn processing_latency(&self) -> gst::ClockTime {
        gst::ClockTime::from_mseconds(self.processing_latency_ms.into())
    }

    pub fn params(&self) -> EditParams {
        let set = |v: f64| (v >= 0.0).then_some(v);
        EditParams {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            num_inference_steps: (self.num_inference_steps > 0).then_some(self.num_inference_steps),
            guidance_scale: set(self.guidance_scale),
            strength: set(self.strength),
            seed: u64::try_from(self.seed).ok(),
            flow_shift: set(self.flow_shift),
            reference_images: self.reference_images.clone(),
            first_frame: self.first_frame.clone(),
        }
    }

    pub fn backend_config(&self) -> BackendConfig {
        BackendConfig {
            kind: self.backend,
            model: self.model.clone(),
            endpoint: self.endpoint.clone(),
            api_key: self.api_key.clone(),
            allow_insecure_http: self.allow_insecure_http,
            resolution: self.resolution,
            job_timeout: self.job_timeout(),
            params: self.params(),
            candle: self.candle.clone(),
            resolver: self.resolver.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_leave_model_parameters_unset() {
        let s = Settings::default();
        assert_eq!(s.validate(), Ok(()));
        let p = s.params();
        assert_eq!(
            (p.num_inference_steps, p.guidance_scale, p.strength, p.seed),
            (None, None, None, None)
        );
    }

    #[test]
    fn window_and_overlap_are_checked() {
        let s = Settings {
            window_frames: 80,
            ..Default::default()
        };
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "window-frames=80 must be 4n+1 (for example 5, 9, 17, 33, 49, 81)"
        );
        let s = Settings {
            window_frames: 5,
            overlap_frames: 5,
            ..Default::default()
        };
        assert_eq!(
            s.validate(),
            Err(ConfigError::Overlap {
                overlap: 5,
                window: 5
            })
        );
    }
}
