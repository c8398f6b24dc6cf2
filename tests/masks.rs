//! `mask`: the edit applies where the mask is set, and everywhere else the output is the
//! input bit for bit, for a custom backend and a hosted one, over window seams; the mask
//! is handed to the backend too; bad masks are clear errors.

#[path = "support/hosted/mod.rs"]
mod hosted;
mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use gst::prelude::*;
use gstwanedit::backend::{
    Backend, BackendError, Capabilities, EditRequest, EditedClip, FrameCounts, InputFormat,
    Resolution, RgbFrame, Size,
};
use support::{FRAME_NS, error_of, harness, init, pull_all, video_caps};

const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
/// 20 frames with W=9 and O=4: windows at 0, 5 and 10, and a last one at EOS, each
/// crossfaded with the one before.
const FRAMES: u64 = 20;

/// The grey window `k` is painted: each window another, so that the crossfades mix two.
fn grey(k: u64) -> u8 {
    [60, 200][k as usize % 2]
}

/// What a painter saw of one window: its index, the frames' size, and its masks.
type SeenMasks = Arc<Mutex<Vec<(u64, Size, usize, Option<(Size, Vec<Vec<u8>>)>)>>>;

/// An application's backend: paints every frame of window k the grey `grey(k)` (or one
/// colour), and records the masks it is handed.
#[derive(Clone, Default)]
struct Painter {
    colour: Option<[u8; 3]>,
    /// A window that fails, for `on-error=passthrough`.
    failing: Option<u64>,
    seen: SeenMasks,
}

impl Backend for Painter {
    fn name(&self) -> &str {
        "painter"
    }

    fn capabilities(&self, _resolution: Resolution) -> Capabilities {
        Capabilities {
            sizes: vec![],
            frame_counts: FrameCounts::WAN,
            input: InputFormat::Rgb,
            reference_images: 0,
            first_frame: false,
            max_concurrency: 4,
        }
    }

    fn edit(
        &self,
        mut request: EditRequest,
    ) -> BoxFuture<'static, Result<EditedClip, BackendError>> {
        let this = self.clone();
        async move {
            let frames = request.frames.rgb().collect::<Result<Vec<_>, _>>()?;
            let masks = match request.mask.take() {
                Some(mask) => {
                    let size = mask.size();
                    Some((size, mask.collect::<Result<Vec<_>, _>>()?))
                }
                None => None,
            };
            let k = request.window.index;
            if this.failing == Some(k) {
                return Err(BackendError::Model("painter failed".into()));
            }
            this.seen
                .lock()
                .unwrap()
                .push((k, request.frames.size(), frames.len(), masks));
            let colour = this.colour.unwrap_or([grey(k); 3]);
            let painted = frames
                .iter()
                .map(|f| RgbFrame::filled(f.width, f.height, colour))
                .collect();
            Ok(EditedClip::at_rate(painted, request.frame_rate))
        }
        .boxed()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wanedit-masks-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PNG of the stream's size: the left half white (edit), the right half black (keep).
fn half_mask(name: &str) -> PathBuf {
    let path = temp_dir(name).join("left-half.png");
    image::GrayImage::from_fn(WIDTH, HEIGHT, |x, _| {
        image::Luma([if x < WIDTH / 2 { 255 } else { 0 }])
    })
    .save(&path)
    .unwrap();
    path
}

fn painted_element(painter: &Painter, mask: &str) -> gstwanedit::WanEdit {
    init();
    let e = gst::ElementFactory::make("wanedit")
        .property("window-frames", 9u32)
        .property("overlap-frames", 4u32)
        .property("mask", mask)
        .build()
        .unwrap()
        .downcast::<gstwanedit::WanEdit>()
        .unwrap();
    e.set_backend(painter.clone());
    e
}

/// A pseudo-random byte for sample `i` of frame `n`.
fn noise(n: u64, i: usize) -> u32 {
    let mut h = (n as u32).wrapping_mul(0x9e37_79b9) ^ (i as u32).wrapping_mul(0x85eb_ca6b);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^ (h >> 12)
}

/// Frame `n` of `info`, every sample noise (10-bit formats: 10-bit values in their low
/// bits), stamped as frame `n` of a 25 fps stream.
fn noisy_frame(info: &gst_video::VideoInfo, n: u64) -> gst::Buffer {
    let ten_bit = info.format_info().depth()[0] > 8;
    let mut data = vec![0u8; info.size()];
    if ten_bit {
        for (i, word) in data.chunks_exact_mut(2).enumerate() {
            word.copy_from_slice(&((noise(n, i) & 0x3ff) as u16).to_le_bytes());
        }
    } else {
        for (i, b) in data.iter_mut().enumerate() {
            *b = noise(n, i) as u8;
        }
    }
    stamped(data, n)
}

fn stamped(data: Vec<u8>, n: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(data);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(n * FRAME_NS));
        b.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
        b.set_offset(n);
    }
    buffer
}

