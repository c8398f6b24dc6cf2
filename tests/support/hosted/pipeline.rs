//! Runs real pipelines through `wanedit` with a hosted backend, from frames the test makes.
#![allow(dead_code)] // each test binary uses its own part

use std::time::Duration;

use gst::prelude::*;

pub const WIDTH: u32 = 64;
pub const HEIGHT: u32 = 48;
/// The input's rate: not the 16 fps the clips are sent at.
pub const RATE: i32 = 25;

/// The solid colour of input frame `n`: every frame differs, in all three channels.
pub fn colour(n: u64) -> [u8; 3] {
    [
        (30 + (n * 7) % 190) as u8,
        (60 + (n * 3) % 130) as u8,
        (220 - (n * 5) % 180) as u8,
    ]
}

pub fn frame_pts(n: u64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(n * 1_000_000_000 / RATE as u64)
}

/// The timecode input frame `n` carries, as its meta.
pub fn timecode(n: u64) -> String {
    valid_timecode(n).to_string()
}

fn valid_timecode(n: u64) -> gst_video::ValidVideoTimeCode {
    let seconds = n / RATE as u64;
    let tc = gst_video::VideoTimeCode::new(
        gst::Fraction::new(RATE, 1),
        None,
        gst_video::VideoTimeCodeFlags::empty(),
        10,
        (seconds / 60) as u32,
        (seconds % 60) as u32,
        (n % RATE as u64) as u32,
        0,
    );
    tc.try_into().unwrap()
}

pub struct Outcome {
    /// Output frames: pts and the RGB colour at their centre.
    pub frames: Vec<(gst::ClockTime, [u8; 3])>,
    /// The timecode meta of each output frame.
    pub timecodes: Vec<Option<String>>,
    pub messages: Vec<gst::Message>,
}

