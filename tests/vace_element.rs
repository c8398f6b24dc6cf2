//! `backend=candle` with a VACE model, through the element and gst-launch-1.0, on the CPU
//! with the tiny VACE model of a committed parity case: masks keep the input bit for
//! bit outside them (8 and 10 bits, alpha), reference images and the first frame reach
//! the model, `seam=anchor` carries the first frame on, and settings a backend cannot
//! take fail at READY->PAUSED.

mod support;

#[path = "support/files.rs"]
mod files;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gst::prelude::*;
use image::{Rgb, RgbImage};

const MODEL_CASE: &str = "vace_square_f9_masked_video";
const SIDE: u32 = 32;
const FRAME_NS: u64 = 62_500_000;

fn model_dir(case: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(case)
        .join("model")
        .to_str()
        .unwrap()
        .to_owned()
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wanedit-vace-{}-{name}", std::process::id()))
}

/// A PNG of `SIDE`x`SIDE`: white (edit) left of column `edge`, black (keep) from it on.
fn left_mask(edge: u32) -> PathBuf {
    let path = temp_path(&format!("mask-{edge}.png"));
    RgbImage::from_fn(SIDE, SIDE, |x, _| {
        Rgb(if x < edge { [255; 3] } else { [0; 3] })
    })
    .save(&path)
    .unwrap();
    path
}

/// A PNG of one colour.
fn plain_image(name: &str, rgb: [u8; 3], width: u32, height: u32) -> PathBuf {
    let path = temp_path(name);
    RgbImage::from_pixel(width, height, Rgb(rgb))
        .save(&path)
        .unwrap();
    path
}

fn caps(format: &str) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", SIDE as i32)
        .field("height", SIDE as i32)
        .field("framerate", gst::Fraction::new(16, 1))
        .build()
}

/// `count` frames of a moving ball in `format`, stamped as a 16 fps stream.
fn source(format: &str, count: u32) -> Vec<gst::Buffer> {
    support::init();
    let frames: Vec<gst::Buffer> = files::samples(&format!(
        "videotestsrc num-buffers={count} pattern=ball ! {} ! appsink name=sink sync=false",
        caps(format)
    ))
    .iter()
    .zip(0u64..)
    .map(|(sample, n)| {
        let mut buffer = sample.buffer().unwrap().copy();
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(n * FRAME_NS));
        b.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
        buffer
    })
    .collect();
    assert_eq!(frames.len(), count as usize);
    frames
}

/// What a run gave: the frames, or the first error on the bus.
type Run = Result<Vec<gst::Buffer>, String>;

