//! Broadcast input: interlaced video is refused with an error that says what to do.

mod support;

use gst::prelude::*;
use gst_video::prelude::*;
use support::*;

/// The error posted on `bus`.
fn error_of(bus: &gst::Bus) -> String {
    std::iter::from_fn(|| bus.pop())
        .find_map(|m| match m.view() {
            gst::MessageView::Error(err) => Some(err.error().to_string()),
            _ => None,
        })
        .expect("an error on the bus")
}

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
        Editor::new(move |r| {
            let f = &r.frames[0];
            seen.lock()
                .unwrap()
                .get_or_insert(f.pixel(f.width / 2, f.height / 2));
            Ok(r.frames.clone())
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
