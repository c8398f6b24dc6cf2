//! The `edit` job as users run it: examples/edit.rs and examples/edit.py (PyGObject, with
//! Debian's /usr/bin/python3 and python3-gi) edit a file with sound through a Cog server
//! (the loopback stand-in, which inverts). The input is H.264 High 4:4:4, as x264enc makes
//! from videotestsrc's first format; what they write must be what players take, H.264
//! High 4:2:0 8-bit, unless `--keep-format` asks for the input's own format.

#[path = "support/files.rs"]
mod files;
#[path = "support/hosted/mod.rs"]
mod hosted;

use std::path::{Path, PathBuf};
use std::process::Command;

use gst::prelude::*;
use hosted::{Kind, Mock};

const FRAMES: u64 = 17;
/// The input's colour: videotestsrc's foreground-color 0xffc83214.
const COLOUR: [u8; 3] = [200, 50, 20];

struct Workdir(PathBuf);

impl Workdir {
    fn new(name: &str) -> Workdir {
        let dir = std::env::temp_dir().join(format!("wanedit-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Workdir(dir)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 64x48 25 fps clip of `FRAMES` frames of `COLOUR` in H.264 High 4:4:4, with sound.
fn input_clip(file: &Path) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={FRAMES} pattern=solid-color foreground-color=0xffc83214 \
         ! video/x-raw,format=Y444,width=64,height=48,framerate=25/1 ! x264enc ! queue ! mux. \
         audiotestsrc num-buffers=30 ! audioconvert ! avenc_aac ! queue ! mux. \
         mp4mux name=mux ! filesink location={}",
        file.display()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(message.view(), gst::MessageView::Eos(_)),
        "{message:?}"
    );
    assert_eq!(
        files::field(&files::h264_caps(file), "chroma-format"),
        "4:4:4"
    );
}

/// The arguments both examples take: input, output, a prompt and the Cog server.
fn edit_args(command: &mut Command, input: &Path, output: &Path, server: &Mock) {
    command
        .arg(input)
        .arg(output)
        .args(["--prompt", "invert it", "--backend", "cog"])
        .args(["--endpoint", &server.url])
        .args(["--window-frames", "9", "--overlap-frames", "2"]);
}

/// Every frame of `output` is there at its input's time and edited, and the sound is kept.
fn check_edited(input: &Path, output: &Path) {
    let frames = files::frames(output);
    let times: Vec<_> = files::frames(input).into_iter().map(|f| f.0).collect();
    assert_eq!(times.len() as u64, FRAMES);
    assert_eq!(frames.len() as u64, FRAMES);
    let want = hosted::pipeline::invert(COLOUR);
    for (n, (pts, rgb)) in frames.into_iter().enumerate() {
        assert_eq!(pts, times[n], "frame {n}");
        assert!(
            rgb.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 16),
            "frame {n}: {rgb:?}, want about {want:?}"
        );
    }
    let (was, is) = (files::audio_duration(input), files::audio_duration(output));
    assert!(
        is.nseconds().abs_diff(was.nseconds()) < 50_000_000,
        "{is} of sound, {was} in the input"
    );
}

/// What players take: H.264 High, 4:2:0, 8-bit.
fn assert_plays_everywhere(output: &Path) {
    let caps = files::h264_caps(output);
    assert_eq!(files::field(&caps, "profile"), "high", "{caps}");
    assert_eq!(files::field(&caps, "chroma-format"), "4:2:0", "{caps}");
    assert_eq!(files::field(&caps, "bit-depth-luma"), "8", "{caps}");
}

fn python_edit(dir: &Workdir) -> Command {
    let mut command = files::with_plugin("/usr/bin/python3", 120, &dir.0.join("registry.bin"));
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/edit.py"));
    command
}

#[test]
fn the_rust_example_writes_h264_high_4_2_0_every_player_takes() {
    let dir = Workdir::new("edit-rs");
    let (input, output) = (dir.0.join("in.mp4"), dir.0.join("out.mp4"));
    input_clip(&input);
    let server = Mock::start(Kind::Cog);
    // `cargo test` builds the examples beside the tests.
    let example = files::plugin_dir().join("examples/edit");
    assert!(
        example.is_file(),
        "no {}: run `cargo build --release --examples`",
        example.display()
    );
    let mut command = files::timed(&example, 120);
    edit_args(&mut command, &input, &output, &server);
    files::run_ok(&mut command);
    check_edited(&input, &output);
    assert_plays_everywhere(&output);
}

#[test]
fn the_python_example_edits_a_file_and_keeps_its_sound() {
    let dir = Workdir::new("edit-py");
    let (input, output) = (dir.0.join("in.mp4"), dir.0.join("out.mp4"));
    input_clip(&input);
    let server = Mock::start(Kind::Cog);
    let mut command = python_edit(&dir);
    edit_args(&mut command, &input, &output, &server);
    let log = files::run_ok(&mut command);
    assert!(log.contains("3 windows edited"), "{log}");
    check_edited(&input, &output);
    assert_plays_everywhere(&output);
}

#[test]
fn the_python_example_keeps_the_input_format_when_asked() {
    let dir = Workdir::new("edit-py-keep");
    let (input, output) = (dir.0.join("in.mp4"), dir.0.join("out.mp4"));
    input_clip(&input);
    let server = Mock::start(Kind::Cog);
    let mut command = python_edit(&dir);
    edit_args(&mut command, &input, &output, &server);
    files::run_ok(command.arg("--keep-format"));
    check_edited(&input, &output);
    let caps = files::h264_caps(&output);
    assert_eq!(files::field(&caps, "chroma-format"), "4:4:4", "{caps}");
    assert_eq!(files::field(&caps, "profile"), "high-4:4:4", "{caps}");
}

#[test]
fn the_python_example_says_what_is_missing() {
    let dir = Workdir::new("edit-py-usage");
    let output = python_edit(&dir)
        .args(["in.mp4", "out.mp4", "--backend", "cog"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--prompt is required"), "{stderr}");
}