/// Pushes `inputs` through `wanedit backend=candle` with the VACE model on the CPU (9-frame
/// windows sharing 1 frame, 2 steps, seed 5), with `properties` set from strings on top.
fn edit(format: &str, inputs: &[gst::Buffer], properties: &[(&str, &str)]) -> Run {
    support::init();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&caps(format))
        .format(gst::Format::Time)
        .build();
    let wanedit = gst::ElementFactory::make("wanedit")
        .property_from_str("backend", "candle")
        .property("model", model_dir(MODEL_CASE))
        .property("device", "cpu")
        .property_from_str("resolution", "native")
        .property("window-frames", 9u32)
        .property("overlap-frames", 1u32)
        .property("num-inference-steps", 2u32)
        .property("seed", 5i64)
        .property("prompt", "replace the ball with a kite")
        .build()
        .unwrap();
    for (name, value) in properties {
        wanedit.set_property_from_str(name, value);
    }
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline
        .add_many([src.upcast_ref(), &wanedit, sink.upcast_ref()])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &wanedit, sink.upcast_ref()]).unwrap();
    let bus = pipeline.bus().unwrap();
    let first_error = || {
        bus.iter().find_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
    };
    let _ = pipeline.set_state(gst::State::Playing);
    // The model loads on a worker thread: wanedit's own state change ends once it is
    // loaded (or failed), while the sink waits for a frame to preroll.
    let (started, ..) = wanedit.state(gst::ClockTime::from_seconds(120));
    if started.is_err() {
        let error = first_error().unwrap_or_else(|| "no error message".into());
        pipeline.set_state(gst::State::Null).unwrap();
        return Err(error);
    }
    for buffer in inputs {
        src.push_buffer(buffer.clone()).unwrap();
    }
    src.end_of_stream().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut out = Vec::new();
    let result = loop {
        if let Some(error) = first_error() {
            break Err(error);
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            Some(sample) => out.push(sample.buffer().unwrap().copy()),
            None if sink.is_eos() => break Ok(out),
            None => assert!(Instant::now() < deadline, "no EOS within 300 s"),
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();
    result
}

/// Every frame back, at its input's PTS.
fn assert_accounted(inputs: &[gst::Buffer], outputs: &[gst::Buffer]) {
    let pts = |b: &[gst::Buffer]| b.iter().map(|b| b.pts()).collect::<Vec<_>>();
    assert_eq!(
        pts(outputs),
        pts(inputs),
        "one output per input, at its PTS"
    );
}

/// The samples of every component of a frame whose pixels lie in columns `columns`
/// (chroma samples where the whole block they cover does), in plane order.
fn samples(
    info: &gst_video::VideoInfo,
    buffer: &gst::Buffer,
    columns: std::ops::Range<u32>,
) -> Vec<u8> {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), info).unwrap();
    let format = info.format_info();
    let mut out = Vec::new();
    for c in 0..format.n_components() as usize {
        let (plane, offset, step) = (
            format.plane()[c] as usize,
            format.poffset()[c] as usize,
            format.pixel_stride()[c] as usize,
        );
        let (w_sub, h_sub) = (format.w_sub()[c], format.h_sub()[c]);
        let bytes = format.depth()[c].div_ceil(8) as usize;
        let stride = info.stride()[plane] as usize;
        let data = frame.plane_data(plane as u32).unwrap();
        let first = columns.start.div_ceil(1 << w_sub) as usize;
        let end = (columns.end >> w_sub) as usize;
        for y in 0..(SIDE as usize >> h_sub) {
            for x in first..end {
                let at = y * stride + offset + x * step;
                out.extend_from_slice(&data[at..at + bytes]);
            }
        }
    }
    out
}

/// Runs `format` through a mask that edits the left half, and checks that the right
/// half comes out as it went in, bit for bit, and the left half does not.
fn right_half_is_kept(format: &str, properties: &[(&str, &str)], inputs: Vec<gst::Buffer>) {
    let outputs = edit(format, &inputs, properties).unwrap();
    assert_accounted(&inputs, &outputs);
    let info = gst_video::VideoInfo::from_caps(&caps(format)).unwrap();
    let mut edited = 0;
    for (i, (input, output)) in inputs.iter().zip(&outputs).enumerate() {
        assert_eq!(
            samples(&info, output, SIDE / 2..SIDE),
            samples(&info, input, SIDE / 2..SIDE),
            "{format} frame {i}: the kept half"
        );
        edited +=
            usize::from(samples(&info, output, 0..SIDE / 2) != samples(&info, input, 0..SIDE / 2));
    }
    assert_eq!(
        edited,
        inputs.len(),
        "{format}: every frame's left half is edited"
    );
}

#[test]
fn outside_a_mask_file_the_output_is_the_input_bit_for_bit_at_8_and_10_bits() {
    let mask = left_mask(SIDE / 2);
    let mask = mask.to_str().unwrap();
    for format in ["I420", "I420_10LE", "RGB"] {
        // 17 frames: two windows, crossfaded over the frame they share.
        right_half_is_kept(format, &[("mask", mask)], source(format, 17));
    }
}

