//! Frame accounting: every input buffer comes out exactly once, in order, with its
//! timestamps, offsets, flags and timecode, whatever the stream length and windowing.

mod support;

use gst::prelude::*;
use gst_video::{ValidVideoTimeCode, VideoTimeCode, VideoTimeCodeFlags, VideoTimeCodeMeta};
use proptest::prelude::*;
use support::*;

fn window_and_overlap() -> impl Strategy<Value = (u32, u32)> {
    prop::sample::select(vec![5u32, 9, 17, 81]).prop_flat_map(|w| (Just(w), 0..w))
}

fn timecode(n: u64) -> ValidVideoTimeCode {
    let tc = VideoTimeCode::new(
        gst::Fraction::new(25, 1),
        None,
        VideoTimeCodeFlags::empty(),
        1,
        0,
        (n / 25) as u32,
        (n % 25) as u32,
        0,
    );
    tc.try_into().unwrap()
}

fn input(info: &gst_video::VideoInfo, n: u64, timecode_every: u64) -> gst::Buffer {
    let mut b = frame(info, n, (n % 251) as u8);
    let b_mut = b.get_mut().unwrap();
    if n == 0 {
        b_mut.set_flags(gst::BufferFlags::DISCONT);
    } else if n.is_multiple_of(3) {
        b_mut.set_flags(gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::MARKER);
    }
    if n.is_multiple_of(timecode_every) {
        VideoTimeCodeMeta::add(b_mut, &timecode(n));
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn every_input_buffer_comes_out_once_in_order(
        n in 1u64..=400,
        (window, overlap) in window_and_overlap(),
        timecode_every in 1u64..8,
        max_in_flight in 1u32..4,
    ) {
        let e = element(Editor::identity(), window, overlap);
        e.set_property("max-in-flight", max_in_flight);
        let (mut h, info) = harness(&e, video_caps("I420", 16, 8));
        let inputs: Vec<_> = (0..n).map(|i| input(&info, i, timecode_every)).collect();
        for b in &inputs {
            prop_assert_eq!(h.push(b.clone()), Ok(gst::FlowSuccess::Ok));
        }
        prop_assert!(h.push_event(gst::event::Eos::new()));
        let outputs = pull_all(&mut h);
        prop_assert_eq!(outputs.len(), inputs.len());
        for (i, o) in inputs.iter().zip(&outputs) {
            prop_assert_eq!(o.pts(), i.pts());
            prop_assert_eq!(o.dts(), i.dts());
            prop_assert_eq!(o.duration(), i.duration());
            prop_assert_eq!(o.offset(), i.offset());
            prop_assert_eq!(o.offset_end(), i.offset_end());
            prop_assert_eq!(o.flags(), i.flags());
            prop_assert_eq!(o.size(), info.size());
            let tc_in = i.meta::<VideoTimeCodeMeta>().map(|m| m.tc().to_string());
            let tc_out = o.meta::<VideoTimeCodeMeta>().map(|m| m.tc().to_string());
            prop_assert_eq!(tc_out, tc_in);
        }
    }
}
