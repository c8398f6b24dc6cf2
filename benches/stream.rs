//! Throughput of the stream machinery at 1080p, each next to a plain copy of the same
//! frame measured in the same run (the ratios go in the README).
//!
//!     cargo bench --bench stream

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gstwanedit::stream::blend::blend_into;

const FORMATS: [(&str, i32, i32); 2] = [("I420", 1920, 1080), ("RGBA", 1920, 1080)];

fn frame_size(format: &str, w: i32, h: i32) -> usize {
    support::init();
    gst_video::VideoInfo::from_caps(&support::video_caps(format, w, h))
        .unwrap()
        .size()
}

fn blend(c: &mut Criterion) {
    let mut g = c.benchmark_group("blend-1080p");
    g.throughput(Throughput::Elements(1));
    for (format, w, h) in FORMATS {
        let size = frame_size(format, w, h);
        let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let mut dst: Vec<u8> = (0..size).map(|i| (i * 13) as u8).collect();
        g.bench_function(BenchmarkId::new("memcpy", format), |b| {
            b.iter(|| dst.copy_from_slice(std::hint::black_box(&src)))
        });
        g.bench_function(BenchmarkId::new("blend", format), |b| {
            b.iter(|| blend_into(&mut dst, std::hint::black_box(&src), 0.37))
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

criterion_group!(benches, blend, element);
criterion_main!(benches);