#[test]
fn the_alpha_of_an_rgba_stream_chooses_the_region_and_passes_through() {
    // Alpha 255 (edit) on the left half, 0 (keep) on the right, 128 on row 0's left.
    let inputs: Vec<gst::Buffer> = source("RGBA", 17)
        .into_iter()
        .map(|mut buffer| {
            let mut map = buffer.make_mut().map_writable().unwrap();
            for (i, pixel) in map.chunks_exact_mut(4).enumerate() {
                let (x, y) = (i as u32 % SIDE, i as u32 / SIDE);
                pixel[3] = match (x < SIDE / 2, y) {
                    (true, 0) => 128,
                    (true, _) => 255,
                    (false, _) => 0,
                };
            }
            drop(map);
            buffer
        })
        .collect();
    let outputs = edit("RGBA", &inputs, &[("mask", "alpha")]).unwrap();
    assert_accounted(&inputs, &outputs);
    for (input, output) in inputs.iter().zip(&outputs) {
        let (a, b) = (
            input.map_readable().unwrap(),
            output.map_readable().unwrap(),
        );
        let alpha = |m: &[u8]| m.chunks_exact(4).map(|p| p[3]).collect::<Vec<_>>();
        assert_eq!(alpha(&b), alpha(&a), "alpha passes through");
        for (i, (p, q)) in a.chunks_exact(4).zip(b.chunks_exact(4)).enumerate() {
            if i as u32 % SIDE >= SIDE / 2 {
                assert_eq!(p, q, "pixel {i} has alpha 0: kept");
            }
        }
    }
}

#[test]
fn reference_images_reach_the_model_and_too_many_are_refused() {
    let inputs = source("RGB", 9);
    let red = plain_image("red.png", [230, 20, 20], 24, 40);
    let blue = plain_image("blue.png", [20, 20, 230], 40, 24);
    let (red, blue) = (red.to_str().unwrap(), blue.to_str().unwrap());
    let plain = edit("RGB", &inputs, &[]).unwrap();
    let one = edit("RGB", &inputs, &[("reference-image", red)]).unwrap();
    let two = edit(
        "RGB",
        &inputs,
        &[("reference-image", &format!("{red}, {blue}"))],
    )
    .unwrap();
    for run in [&plain, &one, &two] {
        assert_accounted(&inputs, run);
    }
    let bytes = |run: &[gst::Buffer]| {
        run.iter()
            .flat_map(|b| b.map_readable().unwrap().to_vec())
            .collect::<Vec<u8>>()
    };
    assert_ne!(bytes(&one), bytes(&plain), "a reference changes the edit");
    assert_ne!(bytes(&two), bytes(&one), "so does a second one");
    assert_eq!(
        bytes(&edit("RGB", &inputs, &[("reference-image", red)]).unwrap()),
        bytes(&one),
        "the same seed and reference give the same edit"
    );

    let five = [red; 5].join(",");
    let error = edit("RGB", &inputs, &[("reference-image", &five)]).unwrap_err();
    assert!(
        error.contains("at most 4 reference image(s), not 5"),
        "{error}"
    );
}

/// Frames of a 13-frame run with 5-frame windows sharing 1: window 0 gives frames 0-4,
/// window 1 frames 4-8 and window 2 frames 8-12; frames 9-12 are window 2's alone.
fn frames(run: &[gst::Buffer], range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    run[range]
        .iter()
        .map(|b| b.map_readable().unwrap().to_vec())
        .collect()
}

#[test]
fn seam_anchor_carries_the_first_frame_on_past_the_first_window() {
    let inputs = source("RGB", 13);
    let white = plain_image("white.png", [255; 3], SIDE, SIDE);
    let black = plain_image("black.png", [0; 3], SIDE, SIDE);
    let run = |seam: &str, first: &Path| {
        let outputs = edit(
            "RGB",
            &inputs,
            &[
                ("window-frames", "5"),
                ("seam", seam),
                ("first-frame", first.to_str().unwrap()),
            ],
        )
        .unwrap();
        assert_accounted(&inputs, &outputs);
        outputs
    };
    let (anchored_white, anchored_black) = (run("anchor", &white), run("anchor", &black));
    let (faded_white, faded_black) = (run("crossfade", &white), run("crossfade", &black));

    // Which frames the first frame changed, frame by frame.
    let changed = |white: &[gst::Buffer], black: &[gst::Buffer]| {
        frames(white, 0..13)
            .iter()
            .zip(frames(black, 0..13))
            .map(|(w, b)| *w != b)
            .collect::<Vec<bool>>()
    };
    let (anchored, faded) = (
        changed(&anchored_white, &anchored_black),
        changed(&faded_white, &faded_black),
    );
    assert!(
        anchored[..4].iter().all(|&c| c) && faded[..4].iter().all(|&c| c),
        "the first window follows its first frame: {anchored:?} {faded:?}"
    );
    // The tiny model's random weights carry a known frame's influence only faintly, often
    // below an 8-bit step (docs/seams.md): what must hold is that it reaches past the first
    // window only through the anchor.
    assert!(
        anchored[5..].iter().any(|&c| c),
        "anchored, a later window follows the first frame: {anchored:?}"
    );
    assert!(
        faded[5..].iter().all(|&c| !c),
        "crossfaded, the later windows know nothing of it: {faded:?}"
    );
}

