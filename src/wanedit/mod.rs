//! The `wanedit` element.

/**
 * SECTION:element-wanedit
 * @title: wanedit
 *
 * wanedit edits raw video from a text instruction (`prompt`) with the Wan video diffusion
 * models. It cuts the stream into windows of `window-frames` frames that overlap by
 * `overlap-frames`, has each window edited by a backend, and crossfades the edited
 * windows over their overlaps (`blend`; with `seam=anchor` each window is edited with the
 * edit of the one before over the frames they share). Every input frame comes out, with
 * its timestamps and metadata; only its pixels change. Output lags the input by one
 * window plus the edit's time, which the element reports as latency
 * (`processing-latency`).
 *
 * The backend edits the windows:
 * - `candle`: the Wan model in-process (CUDA or CPU), from a diffusers model directory or
 *   a Hugging Face repo id in the local cache (`model`); loaded on a worker thread during
 *   READY->PAUSED.
 * - `replicate`, `fal`, `wavespeed`, `together`: hosted Wan models, with the provider's
 *   key from `api-key` or its environment variable (REPLICATE_API_TOKEN, FAL_KEY,
 *   WAVESPEED_API_KEY, TOGETHER_API_KEY).
 * - `cog`: self-hosted Cog servers (`endpoint`, several separated by commas, or an http
 *   name that resolves to several addresses, as a Kubernetes headless Service does: one
 *   server each, the name followed as pods come and go), one window at a time on each.
 * - `auto` (the default): `candle` for a model directory, else the first provider whose
 *   key is in the environment.
 *
 * `mask` confines the edit to a region: `alpha` takes it from the input's alpha channel
 * (RGBA, BGRA, ARGB, ABGR, AYUV, A420: a matte from a chroma key or a segmentation
 * element upstream), a path takes one image for the whole stream, its luma stretched to
 * the frame (a lower third, a logo area). Whatever the backend, each output frame is
 * `m * edit + (1 - m) * input` in the stream's own format and depth: where the mask is 0
 * the output is the input bit for bit, across window seams too, and alpha passes
 * through. The mask also goes to the backend, so that a VACE model regenerates only the
 * region. A missing or unreadable file fails at READY->PAUSED, and `mask=alpha` refuses
 * caps without alpha.
 *
 * A window that fails is submitted again `window-retries` times where the failure may
 * pass; then `on-error` decides: stop with an error, or pass the original frames through
 * with a warning. Each window's progress is posted on the bus as a `wanedit-window`
 * element message.
 *
 * Credentials never show in logs, messages or property reads: `api-key` is write-only
 * and the password of an `endpoint` like `http://user:password@host` reads back hidden.
 * Neither is sent over plain http to another machine unless `allow-insecure-http=true`.
 *
 * ## Example pipelines
 * |[
 * FAL_KEY=... gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
 *     wanedit backend=fal prompt="replace the background with a snowy mountain" ! \
 *     videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
 * ]| Edits a file with a hosted model; the key comes from the environment, as a key in a
 * pipeline description would be logged.
 * |[
 * gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
 *     wanedit backend=cog endpoint=http://gpu1:5000,http://gpu2:5000 max-in-flight=4 \
 *     prompt="warm the light" ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
 * ]| Spreads the windows over a fleet of two Cog servers on the local network.
 * `endpoint=http://wanedit-cog.default.svc.cluster.local:5000` spreads them over the pods
 * of a headless Service (set `max-in-flight` to the most pods it scales to).
 * |[
 * gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
 *     wanedit backend=candle model=/models/Wan2.1-T2V-1.3B-Diffusers device=cuda \
 *     prompt="make it snow" ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
 * ]| Edits in-process on the first CUDA GPU.
 * |[
 * REPLICATE_API_TOKEN=... gst-launch-1.0 v4l2src ! videoconvert ! \
 *     wanedit backend=replicate prompt="make it snow" processing-latency=120000 \
 *     on-error=passthrough ! videoconvert ! autovideosink
 * ]| Edits a camera live: the picture arrives one window plus two minutes late, and a
 * window that cannot be edited shows unedited instead of stopping the stream.
 */
use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoFormat;

use crate::backend::Backend;
use crate::backend::hosted::Resolve;

mod imp;
mod job;
mod lifecycle;
mod load;
pub mod message;
mod output;
mod properties;
pub mod settings;
mod state;
mod windows;

pub use job::SEND_RATE;
pub use settings::OnError;

/// The raw formats the element takes, and gives back unchanged.
pub const FORMATS: &[VideoFormat] = &[
    VideoFormat::I420,
    VideoFormat::Yv12,
    VideoFormat::Nv12,
    VideoFormat::Nv21,
    VideoFormat::Y42b,
    VideoFormat::Y444,
    VideoFormat::Yuy2,
    VideoFormat::Uyvy,
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Xrgb,
    VideoFormat::Xbgr,
    VideoFormat::Gray8,
    // With alpha, for mask=alpha: a matte from upstream says where to edit.
    VideoFormat::Ayuv,
    VideoFormat::A420,
    // Broadcast and post-production: 10 and 12 bits, blended at their own depth.
    VideoFormat::P01010le,
    VideoFormat::I42010le,
    VideoFormat::I42210le,
    VideoFormat::Y44410le,
    VideoFormat::V210,
    VideoFormat::P012Le,
    VideoFormat::I42012le,
    VideoFormat::I42212le,
    VideoFormat::Y44412le,
];

glib::wrapper! {
    /// The `wanedit` element. Applications reach it with `downcast::<WanEdit>()` to give it
    /// a backend of their own.
    pub struct WanEdit(ObjectSubclass<imp::WanEdit>) @extends gst::Element, gst::Object;
}

impl WanEdit {
    /// Makes the element edit with `backend` (and sets `backend=custom`). Call it before
    /// the element goes to PAUSED.
    pub fn set_backend(&self, backend: impl Backend) {
        self.imp().set_backend(Arc::new(backend));
    }

    /// Like [`WanEdit::set_backend`], for a backend already shared.
    pub fn set_shared_backend(&self, backend: Arc<dyn Backend>) {
        self.imp().set_backend(backend);
    }

    /// Makes `backend=cog` resolve the names in `endpoint` with `resolver` rather than the
    /// system's (a test's, or an application's own service discovery). Call it before the
    /// element goes to PAUSED.
    pub fn set_resolver(&self, resolver: Arc<dyn Resolve>) {
        self.imp().set_resolver(resolver);
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "wanedit",
        gst::Rank::NONE,
        WanEdit::static_type(),
    )
}
