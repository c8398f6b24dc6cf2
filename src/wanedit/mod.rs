//! The `wanedit` element.

use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoFormat;

use crate::backend::Backend;

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
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "wanedit",
        gst::Rank::NONE,
        WanEdit::static_type(),
    )
}
