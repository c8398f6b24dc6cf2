//! The element with application-supplied backends: blending, geometry, events, errors,
//! state changes, latency, messages, properties.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use gstwanedit::backend::{BackendError, Resolution, RgbFrame, Size};
use support::*;

/// The texts of the warnings posted on `bus` so far, in order.
fn warnings(bus: &gst::Bus) -> Vec<String> {
    std::iter::from_fn(|| bus.pop())
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect()
}

fn colour(k: u64) -> [u8; 3] {
    [
        (40 + 70 * k % 200) as u8,
        (200 - 30 * k % 180) as u8,
        (17 * k % 256) as u8,
    ]
}

/// DESIGN.md section 3, written out independently of the element: windows of W with
/// stride W - O, a last window ending on the last frame, and each window crossfaded into
/// what the earlier windows left over the span they share.
fn expected_colours(n: u64, w: u64, o: u64, weight: fn(u64, u64) -> f64) -> Vec<[f64; 3]> {
    let s = w - o;
    let mut windows = vec![];
    let mut k = 0;
    while k * s + w <= n {
        windows.push((k * s, w));
        k += 1;
    }
    let covered = windows.last().map_or(0, |&(a, l)| a + l);
    if covered < n {
        let start = n.saturating_sub(w);
        windows.push((start, n - start));
    }
    let mut out = vec![[0.0; 3]; n as usize];
    let mut end = 0;
    for (k, &(start, len)) in windows.iter().enumerate() {
        let c = colour(k as u64).map(f64::from);
        let shared_end = end.max(start);
        for f in start..start + len {
            if f < shared_end {
                let x = weight(f - start, shared_end - start);
                let prev = out[f as usize];
                out[f as usize] = std::array::from_fn(|i| (1.0 - x) * prev[i] + x * c[i]);
            } else {
                out[f as usize] = c;
            }
        }
        end = end.max(start + len);
    }
    out
}

fn linear(j: u64, span: u64) -> f64 {
    (j + 1) as f64 / (span + 1) as f64
}

fn cosine(j: u64, span: u64) -> f64 {
    let x = linear(j, span);
    x * x * (3.0 - 2.0 * x)
}

fn cut(j: u64, span: u64) -> f64 {
    if 2 * j >= span { 1.0 } else { 0.0 }
}

fn run_harness(
    e: &gstwanedit::WanEdit,
    caps: gst::Caps,
    n: u64,
    value: u8,
) -> (Vec<gst::Buffer>, gst_check::Harness) {
    let (mut h, info) = harness(e, caps);
    for i in 0..n {
        assert_eq!(h.push(frame(&info, i, value)), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    (pull_all(&mut h), h)
}

#[test]
fn overlaps_are_blended_as_the_design_says_for_every_mode() {
    for (mode, weight) in [
        ("linear", linear as fn(u64, u64) -> f64),
        ("cosine", cosine),
        ("cut", cut),
    ] {
        for (n, w, o) in [
            (40u64, 9u32, 3u32),
            (31, 9, 4),
            (45, 17, 8),
            (3, 5, 2),
            (23, 5, 0),
        ] {
            let e = element(Editor::tint(colour), w, o);
            e.set_property_from_str("blend", mode);
            let (out, _h) = run_harness(&e, video_caps("RGBA", 8, 4), n, 0);
            assert_eq!(out.len() as u64, n);
            let expected = expected_colours(n, w.into(), o.into(), weight);
            for (f, (b, want)) in out.iter().zip(&expected).enumerate() {
                let map = b.map_readable().unwrap();
                for px in map.chunks(4) {
                    for c in 0..3 {
                        let diff = (px[c] as f64 - want[c]).abs();
                        assert!(
                            diff <= 1.0,
                            "{mode} n={n} W={w} O={o} frame {f} channel {c}: {} != {}",
                            px[c],
                            want[c]
                        );
                    }
                    assert_eq!(px[3], 255, "alpha stays opaque");
                }
            }
        }
    }
}

#[test]
fn windows_are_scaled_to_the_closest_bucket_and_back_to_the_input_caps() {
    let cases = [
        ("I420", 1920, 1080, Size::new(832, 480)),
        ("NV12", 1080, 1920, Size::new(480, 832)),
        ("RGBA", 640, 640, Size::new(624, 624)),
        ("BGRx", 854, 480, Size::new(832, 480)),
    ];
    for (format, width, height, bucket) in cases {
        let editor = Editor::identity().with_sizes(Resolution::P480.wan_buckets());
        let e = element(editor.clone(), 5, 1);
        let caps = video_caps(format, width, height);
        let (out, h) = run_harness(&e, caps.clone(), 7, 128);
        assert_eq!(out.len(), 7, "{format}");
        let seen = editor.seen();
        assert_eq!(seen.len(), 2, "{format}: windows [0,5) and [2,7)");
        assert!(seen.iter().all(|s| s.size == bucket), "{format}: {seen:?}");
        assert_eq!(h.sinkpad().unwrap().current_caps().unwrap(), caps);
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        for b in &out {
            assert_eq!(b.size(), info.size());
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(b, &info).unwrap();
            let plane = frame.plane_data(0).unwrap();
            // A flat grey survives the round trip through the bucket size.
            let expect_grey = |v: u8| (v as i32 - 128).abs() <= 2;
            assert!(
                expect_grey(plane[0]) && expect_grey(plane[plane.len() / 2]),
                "{format}: {}",
                plane[0]
            );
        }
    }
}

#[test]
fn short_windows_are_padded_to_an_accepted_length_and_padding_is_discarded() {
    let editor = Editor::identity();
    let e = element(editor.clone(), 81, 16);
    let (out, _h) = run_harness(&e, video_caps("I420", 16, 8), 7, 10);
    assert_eq!(out.len(), 7);
    let seen = editor.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].frames, seen[0].real_frames), (9, 7));
}

