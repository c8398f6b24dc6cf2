//! The element's GObject properties: their specs, and how they read and write
//! [`Settings`].

use std::path::PathBuf;

use gst::glib;
use gst::prelude::*;

use super::settings::*;
use crate::backend::hosted::redacted_endpoint;

pub fn specs() -> Vec<glib::ParamSpec> {
    let d = Settings::default();
    let playing = glib::ParamFlags::READWRITE | gst::PARAM_FLAG_MUTABLE_PLAYING;
    let ready = glib::ParamFlags::READWRITE | gst::PARAM_FLAG_MUTABLE_READY;
    let string = |name, blurb| {
        glib::ParamSpecString::builder(name)
            .blurb(blurb)
            .flags(ready)
            .build()
    };
    vec![
        glib::ParamSpecString::builder("prompt")
            .blurb(
                "The edit instruction; may change while playing, from the next window \
                 submitted (unset: an empty instruction)",
            )
            .flags(playing)
            .build(),
        glib::ParamSpecString::builder("negative-prompt")
            .blurb("What the edit should avoid (unset: the model's default)")
            .flags(playing)
            .build(),
        glib::ParamSpecEnum::builder_with_default("backend", d.backend)
            .blurb("Who edits the windows: in-process, a hosted provider, or Cog servers")
            .flags(ready)
            .build(),
        string(
            "model",
            "Model: a directory or Hugging Face repo id for candle, a model name for hosted \
             providers (unset: the backend's default)",
        ),
        string(
            "endpoint",
            "Base URL of the provider or Cog server; for cog, several separated by commas, \
             or an http name standing for every address it resolves to (followed every 5 s). \
             A user:password@ in it is sent as basic auth and reads back as ***@ \
             (unset: the provider's public API; cog needs one)",
        ),
        glib::ParamSpecString::builder("api-key")
            .blurb(
                "API key of the hosted provider (write-only; unset: the provider's usual \
                 environment variable)",
            )
            .flags(glib::ParamFlags::WRITABLE | gst::PARAM_FLAG_MUTABLE_READY)
            .build(),
        glib::ParamSpecBoolean::builder("allow-insecure-http")
            .blurb(
                "Send the API key, or an endpoint's password, over plain http to another \
                 machine, where anyone on the way can read it (without a credential, http \
                 needs no permission)",
            )
            .default_value(d.allow_insecure_http)
            .flags(ready)
            .build(),
        glib::ParamSpecUInt::builder("window-frames")
            .blurb(
                "Length of an edited window, in frames; must be 4n+1 and one the backend \
                 takes (hosted providers: 33 to 81)",
            )
            .minimum(1)
            .maximum(1025)
            .default_value(DEFAULT_WINDOW_FRAMES)
            .flags(ready)
            .build(),
        glib::ParamSpecUInt::builder("overlap-frames")
            .blurb(
                "Overlap of neighbouring windows, crossfaded, in frames; less than \
                 window-frames",
            )
            .maximum(1024)
            .default_value(DEFAULT_OVERLAP_FRAMES)
            .flags(ready)
            .build(),
        glib::ParamSpecEnum::builder_with_default("blend", d.blend)
            .blurb("How the overlap between windows is crossfaded")
            .flags(playing)
            .build(),
        glib::ParamSpecEnum::builder_with_default("seam", d.seam)
            .blurb(
                "How windows join: crossfade (edited in parallel) or anchor (edited in turn, \
                 each sent with the previous window's edit over the frames they share)",
            )
            .flags(ready)
            .build(),
        glib::ParamSpecDouble::builder("anchor-strength")
            .blurb(
                "seam=anchor with backend=candle: share of the denoising steps through which \
                 the shared frames' latents are held to the window before's (1: through the \
                 last step, 0: not held; the frames are still sent anchored)",
            )
            .minimum(0.0)
            .maximum(1.0)
            .default_value(d.anchor_strength)
            .flags(playing)
            .build(),
        glib::ParamSpecEnum::builder_with_default("resolution", d.resolution)
            .blurb("Model resolution class; the bucket closest in aspect ratio is used")
            .flags(ready)
            .build(),
        glib::ParamSpecUInt::builder("num-inference-steps")
            .blurb("Denoising steps per window (0: the model's default)")
            .maximum(1000)
            .default_value(0)
            .flags(playing)
            .build(),
        glib::ParamSpecDouble::builder("guidance-scale")
            .blurb("Classifier-free guidance scale (-1: the model's default)")
            .minimum(-1.0)
            .maximum(100.0)
            .default_value(d.guidance_scale)
            .flags(playing)
            .build(),
        glib::ParamSpecDouble::builder("strength")
            .blurb("How far the edit may move from the source, 0 to 1 (-1: the model's default)")
            .minimum(-1.0)
            .maximum(1.0)
            .default_value(d.strength)
            .flags(playing)
            .build(),
        glib::ParamSpecInt64::builder("seed")
            .blurb("Random seed of every window (-1: a new random seed each window)")
            .minimum(-1)
            .default_value(d.seed)
            .flags(playing)
            .build(),
        glib::ParamSpecDouble::builder("flow-shift")
            .blurb("Shift of the flow-matching schedule (-1: the model's default)")
            .minimum(-1.0)
            .maximum(100.0)
            .default_value(d.flow_shift)
            .flags(playing)
            .build(),
        string(
            "reference-image",
            "Path of an image that guides the edit, where the backend takes one; several \
             separated by commas where it takes several (candle with a VACE model) \
             (unset: none)",
        ),
        string(
            "first-frame",
            "Path of an image that stands for the edited first frame (one frame graded or \
             retouched by hand): the first window after the start or a flush follows it, \
             and with seam=anchor every later window carries it on; candle with a VACE \
             model only (unset: none)",
        ),
        glib::ParamSpecString::builder("mask")
            .blurb(
                "Where the edit applies: alpha (the input's alpha channel, 255 edits fully, \
                 0 keeps the input; RGBA, BGRA, ARGB, ABGR, AYUV or A420 input), or the path \
                 of a PNG or JPEG whose luma, stretched to the frame, does the same (white \
                 edits). Elsewhere the output is the input bit for bit, alpha kept; a VACE \
                 model is given the mask too (unset: none, the whole frame is edited)",
            )
            .default_value(Some("none"))
            .flags(ready)
            .build(),
        glib::ParamSpecBoolean::builder("mask-invert")
            .blurb(
                "Swap what the mask says: 0 (black, transparent) edits and 255 keeps; for a \
                 chroma key, whose keyed-out background is then edited and the subject kept",
            )
            .default_value(false)
            .flags(ready)
            .build(),
        glib::ParamSpecUInt::builder("max-in-flight")
            .blurb(
                "Windows edited at once, capped by what the backend can run (cog: one per \
                 server)",
            )
            .minimum(1)
            .maximum(64)
            .default_value(DEFAULT_MAX_IN_FLIGHT)
            .flags(playing)
            .build(),
        glib::ParamSpecUInt::builder("job-timeout")
            .blurb(
                "Time a window may take, queueing included, in seconds, before it counts as \
                 failed (then window-retries and on-error decide)",
            )
            .minimum(1)
            .maximum(86_400)
            .default_value(DEFAULT_JOB_TIMEOUT_S)
            .flags(playing)
            .build(),
        glib::ParamSpecUInt::builder("window-retries")
            .blurb(
                "Times a window whose edit failed for a reason that may pass (a transient \
                 error, a timeout, a job that failed without a content-policy refusal) is \
                 submitted again before on-error applies (0: never)",
            )
            .maximum(100)
            .default_value(DEFAULT_WINDOW_RETRIES)
            .flags(playing)
            .build(),
        glib::ParamSpecEnum::builder_with_default("on-error", d.on_error)
            .blurb("What a window that failed (after its retries) does to the stream")
            .flags(playing)
            .build(),
        glib::ParamSpecUInt::builder("processing-latency")
            .blurb(
                "Time a window's edit is expected to take, in milliseconds; added to the \
                 reported latency on top of window-frames frame durations",
            )
            .maximum(3_600_000)
            .default_value(0)
            .flags(playing)
            .build(),
        glib::ParamSpecString::builder("device")
            .blurb(
                "Where backend=candle runs the model: cpu, cuda or cuda:N (unset: cuda:0 in \
                 a build with CUDA, else cpu)",
            )
            .default_value(Some(d.candle.device.as_str()))
            .flags(ready)
            .build(),
        glib::ParamSpecEnum::builder_with_default("dtype", d.candle.dtype)
            .blurb("Precision of backend=candle's weights")
            .flags(ready)
            .build(),
        glib::ParamSpecBoolean::builder("keep-text-encoder")
            .blurb(
                "backend=candle: keep the text encoder loaded after the prompts are encoded, \
                 so that a changed prompt needs no reload (costs its memory)",
            )
            .default_value(d.candle.keep_text_encoder)
            .flags(ready)
            .build(),
        string(
            "lora",
            "backend=candle: LoRA safetensors merged into the transformer at load, as \
             path[:scale],... (scale 1 when left out; diffusers or ComfyUI/kijai keys). \
             Elements share a model only with the same LoRA set (unset: none)",
        ),
    ]
}

