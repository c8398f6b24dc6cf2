//! The plugin's one tokio runtime: backends' jobs and the element's job tasks run on it.

use std::sync::LazyLock;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("wanedit-runtime")
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
});

pub fn runtime() -> &'static tokio::runtime::Runtime {
    &RUNTIME
}
