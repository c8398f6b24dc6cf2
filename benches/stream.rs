//! Throughput of the stream machinery at 1080p, each next to a plain copy of the same
//! frame measured in the same run (the ratios go in the README).
//!
//!     cargo bench --bench stream

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gstwanedit::stream::blend::{Samples, blend};
use gstwanedit::stream::convert::Scaler;

const FORMATS: [(&str, i32, i32); 2] = [("I420", 1920, 1080), ("RGBA", 1920, 1080)];

/// Two 8-bit formats, 10-bit samples in 16-bit words, and v210's 10-bit samples in
/// 32-bit words.
const BLEND_FORMATS: [(&str, i32, i32); 4] = [
    ("I420", 1920, 1080),
    ("RGBA", 1920, 1080),
    ("P010_10LE", 1920, 1080),
    ("v210", 1920, 1080),
];

fn video_info(format: &str, w: i32, h: i32) -> gst_video::VideoInfo {
    support::init();
    gst_video::VideoInfo::from_caps(&support::video_caps(format, w, h)).unwrap()
}

fn blend_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("blend-1080p");
    g.throughput(Throughput::Elements(1));
    for (format, w, h) in BLEND_FORMATS {
        let info = video_info(format, w, h);
        let samples = Samples::for_format(info.format()).unwrap();
        let size = info.size();
        let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let mut dst: Vec<u8> = (0..size).map(|i| (i * 13) as u8).collect();
        g.bench_function(BenchmarkId::new("memcpy", format), |b| {
            b.iter(|| dst.copy_from_slice(std::hint::black_box(&src)))
        });
        g.bench_function(BenchmarkId::new("blend", format), |b| {
            b.iter(|| blend(&mut dst, std::hint::black_box(&src), 0.37, samples))
        });
    }
    g.finish();
}

/// A 1080p I420 frame to packed RGB at the 848x480 bucket and back, one thread each:
/// `VideoConverter` alone, and the element's `Scaler`, which resizes 8-bit planes with
/// pic-scale and converts colours with `VideoConverter` at the smaller size.
fn scale(c: &mut Criterion) {
    let mut g = c.benchmark_group("scale-1080p");
    g.throughput(Throughput::Elements(1));
    let big = video_info("I420", 1920, 1080);
    let small = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 848, 480)
        .fps(big.fps())
        .colorimetry(&"sRGB".parse().unwrap())
        .build()
        .unwrap();
    for (way, from, to) in [("down", &big, &small), ("up", &small, &big)] {
        let input =
            gst::Buffer::from_slice((0..from.size()).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        let converter = gst_video::VideoConverter::new(from, to, None).unwrap();
        let mut out = gst::Buffer::with_size(to.size()).unwrap();
        g.bench_function(BenchmarkId::new("videoconverter", way), |b| {
            b.iter(|| {
                let src = gst_video::VideoFrameRef::from_buffer_ref_readable(input.as_ref(), from)
                    .unwrap();
                let mut dst =
                    gst_video::VideoFrameRef::from_buffer_ref_writable(out.get_mut().unwrap(), to)
                        .unwrap();
                converter.frame_ref(&src, &mut dst);
            })
        });
        let scaler = Scaler::new(from, to, 1).unwrap();
        g.bench_function(BenchmarkId::new("wanedit-scaler", way), |b| {
            b.iter(|| scaler.convert(std::hint::black_box(&input)).unwrap())
        });
    }
    g.finish();
}

/// The whole element with a backend that answers at once: frames pass through the
/// planner, the scaling to the 832x480 bucket and back, the blending and the src task.
fn element(c: &mut Criterion) {
    const FRAMES: u64 = 81 + 65;
    let mut g = c.benchmark_group("element-1080p");
    g.sample_size(10);
    g.throughput(Throughput::Elements(FRAMES));
    for (format, w, h) in FORMATS {
        let caps = support::video_caps(format, w, h);
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        let inputs: Vec<_> = (0..FRAMES)
            .map(|n| support::frame(&info, n, n as u8))
            .collect();
        g.bench_function(BenchmarkId::new("memcpy", format), |b| {
            b.iter(|| {
                inputs
                    .iter()
                    .map(|f| gst::Buffer::from_slice(f.map_readable().unwrap().to_vec()))
                    .collect::<Vec<_>>()
            })
        });
        g.bench_function(BenchmarkId::new("wanedit-instant-backend", format), |b| {
            b.iter(|| {
                let editor = support::Editor::identity()
                    .with_sizes(gstwanedit::backend::Resolution::P480.wan_buckets());
                let e = support::element(editor, 81, 16);
                let (mut h, _) = support::harness(&e, caps.clone());
                for f in &inputs {
                    h.push(f.clone()).unwrap();
                }
                h.push_event(gst::event::Eos::new());
                assert_eq!(support::pull_all(&mut h).len() as u64, FRAMES);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, blend_frames, scale, element);
criterion_main!(benches);
