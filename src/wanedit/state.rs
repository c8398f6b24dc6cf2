//! What the element holds while it streams.

use std::collections::HashMap;
use std::sync::Arc;

use gst_video::VideoInfo;

use crate::backend::{Backend, Capabilities, Continuation, Size};
use crate::stream::blend::Samples;
use crate::stream::composer::Composer;
use crate::stream::mask::{FrameMask, StreamMask};
use crate::stream::planner::WindowPlanner;
use crate::stream::scaled::ScaledFrames;

/// The stream between two caps changes.
pub struct Run {
    pub info: VideoInfo,
    pub planner: WindowPlanner,
    /// The size windows are sent to the backend at.
    pub send_size: Size,
    /// Frames scaled to `send_size`, held for the next window that shares them.
    pub scaled: ScaledFrames,
    /// How the stream's format stores its samples, for blending.
    pub samples: Samples,
    /// With `seam=anchor`: what the last window delivered gave for the frames the next
    /// window shares with it.
    pub anchor: Option<Anchor>,
    /// What each frame of these caps is masked with (`None`: edited whole).
    pub mask: Option<FrameMask>,
}

/// The frames a window gave back (edited, or its originals where it passed through), in
/// the stream's format: the next window is sent with those it shares in place of its own
/// first frames.
pub struct Anchor {
    /// The window they come from.
    pub window: u64,
    /// The number of its first frame.
    pub start: u64,
    pub frames: Vec<gst::Buffer>,
    /// What the backend kept of that window to continue from.
    pub continuation: Option<Continuation>,
}

/// The window geometry, fixed from READY->PAUSED on (where it was checked against the
/// backend) until the element stops.
#[derive(Debug, Clone, Copy)]
pub struct Windowing {
    pub window: u32,
    pub overlap: u32,
}

impl Windowing {
    /// How far one window starts after the one before.
    pub fn stride(self) -> u64 {
        (self.window - self.overlap).into()
    }

    pub fn planner(self, origin: u64, first_index: u64) -> WindowPlanner {
        WindowPlanner::new(self.window, self.overlap, origin, first_index)
    }
}

pub struct State {
    pub backend: Arc<dyn Backend>,
    pub windowing: Windowing,
    pub capabilities: Capabilities,
    /// The `mask` property, read at READY->PAUSED, fitted to each caps in `run`.
    pub mask: Option<StreamMask>,
    pub run: Option<Run>,
    pub composer: Composer,
    /// Number of the next input frame, counted from 0 since the last flush.
    pub next_frame: u64,
    /// Jobs submitted and not yet delivered, by window index.
    pub jobs: HashMap<u64, tokio::task::AbortHandle>,
    /// Bumped on every flush, so that results of cancelled jobs are recognised and dropped.
    pub epoch: u64,
    pub flushing: bool,
    /// A window failed under on-error=fail: the stream stops.
    pub failed: bool,
    /// What downstream answered last; the chain function returns it.
    pub downstream: Result<gst::FlowSuccess, gst::FlowError>,
}

impl State {
    pub fn new(
        backend: Arc<dyn Backend>,
        capabilities: Capabilities,
        windowing: Windowing,
    ) -> Self {
        Self {
            backend,
            windowing,
            capabilities,
            mask: None,
            run: None,
            composer: Composer::default(),
            next_frame: 0,
            jobs: HashMap::new(),
            epoch: 0,
            flushing: false,
            failed: false,
            downstream: Ok(gst::FlowSuccess::Ok),
        }
    }

    /// Frames below this number are in no window still to be planned.
    pub fn settled_below(&self) -> u64 {
        self.run
            .as_ref()
            .map_or(u64::MAX, |run| run.planner.settled_below())
    }

    /// Cancels every job in flight (dropping a backend's future cancels its remote job).
    pub fn cancel_jobs(&mut self) {
        for (_, job) in self.jobs.drain() {
            job.abort();
        }
    }

    /// Forgets the stream (after a flush): nothing held, nothing in flight, counting
    /// restarts at frame 0 and window 0 with the same caps.
    pub fn restart(&mut self) {
        self.cancel_jobs();
        self.epoch += 1;
        self.composer = Composer::default();
        self.next_frame = 0;
        if let Some(run) = &mut self.run {
            run.planner = self.windowing.planner(0, 0);
            run.scaled = ScaledFrames::default();
            run.anchor = None;
        }
        self.failed = false;
        self.downstream = Ok(gst::FlowSuccess::Ok);
    }

    /// Why the chain function cannot take more data, if it cannot.
    pub fn flow(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.flushing {
            Err(gst::FlowError::Flushing)
        } else if self.failed {
            Err(gst::FlowError::Error)
        } else {
            self.downstream
        }
    }
}