/// Pushes `frames` through `e` with `caps` and returns what came out, checked for count
/// and timestamps.
fn edited(e: &gstwanedit::WanEdit, caps: gst::Caps, frames: &[gst::Buffer]) -> Vec<gst::Buffer> {
    let (mut h, _) = harness(e, caps);
    for frame in frames {
        h.push(frame.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), frames.len(), "one output frame per input frame");
    for (n, b) in out.iter().enumerate() {
        assert_eq!(b.pts(), frames[n].pts(), "frame {n} keeps its PTS");
        assert_eq!(b.duration(), frames[n].duration());
    }
    out
}

/// Sample `x` of row `y` of plane `plane`, as a value (16-bit words read little-endian).
fn sample(
    info: &gst_video::VideoInfo,
    buffer: &gst::Buffer,
    plane: usize,
    x: usize,
    y: usize,
) -> u32 {
    let map = buffer.map_readable().unwrap();
    let at = info.offset()[plane] + y * info.stride()[plane] as usize;
    match info.format_info().depth()[0] > 8 {
        true => u32::from(u16::from_le_bytes([map[at + 2 * x], map[at + 2 * x + 1]])),
        false => u32::from(map[at + x]),
    }
}

/// Checks a planar 4:2:0 stream edited under [`half_mask`]: the right half is the input
/// bit for bit, luma and chroma; the left half's luma is a mix of the painted greys.
///
/// With a `failing` window passed through, its frames mix edits and originals on the
/// left: only the right half is checked.
fn assert_left_half_edited(format: &str, painter: Painter) {
    let e = painted_element(&painter, half_mask(format).to_str().unwrap());
    e.set_property_from_str("on-error", "passthrough");
    let caps = video_caps(format, WIDTH as i32, HEIGHT as i32);
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    let inputs: Vec<_> = (0..FRAMES).map(|n| noisy_frame(&info, n)).collect();
    let out = edited(&e, caps, &inputs);
    let scale = if info.format_info().depth()[0] > 8 {
        4
    } else {
        1
    };
    // Limited-range luma of the two greys, with room for rounding.
    let luma = |g: u8| (16 + u32::from(g) * 219 / 255) * scale;
    let (low, high) = (luma(grey(0)) - 2 * scale, luma(grey(1)) + 2 * scale);
    for (n, (o, i)) in out.iter().zip(&inputs).enumerate() {
        let (w, h) = (WIDTH as usize, HEIGHT as usize);
        for y in 0..h {
            for x in 0..w {
                let (got, input) = (sample(&info, o, 0, x, y), sample(&info, i, 0, x, y));
                if x >= w / 2 {
                    assert_eq!(
                        got, input,
                        "{format} frame {n}: luma at {x},{y} is the input"
                    );
                } else if painter.failing.is_none() {
                    assert!(
                        (low..=high).contains(&got),
                        "{format} frame {n}: luma {got} at {x},{y}"
                    );
                }
            }
        }
        for plane in 1..3 {
            for y in 0..h / 2 {
                for x in w / 4..w / 2 {
                    assert_eq!(
                        sample(&info, o, plane, x, y),
                        sample(&info, i, plane, x, y),
                        "{format} frame {n}: chroma {plane} at {x},{y} is the input"
                    );
                }
            }
        }
    }
    // Windows at 0, 5, 10 and the last one at EOS.
    assert!(painter.seen.lock().unwrap().len() >= 3);
}

