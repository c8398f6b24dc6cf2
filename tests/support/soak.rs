//! The soak: a long generated stream through `wanedit` and a loopback provider that
//! injects faults, with the frames, timestamps, windows and memory checked.
//!
//! Shared by `tests/soak.rs` (two minutes of video, in CI) and `examples/soak.rs` (an hour,
//! `scripts/soak.sh`). The crate that includes this file must also include
//! `tests/support/hosted/mod.rs` as `mod hosted`.
//!
//! The provider speaks Replicate's protocol. It serves a fault to about `fault_rate` of
//! all requests, from a seeded generator: each transient status (408, 425, 429, 500, 502,
//! 503, 504), a connection reset, a stall that outlasts the request timeout, a truncated
//! body; a create only ever gets 429 or 503, since anything else would leave open whether
//! a job started. Every `fail_every`-th job fails as a GPU out of memory does. Jobs take a
//! random time in `job_times`, and all return the same canned clip: a known picture, so
//! that an edited frame is told from a passed-through one, and the server's own CPU stays
//! out of the run.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstwanedit::backend::hosted::{self, Limits, Pacing, media};
use gstwanedit::backend::{BackendConfig, BackendKind, EditParams, RgbFrame};

use crate::hosted::server::KEY;
use crate::hosted::{Kind, Mock};

/// 480p30: the input the issue asks for (scaled to the 832x480 bucket for the model).
pub const WIDTH: u32 = 848;
pub const HEIGHT: u32 = 480;
pub const RATE: u64 = 30;

/// What every job answers: a clip of this colour (RGB), 81 frames at the model's size.
const ANSWER: [u8; 3] = [230, 200, 40];
/// The most an output pixel may differ from [`ANSWER`]'s luma and still show the edit: two
/// H.264 passes and two scalings. Inputs stay below luma 125, far from it.
const ANSWER_TOLERANCE: u8 = 16;
/// The memory the rule grants beyond the frames the element holds: GStreamer, the async
/// runtime, the HTTP clients, the loopback server, the allocators' slack.
const RSS_BASE: u64 = 150 << 20;
/// How far the median RSS of the run's last quarter may exceed its third quarter's before
/// it counts as growth. Medians, not peaks: RSS swings by whole windows as jobs start and
/// end, while a leak lifts every sample.
const GROWTH_SLACK: u64 = 16 << 20;
/// Uploads and jobs the server keeps: twice `JOB_TIMEOUT`, so that no attempt still
/// running can ask for what was forgotten.
const SERVER_MEMORY: Duration = Duration::from_secs(2 * JOB_TIMEOUT);
/// How long one attempt at a window may take (queueing included) before it counts as
/// failed: a job here takes at most 3 s, and even a request that stalls on all of its 6
/// attempts gives up within 35 s; an attempt that takes longer has hung.
const JOB_TIMEOUT: u64 = 60;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Frames generated (108,000: an hour at 30 fps).
    pub frames: u64,
    pub seed: u64,
    /// The share of requests that get a fault.
    pub fault_rate: f64,
    /// Every n-th job fails (0: none).
    pub fail_every: usize,
    /// Each job takes a time drawn evenly from this range.
    pub job_times: (Duration, Duration),
    pub max_in_flight: u32,
    /// The longest wait for an answer before a request counts as stalled.
    pub request_timeout: Duration,
    /// How long a stalled request hangs before the server closes it.
    pub stall: Duration,
    /// How often RSS is sampled.
    pub rss_every: Duration,
    /// No output frame for this long is a hang: the run stops and fails.
    pub stuck_after: Duration,
    /// Prints a line with each RSS sample.
    pub progress: bool,
}

