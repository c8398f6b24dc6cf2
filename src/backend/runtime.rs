//! The one tokio runtime of the plugin.
//!
//! Every element instance and every backend share it: a GStreamer streaming thread is not
//! async, so work that waits on the network or on timers is spawned here.

use std::sync::LazyLock;

use tokio::runtime::Runtime;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("wanedit-runtime")
        .enable_all()
        .build()
        .expect("the plugin's tokio runtime could not start")
});

/// The plugin's runtime: two worker threads, I/O and timers enabled.
pub fn runtime() -> &'static Runtime {
    &RUNTIME
}
