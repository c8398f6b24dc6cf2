//! Backends edit one window of frames.
//!
//! A backend is anything that implements [`Backend`]: the built-in ones are made by
//! [`create`] from the element's settings, and an application can hand the element a
//! backend object of its own with [`crate::WanEdit::set_backend`].

mod auto;
pub mod candle;
mod error;
mod frames;
pub mod hosted;
mod report;
pub mod retry;
pub mod runtime;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gst::glib;

pub use crate::frame::{ClipFrame, InputFormat, Picture, RgbFrame, Size, frame_time};
pub use error::{BackendError, ConfigError};
pub use frames::{Continuation, EditedClip, WindowAnchor, WindowFrames, WindowMask};
pub use report::{JobReporter, JobUpdate};

/// The model resolution class a window is edited at.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWanEditResolution")]
pub enum Resolution {
    #[default]
    #[enum_value(name = "480p: 832x480, 480x832 or 624x624", nick = "480p")]
    P480,
    #[enum_value(name = "720p: 1280x720, 720x1280 or 960x960", nick = "720p")]
    P720,
    #[enum_value(
        name = "Native: the input size, where the backend takes it (small or pre-scaled input)",
        nick = "native"
    )]
    Native,
}

impl Resolution {
    /// The Wan buckets of this resolution class: landscape, portrait and square.
    pub fn wan_buckets(self) -> Vec<Size> {
        match self {
            Resolution::P480 => vec![
                Size::new(832, 480),
                Size::new(480, 832),
                Size::new(624, 624),
            ],
            Resolution::P720 => vec![
                Size::new(1280, 720),
                Size::new(720, 1280),
                Size::new(960, 960),
            ],
            // No bucket: windows go at the input size.
            Resolution::Native => vec![],
        }
    }

    pub fn nick(self) -> &'static str {
        match self {
            Resolution::P480 => "480p",
            Resolution::P720 => "720p",
            Resolution::Native => "native",
        }
    }
}

/// Which built-in backend edits the windows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWanEditBackend")]
pub enum BackendKind {
    #[default]
    #[enum_value(
        name = "Auto: a model directory for candle, else the first provider whose key is set",
        nick = "auto"
    )]
    Auto,
    #[enum_value(
        name = "Candle: the Wan model in-process (CUDA or CPU)",
        nick = "candle"
    )]
    Candle,
    #[enum_value(name = "Replicate (REPLICATE_API_TOKEN)", nick = "replicate")]
    Replicate,
    #[enum_value(name = "fal.ai (FAL_KEY)", nick = "fal")]
    Fal,
    #[enum_value(name = "WaveSpeed AI (WAVESPEED_API_KEY)", nick = "wavespeed")]
    Wavespeed,
    #[enum_value(name = "Together AI (TOGETHER_API_KEY)", nick = "together")]
    Together,
    #[enum_value(
        name = "A self-hosted Cog server (endpoint=http://host:5000)",
        nick = "cog"
    )]
    Cog,
    #[enum_value(
        name = "Custom: a backend object the application gave with WanEdit::set_backend",
        nick = "custom"
    )]
    Custom,
}

impl BackendKind {
    pub fn nick(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Candle => "candle",
            BackendKind::Replicate => "replicate",
            BackendKind::Fal => "fal",
            BackendKind::Wavespeed => "wavespeed",
            BackendKind::Together => "together",
            BackendKind::Cog => "cog",
            BackendKind::Custom => "custom",
        }
    }
}

/// The window lengths a backend accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    pub min: usize,
    pub max: usize,
    /// Wan's VAE compresses time by 4 after the first frame, so Wan models take 4n+1 frames.
    pub four_n_plus_one: bool,
}

impl FrameCounts {
    pub const WAN: FrameCounts = FrameCounts {
        min: 5,
        max: 81,
        four_n_plus_one: true,
    };

    pub fn accepts(&self, n: usize) -> bool {
        n >= self.min && n <= self.max && (!self.four_n_plus_one || n % 4 == 1)
    }

    /// The smallest accepted length that holds `n` frames, if any.
    pub fn padded_length(&self, n: usize) -> Option<usize> {
        (n.max(self.min)..=self.max).find(|&len| self.accepts(len))
    }
}

/// What a backend accepts. The element adapts every window to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    /// The sizes windows may be sent at; the element picks the one closest in aspect ratio
    /// to the input. Empty means any size: windows are sent at the input size.
    pub sizes: Vec<Size>,
    pub frame_counts: FrameCounts,
    /// The form the window's frames are made in.
    pub input: InputFormat,
    /// How many `reference-image` paths can be honoured (0: none).
    pub reference_images: usize,
    /// Whether `first-frame` can be honoured: the first window follows a given edited
    /// first frame.
    pub first_frame: bool,
    /// How many windows the backend edits at once; the element runs at most
    /// `min(max-in-flight, max_concurrency)` jobs.
    pub max_concurrency: usize,
}

