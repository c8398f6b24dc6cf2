//! Shared helpers of the integration tests: deterministic backends, stream builders and
//! copies of fixture directories.
#![allow(dead_code)] // each test binary uses its own part of the helpers

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use gst::prelude::*;
use gstwanedit::backend::{
    Backend, BackendError, Capabilities, EditRequest, EditedClip, FrameCounts, InputFormat,
    Resolution, RgbFrame, Size,
};

pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gst::init().unwrap();
        gstwanedit::plugin_register_static().unwrap();
    });
}

/// What an editor saw of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub index: u64,
    pub frames: usize,
    pub real_frames: usize,
    pub size: Size,
    pub prompt: String,
}

/// Counts of jobs, to find leaks and cancellations.
#[derive(Debug, Default)]
pub struct Counters {
    pub started: AtomicUsize,
    pub finished: AtomicUsize,
    pub dropped: AtomicUsize,
}

/// Edits a request's frames (taken from the request before the call).
type EditFn =
    dyn Fn(&EditRequest, Vec<RgbFrame>) -> Result<Vec<RgbFrame>, BackendError> + Send + Sync;

/// As many frames as `frames`, of their size, all of one colour.
pub fn tinted(frames: &[RgbFrame], rgb: [u8; 3]) -> Vec<RgbFrame> {
    let f = &frames[0];
    vec![RgbFrame::filled(f.width, f.height, rgb); frames.len()]
}

/// A backend that edits with a closure, after an optional delay.
#[derive(Clone)]
pub struct Editor {
    pub sizes: Vec<Size>,
    pub frame_counts: FrameCounts,
    pub max_concurrency: usize,
    pub delay: Duration,
    /// The rate the clip comes back at (default: the request's).
    pub clip_rate: Option<gst::Fraction>,
    pub edit: Arc<EditFn>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub counters: Arc<Counters>,
}

impl Editor {
    pub fn new(
        edit: impl Fn(&EditRequest, Vec<RgbFrame>) -> Result<Vec<RgbFrame>, BackendError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            sizes: vec![],
            frame_counts: FrameCounts::WAN,
            max_concurrency: 64,
            delay: Duration::ZERO,
            clip_rate: None,
            edit: Arc::new(edit),
            seen: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Paints every frame of window k the flat colour `colour(k)`.
    pub fn tint(colour: fn(u64) -> [u8; 3]) -> Self {
        Self::new(move |r, frames| Ok(tinted(&frames, colour(r.window.index))))
    }

    /// Gives the frames back untouched.
    pub fn identity() -> Self {
        Self::new(|_, frames| Ok(frames))
    }

    pub fn failing(message: &'static str) -> Self {
        Self::new(move |_, _| {
            Err(BackendError::JobFailed {
                job_id: "job-1".into(),
                message: message.into(),
            })
        })
    }

    pub fn with_sizes(mut self, sizes: Vec<Size>) -> Self {
        self.sizes = sizes;
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn seen(&self) -> Vec<Seen> {
        let mut seen = self.seen.lock().unwrap().clone();
        seen.sort_by_key(|s| s.index);
        seen
    }
}

struct DropCount(Arc<Counters>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Backend for Editor {
    fn name(&self) -> &str {
        "test-editor"
    }

    fn capabilities(&self, _resolution: Resolution) -> Capabilities {
        Capabilities {
            sizes: self.sizes.clone(),
            frame_counts: self.frame_counts,
            input: InputFormat::Rgb,
            reference_images: 0,
            first_frame: false,
            max_concurrency: self.max_concurrency,
        }
    }

    fn edit(
        &self,
        mut request: EditRequest,
    ) -> BoxFuture<'static, Result<EditedClip, BackendError>> {
        let this = self.clone();
        this.counters.started.fetch_add(1, Ordering::SeqCst);
        let guard = DropCount(this.counters.clone());
        async move {
            let _guard = guard;
            let frames = request.frames.rgb().collect::<Result<Vec<_>, _>>()?;
            this.seen.lock().unwrap().push(Seen {
                index: request.window.index,
                frames: frames.len(),
                real_frames: request.window.frames,
                size: request.frames.size(),
                prompt: request.params.prompt.clone(),
            });
            if !this.delay.is_zero() {
                tokio::time::sleep(this.delay).await;
            }
            let images = (this.edit)(&request, frames)?;
            this.counters.finished.fetch_add(1, Ordering::SeqCst);
            Ok(EditedClip::at_rate(
                images,
                this.clip_rate.unwrap_or(request.frame_rate),
            ))
        }
        .boxed()
    }
}

/// A `wanedit` element with the given backend and window settings.
pub fn element(backend: Editor, window: u32, overlap: u32) -> gstwanedit::WanEdit {
    init();
    let e = gst::ElementFactory::make("wanedit")
        .property("window-frames", window)
        .property("overlap-frames", overlap)
        .build()
        .unwrap()
        .downcast::<gstwanedit::WanEdit>()
        .unwrap();
    e.set_backend(backend);
    e
}

pub fn video_caps(format: &str, width: i32, height: i32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", width)
        .field("height", height)
        .field("framerate", gst::Fraction::new(25, 1))
        .build()
}

pub const FRAME_NS: u64 = 40_000_000;

/// A frame of `info` filled with `value`, stamped as frame `n` of a 25 fps stream.
pub fn frame(info: &gst_video::VideoInfo, n: u64, value: u8) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(vec![value; info.size()]);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(n * FRAME_NS));
        b.set_dts(gst::ClockTime::from_nseconds(n * FRAME_NS));
        b.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
        b.set_offset(n);
        b.set_offset_end(n + 1);
    }
    b
}

/// A playing harness around `e` whose source sends `caps`, and the caps' video info.
pub fn harness(
    e: &gstwanedit::WanEdit,
    caps: gst::Caps,
) -> (gst_check::Harness, gst_video::VideoInfo) {
    let mut h = gst_check::Harness::with_element(e, Some("sink"), Some("src"));
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    h.set_src_caps(caps);
    h.play();
    (h, info)
}

/// Pulls buffers until EOS; fails on a stall (the harness waits at most 60 s a pull).
pub fn pull_all(h: &mut gst_check::Harness) -> Vec<gst::Buffer> {
    let mut out = vec![];
    while let Ok(Some(b)) = h.pull_until_eos() {
        out.push(b);
    }
    out
}

/// Copies the directory `from` to `to`, recursively (to damage or rearrange a fixture).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The error posted on `bus`.
pub fn error_of(bus: &gst::Bus) -> String {
    std::iter::from_fn(|| bus.pop())
        .find_map(|m| match m.view() {
            gst::MessageView::Error(err) => Some(err.error().to_string()),
            _ => None,
        })
        .expect("an error on the bus")
}
