//! What the tests that run wanedit from another program (ges-launch-1.0, Python, the
//! examples) need: the built plugin, and a look into the files those programs write.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;

use gst::prelude::*;

/// Where `cargo build --release` put libgstwanedit.so and the examples: the folder above
/// the test binaries' (target/release, or target/<triple>/release when a target is named).
pub fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    assert!(
        dir.join("libgstwanedit.so").is_file(),
        "no plugin in {}: run `cargo build --release` first (.ci/run does)",
        dir.display()
    );
    dir
}

/// `program`, killed after `seconds`.
pub fn timed(program: impl AsRef<std::ffi::OsStr>, seconds: u32) -> Command {
    let mut command = Command::new("timeout");
    command.arg(seconds.to_string()).arg(program);
    command
}

/// `program` with the plugin on its path and a registry of its own (the user's registry
/// may hold another build of the plugin), killed after `seconds`.
pub fn with_plugin(program: &str, seconds: u32, registry: &Path) -> Command {
    let mut command = timed(program, seconds);
    command
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", registry);
    command
}

/// Runs `command`, failing with its output unless it succeeds.
pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    format!("{stdout}{stderr}")
}

/// Plays `description` (a pipeline that ends in `appsink name=sink`) to its end: the
/// samples it got.
pub fn samples(description: &str) -> Vec<gst::Sample> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut samples = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        samples.push(sample);
    }
    let bus = pipeline.bus().unwrap();
    let error = bus
        .pop_filtered(&[gst::MessageType::Error])
        .map(|m| format!("{m:?}"));
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(error, None, "reading back with {description}");
    assert!(sink.is_eos(), "{description} stalled");
    samples
}

/// The video frames of `file`: each one's PTS and the RGB colour at its centre.
pub fn frames(file: &Path) -> Vec<(gst::ClockTime, [u8; 3])> {
    samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB \
         ! appsink name=sink sync=false",
        file.display()
    ))
    .iter()
    .map(|sample| {
        let buffer = sample.buffer().unwrap();
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let map = buffer.map_readable().unwrap();
        let (x, y) = (info.width() as usize / 2, info.height() as usize / 2);
        let at = y * info.stride()[0] as usize + x * 3;
        (buffer.pts().unwrap(), [map[at], map[at + 1], map[at + 2]])
    })
    .collect()
}

/// The caps of `file`'s H.264 stream as h264parse reads them: profile, chroma-format,
/// bit-depth-luma.
pub fn h264_caps(file: &Path) -> gst::Caps {
    let samples = samples(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! appsink name=sink sync=false",
        file.display()
    ));
    samples[0].caps().unwrap().to_owned()
}

/// The audio samples of `file`, decoded: how long they last in all.
pub fn audio_duration(file: &Path) -> gst::ClockTime {
    samples(&format!(
        "filesrc location={} ! qtdemux name=demux demux.audio_0 ! decodebin ! audioconvert \
         ! appsink name=sink sync=false",
        file.display()
    ))
    .iter()
    .filter_map(|s| s.buffer().unwrap().duration())
    .sum()
}

/// A field of the first structure of `caps`, as its string form.
pub fn field(caps: &gst::Caps, name: &str) -> String {
    let s = caps.structure(0).unwrap();
    s.value(name)
        .map(|v| v.serialize().unwrap().to_string())
        .unwrap_or_else(|_| panic!("no {name} in {caps}"))
}
