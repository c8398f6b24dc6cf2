//! Windows on their way through a backend: submitted as the planner makes them (with
//! back-pressure), and their outcome delivered to the composer and reported on the bus.

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{Guard, WanEdit, stream_state};
use super::job::{Job, JobOutcome};
use super::message::{WindowReporter, WindowState};
use super::settings::Seam;
use super::state::Anchor;
use crate::backend::{self, WindowAnchor, WindowId};
use crate::stream::blend::Samples;
use crate::stream::convert;
use crate::stream::planner::Window;

impl WanEdit {
    /// Starts the job of a window, first waiting while the jobs in flight fill every slot,
    /// or while the window is a full slot count ahead of the oldest window not yet output
    /// (this is the element's back-pressure: behind a window that takes long, say one
    /// being retried, the windows after it could otherwise finish, free their slots and
    /// take in input, holding edited and input frames without bound). With `seam=anchor`
    /// a window waits for the one before to be delivered, and is sent with what that one
    /// gave back over the frames they share. The window must already be planned with the
    /// composer, in the same lock as the planner made it: else its frames could leave
    /// while this waits.
    pub(super) fn submit<'a>(
        &'a self,
        mut guard: Guard<'a>,
        window: Window,
        inputs: Vec<gst::Buffer>,
    ) -> Result<Guard<'a>, gst::FlowError> {
        let settings = self.settings.lock().unwrap().clone();
        loop {
            let state = stream_state(&mut guard)?;
            state.flow()?;
            let slots = match settings.seam {
                Seam::Anchor => 1,
                Seam::Crossfade => {
                    (settings.max_in_flight as usize).min(state.capabilities.max_concurrency.max(1))
                }
            };
            let oldest = state.composer.oldest_pending().unwrap_or(window.index);
            if state.jobs.len() < slots && window.index < oldest + slots as u64 {
                break;
            }
            guard = self.changed.wait(guard).unwrap();
        }
        let state = stream_state(&mut guard)?;
        let in_flight = (settings.max_in_flight as usize).min(state.capabilities.max_concurrency);
        let keep_from = window.start + state.windowing.stride();
        let run = state
            .run
            .as_mut()
            .expect("windows are planned only with caps");
        let (scaled, anchor) = match settings.seam {
            Seam::Crossfade => (
                run.scaled.for_window(window.start, window.end(), keep_from),
                None,
            ),
            // The frames a window shares with the one before are not sent as they came:
            // nothing scaled is shared.
            Seam::Anchor => (Vec::new(), run.anchor.take()),
        };
        // What the window before gave back for the frames this one shares with it (the
        // last window of a run may start earlier than a stride on, sharing more).
        let (anchor, continues) = anchor
            .filter(|a| a.window + 1 == window.index && a.start <= window.start)
            .map(|a| {
                let offset = (window.start - a.start) as usize;
                let frames = a.frames.get(offset..).unwrap_or_default().to_vec();
                let continues = WindowAnchor {
                    shared: frames.len().min(inputs.len()),
                    offset,
                    continuation: a.continuation,
                    strength: settings.anchor_strength,
                };
                (frames, continues)
            })
            .unzip();
        let samples = run.samples;
        let id = WindowId {
            index: window.index,
            first_pts: inputs.first().and_then(|b| b.pts()),
            frames: inputs.len(),
        };
        let padded_len = state
            .capabilities
            .frame_counts
            .padded_length(inputs.len())
            .unwrap_or(state.windowing.window as usize);
        let reports = WindowReporter::new(self.obj().upcast_ref(), id, state.backend.name());
        let job = Job {
            id,
            inputs,
            info: run.info.clone(),
            send_size: run.send_size,
            send_form: state.capabilities.input,
            scaled,
            anchor: anchor.unwrap_or_default(),
            continues,
            converter_threads: convert::threads_for(in_flight),
            padded_len,
            params: settings.params(),
            on_error: settings.on_error,
            timeout: settings.job_timeout(),
            retries: settings.window_retries,
            backend: state.backend.clone(),
            reports: reports.clone(),
            mask: run.mask.clone(),
        };
        let epoch = state.epoch;
        let element = self.obj().downgrade();
        // The task posts `queued` itself, so that no report of the job can overtake it.
        let start = window.start;
        let task = backend::runtime::runtime().spawn(async move {
            reports.post(WindowState::Queued, 1, None);
            let (attempt, outcome) = job.run().await;
            if let Some(element) = element.upgrade() {
                element
                    .imp()
                    .deliver(epoch, &reports, start, samples, attempt, outcome);
            }
            crate::memory::give_back_freed();
        });
        state.jobs.insert(window.index, task.abort_handle());
        drop(guard);
        Ok(self.state.lock().unwrap())
    }

    pub(super) fn is_current(&self, epoch: u64) -> bool {
        self.state
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| s.epoch == epoch)
    }

    /// Takes a finished job's outcome: reports it, then hands its frames to the composer.
    /// Reports go out first, so that a window's `done` or warning always comes before
    /// its frames (and before EOS) and is never posted with the state locked.
    pub(super) fn deliver(
        &self,
        epoch: u64,
        reports: &WindowReporter,
        start: u64,
        samples: Samples,
        attempt: u32,
        outcome: JobOutcome,
    ) {
        if !self.is_current(epoch) {
            return;
        }
        let id = reports.window;
        let failure = |cause: &dyn std::fmt::Display| {
            format!(
                "backend {} failed on window {} (first PTS {}, {} frames{}): {cause}",
                reports.backend,
                id.index,
                id.first_pts.display(),
                id.frames,
                if attempt > 1 {
                    format!(", {attempt} attempts")
                } else {
                    String::new()
                }
            )
        };
        let (frames, continuation) = match outcome {
            JobOutcome::Edited {
                frames,
                continuation,
            } => {
                self.post(vec![reports.message(
                    self.obj().upcast_ref(),
                    WindowState::Done,
                    attempt,
                    None,
                )]);
                (frames, continuation)
            }
            JobOutcome::PassedThrough {
                frames,
                edited,
                cause,
            } => {
                let cause = cause.to_string();
                let passing = match edited {
                    0 => "passing its original frames through".to_owned(),
                    _ => format!(
                        "its clip broke off after {edited} frames: passing those as edited \
                         and its original frames from there on"
                    ),
                };
                let text = format!("{}; {passing}", failure(&cause));
                self.post(vec![
                    reports.message(
                        self.obj().upcast_ref(),
                        WindowState::Failed,
                        attempt,
                        Some(&cause),
                    ),
                    gst::message::Warning::builder(gst::StreamError::Failed, &text)
                        .src(&*self.obj())
                        .build(),
                ]);
                (frames, None)
            }
            JobOutcome::Failed(cause) => {
                let cause = cause.to_string();
                return self.fail(epoch, reports, attempt, &cause, &failure(&cause));
            }
        };
        let (blend, seam) = {
            let settings = self.settings.lock().unwrap();
            (settings.blend, settings.seam)
        };
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut().filter(|s| s.epoch == epoch) else {
            return;
        };
        state.jobs.remove(&id.index);
        if let Some(run) = state.run.as_mut().filter(|_| seam == Seam::Anchor) {
            run.anchor = Some(Anchor {
                window: id.index,
                start,
                frames: frames.clone(),
                continuation,
            });
        }
        let composed = state.composer.finish(id.index, frames, samples, blend);
        drop(guard);
        self.changed.notify_all();
        if let Err(e) = composed {
            let cause = e.to_string();
            self.fail(epoch, reports, attempt, &cause, &failure(&cause));
        }
    }

    /// Stops the stream on a failed window (on-error=fail).
    pub(super) fn fail(
        &self,
        epoch: u64,
        reports: &WindowReporter,
        attempt: u32,
        cause: &str,
        error: &str,
    ) {
        if let Some(state) = self
            .state
            .lock()
            .unwrap()
            .as_mut()
            .filter(|s| s.epoch == epoch)
        {
            state.jobs.remove(&reports.window.index);
            state.failed = true;
        } else {
            return;
        }
        self.changed.notify_all();
        self.post(vec![
            reports.message(
                self.obj().upcast_ref(),
                WindowState::Failed,
                attempt,
                Some(cause),
            ),
            gst::message::Error::builder(gst::StreamError::Failed, error)
                .src(&*self.obj())
                .build(),
        ]);
    }

    /// Ends the current run: its last window is planned and submitted.
    pub(super) fn finish_run(&self, guard: Guard<'_>) -> Result<(), gst::FlowError> {
        let mut guard = guard;
        let state = stream_state(&mut guard)?;
        let last = state.run.as_mut().and_then(|run| run.planner.finish());
        if let Some(window) = last {
            let inputs = state.composer.plan(window);
            drop(self.submit(guard, window, inputs)?);
        }
        Ok(())
    }
}
