//! One window's trip through a backend: scale to the backend's geometry, edit, map the
//! clip back to the window's frames by time, scale back to the stream's format.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gst_video::VideoInfo;

use super::message::{WindowReporter, WindowState};
use super::settings::OnError;
use crate::backend::retry::backoff;
use crate::backend::{
    Backend, BackendError, Continuation, EditParams, EditRequest, EditedClip, InputFormat, Picture,
    Size, WindowAnchor, WindowFrames, WindowId, WindowMask,
};
use crate::stream::convert::{self, ConvertError, ToBackend, ToStream};
use crate::stream::mask::{FrameMask, MaskCompositor, MaskError};
use crate::stream::scaled::ScaledFrame;
use crate::stream::timing::ByTime;

/// Wan's native rate: a window goes to the model as consecutive frames at this rate,
/// whatever the stream's rate (81 frames = 5.06 s).
pub const SEND_RATE: gst::Fraction = gst::Fraction::from_integer(16);

/// The first resubmission of a failed window waits about this long, each next one twice as
/// long: what failed has already been retried request by request.
const WINDOW_RETRY_BASE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("the edited clip has no frames")]
    EmptyClip,
    #[error("no result within job-timeout ({0} s, queueing included)")]
    Timeout(u64),
    #[error("a worker thread failed: {0}")]
    Worker(String),
    #[error("the backend panicked: {0}")]
    Panic(String),
    #[error(transparent)]
    Mask(#[from] MaskError),
}

