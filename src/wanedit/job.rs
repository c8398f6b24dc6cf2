//! One window's trip through a backend: scale to the backend's geometry, edit, map the
//! clip back to the window's frames by time, scale back to the stream's format.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gst_video::VideoInfo;

use super::settings::OnError;
use crate::backend::{
    Backend, BackendError, EditParams, EditRequest, JobReporter, RgbFrame, Size, WindowId,
};
use crate::stream::convert::{self, ConvertError, FromRgb, ToRgb};
use crate::stream::timing::frames_by_time;

/// Wan's native rate: a window goes to the model as consecutive frames at this rate,
/// whatever the stream's rate (81 frames = 5.06 s).
pub const SEND_RATE: gst::Fraction = gst::Fraction::from_integer(16);

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
    /// The length the backend accepts; the last frame is repeated up to it.
    pub padded_len: usize,
    pub params: EditParams,
    pub on_error: OnError,
    pub timeout: Duration,
    pub deadline: tokio::time::Instant,
    pub backend: Arc<dyn Backend>,
    pub reporter: JobReporter,
}

pub enum JobOutcome {
    /// One edited frame per input frame, in the stream's format (default layout).
    Edited(Vec<gst::Buffer>),
    /// The original frames (default layout) of a window that failed under
    /// `on-error=passthrough`.
    PassedThrough {
        frames: Vec<gst::Buffer>,
        cause: JobError,
    },
    Failed(JobError),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::Worker(e.to_string()))?
}

impl Job {
    pub async fn run(self) -> JobOutcome {
        let inputs = self.inputs.clone();
        let info = self.info.clone();
        let on_error = self.on_error;
        let timeout = self.timeout;
        let deadline = self.deadline;
        // A panicking backend must not leave its window waiting forever.
        let edit = AssertUnwindSafe(self.edit()).catch_unwind();
        let edited = match tokio::time::timeout_at(deadline, edit).await {
            Ok(Ok(edited)) => edited,
            Ok(Err(panic)) => Err(JobError::Panic(panic_text(&*panic))),
            Err(_) => Err(JobError::Timeout(timeout.as_secs())),
        };
        match (edited, on_error) {
            (Ok(frames), _) => JobOutcome::Edited(frames),
            (Err(cause), OnError::Fail) => JobOutcome::Failed(cause),
            (Err(cause), OnError::Passthrough) => {
                match blocking(move || originals(&inputs, &info)).await {
                    Ok(frames) => JobOutcome::PassedThrough { frames, cause },
                    Err(e) => JobOutcome::Failed(e),
                }
            }
        }
    }

    async fn edit(self) -> Result<Vec<gst::Buffer>, JobError> {
        let Job {
            id,
            inputs,
            info,
            send_size,
            padded_len,
            params,
            backend,
            reporter,
            ..
        } = self;
        let out_info = info.clone();
        let frames = blocking(move || to_backend(&inputs, &info, send_size, padded_len)).await?;
        let request = EditRequest {
            window: id,
            frames,
            frame_rate: SEND_RATE,
            params,
            reporter,
        };
        let clip = backend.edit(request).await?;
        blocking(move || {
            let images = frames_by_time(&clip, id.frames, SEND_RATE).ok_or(JobError::EmptyClip)?;
            let mut back = FromRgb::new(&out_info);
            Ok(images
                .into_iter()
                .map(|image| back.convert(image))
                .collect::<Result<_, _>>()?)
        })
        .await
    }
}

fn to_backend(
    inputs: &[gst::Buffer],
    info: &VideoInfo,
    size: Size,
    padded_len: usize,
) -> Result<Vec<RgbFrame>, JobError> {
    let to_rgb = ToRgb::new(info, size)?;
    let mut frames = inputs
        .iter()
        .map(|b| to_rgb.convert(b))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(last) = frames.last().cloned() {
        frames.resize(padded_len.max(frames.len()), last);
    }
    Ok(frames)
}

fn originals(inputs: &[gst::Buffer], info: &VideoInfo) -> Result<Vec<gst::Buffer>, JobError> {
    Ok(inputs
        .iter()
        .map(|b| convert::to_default_layout(b, info))
        .collect::<Result<_, _>>()?)
}