#[test]
fn settings_a_model_cannot_take_fail_at_ready_to_paused() {
    let inputs = source("RGB", 5);
    let white = plain_image("first.png", [255; 3], SIDE, SIDE);
    let white = white.to_str().unwrap();
    // A video-to-video model is no VACE model.
    let v2v = model_dir("v2v_square_f5_4steps_cfg");
    for property in ["first-frame", "reference-image"] {
        let error = edit("RGB", &inputs, &[("model", &v2v), (property, white)]).unwrap_err();
        assert!(
            error.contains(property) && error.contains("backend=candle with a VACE model"),
            "{error}"
        );
    }

    let missing = temp_path("nowhere.png");
    let error = edit(
        "RGB",
        &inputs,
        &[("first-frame", missing.to_str().unwrap())],
    )
    .unwrap_err();
    assert!(
        error.contains("first-frame")
            && error.contains(&format!("{}: cannot read the file", missing.display())),
        "{error}"
    );
    let text = temp_path("notes.png");
    std::fs::write(&text, "not a picture").unwrap();
    let error = edit(
        "RGB",
        &inputs,
        &[("reference-image", text.to_str().unwrap())],
    )
    .unwrap_err();
    assert!(error.contains("not a PNG or JPEG image"), "{error}");
}

#[test]
fn gst_launch_edits_only_the_masked_region_with_a_vace_model() {
    let registry = temp_path("registry.bin");
    let mask = left_mask(SIDE / 2);
    let reference = plain_image("launch-ref.png", [40, 200, 40], 16, 16);
    let first = plain_image("launch-first.png", [250, 250, 250], SIDE, SIDE);
    let (plain, edited) = (temp_path("launch-in.raw"), temp_path("launch-out.raw"));
    let source = format!(
        "videotestsrc num-buffers=17 pattern=ball ! video/x-raw,format=I420,width={SIDE},height={SIDE},framerate=16/1"
    );
    let launch = |middle: String, out: &Path| {
        let pipeline = format!("{source} ! {middle} filesink location={}", out.display());
        files::run_ok(
            files::with_plugin("gst-launch-1.0", 300, &registry).args(pipeline.split_whitespace()),
        )
    };
    launch(String::new(), &plain);
    let stdout = launch(
        format!(
            "wanedit backend=candle device=cpu resolution=native window-frames=9 overlap-frames=1 \
             num-inference-steps=2 seed=3 seam=anchor model={} mask={} reference-image={} first-frame={} !",
            model_dir(MODEL_CASE),
            mask.display(),
            reference.display(),
            first.display()
        ),
        &edited,
    );
    assert!(stdout.contains("Got EOS"), "{stdout}");
    let (plain, edited) = (
        std::fs::read(plain).unwrap(),
        std::fs::read(edited).unwrap(),
    );
    assert_eq!(edited.len(), plain.len(), "17 frames of I420 out");
    let info = gst_video::VideoInfo::from_caps(&caps("I420")).unwrap();
    for (i, (a, b)) in plain
        .chunks(info.size())
        .zip(edited.chunks(info.size()))
        .enumerate()
    {
        let (a, b) = (
            gst::Buffer::from_slice(a.to_vec()),
            gst::Buffer::from_slice(b.to_vec()),
        );
        assert_eq!(
            samples(&info, &b, SIDE / 2..SIDE),
            samples(&info, &a, SIDE / 2..SIDE),
            "frame {i}"
        );
        assert_ne!(
            samples(&info, &b, 0..SIDE / 2),
            samples(&info, &a, 0..SIDE / 2),
            "frame {i}"
        );
    }
    let _ = std::fs::remove_file(registry);
}