impl JobError {
    /// Whether submitting the window again may succeed.
    fn may_pass(&self) -> bool {
        match self {
            JobError::Backend(e) => e.may_pass(),
            JobError::Timeout(_) => true,
            _ => false,
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

pub struct Job {
    pub id: WindowId,
    /// The window's input frames, as references to the stream's buffers.
    pub inputs: Vec<gst::Buffer>,
    pub info: VideoInfo,
    pub send_size: Size,
    /// The form the backend takes frames in.
    pub send_form: InputFormat,
    /// The window's frames at `send_size`, shared with the windows that overlap it.
    pub scaled: Vec<ScaledFrame>,
    /// With `seam=anchor`: what the window before gave back for the first frames of this
    /// one (in the stream's format), sent in their place, and what the backend is told of
    /// the window before.
    pub anchor: Vec<gst::Buffer>,
    pub continues: Option<WindowAnchor>,
    pub converter_threads: u32,
    /// The length the backend accepts; the last frame is repeated up to it.
    pub padded_len: usize,
    pub params: EditParams,
    pub on_error: OnError,
    /// How long each attempt may take.
    pub timeout: Duration,
    /// Further attempts after a failure that may pass.
    pub retries: u32,
    pub backend: Arc<dyn Backend>,
    pub reports: WindowReporter,
    /// With `mask` set: what each frame is masked with.
    pub mask: Option<FrameMask>,
}

pub enum JobOutcome {
    /// One edited frame per input frame, in the stream's format (default layout), and
    /// what the backend kept for the next window to continue from.
    Edited {
        frames: Vec<gst::Buffer>,
        continuation: Option<Continuation>,
    },
    /// A window that failed under `on-error=passthrough`: its original frames (default
    /// layout), after the first `edited` ones where the clip broke off while it was being
    /// taken back (those are the edit it held: their originals were let go as they came).
    PassedThrough {
        frames: Vec<gst::Buffer>,
        edited: usize,
        cause: JobError,
    },
    Failed(JobError),
}

/// A clip that broke off while it was being taken back: the edits made, the original
/// frames they had not replaced yet, and why.
struct BrokenOff {
    edited: Vec<gst::Buffer>,
    originals: Vec<gst::Buffer>,
    cause: JobError,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::Worker(e.to_string()))?
}

impl Job {
    /// Edits the window, submitting it again (after a backoff) while it fails for a
    /// reason that may pass and retries are left, then takes the clip back. Returns the
    /// last attempt's number and the outcome.
    pub async fn run(mut self) -> (u32, JobOutcome) {
        // Only the first attempt takes the frames shared with the windows around: a frame
        // is held scaled only as long as a window still to take it holds it, and a retry
        // scales this window's frames again rather than have them held meanwhile.
        let mut scaled = std::mem::take(&mut self.scaled);
        let mut attempt = 1;
        let clip = loop {
            match self.attempt(attempt, std::mem::take(&mut scaled)).await {
                Err(cause) if cause.may_pass() && attempt <= self.retries => {
                    self.reports
                        .post(WindowState::Retrying, attempt, Some(&cause.to_string()));
                    tokio::time::sleep(backoff(WINDOW_RETRY_BASE, attempt)).await;
                    attempt += 1;
                }
                clip => break clip,
            }
        };
        let outcome = match clip {
            Ok(mut clip) => {
                let continuation = clip.take_continuation();
                match self.take_back(clip).await {
                    Ok(frames) => JobOutcome::Edited {
                        frames,
                        continuation,
                    },
                    Err(broken) => self.give_up(broken).await,
                }
            }
            Err(cause) => {
                let originals = std::mem::take(&mut self.inputs);
                self.give_up(Box::new(BrokenOff {
                    edited: Vec::new(),
                    originals,
                    cause,
                }))
                .await
            }
        };
        (attempt, outcome)
    }

    /// One submission of the window, within `timeout`: the edited clip, not yet taken.
    async fn attempt(
        &self,
        attempt: u32,
        scaled: Vec<ScaledFrame>,
    ) -> Result<EditedClip, JobError> {
        // A panicking backend must not leave its window waiting forever.
        let edit = AssertUnwindSafe(self.edit(attempt, scaled)).catch_unwind();
        match tokio::time::timeout(self.timeout, edit).await {
            Ok(Ok(edited)) => edited,
            Ok(Err(panic)) => Err(JobError::Panic(panic_text(&*panic))),
            Err(_) => Err(JobError::Timeout(self.timeout.as_secs())),
        }
    }

    /// Sends the window: its frames are scaled to the backend's geometry as the backend
    /// takes them, so that the window is never held whole at the model's size.
    async fn edit(&self, attempt: u32, scaled: Vec<ScaledFrame>) -> Result<EditedClip, JobError> {
        let request = EditRequest {
            window: self.id,
            frames: self.frames(scaled),
            frame_rate: SEND_RATE,
            params: self.params.clone(),
            anchor: self.continues.clone(),
            mask: self.window_mask(),
            reporter: self.reports.job_reporter(attempt),
        };
        Ok(self.backend.edit(request).await?)
    }

    /// Maps the clip's frames to the window's frames and scales them to the stream's
    /// format as they are decoded. Each input frame is let go once its edit is made: a
    /// window is not held twice, which with several windows in flight would be one window
    /// more of memory. The clip is here, so nothing of this is sent again: a clip that
    /// breaks off (it is not retried) leaves the edits made and the originals not yet
    /// replaced.
    async fn take_back(&mut self, clip: EditedClip) -> Result<Vec<gst::Buffer>, Box<BrokenOff>> {
        let (count, out_info, threads) =
            (self.id.frames, self.info.clone(), self.converter_threads);
        let mask = self.mask.clone();
        let mut originals = std::mem::take(&mut self.inputs).into_iter();
        let taken = tokio::task::spawn_blocking(move || {
            let mut back = ToStream::new(&out_info, threads);
            let mut edited = Vec::with_capacity(count);
            let mut by_time = ByTime::new(count, SEND_RATE);
            let mut masked = None;
            let mut map = |image: &Picture| {
                let mut frame = back.convert(image)?;
                // Composed here, where the frame's input is at hand for the last time.
                if let (Some(mask), Some(original)) = (&mask, originals.next()) {
                    let compositor = match &mut masked {
                        Some(compositor) => compositor,
                        None => masked.insert(MaskCompositor::new(&out_info, mask.clone())?),
                    };
                    compositor.composite(frame.make_mut(), &original)?;
                }
                edited.push(frame);
                Ok::<_, JobError>(())
            };
            let mapped = || {
                for frame in clip.into_frames() {
                    by_time.push(frame?, &mut map)?;
                }
                if !by_time.finish(&mut map)? {
                    return Err(JobError::EmptyClip);
                }
                Ok(())
            };
            match mapped() {
                Ok(()) => Ok(edited),
                Err(cause) => Err(Box::new(BrokenOff {
                    edited,
                    originals: originals.collect(),
                    cause,
                })),
            }
        })
        .await;
        taken.unwrap_or_else(|e| {
            Err(Box::new(BrokenOff {
                edited: Vec::new(),
                originals: Vec::new(),
                cause: JobError::Worker(e.to_string()),
            }))
        })
    }

    /// What a window that failed gives: nothing under `on-error=fail`, else its frames as
    /// they are (the edits made, then the originals).
    async fn give_up(&self, broken: Box<BrokenOff>) -> JobOutcome {
        let BrokenOff {
            mut edited,
            originals,
            cause,
        } = *broken;
        if self.on_error == OnError::Fail || edited.len() + originals.len() != self.id.frames {
            return JobOutcome::Failed(cause);
        }
        let info = self.info.clone();
        match blocking(move || originals_in_default_layout(&originals, &info)).await {
            Ok(originals) => {
                let made = edited.len();
                edited.extend(originals);
                JobOutcome::PassedThrough {
                    frames: edited,
                    edited: made,
                    cause,
                }
            }
            Err(e) => JobOutcome::Failed(e),
        }
    }

    /// The window's mask at `send_size`, frame by frame as the request's frames (the
    /// last repeated up to `padded_len`), each made when the backend takes it.
    fn window_mask(&self) -> Option<WindowMask> {
        let len = self.padded_len.max(self.inputs.len());
        let (info, size) = (self.info.clone(), self.send_size);
        let mask = match self.mask.as_ref()? {
            FrameMask::Fixed { sent, .. } => {
                return Some(WindowMask::uniform(size, len, sent.clone()));
            }
            alpha => alpha.clone(),
        };
        // The inputs' own alpha, also where anchor frames stand in for their pixels.
        let mut inputs = self.inputs.clone().into_iter();
        let mut reader = None;
        let mut last = None;
        Some(WindowMask::new(size, len, move |_| {
            let Some(input) = inputs.next() else {
                return last
                    .clone()
                    .ok_or_else(|| BackendError::Frames("a window without frames".into()));
            };
            let made = match &mut reader {
                Some(reader) => Ok(reader),
                None => MaskCompositor::new(&info, mask.clone()).map(|r| reader.insert(r)),
            }
            .and_then(|reader| reader.sent_mask(&input, size))
            .map_err(|e| BackendError::Frames(e.to_string()))?;
            if inputs.len() == 0 {
                last = Some(made.clone());
            }
            Ok(made)
        }))
    }

    /// The window's frames at `send_size`, each scaled when the backend takes it (or
    /// taken from `scaled` where a window sharing it scaled it already), the last repeated
    /// up to `padded_len`.
    fn frames(&self, scaled: Vec<ScaledFrame>) -> WindowFrames {
        let (info, size, form, threads) = (
            self.info.clone(),
            self.send_size,
            self.send_form,
            self.converter_threads,
        );
        let mut inputs = self
            .anchor
            .iter()
            .chain(self.inputs.iter().skip(self.anchor.len()))
            .cloned()
            .collect::<Vec<_>>()
            .into_iter();
        let mut scaled = scaled.into_iter();
        let real = self.inputs.len();
        let pads = self.padded_len > real;
        let mut to_backend = None;
        let mut last = None;
        WindowFrames::new(size, self.padded_len.max(real), move |i| {
            if i >= real {
                return last
                    .clone()
                    .ok_or_else(|| BackendError::Frames("a window without frames".into()));
            }
            let input = inputs.next().expect("one input per real frame");
            let mut scale = || {
                let to_backend = match &mut to_backend {
                    Some(to_backend) => to_backend,
                    None => to_backend.insert(ToBackend::new(&info, size, form, threads)?),
                };
                to_backend.convert(&input)
            };
            // Each shared frame is let go as soon as it is taken.
            let frame = match scaled.next() {
                Some(shared) => shared.get_or_scale(scale),
                None => scale(),
            }
            .map_err(|e| BackendError::Frames(e.to_string()))?;
            if pads && i + 1 == real {
                last = Some(frame.clone());
            }
            Ok(frame)
        })
    }
}

fn originals_in_default_layout(
    inputs: &[gst::Buffer],
    info: &VideoInfo,
) -> Result<Vec<gst::Buffer>, JobError> {
    Ok(inputs
        .iter()
        .map(|b| convert::to_default_layout(b, info))
        .collect::<Result<_, _>>()?)
}
