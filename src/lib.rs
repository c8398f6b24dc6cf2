//! `wanedit`: a GStreamer element that edits video with the Wan video diffusion family.
//!
//! The element buffers incoming frames into overlapping windows, edits each window with a
//! [`backend::Backend`] and crossfades the overlaps, so that the stream keeps its frames,
//! timestamps and metadata while its pixels change.

use gst::glib;

pub mod backend;
pub mod frame;
pub mod memory;
pub mod still;
pub mod stream;
pub mod wan;
pub mod wanedit;

pub use wanedit::WanEdit;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    wanedit::register(plugin)
}

// GStreamer will not load a plugin with an empty origin, and the project has no public
// home: the origin says so. The macro also exports `gst_plugin_wanedit_register()`,
// through which an application registers the plugin when it links the `static` build.
gst::plugin_define!(
    wanedit,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    "Unknown package origin",
    env!("BUILD_REL_DATE")
);