impl Default for Config {
    /// The soak: an hour of 480p30, 1 request in 20 faulty, jobs of 0.5 to 3 s,
    /// 4 windows in flight.
    fn default() -> Self {
        Self {
            frames: 108_000,
            seed: 10,
            fault_rate: 0.05,
            fail_every: 20,
            job_times: (Duration::from_millis(500), Duration::from_secs(3)),
            max_in_flight: 4,
            request_timeout: Duration::from_secs(3),
            stall: Duration::from_secs(5),
            rss_every: Duration::from_secs(10),
            stuck_after: Duration::from_secs(300),
            progress: false,
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub frames_in: u64,
    pub frames_out: u64,
    /// Output frames whose PTS is their input's.
    pub pts_equal: u64,
    /// The first output frame whose PTS is not its input's: (frame, PTS).
    pub first_wrong_pts: Option<(u64, Option<gst::ClockTime>)>,
    /// Output frames that show the provider's answer.
    pub frames_edited: u64,
    pub windows_done: u64,
    pub windows_failed: u64,
    /// Windows submitted more than once.
    pub windows_retried: u64,
    /// Submissions after the first, over all windows.
    pub resubmissions: u64,
    pub most_attempts: u32,
    /// Why windows were submitted again, by kind.
    pub retry_causes: BTreeMap<String, u64>,
    pub warnings: u64,
    /// The faults the server served, by kind, and the requests they were drawn for.
    pub faults: BTreeMap<String, u64>,
    pub requests: u64,
    pub jobs_made_to_fail: u64,
    /// RSS samples: time since the start, bytes.
    pub rss: Vec<(Duration, u64)>,
    /// What the rule allows at most.
    pub rss_bound: u64,
    pub window_bytes: u64,
    pub wall: Duration,
    /// An error on the bus, or a hang.
    pub error: Option<String>,
}

impl Report {
    pub fn peak_rss(&self) -> u64 {
        self.rss.iter().map(|(_, b)| *b).max().unwrap_or(0)
    }

    pub fn final_rss(&self) -> u64 {
        self.rss.last().map_or(0, |(_, b)| *b)
    }

    /// The median RSS of the third and of the last quarter of the run: the last half,
    /// halved.
    pub fn last_half_medians(&self) -> (u64, u64) {
        let median = |from: f64, to: f64| {
            let (from, to) = (self.wall.mul_f64(from), self.wall.mul_f64(to));
            let mut quarter: Vec<u64> = self
                .rss
                .iter()
                .filter(|(at, _)| (from..=to).contains(at))
                .map(|(_, b)| *b)
                .collect();
            quarter.sort_unstable();
            quarter.get(quarter.len() / 2).copied().unwrap_or(0)
        };
        (median(0.5, 0.75), median(0.75, 1.0))
    }

    /// Faults served, all kinds together.
    pub fn faults_served(&self) -> u64 {
        self.faults.values().sum()
    }

    /// The rules that the run broke, each said in a sentence; empty when it passed.
    pub fn broken_rules(&self) -> Vec<String> {
        let mut broken = Vec::new();
        if let Some(error) = &self.error {
            broken.push(format!("the run stopped: {error}"));
        }
        if self.frames_out != self.frames_in {
            broken.push(format!(
                "{} frames in, {} out",
                self.frames_in, self.frames_out
            ));
        }
        if self.pts_equal != self.frames_out {
            broken.push(format!(
                "{} output frames carry another PTS than their input, the first: {:?}",
                self.frames_out - self.pts_equal,
                self.first_wrong_pts
            ));
        }
        if self.peak_rss() > self.rss_bound {
            broken.push(format!(
                "peak RSS {} over the bound {}",
                mib(self.peak_rss()),
                mib(self.rss_bound)
            ));
        }
        let (third, fourth) = self.last_half_medians();
        if fourth > third + GROWTH_SLACK {
            broken.push(format!(
                "RSS grew in the last half: median {} in the last quarter, {} in the third",
                mib(fourth),
                mib(third)
            ));
        }
        broken
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.wall.as_secs_f64();
        let (third, fourth) = self.last_half_medians();
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let causes: Vec<String> = self
            .retry_causes
            .iter()
            .map(|(cause, n)| format!("{cause} {n}"))
            .collect();
        let rows = [
            ("frames in", self.frames_in.to_string()),
            ("frames out", self.frames_out.to_string()),
            (
                "PTS equal to the input's",
                format!("{} of {}", self.pts_equal, self.frames_out),
            ),
            (
                "frames showing the edit",
                format!("{} of {}", self.frames_edited, self.frames_out),
            ),
            (
                "windows",
                format!("{} done, {} failed", self.windows_done, self.windows_failed),
            ),
            (
                "windows retried",
                format!(
                    "{} ({} resubmissions, at most {} attempts; {})",
                    self.windows_retried,
                    self.resubmissions,
                    self.most_attempts,
                    causes.join(", ")
                ),
            ),
            (
                "faults injected",
                format!(
                    "{} in {} requests ({:.1} %): {}",
                    self.faults_served(),
                    self.requests,
                    100.0 * self.faults_served() as f64 / self.requests.max(1) as f64,
                    faults.join(", ")
                ),
            ),
            ("jobs made to fail", self.jobs_made_to_fail.to_string()),
            ("warnings", self.warnings.to_string()),
            (
                "RSS at the start / peak / final",
                format!(
                    "{} / {} / {}",
                    mib(self.rss.first().map_or(0, |(_, b)| *b)),
                    mib(self.peak_rss()),
                    mib(self.final_rss())
                ),
            ),
            (
                "RSS bound",
                format!(
                    "{} ({} windows of {} + {})",
                    mib(self.rss_bound),
                    (self.rss_bound - RSS_BASE) / self.window_bytes.max(1),
                    mib(self.window_bytes),
                    mib(RSS_BASE)
                ),
            ),
            (
                "RSS median, third / last quarter",
                format!("{} / {}", mib(third), mib(fourth)),
            ),
            ("RSS samples", self.rss.len().to_string()),
            (
                "wall time",
                format!(
                    "{secs:.0} s ({:.1} frames/s)",
                    self.frames_out as f64 / secs.max(1e-3)
                ),
            ),
        ];
        writeln!(f, "| what | measured |")?;
        writeln!(f, "|---|---|")?;
        for (what, value) in rows {
            writeln!(f, "| {what} | {value} |")?;
        }
        Ok(())
    }
}

/// The resident set of this process, from `/proc/self/status`.
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn frame_pts(n: u64) -> gst::ClockTime {
    gst::ClockTime::SECOND.mul_div_floor(n, RATE).unwrap()
}

/// The luma BT.601 gives `rgb` in limited range: what the element's I420 output of the
/// answer holds.
fn luma(rgb: [u8; 3]) -> u8 {
    let [r, g, b] = rgb.map(f64::from);
    (16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0).round() as u8
}

/// Input frame `n`: a flat colour that changes from frame to frame, with `n` written in
/// binary as a row of 16x16 blocks at the top left, so that no two frames are alike.
///
/// Each frame is a mapping of its own, as the element's own frames are: from the heap,
/// the frames the element lets go on its threads would go back to this thread's arena and
/// stay resident until reused, so that the harness's allocator would count as the
/// element's memory (up to 35 MiB of the peak, measured).
fn input_frame(info: &gst_video::VideoInfo, n: u64) -> gst::Buffer {
    let mut buffer = gstwanedit::memory::frame_buffer(info.size()).unwrap();
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(frame_pts(n));
        buffer.set_duration(frame_pts(n + 1) - frame_pts(n));
        let mut map = buffer.map_writable().unwrap();
        let (offsets, strides) = (info.offset(), info.stride());
        let luma = 24 + (n * 7 % 80) as u8;
        let chroma = [64 + (n * 3 % 128) as u8, 192 - (n * 5 % 128) as u8];
        let (y_plane, rest) = map.split_at_mut(offsets[1]);
        y_plane.fill(luma);
        let stride = strides[0] as usize;
        for bit in 0..32 {
            let value = if n >> bit & 1 == 1 { 120 } else { 8 };
            for row in 0..16 {
                let at = row * stride + bit * 16;
                y_plane[at..at + 16].fill(value);
            }
        }
        let (u_plane, v_plane) = rest.split_at_mut(offsets[2] - offsets[1]);
        u_plane.fill(chroma[0]);
        v_plane.fill(chroma[1]);
    }
    buffer
}

/// The provider's answer to every job: 81 frames of [`ANSWER`] at 832x480, 16 fps.
fn canned_answer() -> Vec<u8> {
    // Made a frame at a time: the harness's memory counts in the RSS measured.
    let frames = (0..81).map(|_| Ok::<_, media::MediaError>(RgbFrame::filled(832, 480, ANSWER)));
    media::encode_mp4(frames, gst::Fraction::new(16, 1)).unwrap()
}

/// What the threads of a run share.
#[derive(Default)]
struct Shared {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    /// Set when the run must stop: the output ended, an error, a hang.
    stop: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, error: String) {
        self.error.lock().unwrap().get_or_insert(error);
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the output thread saw.
#[derive(Default)]
struct Output {
    pts_equal: u64,
    first_wrong_pts: Option<(u64, Option<gst::ClockTime>)>,
    edited: u64,
}

/// What the bus thread saw.
#[derive(Default)]
struct Windows {
    done: u64,
    failed: u64,
    retried: HashSet<u64>,
    resubmissions: u64,
    most_attempts: u32,
    causes: BTreeMap<String, u64>,
    warnings: u64,
}

/// The kind of a window's failure, from its `error` text: what the report counts.
fn cause_kind(error: &str) -> String {
    if error.contains("out of memory") {
        return "job failed".into();
    }
    if let Some(at) = error.find("HTTP ") {
        return error[at..].chars().take(8).collect();
    }
    if error.contains("job-timeout") {
        return "job-timeout".into();
    }
    error.chars().take(60).collect()
}

/// Runs the soak described by `config`.
pub fn run(config: &Config) -> Report {
    gst::init().unwrap();
    gstwanedit::plugin_register_static().unwrap();

    let mock = Mock::start(Kind::Replicate);
    *mock.canned.lock().unwrap() = Some(Arc::new(canned_answer()));
    *mock.job_times.lock().unwrap() = Some(config.job_times);
    mock.chaos(config.seed, config.fault_rate, config.stall);
    mock.fail_every(config.fail_every);
    mock.forget_after(SERVER_MEMORY);

    let backend_config = BackendConfig {
        kind: BackendKind::Replicate,
        endpoint: Some(mock.url.clone()),
        api_key: Some(KEY.into()),
        job_timeout: Duration::from_secs(JOB_TIMEOUT),
        params: EditParams {
            prompt: "paint it yellow".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let limits = Limits {
        pacing: Pacing {
            request_timeout: config.request_timeout,
            ..Pacing::default()
        },
        ..Limits::default()
    };
    let backend = hosted::create(BackendKind::Replicate, &backend_config, limits).unwrap();

    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, WIDTH, HEIGHT)
        .fps(gst::Fraction::new(RATE as i32, 1))
        .build()
        .unwrap();
    let frame_bytes = info.size() as u64;
    let src = gst_app::AppSrc::builder()
        .caps(&info.to_caps().unwrap())
        .format(gst::Format::Time)
        // Blocks the pushing thread while a few frames wait: the element's back-pressure
        // reaches the generator instead of an unbounded queue.
        .block(true)
        .max_bytes(4 * frame_bytes)
        .build();
    let edit = gst::ElementFactory::make("wanedit")
        .property("prompt", "paint it yellow")
        .property("max-in-flight", config.max_in_flight)
        .property("job-timeout", JOB_TIMEOUT as u32)
        .property_from_str("on-error", "passthrough")
        .build()
        .unwrap();
    edit.downcast_ref::<gstwanedit::WanEdit>()
        .unwrap()
        .set_shared_backend(backend);
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(8)
        .build();
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([src.upcast_ref(), &edit, sink.upcast_ref()])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &edit, sink.upcast_ref()]).unwrap();

    let window_bytes = edit.property::<u32>("window-frames") as u64 * frame_bytes;
    let rss_bound = (config.max_in_flight as u64 + 2) * window_bytes + RSS_BASE;
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();

    let output = std::thread::spawn({
        let (sink, shared) = (sink.clone(), shared.clone());
        let answer = luma(ANSWER);
        // The element hands out frames in the default layout of the stream's format.
        let stride = info.stride()[0] as usize;
        move || {
            let mut output = Output::default();
            while !shared.stop.load(Ordering::SeqCst) {
                let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) else {
                    if sink.is_eos() {
                        break;
                    }
                    continue;
                };
                let n = shared.frames_out.load(Ordering::SeqCst);
                let buffer = sample.buffer().unwrap();
                if buffer.pts() == Some(frame_pts(n)) {
                    output.pts_equal += 1;
                } else {
                    output.first_wrong_pts.get_or_insert((n, buffer.pts()));
                }
                let map = buffer.map_readable().unwrap();
                let centre = map[HEIGHT as usize / 2 * stride + WIDTH as usize / 2];
                if centre.abs_diff(answer) <= ANSWER_TOLERANCE {
                    output.edited += 1;
                }
                shared.frames_out.fetch_add(1, Ordering::SeqCst);
            }
            output
        }
    });