impl Outcome {
    pub fn error(&self) -> Option<String> {
        self.messages.iter().find_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(format!(
                "{} ({})",
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            )),
            _ => None,
        })
    }

    /// `(index, state, attempt)` of every `wanedit-window` message.
    pub fn attempts(&self) -> Vec<(u64, String, u32)> {
        self.window_structures()
            .map(|s| {
                (
                    s.get::<u64>("index").unwrap(),
                    s.get::<String>("state").unwrap(),
                    s.get::<u32>("attempt").unwrap(),
                )
            })
            .collect()
    }

    /// The `error` field of the `wanedit-window` messages in `state`.
    pub fn window_errors(&self, state: &str) -> Vec<String> {
        self.window_structures()
            .filter(|s| s.get::<String>("state").unwrap() == state)
            .map(|s| s.get::<String>("error").unwrap())
            .collect()
    }

    /// How long after being queued the last of windows `0..n` was submitted, in seconds.
    pub fn submitted_within(&self, n: u64) -> f64 {
        self.window_structures()
            .filter(|s| {
                s.get::<String>("state").unwrap() == "submitted"
                    && s.get::<u64>("index").unwrap() < n
            })
            .map(|s| s.get::<f64>("elapsed").unwrap())
            .fold(0.0, f64::max)
    }

    fn window_structures(&self) -> impl Iterator<Item = &gst::StructureRef> {
        self.messages.iter().filter_map(|m| match m.view() {
            gst::MessageView::Element(e) => e.structure().filter(|s| s.name() == "wanedit-window"),
            _ => None,
        })
    }

    /// `(index, state, job-id)` of every `wanedit-window` message.
    pub fn windows(&self) -> Vec<(u64, String, String)> {
        self.messages
            .iter()
            .filter_map(|m| match m.view() {
                gst::MessageView::Element(e) => {
                    let s = e.structure()?;
                    (s.name() == "wanedit-window").then(|| {
                        (
                            s.get::<u64>("index").unwrap(),
                            s.get::<String>("state").unwrap(),
                            s.get::<String>("job-id").unwrap(),
                        )
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// Checks that every input frame came out once, in order, at its time, with
    /// `expected(input colour)` give or take what two H.264 passes cost.
    pub fn assert_frames(&self, count: u64, expected: impl Fn([u8; 3]) -> [u8; 3]) {
        assert_eq!(self.error(), None);
        assert_eq!(
            self.frames.len() as u64,
            count,
            "one output frame per input frame"
        );
        for (n, (pts, rgb)) in self.frames.iter().enumerate() {
            let n = n as u64;
            assert_eq!(*pts, frame_pts(n), "frame {n} keeps its timestamp");
            let want = expected(colour(n));
            let off = rgb
                .iter()
                .zip(want)
                .map(|(a, b)| a.abs_diff(b))
                .max()
                .unwrap();
            assert!(off <= 10, "frame {n}: {rgb:?}, expected about {want:?}");
            assert_eq!(
                self.timecodes[n as usize],
                Some(timecode(n)),
                "frame {n} keeps its timecode meta"
            );
        }
    }
}

pub fn invert(rgb: [u8; 3]) -> [u8; 3] {
    rgb.map(|v| 255 - v)
}

/// Pushes `count` frames through `wanedit` configured by `properties` (gst-launch syntax)
/// and collects what comes out, and the bus messages, until EOS or an error.
pub fn run(properties: &str, count: u64) -> Outcome {
    run_configured(properties, count, |_| ())
}

/// [`run`], with the element configured by `configure` before it starts, for what must not
/// go through a pipeline description (GStreamer's parser logs descriptions whole).
pub fn run_configured(
    properties: &str,
    count: u64,
    configure: impl FnOnce(&gst::Element),
) -> Outcome {
    gst::init().unwrap();
    gstwanedit::plugin_register_static().unwrap();
    let description = format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={WIDTH},height={HEIGHT},framerate={RATE}/1 \
         ! wanedit name=edit prompt=\"invert it\" {properties} \
         ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    configure(&pipeline.by_name("edit").unwrap());
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let bus = pipeline.bus().unwrap();
    let started = pipeline.set_state(gst::State::Playing);
    let mut messages = Vec::new();
    let mut frames = Vec::new();
    let mut timecodes = Vec::new();
    if started.is_ok() {
        for n in 0..count {
            let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, WIDTH, HEIGHT)
                .build()
                .unwrap();
            let mut data = vec![0u8; info.size()];
            let stride = info.stride()[0] as usize;
            for y in 0..HEIGHT as usize {
                for x in 0..WIDTH as usize {
                    data[y * stride + x * 3..y * stride + x * 3 + 3].copy_from_slice(&colour(n));
                }
            }
            let mut buffer = gst::Buffer::from_mut_slice(data);
            {
                let buffer = buffer.get_mut().unwrap();
                buffer.set_pts(frame_pts(n));
                buffer.set_duration(frame_pts(1));
                gst_video::VideoTimeCodeMeta::add(buffer, &valid_timecode(n));
            }
            if src.push_buffer(buffer).is_err() {
                break;
            }
        }
        let _ = src.end_of_stream();
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        while std::time::Instant::now() < deadline {
            let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) else {
                if sink.is_eos() {
                    break;
                }
                let mut failed = false;
                while let Some(message) = bus.pop() {
                    failed |= matches!(message.view(), gst::MessageView::Error(_));
                    messages.push(message);
                }
                if failed {
                    break;
                }
                continue;
            };
            let buffer = sample.buffer().unwrap();
            let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
            let map = buffer.map_readable().unwrap();
            let stride = info.stride()[0] as usize;
            let at = (HEIGHT as usize / 2) * stride + (WIDTH as usize / 2) * 3;
            frames.push((buffer.pts().unwrap(), [map[at], map[at + 1], map[at + 2]]));
            timecodes.push(
                buffer
                    .meta::<gst_video::VideoTimeCodeMeta>()
                    .map(|m| m.tc().to_string()),
            );
        }
    }
    // What is left on the bus: window messages, and EOS.
    let ended = |m: &gst::Message| {
        matches!(
            m.view(),
            gst::MessageView::Eos(_) | gst::MessageView::Error(_)
        )
    };
    if !messages.iter().any(ended) {
        while let Some(message) = bus.timed_pop(gst::ClockTime::from_seconds(5)) {
            let end = ended(&message);
            messages.push(message);
            if end {
                break;
            }
        }
    }
    while let Some(message) = bus.pop() {
        messages.push(message);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    Outcome {
        frames,
        timecodes,
        messages,
    }
}