#[test]
fn a_mask_file_keeps_the_right_half_bit_exact_in_8_bits() {
    assert_left_half_edited("I420", Painter::default());
}

#[test]
fn a_mask_file_keeps_the_right_half_bit_exact_in_10_bits() {
    assert_left_half_edited("I420_10LE", Painter::default());
}

#[test]
fn a_window_passed_through_keeps_the_unmasked_half_bit_exact_across_its_seams() {
    let painter = Painter {
        failing: Some(1),
        ..Default::default()
    };
    assert_left_half_edited("I420", painter);
}

#[test]
fn the_backend_is_handed_the_mask_frame_by_frame_at_its_size() {
    let painter = Painter::default();
    let e = painted_element(&painter, half_mask("handed").to_str().unwrap());
    let caps = video_caps("RGB", WIDTH as i32, HEIGHT as i32);
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    // 7 frames: one window, padded to 9 by repeating the last frame.
    let inputs: Vec<_> = (0..7).map(|n| noisy_frame(&info, n)).collect();
    edited(&e, caps, &inputs);
    let seen = painter.seen.lock().unwrap();
    let (_, size, frames, masks) = &seen[0];
    let (mask_size, masks) = masks.as_ref().expect("the backend got the mask");
    assert_eq!(
        (*size, *mask_size),
        (Size::new(WIDTH, HEIGHT), Size::new(WIDTH, HEIGHT))
    );
    assert_eq!(
        (*frames, masks.len()),
        (9, 9),
        "one mask per frame sent, padding included"
    );
    for mask in masks {
        assert_eq!(mask.len(), (WIDTH * HEIGHT) as usize);
        for (i, &m) in mask.iter().enumerate() {
            let left = (i % WIDTH as usize) < WIDTH as usize / 2;
            assert_eq!(m, if left { 255 } else { 0 }, "pixel {i}");
        }
    }
}

#[test]
fn without_a_mask_the_backend_is_handed_none() {
    let painter = Painter::default();
    let e = painted_element(&painter, "none");
    assert_eq!(e.property::<String>("mask"), "none");
    let caps = video_caps("RGB", 16, 8);
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    let inputs: Vec<_> = (0..5).map(|n| noisy_frame(&info, n)).collect();
    edited(&e, caps, &inputs);
    assert!(painter.seen.lock().unwrap()[0].3.is_none());
}

/// Alpha of pixel `x` of frame `n`: 0 and 255 in columns of their own, values between
/// elsewhere, changing from frame to frame.
fn alpha(x: usize, y: usize, n: u64) -> u8 {
    match x % 4 {
        0 => 0,
        1 => 255,
        _ => ((x * 37 + y * 11 + n as usize * 29) % 256) as u8,
    }
}

#[test]
fn alpha_from_an_rgba_stream_chooses_the_region() {
    alpha_chooses_the_region(false);
}

/// A chroma key's matte the other way round: the keyed-out background (alpha 0) edited,
/// the subject (alpha 255) kept bit for bit.
#[test]
fn mask_invert_edits_where_alpha_is_0() {
    alpha_chooses_the_region(true);
}