#[test]
fn one_frame_and_empty_streams() {
    let editor = Editor::tint(colour);
    let e = element(editor.clone(), 9, 2);
    let (out, _h) = run_harness(&e, video_caps("RGB", 4, 4), 1, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].map_readable().unwrap()[..3], &colour(0));
    assert_eq!(editor.seen()[0].frames, 5);

    let editor = Editor::tint(colour);
    let e = element(editor.clone(), 9, 2);
    let (out, _h) = run_harness(&e, video_caps("RGB", 4, 4), 0, 0);
    assert!(out.is_empty());
    assert!(editor.seen().is_empty());
}

#[test]
fn a_flushing_seek_in_the_middle_of_a_window_drops_what_came_before_and_nothing_after() {
    let editor = Editor::tint(colour).with_delay(Duration::from_millis(300));
    let e = element(editor.clone(), 9, 2);
    let (mut h, info) = harness(&e, video_caps("RGB", 4, 4));
    for i in 0..12 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    for i in 100..110 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let out = pull_all(&mut h);
    let pts: Vec<u64> = out
        .iter()
        .map(|b| b.pts().unwrap().nseconds() / FRAME_NS)
        .collect();
    let after: Vec<u64> = pts.iter().copied().filter(|&p| p >= 100).collect();
    assert_eq!(after, (100..110).collect::<Vec<_>>(), "all of {pts:?}");
    let before: Vec<u64> = pts.iter().copied().filter(|&p| p < 100).collect();
    assert_eq!(
        before,
        (0..before.len() as u64).collect::<Vec<_>>(),
        "a prefix, in order"
    );
    assert!(before.len() < 12);
    // Window numbering restarts after the flush.
    assert_eq!(
        &out.last().unwrap().map_readable().unwrap()[..3],
        &colour(1)
    );
    assert!(
        editor.counters.dropped.load(Ordering::SeqCst)
            >= editor.counters.started.load(Ordering::SeqCst) - 1
    );
}

