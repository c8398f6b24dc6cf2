//! The src pad's task, which pushes frames and events out in input order once they are
//! final, and the latency the element adds.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::WanEdit;

impl WanEdit {
    pub(super) fn src_loop(&self) {
        let mut guard = self.state.lock().unwrap();
        let output = loop {
            let Some(state) = guard.as_mut().filter(|s| !s.flushing && !s.failed) else {
                // Paused with the state locked: whoever makes the stream runnable (a
                // backend loaded, a flush ended) does so under the lock and starts the
                // task after, so that start cannot come between our look and this pause
                // and be lost.
                let _ = self.srcpad.pause_task();
                return;
            };
            let settled = state.settled_below();
            state.composer.release_inputs(settled);
            if let Some(output) = state.composer.pop_ready(settled) {
                break output;
            }
            guard = self.changed.wait(guard).unwrap();
        };
        drop(guard);
        let flow = match output {
            crate::stream::composer::Output::Frame(buffer) => self.srcpad.push(buffer),
            crate::stream::composer::Output::Event(event) => {
                let eos = event.type_() == gst::EventType::Eos;
                self.srcpad.push_event(event);
                if eos {
                    Err(gst::FlowError::Eos)
                } else {
                    Ok(gst::FlowSuccess::Ok)
                }
            }
        };
        let Err(err) = flow else {
            return;
        };
        if let Some(state) = self.state.lock().unwrap().as_mut()
            && err != gst::FlowError::Eos
        {
            state.downstream = Err(err);
        }
        self.changed.notify_all();
        if err == gst::FlowError::Eos {
            // Keep running: nothing more comes until a flush restarts the stream.
            return;
        }
        if !matches!(err, gst::FlowError::Flushing) {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Internal data stream error."),
                ["streaming stopped, reason {err:?}"]
            );
        }
        let _ = self.srcpad.pause_task();
    }

    pub(super) fn start_task(&self) -> Result<(), glib::BoolError> {
        let this = self.ref_counted();
        self.srcpad.start_task(move || this.src_loop())
    }

    /// `window-frames` frame durations plus `processing-latency`.
    pub(super) fn added_latency(&self) -> gst::ClockTime {
        let settings = self.settings.lock().unwrap().clone();
        let fps = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.run.as_ref())
            .map(|run| run.info.fps())
            .filter(|fps| fps.numer() > 0)
            .unwrap_or(super::job::SEND_RATE);
        let window = gst::ClockTime::SECOND
            .mul_div_floor(
                settings.window_frames as u64 * fps.denom() as u64,
                fps.numer() as u64,
            )
            .unwrap_or(gst::ClockTime::ZERO);
        window + settings.processing_latency()
    }
}
