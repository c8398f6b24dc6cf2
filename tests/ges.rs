//! wanedit as an effect on a GStreamer Editing Services timeline: two clips, the effect on
//! the first, rendered to an MP4 file. Every frame of the timeline must be in the file and
//! the first clip's frames (only those) edited: nle seeks into each clip with a flush, and
//! wanedit holds a window of frames at a time.

mod support;

#[path = "support/files.rs"]
mod files;
#[path = "support/hosted/mod.rs"]
mod hosted;

use std::path::Path;

use ges::gst_pbutils;
use ges::prelude::*;
use gst::glib;
use gstwanedit::backend::RgbFrame;

use hosted::{Kind, Mock};
use support::Editor;

const RATE: u64 = 25;
/// Frames of each clip: two windows of 9 with 2 shared, and one frame more.
const CLIP_FRAMES: u64 = 17;
const EFFECT: &str = "wanedit window-frames=9 overlap-frames=2 prompt=\"paint it green\"";
/// What the test backend paints every frame of the edited clip.
const GREEN: [u8; 3] = [20, 200, 40];
/// videotestsrc's red and blue, as the file gives them back.
const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

fn clip_duration() -> gst::ClockTime {
    gst::ClockTime::SECOND
        .mul_div_floor(CLIP_FRAMES, RATE)
        .unwrap()
}

fn frame_pts(n: u64) -> gst::ClockTime {
    gst::ClockTime::SECOND.mul_div_floor(n, RATE).unwrap()
}

/// Within what H.264 at 64x48 keeps of a flat colour.
fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 16)
}

/// Asserts `file` holds the two clips' frames at the timeline's times, the first clip's as
/// `edited` made them, the second's untouched.
fn check_timeline(file: &Path, edited: impl Fn([u8; 3]) -> [u8; 3]) {
    let frames = files::frames(file);
    assert_eq!(frames.len() as u64, 2 * CLIP_FRAMES, "frames of {frames:?}");
    // The MP4 GES writes has no edit list: its frames start after x264's B-frame delay
    // (80 ms, as in the same timeline without the effect), then follow every 40 ms.
    let first = frames[0].0;
    assert!(first <= frame_pts(2), "the first frame at {first}");
    for (n, (pts, rgb)) in frames.into_iter().enumerate() {
        let n = n as u64;
        assert_eq!(pts, first + frame_pts(n), "frame {n}");
        let want = if n < CLIP_FRAMES { edited(RED) } else { BLUE };
        assert!(near(rgb, want), "frame {n}: {rgb:?}, want about {want:?}");
    }
}

/// A 64x48 25 fps video timeline: a red test clip with `effect` on it, then a blue one.
fn timeline(effect: &ges::Effect) -> ges::Timeline {
    let timeline = ges::Timeline::new();
    let track = ges::VideoTrack::new();
    track.set_restriction_caps(&support::video_caps("I420", 64, 48));
    timeline.add_track(&track).unwrap();
    let layer = timeline.append_layer();
    for (start, pattern) in [
        (gst::ClockTime::ZERO, ges::VideoTestPattern::Red),
        (clip_duration(), ges::VideoTestPattern::Blue),
    ] {
        let clip = ges::TestClip::new().unwrap();
        clip.set_vpattern(pattern);
        clip.set_start(start);
        clip.set_duration(clip_duration());
        layer.add_clip(&clip).unwrap();
        if start.is_zero() {
            clip.add_top_effect(effect, 0).unwrap();
        }
    }
    assert!(timeline.commit_sync());
    timeline
}

