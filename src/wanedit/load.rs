//! Building a backend that loads a model, on a worker thread, so that READY->PAUSED
//! completes asynchronously instead of blocking the application for minutes.
//!
//! The thread posts `progress` messages (start, then complete or error); the element
//! commits the state change when the backend is ready. The complete message says whether
//! the model was loaded or found already loaded by another element of the process (a
//! server that keeps one loaded shows that its requests load nothing).

use std::sync::Arc;

use gst::prelude::*;

use super::settings::Settings;
use crate::backend::{self, Backend, BackendConfig, BackendKind, ConfigError, candle};

/// Whether building the configured backend loads a model (and so runs in the background).
pub fn in_background(settings: &Settings) -> bool {
    match settings.backend {
        BackendKind::Candle => true,
        BackendKind::Auto => settings.model.as_ref().is_some_and(candle::is_model_dir),
        _ => false,
    }
}

const CODE: &str = "load-model";

/// Builds the backend of `config` on a new thread; `done` gets the result there.
pub fn spawn(
    element: &super::WanEdit,
    config: BackendConfig,
    done: impl FnOnce(Result<Arc<dyn Backend>, ConfigError>) + Send + 'static,
) -> std::io::Result<()> {
    let what = format!(
        "{} on {}",
        config.model.as_deref().unwrap_or("no model"),
        config.candle.device
    );
    let progress = |kind, text: &str| {
        gst::message::Progress::builder(kind, CODE, text)
            .src(element)
            .build()
    };
    let _ = element.post_message(progress(
        gst::ProgressType::Start,
        &format!("loading {what}"),
    ));
    let weak = element.downgrade();
    std::thread::Builder::new()
        .name("wanedit-load".into())
        .spawn(move || {
            // Held while the backend is built, so that a model found here is the one it
            // gets, not a copy loaded again after its last holder let go.
            let shared = candle::model_key(&config)
                .ok()
                .and_then(|key| candle::registry::lookup(&key));
            let result = backend::create(&config);
            if let Some(element) = weak.upgrade() {
                let (kind, text) = match &result {
                    Ok(_) if shared.is_some() => (
                        gst::ProgressType::Complete,
                        format!("{what} already loaded: shared"),
                    ),
                    Ok(_) => (gst::ProgressType::Complete, format!("loaded {what}")),
                    Err(e) => (gst::ProgressType::Error, format!("cannot load {what}: {e}")),
                };
                let message = gst::message::Progress::builder(kind, CODE, &text)
                    .src(&element)
                    .build();
                let _ = element.post_message(message);
            }
            done(result);
        })
        .map(drop)
}