fn alpha_chooses_the_region(invert: bool) {
    let colour = [200, 30, 120];
    let painter = Painter {
        colour: Some(colour),
        ..Default::default()
    };
    let e = painted_element(&painter, "alpha");
    e.set_property("mask-invert", invert);
    let caps = video_caps("RGBA", WIDTH as i32, HEIGHT as i32);
    let inputs: Vec<_> = (0..FRAMES)
        .map(|n| {
            let mut data = Vec::with_capacity((WIDTH * HEIGHT * 4) as usize);
            for y in 0..HEIGHT as usize {
                for x in 0..WIDTH as usize {
                    let i = data.len();
                    data.extend((0..3).map(|c| noise(n, i + c) as u8));
                    data.push(alpha(x, y, n));
                }
            }
            stamped(data, n)
        })
        .collect();
    let out = edited(&e, caps, &inputs);
    for (n, (o, i)) in out.iter().zip(&inputs).enumerate() {
        let (o, i) = (o.map_readable().unwrap(), i.map_readable().unwrap());
        for (p, (op, ip)) in o.chunks_exact(4).zip(i.chunks_exact(4)).enumerate() {
            let a = ip[3];
            assert_eq!(op[3], a, "frame {n} pixel {p}: alpha passes through");
            let m = if invert { 255 - a } else { a };
            for c in 0..3 {
                let want = (f64::from(m) * f64::from(colour[c])
                    + f64::from(255 - m) * f64::from(ip[c]))
                    / 255.0;
                match m {
                    0 => assert_eq!(op[c], ip[c], "frame {n} pixel {p}: kept bit for bit"),
                    255 => assert_eq!(op[c], colour[c], "frame {n} pixel {p}: edited"),
                    _ => assert!(
                        (f64::from(op[c]) - want).abs() <= 1.0,
                        "frame {n} pixel {p}: {} for {want}",
                        op[c]
                    ),
                }
            }
        }
    }
    // The backend was handed each frame's alpha.
    let seen = painter.seen.lock().unwrap();
    let (k, _, _, masks) = seen.iter().find(|s| s.0 == 0).unwrap();
    let (size, masks) = masks.as_ref().unwrap();
    assert_eq!((*k, *size), (0, Size::new(WIDTH, HEIGHT)));
    for (n, mask) in masks.iter().enumerate() {
        let a = alpha(5, 0, n as u64);
        assert_eq!(mask[5], if invert { 255 - a } else { a }, "frame {n}");
    }
}

#[test]
fn alpha_from_an_a420_matte_keeps_its_unmatted_half_and_the_matte() {
    let painter = Painter {
        colour: Some([128; 3]),
        ..Default::default()
    };
    let e = painted_element(&painter, "alpha");
    let caps = video_caps("A420", WIDTH as i32, HEIGHT as i32);
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    // Noise, with a matte of the left half (the alpha plane is the fourth).
    let inputs: Vec<_> = (0..12)
        .map(|n| {
            let mut frame = noisy_frame(&info, n);
            {
                let mut map = frame.get_mut().unwrap().map_writable().unwrap();
                for y in 0..h {
                    let at = info.offset()[3] + y * info.stride()[3] as usize;
                    for x in 0..w {
                        map[at + x] = if x < w / 2 { 255 } else { 0 };
                    }
                }
            }
            frame
        })
        .collect();
    let out = edited(&e, caps, &inputs);
    let grey_luma = 16 + 128 * 219 / 255;
    for (n, (o, i)) in out.iter().zip(&inputs).enumerate() {
        for y in 0..h {
            for x in 0..w {
                let alpha = sample(&info, i, 3, x, y);
                assert_eq!(sample(&info, o, 3, x, y), alpha, "frame {n}: alpha kept");
                let (got, input) = (sample(&info, o, 0, x, y), sample(&info, i, 0, x, y));
                match x < w / 2 {
                    true => assert!(got.abs_diff(grey_luma) <= 1, "frame {n}: {got} at {x},{y}"),
                    false => assert_eq!(got, input, "frame {n}: luma at {x},{y} kept"),
                }
            }
        }
        for plane in 1..3 {
            for y in 0..h / 2 {
                for x in w / 4..w / 2 {
                    assert_eq!(sample(&info, o, plane, x, y), sample(&info, i, plane, x, y));
                }
            }
        }
    }
}