/// Renders `timeline` to `file` as H.264 in MP4; the error it stopped on, if any.
fn render(timeline: &ges::Timeline, file: &Path) -> Result<(), String> {
    let profile = gst_pbutils::EncodingContainerProfile::builder(
        &gst::Caps::builder("video/quicktime").build(),
    )
    .add_profile(
        gst_pbutils::EncodingVideoProfile::builder(&gst::Caps::builder("video/x-h264").build())
            .build(),
    )
    .build();
    let pipeline = ges::Pipeline::new();
    pipeline.set_timeline(timeline).unwrap();
    let uri = glib::filename_to_uri(file, None).unwrap();
    pipeline.set_render_settings(&uri, &profile).unwrap();
    pipeline.set_mode(ges::PipelineFlags::RENDER).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let outcome = match message.as_ref().map(|message| message.view()) {
        None => Err("no EOS within 60 s: the render stalled".to_owned()),
        Some(gst::MessageView::Error(e)) => Err(format!("{} ({:?})", e.error(), e.debug())),
        Some(_) => Ok(()),
    };
    pipeline.set_state(gst::State::Null).unwrap();
    outcome
}

/// The wanedit inside a GES effect (GES wraps it in a bin of its own).
fn wanedit_of(effect: &ges::Effect) -> gstwanedit::WanEdit {
    let bin = effect
        .element()
        .and_downcast::<gst::Bin>()
        .expect("the effect's element is a bin");
    bin.iterate_recurse()
        .find(|e| e.factory().is_some_and(|f| f.name() == "wanedit"))
        .and_then(|e| e.downcast::<gstwanedit::WanEdit>().ok())
        .expect("a wanedit in the effect's bin")
}

#[test]
fn a_timeline_rendered_through_the_ges_api_keeps_every_frame_and_edits_one_clip() {
    support::init();
    ges::init().unwrap();
    let effect = ges::Effect::new(EFFECT).unwrap();
    let timeline = timeline(&effect);
    let editor = Editor::new(|_, frames: Vec<RgbFrame>| Ok(support::tinted(&frames, GREEN)));
    wanedit_of(&effect).set_backend(editor.clone());

    let dir = std::env::temp_dir().join(format!("wanedit-ges-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("timeline.mp4");
    render(&timeline, &file).unwrap();
    check_timeline(&file, |_| GREEN);

    // The red clip's 17 frames went out in windows of frames 0-8, 7-15 and 8-16 (the last
    // one ends on the clip's last frame); the blue clip never reached the backend. nle
    // lets the clip's stack run, then seeks it to its start with a flush (docs/ges.md):
    // windows edited before that flush are edited again after it.
    let mut seen: Vec<(u64, usize)> = editor
        .seen()
        .iter()
        .map(|s| (s.index, s.real_frames))
        .collect();
    seen.dedup();
    assert_eq!(seen, [(0, 9), (1, 9), (2, 9)]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ges_launch_renders_a_timeline_with_wanedit_as_an_effect() {
    let server = Mock::start(Kind::Cog);
    let dir = std::env::temp_dir().join(format!("wanedit-ges-launch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("timeline.mp4");
    let seconds = clip_duration().nseconds() as f64 / 1e9;
    files::run_ok(
        files::with_plugin("ges-launch-1.0", 120, &dir.join("registry.bin"))
            .args(["--no-interactive", "--video-caps"])
            .arg("video/x-raw,width=64,height=48,framerate=25/1")
            .args(["+test-clip", "red", &format!("duration={seconds}")])
            .args([
                "+effect",
                &format!("{EFFECT} backend=cog endpoint={}", server.url),
            ])
            .args([
                "+test-clip",
                "blue",
                &format!("start={seconds}"),
                &format!("duration={seconds}"),
            ])
            .arg("-o")
            .arg(glib::filename_to_uri(&file, None).unwrap().as_str()),
    );
    // The Cog stand-in inverts.
    check_timeline(&file, hosted::pipeline::invert);
    // The test clips have sound: the audio track is rendered whole beside the video.
    let audio = files::audio_duration(&file);
    assert!(
        audio.nseconds().abs_diff(2 * clip_duration().nseconds()) < 50_000_000,
        "{audio} of audio"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
