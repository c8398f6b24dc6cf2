//! The `wanedit-window` element messages that report each window's life.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;

use crate::backend::{JobReporter, JobUpdate, WindowId};

/// The name of the messages' structure.
pub const WINDOW_MESSAGE: &str = "wanedit-window";

/// Where a window stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    Queued,
    Submitted,
    Running,
    /// The attempt failed for a reason that may pass; the window is submitted again.
    Retrying,
    Done,
    Failed,
}

impl WindowState {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowState::Queued => "queued",
            WindowState::Submitted => "submitted",
            WindowState::Running => "running",
            WindowState::Retrying => "retrying",
            WindowState::Done => "done",
            WindowState::Failed => "failed",
        }
    }
}

/// One report about a window.
pub struct WindowReport<'a> {
    pub window: WindowId,
    pub state: WindowState,
    pub backend: &'a str,
    /// The submission the report is about, from 1.
    pub attempt: u32,
    pub job_id: Option<&'a str>,
    pub progress: Option<f64>,
    /// Why the attempt failed (`retrying`, `failed`).
    pub error: Option<&'a str>,
    pub since: Instant,
}

impl WindowReport<'_> {
    /// Fields: `index` (u64), `first-pts` (u64 ns, GST_CLOCK_TIME_NONE when unknown),
    /// `frames` (u32), `state` (string), `backend` (string), `attempt` (u32, from 1),
    /// `job-id` (string, empty before the backend names its job), `progress` (f64 in
    /// [0, 1], -1 when unknown), `error` (string, empty unless the attempt failed),
    /// `elapsed` (f64 seconds since the window was queued).
    pub fn structure(&self) -> gst::Structure {
        gst::Structure::builder(WINDOW_MESSAGE)
            .field("index", self.window.index)
            .field(
                "first-pts",
                self.window
                    .first_pts
                    .map_or(u64::MAX, gst::ClockTime::nseconds),
            )
            .field("frames", self.window.frames as u32)
            .field("state", self.state.as_str())
            .field("backend", self.backend)
            .field("attempt", self.attempt)
            .field("job-id", self.job_id.unwrap_or(""))
            .field("progress", self.progress.unwrap_or(-1.0))
            .field("error", self.error.unwrap_or(""))
            .field("elapsed", self.since.elapsed().as_secs_f64())
            .build()
    }

    pub fn message(&self, src: &impl IsA<gst::Object>) -> gst::Message {
        gst::message::Element::builder(self.structure())
            .src(src)
            .build()
    }
}

/// Makes and posts the reports of one window, for every attempt at it.
#[derive(Clone)]
pub struct WindowReporter {
    element: glib::WeakRef<gst::Element>,
    pub window: WindowId,
    pub backend: Arc<str>,
    since: Instant,
    /// The job id the backend gave the current attempt.
    job_id: Arc<Mutex<Option<String>>>,
}

impl WindowReporter {
    /// Reports of `window`, whose time counts from now.
    pub fn new(element: &gst::Element, window: WindowId, backend: &str) -> Self {
        Self {
            element: element.downgrade(),
            window,
            backend: backend.into(),
            since: Instant::now(),
            job_id: Arc::default(),
        }
    }

    /// The report of `state` from `element`, with the current attempt's job id.
    pub fn message(
        &self,
        element: &gst::Element,
        state: WindowState,
        attempt: u32,
        error: Option<&str>,
    ) -> gst::Message {
        self.report(element, state, attempt, None, error)
    }

    /// Posts `message(state, attempt, error)`, unless the element is gone.
    pub fn post(&self, state: WindowState, attempt: u32, error: Option<&str>) {
        if let Some(element) = self.element.upgrade() {
            let _ = element.post_message(self.message(&element, state, attempt, error));
        }
    }

    /// Where the backend reports on attempt `attempt`: each update becomes a message.
    pub fn job_reporter(&self, attempt: u32) -> JobReporter {
        *self.job_id.lock().unwrap() = None;
        let this = self.clone();
        JobReporter::new(move |update| {
            let Some(element) = this.element.upgrade() else {
                return;
            };
            let (state, progress) = match update {
                JobUpdate::Submitted { job_id } => {
                    *this.job_id.lock().unwrap() = Some(job_id);
                    (WindowState::Submitted, None)
                }
                JobUpdate::Running { progress } => (WindowState::Running, progress),
            };
            let _ = element.post_message(this.report(&element, state, attempt, progress, None));
        })
    }

    fn report(
        &self,
        element: &gst::Element,
        state: WindowState,
        attempt: u32,
        progress: Option<f64>,
        error: Option<&str>,
    ) -> gst::Message {
        let job_id = self.job_id.lock().unwrap();
        let report = WindowReport {
            window: self.window,
            state,
            backend: &self.backend,
            attempt,
            job_id: job_id.as_deref(),
            progress,
            error,
            since: self.since,
        };
        report.message(element)
    }
}
