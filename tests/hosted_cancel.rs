//! A flushing seek while three windows are in flight cancels the three remote jobs, and
//! nothing from before the seek comes out after it.

#[path = "support/hosted/mod.rs"]
mod hosted;

use std::sync::atomic::Ordering;
use std::time::Duration;

use hosted::pipeline::{HEIGHT, RATE, WIDTH, colour, frame_pts, invert};
use hosted::server::KEY;
use hosted::{Kind, Mock, Route};

fn frame(info: &gst_video::VideoInfo, n: u64) -> gst::Buffer {
    let stride = info.stride()[0] as usize;
    let mut data = vec![0u8; info.size()];
    for y in 0..HEIGHT as usize {
        for x in 0..WIDTH as usize {
            data[y * stride + x * 3..][..3].copy_from_slice(&colour(n));
        }
    }
    let mut buffer = gst::Buffer::from_mut_slice(data);
    let b = buffer.get_mut().unwrap();
    b.set_pts(frame_pts(n));
    b.set_duration(frame_pts(1));
    buffer
}

fn wait_for(mock: &Mock, route: Route, count: usize) -> usize {
    for _ in 0..600 {
        if mock.count(route) >= count {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    mock.count(route)
}

#[test]
fn a_flushing_seek_cancels_the_jobs_in_flight_and_leaves_no_stale_frame() {
    gst::init().unwrap();
    gstwanedit::plugin_register_static().unwrap();
    let mock = Mock::start(Kind::Replicate);
    mock.never_finish.store(true, Ordering::SeqCst);
    let element = gst::ElementFactory::make("wanedit")
        .property("prompt", "invert it")
        .property_from_str("backend", "replicate")
        .property("endpoint", &mock.url)
        .property("api-key", KEY)
        .property("window-frames", 33u32)
        .property("overlap-frames", 8u32)
        .property("max-in-flight", 4u32)
        .property("job-timeout", 120u32)
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", WIDTH as i32)
        .field("height", HEIGHT as i32)
        .field("framerate", gst::Fraction::new(RATE, 1))
        .build();
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    h.set_src_caps(caps);
    h.play();

    // Windows at 0, 25 and 50: three jobs, none of which ends.
    for n in 0..83 {
        h.push(frame(&info, n)).unwrap();
    }
    assert_eq!(wait_for(&mock, Route::Create, 3), 3, "three jobs in flight");

    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert_eq!(
        wait_for(&mock, Route::Cancel, 3),
        3,
        "one cancel per job in flight"
    );
    let mut cancelled: Vec<String> = mock
        .seen()
        .into_iter()
        .filter(|s| s.route == Route::Cancel)
        .map(|s| s.path)
        .collect();
    cancelled.sort();
    cancelled.dedup();
    assert_eq!(cancelled.len(), 3, "three different jobs: {cancelled:?}");

    // After the seek the provider answers again.
    mock.never_finish.store(false, Ordering::SeqCst);
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    for n in 100..140 {
        h.push(frame(&info, n)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut out = Vec::new();
    while let Ok(Some(buffer)) = h.pull_until_eos() {
        out.push(buffer);
    }
    let pts: Vec<gst::ClockTime> = out.iter().map(|b| b.pts().unwrap()).collect();
    let expected: Vec<gst::ClockTime> = (100..140).map(frame_pts).collect();
    assert_eq!(pts, expected, "exactly the frames after the seek");
    for (buffer, n) in out.iter().zip(100..) {
        let map = buffer.map_readable().unwrap();
        let at = (HEIGHT as usize / 2) * info.stride()[0] as usize + (WIDTH as usize / 2) * 3;
        let want = invert(colour(n));
        let got = [map[at], map[at + 1], map[at + 2]];
        assert!(
            got.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 10),
            "frame {n}: {got:?}, expected about {want:?}"
        );
    }
    assert_eq!(
        mock.count(Route::Cancel),
        3,
        "no job after the seek was cancelled"
    );
}
