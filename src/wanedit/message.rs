//! The `wanedit-window` element messages that report each window's life.

use std::time::Instant;

use crate::backend::WindowId;

/// The name of the messages' structure.
pub const WINDOW_MESSAGE: &str = "wanedit-window";

/// Where a window stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    Queued,
    Submitted,
    Running,
    Done,
    Failed,
}

impl WindowState {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowState::Queued => "queued",
            WindowState::Submitted => "submitted",
            WindowState::Running => "running",
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
    pub job_id: Option<&'a str>,
    pub progress: Option<f64>,
    pub since: Instant,
}

impl WindowReport<'_> {
    /// Fields: `index` (u64), `first-pts` (u64 ns, GST_CLOCK_TIME_NONE when unknown),
    /// `frames` (u32), `state` (string), `backend` (string), `job-id` (string, empty before
    /// the backend names its job), `progress` (f64 in [0, 1], -1 when unknown), `elapsed`
    /// (f64 seconds since the window was queued).
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
            .field("job-id", self.job_id.unwrap_or(""))
            .field("progress", self.progress.unwrap_or(-1.0))
            .field("elapsed", self.since.elapsed().as_secs_f64())
            .build()
    }

    pub fn message(&self, src: &impl gst::prelude::IsA<gst::Object>) -> gst::Message {
        gst::message::Element::builder(self.structure())
            .src(src)
            .build()
    }
}
