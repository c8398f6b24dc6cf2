//! Broadcast input: interlaced video is refused with an error that says what to do.

mod support;

use gst::prelude::*;
use gst_video::prelude::*;
use support::*;

#[test]
fn interlaced_caps_are_refused_with_a_pointer_to_deinterlace() {
    for mode in ["interleaved", "mixed", "alternate"] {
        let e = element(Editor::identity(), 5, 1);
        let bus = gst::Bus::new();
        e.set_bus(Some(&bus));
        let info = gst_video::VideoInfo::from_caps(&video_caps("I420", 16, 8)).unwrap();
        let mut caps = video_caps("I420", 16, 8);
        caps.make_mut().set("interlace-mode", mode);
        let mut h = gst_check::Harness::with_element(&e, Some("sink"), Some("src"));
        h.set_src_caps(caps);
        h.play();
        assert_eq!(
            h.push(frame(&info, 0, 10)),
            Err(gst::FlowError::NotNegotiated),
            "{mode}"
        );
        let error = error_of(&bus);
        assert_eq!(
            error,
            format!(
                "wanedit takes progressive video only, not interlace-mode={mode}: put \
                 deinterlace in front of wanedit"
            )
        );
    }
}

#[test]
fn a_buffer_flagged_interlaced_is_refused() {
    let e = element(Editor::identity(), 5, 1);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let (mut h, info) = harness(&e, video_caps("I420", 16, 8));
    assert_eq!(h.push(frame(&info, 0, 10)), Ok(gst::FlowSuccess::Ok));
    let mut field = frame(&info, 1, 10);
    field
        .get_mut()
        .unwrap()
        .set_video_flags(gst_video::VideoBufferFlags::INTERLACED);
    assert_eq!(h.push(field), Err(gst::FlowError::NotNegotiated));
    assert!(error_of(&bus).contains("put deinterlace in front of wanedit"));
}

/// What the backend saw of the first frame of the first window: the RGB of its centre.
fn rgb_seen_by_the_backend(caps: gst::Caps, luma: u8) -> ([u8; 3], gst::Caps) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let editor = {
        let seen = seen.clone();
        Editor::new(move |_, frames| {
            let f = &frames[0];
            seen.lock()
                .unwrap()
                .get_or_insert(f.pixel(f.width / 2, f.height / 2));
            Ok(frames)
        })
    };
    let e = element(editor, 5, 1);
    let (mut h, info) = harness(&e, caps);
    for n in 0..5 {
        let mut frame = frame(&info, n, 128);
        {
            // Luma `luma`, chroma neutral (128): a grey.
            let frame = frame.get_mut().unwrap();
            let mut map = frame.map_writable().unwrap();
            map[..info.offset()[1]].fill(luma);
        }
        h.push(frame).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert_eq!(pull_all(&mut h).len(), 5);
    let out_caps = h.sinkpad().unwrap().current_caps().unwrap();
    let rgb = seen.lock().unwrap().expect("the backend got a window");
    (rgb, out_caps)
}

#[test]
fn the_range_of_the_caps_is_undone_for_the_model_and_the_colorimetry_is_kept() {
    let with = |colorimetry: &str| {
        let mut caps = video_caps("I420", 32, 16);
        caps.make_mut().set("colorimetry", colorimetry);
        caps
    };
    // Limited range: luma 235 is white, 16 is black.
    let (white, out) = rgb_seen_by_the_backend(with("bt709"), 235);
    assert!(white.iter().all(|&v| v >= 253), "{white:?}");
    assert_eq!(
        out.structure(0)
            .unwrap()
            .get::<&str>("colorimetry")
            .unwrap(),
        "bt709"
    );
    let (black, _) = rgb_seen_by_the_backend(with("bt709"), 16);
    assert!(black.iter().all(|&v| v <= 2), "{black:?}");
    // Full range: luma 235 is a light grey, not white.
    let (grey, _) = rgb_seen_by_the_backend(with("1:3:5:1"), 235);
    assert!(grey.iter().all(|&v| v.abs_diff(235) <= 2), "{grey:?}");
    // BT.2020 with the PQ transfer: kept on the way out.
    let (_, out) = rgb_seen_by_the_backend(with("bt2100-pq"), 128);
    assert_eq!(
        out.structure(0)
            .unwrap()
            .get::<&str>("colorimetry")
            .unwrap(),
        "bt2100-pq"
    );
}

/// The first sample of a frame of `format`, at the format's own depth.
fn first_sample(format: &str, data: &[u8]) -> u32 {
    let word = u16::from_le_bytes([data[0], data[1]]) as u32;
    match format {
        // Samples in the high bits of the word.
        "P010_10LE" => word >> 6,
        "P012_LE" => word >> 4,
        // Y0 in bits 10-19 of the first 32-bit word (Cb0 Y0 Cr0).
        "v210" => (u32::from_le_bytes([data[0], data[1], data[2], data[3]]) >> 10) & 0x3ff,
        _ => word,
    }
}

#[test]
fn deep_formats_are_blended_at_their_own_depth() {
    // W=5, O=2 over 8 frames: window 0 on [0, 5), the last window on [3, 8). Frames 3 and
    // 4 mix the two windows' edits with weights 1/3 and 2/3.
    for format in [
        "I420_10LE",
        "I422_10LE",
        "Y444_10LE",
        "P010_10LE",
        "v210",
        "I420_12LE",
        "P012_LE",
    ] {
        let editor = Editor::tint(|window| {
            if window == 0 {
                [200, 40, 90]
            } else {
                [30, 220, 160]
            }
        });
        let e = element(editor, 5, 2);
        let (mut h, info) = harness(&e, video_caps(format, 48, 16));
        for n in 0..8 {
            h.push(frame(&info, n, 0)).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        let out = pull_all(&mut h);
        assert_eq!(out.len(), 8, "{format}");
        let samples: Vec<u32> = out
            .iter()
            .map(|b| first_sample(format, &b.map_readable().unwrap()))
            .collect();
        let (a, b) = (samples[0] as f64, samples[7] as f64);
        assert!(
            (a - b).abs() > 100.0,
            "{format}: the two edits differ: {samples:?}"
        );
        for (n, weight) in [(3, 1.0 / 3.0), (4, 2.0 / 3.0)] {
            let exact = (1.0 - weight) * a + weight * b;
            assert!(
                (samples[n] as f64 - exact).abs() <= 1.0,
                "{format}: frame {n} is {}, the mix at full depth is {exact}: {samples:?}",
                samples[n]
            );
        }
        assert!(samples[..3].iter().all(|&s| s == samples[0]), "{format}");
        assert!(samples[5..].iter().all(|&s| s == samples[7]), "{format}");
    }
}