#[test]
fn a_hosted_backend_keeps_the_unmasked_half_bit_exact() {
    init();
    let mock = hosted::Mock::start(hosted::Kind::Cog);
    let e = gst::ElementFactory::make("wanedit")
        .property_from_str("backend", "cog")
        .property("endpoint", &mock.url)
        .property("window-frames", 33u32)
        .property("overlap-frames", 8u32)
        .property("mask", half_mask("hosted").to_str().unwrap())
        .property("prompt", "invert it")
        .build()
        .unwrap()
        .downcast::<gstwanedit::WanEdit>()
        .unwrap();
    let caps = video_caps("I420", WIDTH as i32, HEIGHT as i32);
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    // The left half flat, so that its edit can be told; the right half noise.
    let inputs: Vec<_> = (0..50)
        .map(|n| {
            let mut frame = noisy_frame(&info, n);
            {
                let b = frame.get_mut().unwrap();
                let mut map = b.map_writable().unwrap();
                for plane in 0..3 {
                    let (w, h) = if plane == 0 {
                        (WIDTH, HEIGHT)
                    } else {
                        (WIDTH / 2, HEIGHT / 2)
                    };
                    for y in 0..h as usize {
                        let at = info.offset()[plane] + y * info.stride()[plane] as usize;
                        map[at..at + w as usize / 2].fill(if plane == 0 { 60 } else { 128 });
                    }
                }
            }
            frame
        })
        .collect();
    let out = edited(&e, caps, &inputs);
    for (n, (o, i)) in out.iter().zip(&inputs).enumerate() {
        for y in 0..HEIGHT as usize {
            for x in WIDTH as usize / 2..WIDTH as usize {
                assert_eq!(
                    sample(&info, o, 0, x, y),
                    sample(&info, i, 0, x, y),
                    "frame {n} at {x},{y}"
                );
            }
            // Away from the seam the coder smears: the inverted grey, give or take.
            for x in 0..WIDTH as usize / 2 - 8 {
                let got = sample(&info, o, 0, x, y);
                assert!(got.abs_diff(251 - 60) <= 16, "frame {n} at {x},{y}: {got}");
            }
        }
    }
}

/// READY->PAUSED fails, and the error on the bus says `needle`.
fn refused_at_start(mask: &str, needle: &str) {
    let e = painted_element(&Painter::default(), mask);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    assert!(e.set_state(gst::State::Paused).is_err());
    let error = error_of(&bus);
    assert!(error.contains("mask") && error.contains(needle), "{error}");
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_missing_mask_file_fails_at_ready_to_paused() {
    let path = temp_dir("missing").join("nowhere.png");
    refused_at_start(path.to_str().unwrap(), path.to_str().unwrap());
}

#[test]
fn a_mask_file_that_is_no_image_fails_at_ready_to_paused() {
    let path = temp_dir("foreign").join("notes.png");
    std::fs::write(&path, "not a picture").unwrap();
    refused_at_start(path.to_str().unwrap(), path.to_str().unwrap());
}

#[test]
fn alpha_on_caps_without_alpha_is_a_clear_error() {
    let e = painted_element(&Painter::default(), "alpha");
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let caps = video_caps("I420", 16, 8);
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    let mut h = gst_check::Harness::with_element(&e, Some("sink"), Some("src"));
    h.set_src_caps(caps);
    h.play();
    assert!(
        h.push(noisy_frame(&info, 0)).is_err(),
        "no frame is taken without caps"
    );
    let error = error_of(&bus);
    assert!(
        error.contains("mask=alpha")
            && error.contains("RGBA, BGRA, ARGB, ABGR, AYUV or A420")
            && error.contains("set mask to none"),
        "{error}"
    );
}
