//! Metas come out on their frame: CEA-608/708 captions through `cccombiner` and
//! `ccextractor`, timecode, AFD and bar data, and a meta marked to survive video
//! transforms, each through a stream whose windows are edited and crossfaded.

mod support;

use gst::meta::{CustomMeta, MetaTag, MetaTransform, MetaTransformCopy};
use gst::prelude::*;
use gst_video::{
    ValidVideoTimeCode, VideoAFDMeta, VideoAFDSpec, VideoAFDValue, VideoBarMeta, VideoCaptionMeta,
    VideoTimeCode, VideoTimeCodeFlags, VideoTimeCodeMeta,
};
use support::*;

/// 60 frames in windows of 17 with stride 13: windows at 0, 13, 26 and 39, and a last one
/// at 43 that ends on the last frame. Frames 13-16, 26-29, 39-42 and 43-55 sit in two
/// windows and are crossfaded.
const FRAMES: u64 = 60;
const WINDOW: u64 = 17;
const OVERLAP: u64 = 4;
const EDIT: &str = "wanedit name=edit window-frames=17 overlap-frames=4";
/// The sinks keep what they receive and let EOS through at once, so that the test reads
/// both streams after the pipeline has ended.
const SINK: &str = "sync=false wait-on-eos=false";

/// The grey the editor paints window `k` with: far enough apart that a crossfade shows.
fn grey(k: u64) -> [u8; 3] {
    [(20 + 50 * k) as u8; 3]
}

/// The luma a flat RGB grey `v` becomes in I420 (BT.601, limited range).
fn luma(v: u8) -> f64 {
    16.0 + 219.0 * f64::from(v) / 255.0
}

/// The luma of every output frame, from DESIGN.md section 3 written out for this stream:
/// each window crossfaded linearly into what the earlier windows left over the span they
/// share.
fn expected_luma() -> Vec<f64> {
    let stride = WINDOW - OVERLAP;
    let mut starts: Vec<u64> = (0..)
        .map(|k| k * stride)
        .take_while(|s| s + WINDOW <= FRAMES)
        .collect();
    if starts.last().unwrap() + WINDOW < FRAMES {
        starts.push(FRAMES - WINDOW);
    }
    assert_eq!(starts, [0, 13, 26, 39, 43]);
    let mut out = vec![0.0; FRAMES as usize];
    let mut end = 0;
    for (k, &start) in starts.iter().enumerate() {
        let y = luma(grey(k as u64)[0]);
        let span = end.max(start) - start;
        for f in start..start + WINDOW {
            let slot = &mut out[f as usize];
            *slot = if f < end {
                let w = (f - start + 1) as f64 / (span + 1) as f64;
                (1.0 - w) * *slot + w * y
            } else {
                y
            };
        }
        end = start + WINDOW;
    }
    out
}

/// Frame `n` of the 64x48 I420 input, before its metas.
fn video_frame(n: u64) -> gst::Buffer {
    init();
    let info = gst_video::VideoInfo::from_caps(&video_caps("I420", 64, 48)).unwrap();
    frame(&info, n, (n * 3) as u8)
}

/// What came out of a run.
struct Run {
    frames: Vec<gst::Buffer>,
    captions: Vec<gst::Sample>,
}

/// Plays `description` (an appsrc `video`, optionally an appsrc `cc` fed with
/// `captions`, the `edit` element, an appsink `sink` and optionally an appsink `captions`)
/// to EOS, and checks what every test relies on: the editor saw the five windows, every
/// frame came out once with its PTS, and its picture is the edit, crossfaded where two
/// windows overlap.
fn run(
    description: &str,
    video: Vec<gst::Buffer>,
    captions: Option<(gst::Caps, Vec<gst::Buffer>)>,
) -> Run {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let editor = Editor::tint(grey);
    pipeline
        .by_name("edit")
        .unwrap()
        .downcast::<gstwanedit::WanEdit>()
        .unwrap()
        .set_backend(editor.clone());
    let appsrc = |name| {
        pipeline
            .by_name(name)
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap()
    };
    let appsink = |name| {
        pipeline
            .by_name(name)
            .map(|e| e.downcast::<gst_app::AppSink>().unwrap())
    };
    let sources = [
        Some((appsrc("video"), video_caps("I420", 64, 48), video)),
        captions.map(|(caps, buffers)| (appsrc("cc"), caps, buffers)),
    ];

    pipeline.set_state(gst::State::Playing).unwrap();
    for (src, caps, buffers) in sources.into_iter().flatten() {
        src.set_caps(Some(&caps));
        for b in buffers {
            src.push_buffer(b).unwrap();
        }
        src.end_of_stream().unwrap();
    }
    let end = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let drain = |sink: Option<gst_app::AppSink>| -> Vec<gst::Sample> {
        sink.map_or(vec![], |s| {
            std::iter::from_fn(|| s.try_pull_sample(gst::ClockTime::ZERO)).collect()
        })
    };
    let frames: Vec<gst::Buffer> = drain(appsink("sink"))
        .iter()
        .map(|s| s.buffer_owned().unwrap())
        .collect();
    let captions = drain(appsink("captions"));
    pipeline.set_state(gst::State::Null).unwrap();
    match end.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(e)) => panic!("{} ({:?})", e.error(), e.debug()),
        Some(_) => {}
        // A sink that receives nothing (ccextractor finding no caption meta, say) holds
        // the pipeline in preroll.
        None => panic!(
            "no EOS within 30 s; {} frames and {} captions came out",
            frames.len(),
            captions.len()
        ),
    }

    let windows: Vec<(u64, usize)> = editor
        .seen()
        .iter()
        .map(|s| (s.index, s.real_frames))
        .collect();
    assert_eq!(windows, (0..5).map(|k| (k, 17)).collect::<Vec<_>>());
    assert_eq!(frames.len() as u64, FRAMES);
    for (n, (b, want)) in frames.iter().zip(expected_luma()).enumerate() {
        assert_eq!(
            b.pts(),
            Some(gst::ClockTime::from_nseconds(n as u64 * FRAME_NS))
        );
        let map = b.map_readable().unwrap();
        let y = f64::from(map[0]);
        assert!(
            (y - want).abs() <= 2.0,
            "frame {n}: Y {y}, expected {want:.1}"
        );
    }
    Run { frames, captions }
}

