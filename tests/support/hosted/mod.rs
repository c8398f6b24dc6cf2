//! Loopback servers that speak the hosted providers' protocols (PROVIDERS.md): their paths,
//! status words, field names, auth headers and error bodies, with faults on demand.
//!
//! The "model" behind every server really edits: it decodes the clip it was given, inverts
//! every pixel, halves the size and returns it at 24 fps (so with more frames than it was
//! sent), encoded as H.264 MP4.
#![allow(dead_code)] // each test binary uses its own part of the servers

pub mod pipeline;
pub mod server;

#[allow(unused_imports)] // each test binary imports its own part
pub use server::{Fault, Kind, Mock, Output, Route, Seen};

use std::path::PathBuf;

use gstwanedit::backend::hosted::media;
use gstwanedit::backend::{
    ClipFrame, EditParams, EditRequest, JobReporter, RgbFrame, WindowFrames, WindowId, frame_time,
};

/// The rate the servers return clips at.
pub const OUTPUT_RATE: gst::Fraction = gst::Fraction::from_integer(24);

/// What the servers' model does to a clip.
pub fn edit_clip(mp4: Vec<u8>) -> Vec<u8> {
    let frames: Vec<ClipFrame> = media::decode_mp4(mp4)
        .and_then(Iterator::collect)
        .expect("the server got a clip it can decode");
    let duration = frames.last().unwrap().pts.nseconds() + frame_step(&frames);
    let mut out = Vec::new();
    for j in 0.. {
        let t = frame_time(j, OUTPUT_RATE).nseconds();
        if t >= duration {
            break;
        }
        // The source frame nearest to t.
        let source = frames
            .iter()
            .min_by_key(|f| f.pts.nseconds().abs_diff(t))
            .unwrap();
        out.push(invert_half(&source.image.to_rgb().unwrap()));
    }
    media::encode_mp4(out.into_iter().map(Ok::<_, media::MediaError>), OUTPUT_RATE).unwrap()
}

fn frame_step(frames: &[ClipFrame]) -> u64 {
    match frames {
        [a, b, ..] => b.pts.nseconds() - a.pts.nseconds(),
        _ => 62_500_000,
    }
}

fn invert_half(image: &RgbFrame) -> RgbFrame {
    let (width, height) = (image.width / 2, image.height / 2);
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            data.extend(image.pixel(x * 2, y * 2).map(|v| 255 - v));
        }
    }
    RgbFrame {
        width,
        height,
        data,
    }
}

/// The window the backends are driven with: 33 frames of 64x48, each a colour of its own,
/// with the prompt "invert it".
pub fn window(reference_image: Option<PathBuf>, reporter: JobReporter) -> EditRequest {
    gst::init().unwrap();
    EditRequest {
        window: WindowId {
            index: 0,
            first_pts: Some(gst::ClockTime::ZERO),
            frames: 33,
        },
        frames: WindowFrames::from_frames(
            (0..33u8)
                .map(|i| RgbFrame::filled(64, 48, [i * 7, 100, 200 - i * 5]))
                .collect(),
        ),
        frame_rate: gst::Fraction::new(16, 1),
        params: EditParams {
            prompt: "invert it".into(),
            reference_images: reference_image.into_iter().collect(),
            ..Default::default()
        },
        anchor: None,
        mask: None,
        reporter,
    }
}
