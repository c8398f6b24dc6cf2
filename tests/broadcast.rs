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