/// `byte` with odd parity in bit 7, as CEA-608 requires.
fn odd_parity(byte: u8) -> u8 {
    let b = byte & 0x7f;
    if b.count_ones().is_multiple_of(2) {
        b | 0x80
    } else {
        b
    }
}

/// Frame `n`'s CEA-608 bytes for fields 1 and 2: text that changes every frame.
fn cea608(n: u64) -> [[u8; 2]; 2] {
    let letter = |base: u8, k: u64| odd_parity(base + (k % 26) as u8);
    [
        [letter(b'A', n), letter(b'a', n * 7)],
        [letter(b'0', n % 10), letter(b'A', n * 11 + 3)],
    ]
}

/// Frame `n`'s caption in each format: the 608 pairs as CEA-708 cc_data triplets
/// (cc_valid, cc_type 0 and 1) or as SMPTE 334-1 Annex A triplets (field bit, line 0).
fn caption(format: &str, n: u64) -> Vec<u8> {
    let [f1, f2] = cea608(n);
    let (tag1, tag2) = match format {
        "cc_data" => (0xfc, 0xfd),
        "s334-1a" => (0x80, 0x00),
        _ => unreachable!(),
    };
    vec![tag1, f1[0], f1[1], tag2, f2[0], f2[1]]
}

fn caption_buffer(data: Vec<u8>, n: u64) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(data);
    let b_mut = b.get_mut().unwrap();
    b_mut.set_pts(gst::ClockTime::from_nseconds(n * FRAME_NS));
    b_mut.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
    b
}

#[test]
fn captions_through_cccombiner_and_ccextractor_come_out_on_their_frame() {
    init();
    for (media, format, caption_type) in [
        (
            "closedcaption/x-cea-708",
            "cc_data",
            gst_video::VideoCaptionType::Cea708Raw,
        ),
        (
            "closedcaption/x-cea-608",
            "s334-1a",
            gst_video::VideoCaptionType::Cea608S3341a,
        ),
    ] {
        let caps = gst::Caps::builder(media)
            .field("format", format)
            .field("framerate", gst::Fraction::new(25, 1))
            .build();
        // schedule=false: cccombiner attaches each caption buffer as it is to the frame
        // its timestamp falls in, so what comes out can be compared byte for byte. The
        // queues let each sink preroll while ccextractor's thread feeds the other.
        let run = run(
            &format!(
                "appsrc name=video format=time ! comb.sink \
                 appsrc name=cc format=time ! comb.caption \
                 cccombiner name=comb schedule=false ! {EDIT} ! ccextractor name=extract \
                 extract.src ! queue ! appsink name=sink {SINK} \
                 extract.caption ! queue ! appsink name=captions {SINK}"
            ),
            (0..FRAMES).map(video_frame).collect(),
            Some((
                caps,
                (0..FRAMES)
                    .map(|n| caption_buffer(caption(format, n), n))
                    .collect(),
            )),
        );

        // The metas wanedit let through are the ones cccombiner attached.
        for (n, b) in run.frames.iter().enumerate() {
            let metas: Vec<_> = b.iter_meta::<VideoCaptionMeta>().collect();
            assert_eq!(metas.len(), 1, "{format} frame {n}");
            assert_eq!(metas[0].caption_type(), caption_type, "{format} frame {n}");
            assert_eq!(
                metas[0].data(),
                caption(format, n as u64),
                "{format} frame {n}"
            );
        }
        // And ccextractor turns them back into the caption stream that went in.
        assert_eq!(run.captions.len() as u64, FRAMES, "{format}");
        for (n, s) in run.captions.iter().enumerate() {
            let s_caps = s.caps().unwrap().structure(0).unwrap();
            assert_eq!(
                (
                    s_caps.name().as_str(),
                    s_caps.get::<&str>("format").unwrap()
                ),
                (media, format)
            );
            let b = s.buffer().unwrap();
            assert_eq!(
                b.pts(),
                Some(gst::ClockTime::from_nseconds(n as u64 * FRAME_NS)),
                "{format} caption {n}"
            );
            assert_eq!(
                *b.map_readable().unwrap(),
                caption(format, n as u64),
                "{format} caption {n}"
            );
        }
    }
}

