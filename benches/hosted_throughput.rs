//! Output frames per second of a pipeline whose hosted jobs take a fixed time, against
//! `max-in-flight`, and its share of linear scaling from one window in flight; then what
//! each step of one window costs this machine: scaling the input to the model size,
//! encoding, decoding, and scaling the edit back.
//!
//! The last column is how long the first `max-in-flight` windows, all queued at once at
//! the start, took to be submitted: each is scaled and encoded after the one before (one
//! encode at a time, on every core), so this start is what the CPU costs a run beyond
//! what it costs one window in flight.
//!
//! Each run is at least four times `max-in-flight` windows long: a run of as many windows
//! as are in flight is one batch, all of them encoded, waited for and decoded together,
//! which measures how long a batch takes, not how many frames a second a stream gets.
//!
//!     cargo bench --bench hosted_throughput
//!
//! The loopback provider (tests/support/hosted) answers every job after JOB_TIME with one
//! canned clip, so that its own CPU stays out of the numbers.

#[path = "../tests/support/hosted/mod.rs"]
mod hosted;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gstwanedit::backend::hosted::media;
use gstwanedit::backend::{ClipFrame, RgbFrame};
use gstwanedit::frame::InputFormat;
use gstwanedit::frame::Size;
use gstwanedit::stream::convert::{ToBackend, ToStream};
use hosted::pipeline::run;
use hosted::server::KEY;
use hosted::{Kind, Mock};

const JOB_TIME: Duration = Duration::from_secs(2);
/// W=33, O=8: a window more is 25 frames more.
const STRIDE: u64 = 25;
const OVERLAP: u64 = 8;

fn window(width: u32, height: u32) -> Vec<RgbFrame> {
    (0..33u8)
        .map(|i| RgbFrame::filled(width, height, [i * 7, 100, 200 - i * 5]))
        .collect()
}

fn main() {
    gst::init().unwrap();
    let rate = gst::Fraction::new(16, 1);
    // A 720p answer at 24 fps.
    let answer: Vec<RgbFrame> = (0..50)
        .map(|_| RgbFrame::filled(1280, 720, [9, 9, 9]))
        .collect();
    let canned = Arc::new(
        media::encode_mp4(
            answer.iter().cloned().map(Ok::<_, media::MediaError>),
            hosted::OUTPUT_RATE,
        )
        .unwrap(),
    );

    println!(
        "| max-in-flight | windows | wall (s) | output fps | share of linear | first windows submitted within (s) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut one = None;
    for in_flight in [1u64, 2, 4, 8, 16] {
        let frames = (4 * in_flight).max(16) * STRIDE + OVERLAP;
        let mock = Mock::start(Kind::Replicate);
        *mock.job_time.lock().unwrap() = JOB_TIME;
        *mock.canned.lock().unwrap() = Some(canned.clone());
        let started = Instant::now();
        let outcome = run(
            &format!(
                "backend=replicate endpoint={} api-key={KEY} window-frames=33 overlap-frames=8 \
                 max-in-flight={in_flight} job-timeout=600",
                mock.url
            ),
            frames,
        );
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(outcome.error(), None);
        assert_eq!(outcome.frames.len() as u64, frames);
        let fps = frames as f64 / wall;
        let one = *one.get_or_insert(fps);
        println!(
            "| {in_flight} | {} | {wall:.1} | {fps:.1} | {:.2} | {:.2} |",
            mock.count(hosted::Route::Create),
            fps / (one * in_flight as f64),
            outcome.submitted_within(in_flight)
        );
    }

    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..3 {
            f();
        }
        started.elapsed().as_secs_f64() / 3.0
    };
    let decoded: Vec<ClipFrame> = media::decode_mp4(canned.to_vec())
        .and_then(Iterator::collect)
        .unwrap();
    let decode = time(&mut || {
        let frames: Vec<ClipFrame> = media::decode_mp4(canned.to_vec())
            .and_then(Iterator::collect)
            .unwrap();
        assert_eq!(frames.len(), 50);
    });
    // The stream's frames (64x48 RGB) to the model size, and the answer's frames back.
    let stream = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 64, 48)
        .fps(rate)
        .build()
        .unwrap();
    let inputs: Vec<gst::Buffer> = window(64, 48)
        .into_iter()
        .map(|f| gst::Buffer::from_slice(f.data))
        .collect();
    // As the element makes them for an H.264 upload.
    let to_model = ToBackend::new(&stream, Size::new(832, 480), InputFormat::I420, 2).unwrap();
    let scale_in = time(&mut || {
        for input in &inputs {
            to_model.convert(input).unwrap();
        }
    });
    let sent: Vec<_> = inputs
        .iter()
        .map(|input| to_model.convert(input).unwrap())
        .collect();
    let encode = time(&mut || {
        media::encode_mp4(sent.iter().cloned().map(Ok::<_, media::MediaError>), rate).unwrap();
    });
    let mut back = ToStream::new(&stream, 2);
    let scale_back = time(&mut || {
        for frame in decoded.iter().take(33) {
            back.convert(&frame.image).unwrap();
        }
    });
    println!();
    println!("one window, step by step (s):");
    println!(
        "| scale 33 frames 64x48 RGB to 832x480 I420 | encode them | decode 50 frames at 1280x720 | scale 33 of them to 64x48 RGB |"
    );
    println!("|---|---|---|---|");
    println!("| {scale_in:.3} | {encode:.3} | {decode:.3} | {scale_back:.3} |");
}