    let bus = pipeline.bus().unwrap();
    let windows = std::thread::spawn({
        let (pipeline, shared) = (pipeline.clone(), shared.clone());
        move || {
            let mut windows = Windows::default();
            // Every window's last message is posted before its frames leave: once the
            // output has ended, what is on the bus is all there is.
            loop {
                let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    continue;
                };
                match message.view() {
                    gst::MessageView::Error(e) => {
                        shared.fail(format!("{} ({:?})", e.error(), e.debug()));
                        // Unblocks the generator and the output thread.
                        let _ = pipeline.set_state(gst::State::Null);
                    }
                    gst::MessageView::Warning(_) => windows.warnings += 1,
                    gst::MessageView::Element(e) => {
                        let Some(s) = e.structure().filter(|s| s.name() == "wanedit-window") else {
                            continue;
                        };
                        let attempt = s.get::<u32>("attempt").unwrap();
                        windows.most_attempts = windows.most_attempts.max(attempt);
                        match s.get::<&str>("state").unwrap() {
                            "done" => windows.done += 1,
                            "failed" => windows.failed += 1,
                            "retrying" => {
                                windows.retried.insert(s.get::<u64>("index").unwrap());
                                windows.resubmissions += 1;
                                let cause = cause_kind(s.get::<&str>("error").unwrap());
                                *windows.causes.entry(cause).or_default() += 1;
                            }
                            _ => (),
                        }
                    }
                    _ => (),
                }
            }
            windows
        }
    });

    let monitor = std::thread::spawn({
        let (pipeline, shared, config) = (pipeline.clone(), shared.clone(), config.clone());
        move || {
            let mut samples = vec![(started.elapsed(), rss())];
            let (mut last_out, mut moved) = (0, Instant::now());
            let mut next = started + config.rss_every;
            while !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let out = shared.frames_out.load(Ordering::SeqCst);
                if out != last_out {
                    (last_out, moved) = (out, Instant::now());
                } else if moved.elapsed() > config.stuck_after {
                    shared.fail(format!(
                        "no frame came out for {} s, after {out} frames",
                        config.stuck_after.as_secs()
                    ));
                    let _ = pipeline.set_state(gst::State::Null);
                }
                if Instant::now() < next {
                    continue;
                }
                next += config.rss_every;
                let sample = (started.elapsed(), rss());
                if config.progress {
                    println!(
                        "{:6.0} s  in {:>7}  out {:>7}  RSS {}",
                        sample.0.as_secs_f64(),
                        shared.frames_in.load(Ordering::SeqCst),
                        out,
                        mib(sample.1)
                    );
                }
                samples.push(sample);
            }
            samples
        }
    });

    for n in 0..config.frames {
        if shared.stop.load(Ordering::SeqCst) || src.push_buffer(input_frame(&info, n)).is_err() {
            break;
        }
        shared.frames_in.fetch_add(1, Ordering::SeqCst);
    }
    let _ = src.end_of_stream();
    let output = output.join().unwrap();
    let wall = started.elapsed();
    let final_rss = (wall, rss());
    shared.stop.store(true, Ordering::SeqCst);
    let windows = windows.join().unwrap();
    let mut rss = monitor.join().unwrap();
    rss.push(final_rss);
    pipeline.set_state(gst::State::Null).unwrap();

    let error = shared.error.lock().unwrap().clone();
    Report {
        frames_in: shared.frames_in.load(Ordering::SeqCst),
        frames_out: shared.frames_out.load(Ordering::SeqCst),
        pts_equal: output.pts_equal,
        first_wrong_pts: output.first_wrong_pts,
        frames_edited: output.edited,
        windows_done: windows.done,
        windows_failed: windows.failed,
        windows_retried: windows.retried.len() as u64,
        resubmissions: windows.resubmissions,
        most_attempts: windows.most_attempts,
        retry_causes: windows.causes,
        warnings: windows.warnings,
        faults: mock
            .chaos_served()
            .into_iter()
            .map(|(kind, n)| (kind.to_owned(), n as u64))
            .collect(),
        requests: mock.chaos_requests() as u64,
        jobs_made_to_fail: mock.jobs_failed.load(Ordering::SeqCst) as u64,
        rss,
        rss_bound,
        window_bytes,
        wall,
        error,
    }
}
