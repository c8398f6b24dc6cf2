//! Starting and stopping a stream: the backend is made (or loaded in the background)
//! at READY->PAUSED and checked against the settings, and let go at PAUSED->READY.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, Guard, Start, WanEdit};
use super::load;
use super::settings::Settings;
use super::state::{State, Windowing};
use crate::backend::{self, Backend, BackendConfig, BackendKind, ConfigError};

impl WanEdit {
    pub(super) fn start(&self) -> Result<Start, ConfigError> {
        let settings = self.settings.lock().unwrap().clone();
        settings.validate()?;
        let backend = match (
            settings.backend,
            self.custom_backend.lock().unwrap().clone(),
        ) {
            (BackendKind::Custom, Some(custom)) => custom,
            _ if load::in_background(&settings) => {
                return Ok(Start::Load(Box::new(settings.backend_config())));
            }
            _ => backend::create(&settings.backend_config())?,
        };
        *self.state.lock().unwrap() = Some(self.begin(&settings, backend)?);
        Ok(Start::Ready)
    }

    /// Checks the backend against the settings and makes the stream state.
    pub(super) fn begin(
        &self,
        settings: &Settings,
        backend: Arc<dyn Backend>,
    ) -> Result<State, ConfigError> {
        let capabilities = backend.capabilities(settings.resolution);
        let counts = capabilities.frame_counts;
        if !counts.accepts(settings.window_frames as usize) {
            return Err(ConfigError::WindowLength {
                backend: backend.name().to_owned(),
                frames: settings.window_frames,
                what: format!(
                    "set window-frames to one it accepts: {} to {}{}",
                    counts.min,
                    counts.max,
                    if counts.four_n_plus_one { ", 4n+1" } else { "" }
                ),
            });
        }
        if settings.reference_image.is_some() && !capabilities.reference_image {
            return Err(ConfigError::Unsupported {
                backend: backend.name().to_owned(),
                property: "reference-image",
                why: "its model takes no reference image; unset reference-image".into(),
            });
        }
        if settings.backend == BackendKind::Auto {
            gst::element_imp_info!(
                self,
                gst::LibraryError::Settings,
                ("backend=auto chose {}", backend.name())
            );
        }
        gst::info!(CAT, imp = self, "editing with backend {}", backend.name());
        let windowing = Windowing {
            window: settings.window_frames,
            overlap: settings.overlap_frames,
        };
        Ok(State::new(backend, capabilities, windowing))
    }

    pub(super) fn stop_streaming(&self) {
        let mut guard = self.state.lock().unwrap();
        if let Some(state) = guard.as_mut() {
            state.flushing = true;
            state.cancel_jobs();
        }
        self.load_generation.fetch_add(1, Ordering::SeqCst);
        self.loading.store(false, Ordering::SeqCst);
        drop(guard);
        self.changed.notify_all();
    }

    /// Builds the backend on a worker thread; READY->PAUSED completes when it is ready.
    pub(super) fn start_loading(&self, config: BackendConfig) -> Result<(), ConfigError> {
        let generation = {
            let _guard = self.state.lock().unwrap();
            self.loading.store(true, Ordering::SeqCst);
            self.load_generation.fetch_add(1, Ordering::SeqCst) + 1
        };
        let obj = self.obj();
        let _ = obj.post_message(gst::message::AsyncStart::builder().src(&*obj).build());
        let weak = obj.downgrade();
        load::spawn(&obj, config, move |result| {
            if let Some(element) = weak.upgrade() {
                element.imp().loaded(generation, result);
            }
        })
        .map_err(|e| {
            self.stop_streaming();
            ConfigError::Invalid {
                property: "backend",
                why: format!("cannot start a thread to load the model: {e}"),
            }
        })
    }

    /// Ends a background load: makes the stream state and commits PAUSED, or fails.
    pub(super) fn loaded(&self, generation: u64, result: Result<Arc<dyn Backend>, ConfigError>) {
        let settings = self.settings.lock().unwrap().clone();
        let begun = result.and_then(|backend| self.begin(&settings, backend));
        let begun = {
            // Checked with the state locked: leaving PAUSED bumps the generation there.
            let mut guard = self.state.lock().unwrap();
            if self.load_generation.load(Ordering::SeqCst) != generation {
                return;
            }
            self.loading.store(false, Ordering::SeqCst);
            begun.map(|state| *guard = Some(state))
        };
        self.changed.notify_all();
        let obj = self.obj();
        match begun.map_err(|e| e.to_string()).and_then(|()| {
            self.start_task()
                .map_err(|e| format!("cannot start the src task: {e}"))
        }) {
            Ok(()) => {
                let _ = obj.continue_state(gst::StateChangeReturn::Success);
                let _ = obj.post_message(gst::message::AsyncDone::builder().src(&*obj).build());
            }
            Err(e) => {
                gst::element_imp_error!(self, gst::LibraryError::Init, ("{e}"));
                obj.abort_state();
            }
        }
    }

    /// The stream state, once no backend is being built in the background.
    pub(super) fn ready_state(&self) -> Guard<'_> {
        let mut guard = self.state.lock().unwrap();
        while self.loading.load(Ordering::SeqCst) {
            guard = self.changed.wait(guard).unwrap();
        }
        guard
    }
}