#[test]
fn a_caps_change_in_the_middle_of_a_window_drains_then_renegotiates() {
    let editor = Editor::tint(colour);
    let e = element(editor.clone(), 9, 2);
    let (mut h, small_info) = harness(&e, video_caps("RGB", 4, 4));
    let large = video_caps("I420", 16, 8);
    let large_info = gst_video::VideoInfo::from_caps(&large).unwrap();
    for i in 0..6 {
        h.push(frame(&small_info, i, 0)).unwrap();
    }
    h.set_src_caps(large.clone());
    for i in 6..19 {
        h.push(frame(&large_info, i, 0)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let out = pull_all(&mut h);
    let sizes: Vec<usize> = out.iter().map(|b| b.size()).collect();
    let mut expected = vec![small_info.size(); 6];
    expected.extend(vec![large_info.size(); 13]);
    assert_eq!(sizes, expected);
    assert_eq!(h.sinkpad().unwrap().current_caps().unwrap(), large);
    // The first run is one short window; the second run's windows follow it.
    let seen: Vec<(u64, usize)> = editor
        .seen()
        .iter()
        .map(|s| (s.index, s.real_frames))
        .collect();
    assert_eq!(seen, vec![(0, 6), (1, 9), (2, 9)]);
}

fn bus_messages(pipeline: &gst::Pipeline) -> Vec<gst::Message> {
    let bus = pipeline.bus().unwrap();
    let mut all = vec![];
    while let Some(m) = bus.timed_pop(gst::ClockTime::from_seconds(30)) {
        let end = matches!(
            m.view(),
            gst::MessageView::Eos(_) | gst::MessageView::Error(_)
        );
        all.push(m);
        if end {
            break;
        }
    }
    all
}

fn launch(description: &str, editor: Editor) -> (gst::Pipeline, gst_app::AppSink) {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let e = pipeline
        .by_name("edit")
        .unwrap()
        .downcast::<gstwanedit::WanEdit>()
        .unwrap();
    e.set_backend(editor);
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    (pipeline, sink)
}

/// Pulls every sample the playing `pipeline` brings to `sink`, stops it, and checks that
/// the stream ended with EOS; returns the samples and the bus messages.
fn pull_to_eos(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
) -> (Vec<gst::Sample>, Vec<gst::Message>) {
    let samples =
        std::iter::from_fn(|| sink.try_pull_sample(gst::ClockTime::from_seconds(30))).collect();
    let messages = bus_messages(pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(
        messages.last().unwrap().view(),
        gst::MessageView::Eos(_)
    ));
    (samples, messages)
}

#[test]
fn a_parsed_pipeline_edits_every_frame_with_the_application_backend() {
    let (pipeline, sink) = launch(
        "videotestsrc num-buffers=30 ! video/x-raw,format=I420,width=64,height=48,framerate=30/1 \
         ! wanedit name=edit window-frames=9 overlap-frames=2 prompt=\"make it red\" \
         ! appsink name=sink sync=false",
        Editor::tint(|_| [255, 0, 0]),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let (samples, messages) = pull_to_eos(&pipeline, &sink);
    assert_eq!(samples.len(), 30);
    for (i, s) in samples.iter().enumerate() {
        let b = s.buffer().unwrap();
        assert_eq!(
            b.pts(),
            Some(gst::ClockTime::from_nseconds(i as u64 * 1_000_000_000 / 30))
        );
        // Pure red in I420 (BT.601): Y about 81.
        let y = b.map_readable().unwrap()[0];
        assert!((79..=84).contains(&y), "frame {i}: Y = {y}");
    }
    let states: Vec<(u64, String)> = messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(e) if e.structure()?.name() == "wanedit-window" => {
                let s = e.structure()?;
                Some((s.get::<u64>("index").ok()?, s.get::<String>("state").ok()?))
            }
            _ => None,
        })
        .collect();
    // 30 frames, W=9, S=7: windows at 0, 7, 14 and a last one at 21.
    for k in 0..4u64 {
        let of_k: Vec<&str> = states
            .iter()
            .filter(|(i, _)| *i == k)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(of_k, vec!["queued", "done"], "window {k}");
    }
}

#[test]
fn a_failing_window_posts_an_error_naming_window_and_cause() {
    let (pipeline, _sink) = launch(
        "videotestsrc num-buffers=12 ! video/x-raw,format=RGB,width=8,height=8 \
         ! wanedit name=edit window-frames=5 overlap-frames=1 ! appsink name=sink sync=false",
        Editor::failing("the model ran out of memory"),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let messages = bus_messages(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    let error = messages
        .iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
        .expect("an error");
    // Windows run in parallel: whichever fails first stops the stream.
    assert!(
        error.starts_with("backend test-editor failed on window "),
        "{error}"
    );
    // A failed job may pass: the window was submitted twice more (window-retries=2).
    assert!(error.contains(" frames, 3 attempts): "), "{error}");
    assert!(
        error.contains("job job-1 failed: the model ran out of memory"),
        "{error}"
    );
}

#[test]
fn passthrough_outputs_the_original_frames_and_warns() {
    let editor = Editor::failing("quota exceeded");
    let e = element(editor, 5, 1);
    e.set_property_from_str("on-error", "passthrough");
    let (mut h, info) = harness(&e, video_caps("I420", 16, 8));
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    for i in 0..12 {
        h.push(frame(&info, i, 10 + i as u8)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 12);
    for (i, b) in out.iter().enumerate() {
        assert!(
            b.map_readable().unwrap().iter().all(|&v| v == 10 + i as u8),
            "frame {i}"
        );
    }
    let warnings = warnings(&bus);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    for k in 0..3 {
        assert!(
            warnings.iter().any(|w| w.contains(&format!("window {k} "))),
            "{warnings:?}"
        );
    }
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("job job-1 failed: quota exceeded"))
    );
}

#[test]
fn a_job_that_outlives_job_timeout_counts_as_failed() {
    let editor = Editor::tint(colour).with_delay(Duration::from_secs(3600));
    let e = element(editor.clone(), 5, 1);
    e.set_property("job-timeout", 1u32);
    e.set_property("window-retries", 0u32);
    e.set_property_from_str("on-error", "passthrough");
    let (out, _h) = run_harness(&e, video_caps("GRAY8", 4, 4), 5, 33);
    assert_eq!(out.len(), 5);
    assert!(
        out.iter()
            .all(|b| b.map_readable().unwrap().iter().all(|&v| v == 33))
    );
    assert_eq!(
        editor.counters.dropped.load(Ordering::SeqCst),
        1,
        "the backend's job was cancelled"
    );
}

#[test]
fn twenty_state_cycles_with_jobs_in_flight_neither_hang_nor_leak() {
    let editor = Editor::tint(colour).with_delay(Duration::from_secs(3600));
    for _ in 0..20 {
        let (pipeline, _sink) = launch(
            "videotestsrc is-live=true ! video/x-raw,format=I420,width=16,height=16,framerate=200/1 \
             ! wanedit name=edit window-frames=5 overlap-frames=1 max-in-flight=3 \
             ! appsink name=sink sync=false",
            editor.clone(),
        );
        pipeline.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        pipeline.set_state(gst::State::Null).unwrap();
    }
    let started = editor.counters.started.load(Ordering::SeqCst);
    assert!(started >= 20, "jobs were in flight: {started}");
    // Every job's future is dropped (cancelled), none finished.
    for _ in 0..100 {
        if editor.counters.dropped.load(Ordering::SeqCst) == started {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(editor.counters.dropped.load(Ordering::SeqCst), started);
    assert_eq!(editor.counters.finished.load(Ordering::SeqCst), 0);
}

#[test]
fn latency_adds_a_window_of_frames_and_the_processing_latency() {
    let (pipeline, _sink) = launch(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=16,height=16,framerate=20/1 \
         ! wanedit name=edit window-frames=9 overlap-frames=2 processing-latency=1500 \
         ! appsink name=sink sync=false",
        Editor::identity(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(10)).0.unwrap();
    let e = pipeline.by_name("edit").unwrap();
    let mut q = gst::query::Latency::new();
    assert!(e.static_pad("src").unwrap().query(&mut q));
    let (live, min, _max) = q.result();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(live);
    // videotestsrc adds one frame (50 ms); 9 frames at 20 fps are 450 ms.
    assert_eq!(min, gst::ClockTime::from_mseconds(50 + 450 + 1500));
}

#[test]
fn prompt_changes_apply_to_windows_not_yet_submitted() {
    let editor = Editor::identity();
    let e = element(editor.clone(), 5, 0);
    e.set_property("prompt", "first");
    let (mut h, info) = harness(&e, video_caps("GRAY8", 4, 4));
    for i in 0..5 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    e.set_property("prompt", "second");
    for i in 5..10 {
        h.push(frame(&info, i, 0)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert_eq!(pull_all(&mut h).len(), 10);
    let prompts: Vec<String> = editor.seen().into_iter().map(|s| s.prompt).collect();
    assert_eq!(prompts, vec!["first", "second"]);
}

#[test]
fn bad_settings_fail_at_ready_to_paused_with_a_clear_message() {
    init();
    let cases = [
        (
            vec![("window-frames", "80")],
            "window-frames=80 must be 4n+1",
        ),
        (
            vec![("window-frames", "9"), ("overlap-frames", "9")],
            "overlap-frames=9 must be smaller than window-frames=9",
        ),
        (
            vec![("backend", "custom")],
            "backend=custom needs a backend object",
        ),
    ];
    for (props, message) in cases {
        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("videotestsrc").build().unwrap();
        let e = gst::ElementFactory::make("wanedit").build().unwrap();
        for (k, v) in props {
            e.set_property_from_str(k, v);
        }
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        pipeline.add_many([&src, &e, &sink]).unwrap();
        gst::Element::link_many([&src, &e, &sink]).unwrap();
        assert!(pipeline.set_state(gst::State::Paused).is_err());
        let bus = pipeline.bus().unwrap();
        let error = std::iter::from_fn(|| bus.pop())
            .find_map(|m| match m.view() {
                gst::MessageView::Error(err) => Some(err.error().to_string()),
                _ => None,
            })
            .unwrap();
        assert!(error.contains(message), "{error}");
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn the_api_key_is_write_only() {
    init();
    let e = gst::ElementFactory::make("wanedit").build().unwrap();
    let pspec = e.find_property("api-key").unwrap();
    assert!(pspec.flags().contains(gst::glib::ParamFlags::WRITABLE));
    assert!(!pspec.flags().contains(gst::glib::ParamFlags::READABLE));
    e.set_property("api-key", "sk-secret-123");
    for p in e.list_properties() {
        if p.flags().contains(gst::glib::ParamFlags::READABLE) {
            let v = e.property_value(p.name());
            assert!(!format!("{v:?}").contains("sk-secret-123"), "{}", p.name());
        }
    }
}

#[test]
fn every_property_is_documented() {
    init();
    let e = gst::ElementFactory::make("wanedit").build().unwrap();
    let names: Vec<String> = e
        .list_properties()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    for name in [
        "prompt",
        "negative-prompt",
        "backend",
        "model",
        "endpoint",
        "api-key",
        "window-frames",
        "overlap-frames",
        "blend",
        "resolution",
        "num-inference-steps",
        "guidance-scale",
        "strength",
        "seed",
        "reference-image",
        "max-in-flight",
        "job-timeout",
        "window-retries",
        "on-error",
        "processing-latency",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing");
        let p = e.find_property(name).unwrap();
        assert!(
            p.blurb().is_some_and(|b| b.len() > 10),
            "{name} has no blurb"
        );
    }
    let factory = gst::ElementFactory::find("wanedit").unwrap();
    assert_eq!(
        factory.metadata(gst::ELEMENT_METADATA_KLASS),
        Some("Filter/Effect/Video")
    );
}

#[test]
fn edited_frames_from_a_clip_of_another_rate_and_size_map_by_time() {
    // The backend answers with twice the frames at 32 fps and a quarter of the size:
    // window frame j (at j/16 s) takes clip frame 2j.
    let mut editor = Editor::new(|_, frames| {
        Ok((0..frames.len() * 2)
            .map(|i| RgbFrame::filled(2, 2, [i as u8 * 10, 0, 0]))
            .collect())
    });
    editor.sizes = vec![Size::new(8, 8)];
    editor.clip_rate = Some(gst::Fraction::new(32, 1));
    let e = element(editor, 5, 0);
    let (out, _h) = run_harness(&e, video_caps("RGB", 8, 8), 5, 0);
    assert!(out.iter().all(|b| b.size() == 8 * 8 * 3));
    let reds: Vec<u8> = out.iter().map(|b| b.map_readable().unwrap()[0]).collect();
    assert_eq!(reds, vec![0, 20, 40, 60, 80]);
}

#[test]
fn a_panicking_backend_fails_its_window_instead_of_hanging() {
    let editor = Editor::new(|r, frames| {
        if r.window.index == 1 {
            panic!("index out of bounds in the model");
        }
        Ok(frames)
    });
    let e = element(editor, 5, 1);
    e.set_property_from_str("on-error", "passthrough");
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let (out, _h) = run_harness(&e, video_caps("GRAY8", 4, 4), 12, 77);
    assert_eq!(out.len(), 12);
    let warning = warnings(&bus).remove(0);
    assert!(
        warning.contains("window 1 ")
            && warning.contains("the backend panicked: index out of bounds in the model"),
        "{warning}"
    );
}

#[test]
fn a_flushing_seek_in_a_real_pipeline_restarts_cleanly() {
    let (pipeline, sink) = launch(
        "videotestsrc ! video/x-raw,format=I420,width=32,height=16,framerate=25/1 \
         ! wanedit name=edit window-frames=9 overlap-frames=2 ! appsink name=sink sync=false",
        Editor::identity().with_delay(Duration::from_millis(50)),
    );
    pipeline.set_state(gst::State::Paused).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(10)).0.unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let first = sink.pull_sample().unwrap();
    assert_eq!(first.buffer().unwrap().pts(), Some(gst::ClockTime::ZERO));
    pipeline
        .seek(
            1.0,
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::SeekType::Set,
            gst::ClockTime::from_mseconds(400),
            gst::SeekType::Set,
            gst::ClockTime::from_mseconds(1600),
        )
        .unwrap();
    let (samples, _) = pull_to_eos(&pipeline, &sink);
    // After the seek: frames 10 to 39, in order, each once; before it only a prefix.
    let pts: Vec<u64> = samples
        .iter()
        .map(|s| s.buffer().unwrap().pts().unwrap().mseconds() / 40)
        .collect();
    let restart = pts
        .iter()
        .position(|&p| p == 10)
        .expect("the seek target comes out");
    assert_eq!(pts[restart..], (10..40).collect::<Vec<_>>()[..]);
    assert_eq!(
        pts[..restart],
        (1..restart as u64 + 1).collect::<Vec<_>>()[..]
    );
}

/// What a `seam` test's backend got for one window: its index, the first pixel of each
/// frame sent, and how many edits were running when it ran.
type SentWindow = (u64, Vec<[u8; 3]>, usize);
type Sent = Arc<Mutex<Vec<SentWindow>>>;

/// A backend that paints window k `colour(k)` after 50 ms (failing window `fails`), and
/// records what it was sent.
fn recording_editor(fails: Option<u64>) -> (Editor, Sent) {
    let sent = Sent::default();
    let mut editor = Editor::identity().with_delay(Duration::from_millis(50));
    let (log, counters) = (sent.clone(), editor.counters.clone());
    editor.edit = Arc::new(move |r, frames| {
        // Every edit started and not yet dropped, this one included.
        let running =
            counters.started.load(Ordering::SeqCst) - counters.dropped.load(Ordering::SeqCst);
        let firsts = frames.iter().map(|f| f.pixel(0, 0)).collect();
        log.lock().unwrap().push((r.window.index, firsts, running));
        if fails == Some(r.window.index) {
            return Err(BackendError::JobFailed {
                job_id: "job".into(),
                message: "flagged by the safety checker".into(),
            });
        }
        Ok(tinted(&frames, colour(r.window.index)))
    });
    (editor, sent)
}

/// W=9, O=3 over 22 frames of value 7 (windows [0, 9), [6, 15), [12, 21) and the last,
/// ending on the last frame, [13, 22)), with
/// `max-in-flight=4`: the frames out, and what the backend was sent.
fn run_seam(seam: &str, fails: Option<u64>) -> (Vec<gst::Buffer>, Vec<SentWindow>) {
    let (editor, sent) = recording_editor(fails);
    let e = element(editor, 9, 3);
    e.set_property_from_str("seam", seam);
    e.set_property("max-in-flight", 4u32);
    e.set_property_from_str("on-error", "passthrough");
    e.set_property("window-retries", 0u32);
    let (out, _h) = run_harness(&e, video_caps("RGB", 4, 4), 22, 7);
    let pts: Vec<u64> = out
        .iter()
        .map(|b| b.pts().unwrap().nseconds() / FRAME_NS)
        .collect();
    assert_eq!(pts, (0..22).collect::<Vec<_>>());
    let mut sent = sent.lock().unwrap().clone();
    sent.sort_by_key(|(k, _, _)| *k);
    (out, sent)
}

#[test]
fn seam_anchor_edits_windows_in_turn_each_sent_with_the_edit_before_it() {
    let (out, sent) = run_seam("anchor", None);
    let order: Vec<u64> = sent.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(order, [0, 1, 2, 3]);
    for (k, firsts, running) in &sent {
        assert_eq!(*running, 1, "window {k} ran alone");
        // The last window shares frames 13-20 with window 2.
        let shared = [0, 3, 3, 8][*k as usize];
        for (i, rgb) in firsts.iter().enumerate() {
            let expected = if i < shared { colour(k - 1) } else { [7; 3] };
            assert_eq!(*rgb, expected, "window {k}, frame {i}");
        }
    }
    // The overlaps are still crossfaded: frame 7 is 2/4 of the way from window 0 to 1.
    let frame7 = out[7].map_readable().unwrap()[0];
    let (a, b) = (colour(0)[0] as f64, colour(1)[0] as f64);
    assert!(
        (frame7 as f64 - (a + (b - a) * 2.0 / 4.0)).abs() <= 1.0,
        "{frame7}"
    );
}

#[test]
fn seam_crossfade_sends_each_window_as_it_came_several_at_once() {
    let (_, sent) = run_seam("crossfade", None);
    assert!(sent.iter().any(|(_, _, running)| *running > 1));
    for (k, firsts, _) in &sent {
        assert!(firsts.iter().all(|rgb| *rgb == [7; 3]), "window {k}");
    }
}

#[test]
fn seam_anchor_after_a_window_passed_through_anchors_on_its_originals() {
    let (out, sent) = run_seam("anchor", Some(1));
    // Window 1's frames came out as they went in, outside the crossfades.
    assert_eq!(&out[10].map_readable().unwrap()[..3], &[7; 3]);
    assert_eq!(
        sent[1].1[..3],
        [colour(0); 3],
        "window 1 anchored on window 0"
    );
    assert!(
        sent[2].1.iter().all(|rgb| *rgb == [7; 3]),
        "window 2 on the originals"
    );
    assert_eq!(sent[3].1[..8], [colour(2); 8]);
}

#[test]
fn seam_anchor_restarts_its_chain_at_a_caps_change() {
    let (editor, sent) = recording_editor(None);
    let e = element(editor, 9, 2);
    e.set_property_from_str("seam", "anchor");
    let (mut h, small) = harness(&e, video_caps("RGB", 4, 4));
    for i in 0..6 {
        h.push(frame(&small, i, 7)).unwrap();
    }
    // Window 0 is frames 0-5 (the run ends at the caps change); windows 1 and 2 are
    // frames 6-14 and 10-18 of the new run (the last ends on the last frame).
    let large = video_caps("RGB", 8, 8);
    let large_info = gst_video::VideoInfo::from_caps(&large).unwrap();
    h.set_src_caps(large);
    for i in 6..19 {
        h.push(frame(&large_info, i, 9)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(pull_all(&mut h).len(), 19);
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    assert!(sent[0].1.iter().all(|rgb| *rgb == [7; 3]));
    assert!(
        sent[1].1.iter().all(|rgb| *rgb == [9; 3]),
        "no anchor across caps"
    );
    assert_eq!(sent[2].1[..5], [colour(1); 5]);
    assert!(sent[2].1[5..].iter().all(|rgb| *rgb == [9; 3]));
}

#[test]
fn seam_anchor_restarts_its_chain_after_a_flush() {
    let (editor, sent) = recording_editor(None);
    let e = element(editor, 9, 2);
    e.set_property_from_str("seam", "anchor");
    let (mut h, info) = harness(&e, video_caps("RGB", 4, 4));
    for i in 0..15 {
        h.push(frame(&info, i, 7)).unwrap();
    }
    // Window 0 is edited once frames 0-5 are out (with 15 frames in, the stream's last
    // window could start at frame 6); window 1 (frames 7-15) is not planned yet.
    for _ in 0..6 {
        h.pull().unwrap();
    }
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    for i in 100..109 {
        h.push(frame(&info, i, 5)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let out = pull_all(&mut h);
    assert_eq!(
        out.last().unwrap().pts().unwrap().nseconds() / FRAME_NS,
        108
    );
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].0, 0, "numbering restarts");
    assert!(
        sent[1].1.iter().all(|rgb| *rgb == [5; 3]),
        "no anchor across a flush"
    );
}

#[test]
fn seam_anchor_carries_across_a_prompt_change() {
    let (editor, sent) = recording_editor(None);
    let e = element(editor.clone(), 9, 2);
    e.set_property_from_str("seam", "anchor");
    e.set_property("prompt", "first");
    let (mut h, info) = harness(&e, video_caps("RGB", 4, 4));
    // Frame 8 completes window 0, which goes with the first prompt.
    for i in 0..9 {
        h.push(frame(&info, i, 7)).unwrap();
    }
    e.set_property("prompt", "second");
    for i in 9..16 {
        h.push(frame(&info, i, 7)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(pull_all(&mut h).len(), 16);
    let prompts: Vec<String> = editor.seen().into_iter().map(|s| s.prompt).collect();
    assert_eq!(prompts, ["first", "second"]);
    let sent = sent.lock().unwrap().clone();
    assert_eq!(
        sent[1].1[..2],
        [colour(0); 2],
        "anchored on the first prompt's edit"
    );
}

/// Answers every window with a clip of white frames that breaks off after `after` of
/// them, as a file corrupt half-way does.
struct BreaksOff {
    after: usize,
}

impl gstwanedit::backend::Backend for BreaksOff {
    fn name(&self) -> &str {
        "breaks-off"
    }

    fn capabilities(&self, _resolution: Resolution) -> gstwanedit::backend::Capabilities {
        gstwanedit::backend::Capabilities {
            sizes: vec![],
            frame_counts: gstwanedit::backend::FrameCounts::WAN,
            input: gstwanedit::backend::InputFormat::Rgb,
            reference_images: 0,
            first_frame: false,
            max_concurrency: 1,
        }
    }

    fn edit(
        &self,
        mut request: gstwanedit::backend::EditRequest,
    ) -> futures::future::BoxFuture<'static, Result<gstwanedit::backend::EditedClip, BackendError>>
    {
        use gstwanedit::backend::{ClipFrame, EditedClip, frame_time};
        let after = self.after;
        Box::pin(async move {
            let frames = request.frames.rgb().collect::<Result<Vec<_>, _>>()?;
            let (size, rate) = (request.frames.size(), request.frame_rate);
            let white = RgbFrame::filled(size.width, size.height, [255; 3]);
            let clip = (0..frames.len()).map(move |i| {
                if i < after {
                    Ok(ClipFrame {
                        pts: frame_time(i as u64, rate),
                        image: white.clone().into(),
                    })
                } else {
                    Err(BackendError::Frames("the clip breaks off".into()))
                }
            });
            Ok(EditedClip::in_time_order(clip))
        })
    }
}

#[test]
fn a_clip_that_breaks_off_passes_the_edits_made_and_the_originals_after() {
    init();
    let e = gst::ElementFactory::make("wanedit")
        .property("window-frames", 9u32)
        .property("overlap-frames", 0u32)
        .property_from_str("on-error", "passthrough")
        .build()
        .unwrap()
        .downcast::<gstwanedit::WanEdit>()
        .unwrap();
    e.set_shared_backend(Arc::new(BreaksOff { after: 4 }));
    let (mut h, info) = harness(&e, video_caps("I420", 16, 8));
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    for i in 0..9 {
        h.push(frame(&info, i, 10 + i as u8)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 9, "no frame lost");
    let warnings = warnings(&bus);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    // The clip's 4 frames cover the window's first frames up to where they are nearest.
    let edited: usize = warnings[0]
        .split("broke off after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{warnings:?}"));
    assert!((1..=4).contains(&edited), "{warnings:?}");
    assert!(warnings[0].contains("the clip breaks off"), "{warnings:?}");
    for (i, b) in out.iter().enumerate() {
        let pts = gst::ClockTime::from_nseconds(i as u64 * FRAME_NS);
        assert_eq!(b.pts(), Some(pts), "frame {i} keeps its PTS");
        let luma = b.map_readable().unwrap()[0];
        if i < edited {
            assert_eq!(luma, 235, "frame {i} shows the edit");
        } else {
            assert_eq!(luma, 10 + i as u8, "frame {i} is its original");
        }
    }
}
