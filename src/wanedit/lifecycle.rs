//! Starting and stopping a stream: the backend is made (or loaded in the background)
//! at READY->PAUSED and checked against the settings, and let go at PAUSED->READY.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, Guard, Start, WanEdit};
use super::load;
use super::settings::{Mask, Settings};
use super::state::{State, Windowing};
use crate::backend::{self, Backend, BackendConfig, BackendKind, Capabilities, ConfigError};
use crate::still::Still;
use crate::stream::mask::StreamMask;

impl WanEdit {
    pub(super) fn start(&self) -> Result<Start, ConfigError> {
        let settings = self.settings.lock().unwrap().clone();
        settings.validate()?;
        // Read before the backend is made or loaded: a bad file fails at once.
        *self.mask.lock().unwrap() = open_mask(&settings.mask, settings.mask_invert)?;
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
        check_stills(settings, &capabilities, backend.name())?;
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
        let mut state = State::new(backend, capabilities, windowing);
        state.mask = self.mask.lock().unwrap().clone();
        Ok(state)
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

/// Refuses the still images a backend cannot take (a backend that takes them reads them
/// when it is made, so that a missing or foreign file fails at READY->PAUSED too).
fn check_stills(
    settings: &Settings,
    capabilities: &Capabilities,
    backend: &str,
) -> Result<(), ConfigError> {
    let unsupported = |property, why: String| ConfigError::Unsupported {
        backend: backend.to_owned(),
        property,
        why,
    };
    let images = settings.reference_images.len();
    match capabilities.reference_images {
        0 if images > 0 => {
            return Err(unsupported(
                "reference-image",
                format!("its model takes no reference image; unset reference-image ({VACE_CAN})"),
            ));
        }
        most if images > most => {
            return Err(unsupported(
                "reference-image",
                format!(
                    "it takes at most {most} reference image(s), not {images}; name fewer ({VACE_CAN} takes several)"
                ),
            ));
        }
        _ => {}
    }
    if settings.first_frame.is_some() && !capabilities.first_frame {
        return Err(unsupported(
            "first-frame",
            format!("it cannot follow a given first frame; unset first-frame ({VACE_CAN})"),
        ));
    }
    Ok(())
}

/// Who can take what other backends cannot, for the errors that say so.
const VACE_CAN: &str = "backend=candle with a VACE model (a WanVACEPipeline directory) can";

/// The `mask` property made ready: a file is read and decoded.
fn open_mask(mask: &Mask, invert: bool) -> Result<Option<StreamMask>, ConfigError> {
    Ok(match mask {
        Mask::None => None,
        Mask::Alpha => Some(StreamMask::Alpha { invert }),
        Mask::File(path) => Some(StreamMask::Still {
            still: Arc::new(Still::open(path).map_err(|e| ConfigError::Invalid {
                property: "mask",
                why: format!("{e}; name a PNG or JPEG file, or set mask to none or alpha"),
            })?),
            invert,
        }),
    })
}