fn timecode(n: u64) -> ValidVideoTimeCode {
    VideoTimeCode::new(
        gst::Fraction::new(25, 1),
        None,
        VideoTimeCodeFlags::empty(),
        10,
        0,
        (n / 25) as u32,
        (n % 25) as u32,
        0,
    )
    .try_into()
    .unwrap()
}

const AFD: [VideoAFDValue; 4] = [
    VideoAFDValue::_169Letter169Full,
    VideoAFDValue::_43Full169Full,
    VideoAFDValue::_43Full43Pillar,
    VideoAFDValue::_149Letter149Pillar,
];

/// Frame `n`'s bar data: (is_letterbox, bar_data1, bar_data2).
fn bars(n: u64) -> (bool, u32, u32) {
    (n.is_multiple_of(2), n as u32, 1000 + 3 * n as u32)
}

#[test]
fn timecode_afd_and_bar_data_come_out_on_their_frame() {
    let frames = (0..FRAMES)
        .map(|n| {
            let mut b = video_frame(n);
            let b_mut = b.get_mut().unwrap();
            VideoTimeCodeMeta::add(b_mut, &timecode(n));
            VideoAFDMeta::add(b_mut, 0, VideoAFDSpec::SmpteSt20161, AFD[n as usize % 4]);
            let (letterbox, bar1, bar2) = bars(n);
            VideoBarMeta::add(b_mut, 0, letterbox, bar1, bar2);
            b
        })
        .collect();
    let run = run(
        &format!("appsrc name=video format=time ! {EDIT} ! appsink name=sink {SINK}"),
        frames,
        None,
    );
    for (n, b) in run.frames.iter().enumerate() {
        let n = n as u64;
        let tcs: Vec<_> = b.iter_meta::<VideoTimeCodeMeta>().collect();
        assert_eq!(tcs.len(), 1, "frame {n}");
        assert_eq!(tcs[0].tc().to_string(), timecode(n).to_string());

        let afds: Vec<_> = b.iter_meta::<VideoAFDMeta>().collect();
        assert_eq!(afds.len(), 1, "frame {n}");
        assert_eq!(
            (afds[0].field(), afds[0].spec(), afds[0].afd()),
            (0, VideoAFDSpec::SmpteSt20161, AFD[n as usize % 4]),
            "frame {n}"
        );

        let bar_metas: Vec<_> = b.iter_meta::<VideoBarMeta>().collect();
        assert_eq!(bar_metas.len(), 1, "frame {n}");
        let bar = &bar_metas[0];
        assert_eq!(
            (
                bar.field(),
                bar.is_letterbox(),
                bar.bar_data1(),
                bar.bar_data2()
            ),
            (0, bars(n).0, bars(n).1, bars(n).2),
            "frame {n}"
        );
    }
}

const SURVIVOR: &str = "WanEditTestSurvivorMeta";

/// Registers a custom meta tagged `video` whose transform copies it on a plain copy and
/// refuses every other transform (a scale, say): the way a meta marked to survive video
/// transforms behaves.
fn register_survivor() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        init();
        let tags = [gst_video::video_meta::tags::Video::TAG_NAME.as_str()];
        CustomMeta::register_with_transform(SURVIVOR, &tags, |dest, meta, _src, kind| {
            if kind != MetaTransformCopy::quark() {
                return false;
            }
            let Ok(mut copy) = CustomMeta::add(dest, SURVIVOR) else {
                return false;
            };
            for (field, value) in meta.structure().iter() {
                copy.mut_structure().set_value(field, value.clone());
            }
            true
        });
    });
}

#[test]
fn a_meta_that_survives_video_transforms_comes_out_on_its_frame() {
    register_survivor();
    let frames = (0..FRAMES)
        .map(|n| {
            let mut b = video_frame(n);
            let mut meta = CustomMeta::add(b.get_mut().unwrap(), SURVIVOR).unwrap();
            meta.mut_structure().set("frame", n);
            meta.mut_structure().set("label", format!("shot {}", n / 7));
            b
        })
        .collect();
    let run = run(
        &format!("appsrc name=video format=time ! {EDIT} ! appsink name=sink {SINK}"),
        frames,
        None,
    );
    for (n, b) in run.frames.iter().enumerate() {
        let n = n as u64;
        let meta = CustomMeta::from_buffer(b, SURVIVOR)
            .unwrap_or_else(|_| panic!("frame {n} lost its {SURVIVOR}"));
        let s = meta.structure();
        assert_eq!(s.get::<u64>("frame").unwrap(), n);
        assert_eq!(s.get::<&str>("label").unwrap(), format!("shot {}", n / 7));
        let count = b
            .iter_meta::<gst::Meta>()
            .filter(|m| m.api() == meta.api())
            .count();
        assert_eq!(count, 1, "frame {n}");
    }
}