fn typed<'a, T: glib::value::FromValue<'a>>(value: &'a glib::Value) -> T {
    value.get().expect("GObject checked the value's type")
}

fn optional_string(value: &glib::Value) -> Option<String> {
    typed::<Option<String>>(value).filter(|s| !s.is_empty())
}

/// The paths of a comma-separated list, blanks around them dropped.
fn path_list(value: &glib::Value) -> Vec<PathBuf> {
    optional_string(value)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Writes one property. Values are range-checked by GObject (which refuses NaN too, with a
/// warning, before the element sees it); window and overlap rules are checked at
/// READY->PAUSED, where an error can be reported.
pub fn set(s: &mut Settings, name: &str, value: &glib::Value) {
    match name {
        "prompt" => s.prompt = optional_string(value).unwrap_or_default(),
        "negative-prompt" => s.negative_prompt = optional_string(value),
        "backend" => s.backend = typed(value),
        "model" => s.model = optional_string(value),
        "endpoint" => s.endpoint = optional_string(value),
        "api-key" => s.api_key = optional_string(value),
        "allow-insecure-http" => s.allow_insecure_http = typed(value),
        "window-frames" => s.window_frames = typed(value),
        "overlap-frames" => s.overlap_frames = typed(value),
        "blend" => s.blend = typed(value),
        "seam" => s.seam = typed(value),
        "anchor-strength" => s.anchor_strength = typed(value),
        "resolution" => s.resolution = typed(value),
        "num-inference-steps" => s.num_inference_steps = typed(value),
        "guidance-scale" => s.guidance_scale = typed(value),
        "strength" => s.strength = typed(value),
        "seed" => s.seed = typed(value),
        "flow-shift" => s.flow_shift = typed(value),
        "reference-image" => s.reference_images = path_list(value),
        "first-frame" => s.first_frame = optional_string(value).map(PathBuf::from),
        "mask" => s.mask = Mask::parse(optional_string(value).as_deref()),
        "mask-invert" => s.mask_invert = typed(value),
        "max-in-flight" => s.max_in_flight = typed(value),
        "job-timeout" => s.job_timeout_s = typed(value),
        "window-retries" => s.window_retries = typed(value),
        "on-error" => s.on_error = typed(value),
        "processing-latency" => s.processing_latency_ms = typed(value),
        "device" => {
            s.candle.device = optional_string(value)
                .unwrap_or_else(|| crate::backend::candle::DeviceSpec::default_name().to_owned())
        }
        "dtype" => s.candle.dtype = typed(value),
        "keep-text-encoder" => s.candle.keep_text_encoder = typed(value),
        "lora" => s.candle.lora = optional_string(value).unwrap_or_default(),
        other => unreachable!("no property {other}"),
    }
}

/// What the debug log may show of a value being set: never the key, nor an endpoint's
/// password.
pub fn shown(pspec: &glib::ParamSpec, value: &glib::Value) -> Option<String> {
    match pspec.name() {
        "api-key" => None,
        "endpoint" => Some(format!(
            "{:?}",
            optional_string(value).map(|e| redacted_endpoint(&e).into_owned())
        )),
        _ => Some(format!("{value:?}")),
    }
}

/// Reads one property. The api-key is write-only and never read back; an endpoint's
/// password reads back hidden.
pub fn get(s: &Settings, name: &str) -> glib::Value {
    match name {
        "prompt" => s.prompt.to_value(),
        "negative-prompt" => s.negative_prompt.to_value(),
        "backend" => s.backend.to_value(),
        "model" => s.model.to_value(),
        "endpoint" => s
            .endpoint
            .as_deref()
            .map(|e| redacted_endpoint(e).into_owned())
            .to_value(),
        "allow-insecure-http" => s.allow_insecure_http.to_value(),
        "window-frames" => s.window_frames.to_value(),
        "overlap-frames" => s.overlap_frames.to_value(),
        "blend" => s.blend.to_value(),
        "seam" => s.seam.to_value(),
        "anchor-strength" => s.anchor_strength.to_value(),
        "resolution" => s.resolution.to_value(),
        "num-inference-steps" => s.num_inference_steps.to_value(),
        "guidance-scale" => s.guidance_scale.to_value(),
        "strength" => s.strength.to_value(),
        "seed" => s.seed.to_value(),
        "flow-shift" => s.flow_shift.to_value(),
        "reference-image" => Some(
            s.reference_images
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
        .filter(|list| !list.is_empty())
        .to_value(),
        "first-frame" => s
            .first_frame
            .as_ref()
            .map(|p| p.display().to_string())
            .to_value(),
        "mask" => s.mask.to_property().to_value(),
        "mask-invert" => s.mask_invert.to_value(),
        "max-in-flight" => s.max_in_flight.to_value(),
        "job-timeout" => s.job_timeout_s.to_value(),
        "window-retries" => s.window_retries.to_value(),
        "on-error" => s.on_error.to_value(),
        "processing-latency" => s.processing_latency_ms.to_value(),
        "device" => s.candle.device.to_value(),
        "dtype" => s.candle.dtype.to_value(),
        "keep-text-encoder" => s.candle.keep_text_encoder.to_value(),
        "lora" => Some(&s.candle.lora).filter(|l| !l.is_empty()).to_value(),
        other => unreachable!("no readable property {other}"),
    }
}
