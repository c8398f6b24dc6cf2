//! `wanedit`: a GStreamer element that edits video with the Wan video diffusion family.
//!
//! The element buffers incoming frames into overlapping windows, edits each window with a
//! [`backend::Backend`] and crossfades the overlaps, so that the stream keeps its frames,
//! timestamps and metadata while its pixels change.

use gst::glib;

pub mod backend;
pub mod frame;
pub mod memory;
pub mod stream;
pub mod wan;
pub mod wanedit;

pub use wanedit::WanEdit;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    wanedit::register(plugin)
}

// The origin is Cargo.toml's `repository`, empty while the project has no public home.
// The macro also exports `gst_plugin_wanedit_register()`, which is how an application
// registers the plugin when it links the `static` build.
gst::plugin_define!(
    wanedit,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