/// The user's editing parameters, as they stood when a window was submitted.
///
/// `None` means "not set by the user": the backend uses its model's default and must not
/// send the parameter at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EditParams {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub num_inference_steps: Option<u32>,
    pub guidance_scale: Option<f64>,
    pub strength: Option<f64>,
    pub seed: Option<u64>,
    pub flow_shift: Option<f64>,
    /// Images that guide the edit, at most [`Capabilities::reference_images`].
    pub reference_images: Vec<PathBuf>,
    /// An image standing for the edited first frame of the stream, which the first window
    /// after the start or a flush (`WindowId::index` 0) follows.
    pub first_frame: Option<PathBuf>,
}

/// Identifies a window in messages and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowId {
    /// Counts windows from 0 since the last flush.
    pub index: u64,
    pub first_pts: Option<gst::ClockTime>,
    /// Real (unpadded) frames of the window.
    pub frames: usize,
}

/// One window to edit.
pub struct EditRequest {
    pub window: WindowId,
    /// The frames, all of the same size and in the backend's [`Capabilities::input`]
    /// form, already padded to an accepted length, made as they are taken. Frame `i`
    /// stands at `i / frame_rate` on the clip's timeline.
    pub frames: WindowFrames,
    /// The rate the clip is sent at (16 fps, Wan's native rate): a window is W consecutive
    /// frames whatever the input rate.
    pub frame_rate: gst::Fraction,
    pub params: EditParams,
    /// With `seam=anchor`, the window before, which this one continues.
    pub anchor: Option<WindowAnchor>,
    /// With `mask` set: where each frame is to be edited, for models that can regenerate
    /// only a region. The element composes the result with the input under the mask
    /// whatever the backend does with it; `None` edits whole frames.
    pub mask: Option<WindowMask>,
    pub reporter: JobReporter,
}

/// The element's settings that decide which backend is built and how.
#[derive(Clone, Default)]
pub struct BackendConfig {
    pub kind: BackendKind,
    pub model: Option<String>,
    pub endpoint: Option<String>,
    pub api_key: Option<String>,
    /// Lets a credential (the key, an endpoint's password) go over plain http to another
    /// machine.
    pub allow_insecure_http: bool,
    pub resolution: Resolution,
    /// Zero means no limit.
    pub job_timeout: Duration,
    pub params: EditParams,
    pub candle: candle::CandleSettings,
    /// Resolves the names of a Cog fleet's endpoints; `None`: the system's resolver.
    pub resolver: Option<Arc<dyn hosted::Resolve>>,
}

// Keeps the key and the endpoint's password out of any Debug output (logs, panics, error
// texts).
impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("kind", &self.kind)
            .field("model", &self.model)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(hosted::redacted_endpoint),
            )
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("resolution", &self.resolution)
            .field("job_timeout", &self.job_timeout)
            .field("params", &self.params)
            .field("candle", &self.candle)
            .field(
                "resolver",
                &self.resolver.as_ref().map(|_| "set by the application"),
            )
            .finish()
    }
}

/// Edits windows. Implementations must be cheap to share: the element keeps one
/// `Arc<dyn Backend>` and calls [`Backend::edit`] for several windows at once.
pub trait Backend: Send + Sync + 'static {
    /// A short name for messages and errors ("replicate", "candle", ...).
    fn name(&self) -> &str;

    /// What the backend accepts at the given resolution class.
    fn capabilities(&self, resolution: Resolution) -> Capabilities;

    /// Edits one window. Dropping the future cancels the work, including a remote job.
    fn edit(&self, request: EditRequest) -> BoxFuture<'static, Result<EditedClip, BackendError>>;
}

/// Builds the built-in backend the configuration names.
///
/// `auto` picks what the user configured (a model directory, else the first provider whose
/// key is in the environment); the backend's [`Backend::name`] says which. Backends that
/// are not part of this build, and `auto` with nothing to use, fail with a message that
/// says what to set instead.
pub fn create(config: &BackendConfig) -> Result<Arc<dyn Backend>, ConfigError> {
    match config.kind {
        BackendKind::Custom => Err(ConfigError::NoCustomBackend),
        BackendKind::Auto => create(&BackendConfig {
            kind: auto::choose(config)?,
            ..config.clone()
        }),
        BackendKind::Candle => candle::create(config),
        kind => hosted::create(kind, config, hosted::Limits::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_form_of_a_config_holds_no_credentials() {
        let config = BackendConfig {
            kind: BackendKind::Cog,
            endpoint: Some("http://fleet:s3cret-pw@gpu1:5000,http://gpu2:5000".into()),
            api_key: Some("s3cret-key".into()),
            ..Default::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("http://***@gpu1:5000,http://gpu2:5000"),
            "{shown}"
        );
    }
}
