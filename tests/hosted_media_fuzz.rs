//! Returned clips fuzzed: whatever bytes a provider sends back, decoding them ends, without
//! a panic, within a bound; a clip that is no video, holds no frames or has frames of a
//! pixel is refused in words that say so.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use gst::prelude::*;
use gstwanedit::backend::hosted::media::{self, MIN_SIDE, MediaError};
use gstwanedit::backend::{ClipFrame, RgbFrame, Size};
use proptest::prelude::*;
use proptest::sample::Index;

/// No clip of these tests takes a second to decode: past this, decoding has hung.
const DECODE_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest error a clip may cause.
const MAX_ERROR: usize = 1000;

/// Decodes `data` on a thread of its own, failing the test if that does not end in time.
fn decode(data: Vec<u8>) -> Result<Vec<ClipFrame>, MediaError> {
    let (done, result) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = done.send(media::decode_mp4(data).and_then(Iterator::collect));
    });
    match result.recv_timeout(DECODE_TIMEOUT) {
        Ok(result) => result,
        Err(RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().expect_err("no result, so it panicked"))
        }
        Err(RecvTimeoutError::Timeout) => panic!("decoding did not end in {DECODE_TIMEOUT:?}"),
    }
}

/// Decodes `data`: frames that a clip may hold, or an error that says what was wrong.
fn check(data: Vec<u8>) -> Result<(), TestCaseError> {
    match decode(data) {
        Ok(frames) => {
            prop_assert!(!frames.is_empty());
            for frame in &frames {
                // Every frame handed out converts as the element converts it.
                let image = frame
                    .image
                    .to_rgb()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(image.width >= MIN_SIDE && image.height >= MIN_SIDE);
                prop_assert_eq!(
                    image.data.len(),
                    image.width as usize * image.height as usize * 3
                );
            }
        }
        Err(error) => {
            let shown = error.to_string();
            prop_assert!(!shown.trim().is_empty(), "{:?}", error);
            prop_assert!(shown.chars().count() <= MAX_ERROR, "{}", shown);
        }
    }
    Ok(())
}

/// The file a `gst-launch` style description writes to `filesink`: mp4mux then puts the
/// moov box last, as a file written in one go does.
fn launch(description: &str) -> Vec<u8> {
    gst::init().unwrap();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "wanedit-media-fuzz-{}-{}.mp4",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let pipeline = gst::parse::launch(&format!(
        "{description} ! filesink location={}",
        path.display()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the fixture pipeline ends");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(message.view(), gst::MessageView::Eos(_)),
        "{description}: {message:?}"
    );
    let data = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    data
}

/// A good clip as the element sends it: 9 frames, 64x48, moov box first.
static CLIP: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let frames: Vec<RgbFrame> = (0..9u8)
        .map(|i| RgbFrame::filled(64, 48, [i * 20, 128, 255 - i * 20]))
        .collect();
    media::encode_mp4(
        frames.iter().cloned().map(Ok::<_, media::MediaError>),
        gst::Fraction::new(16, 1),
    )
    .unwrap()
});

/// A good clip with its moov box last, and B-frames, as ffmpeg writes by default. (A
/// moving picture: qtdemux 1.22 drops frames of some short still clips with B-frames in
/// push mode.)
static MOOV_LAST: LazyLock<Vec<u8>> = LazyLock::new(|| {
    launch(
        "videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=64,height=48 ! \
         x264enc bframes=3 ! mp4mux",
    )
});

/// An MP4 of AAC audio alone.
static AUDIO_ONLY: LazyLock<Vec<u8>> =
    LazyLock::new(|| launch("audiotestsrc num-buffers=20 ! avenc_aac ! mp4mux"));

/// An MP4 with a video track that holds no sample.
static NO_FRAMES: LazyLock<Vec<u8>> = LazyLock::new(|| {
    launch("videotestsrc num-buffers=0 ! video/x-raw,width=64,height=48 ! x264enc ! mp4mux")
});

/// An MP4 of 1x1 H.264 (4:4:4, which x264 encodes at any size). mp4mux takes 16x16 at
/// least: the caps claim that, while the stream itself says 1x1.
static ONE_PIXEL: LazyLock<Vec<u8>> = LazyLock::new(|| {
    launch(
        "videotestsrc num-buffers=5 ! video/x-raw,width=1,height=1,format=Y444 ! x264enc ! \
         video/x-h264,stream-format=avc,alignment=au ! \
         capssetter caps=\"video/x-h264,width=16,height=16\" ! mp4mux",
    )
});

fn image(encoder: &str) -> Vec<u8> {
    launch(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! {encoder}"
    ))
}

fn not_video(data: Vec<u8>) -> String {
    match decode(data) {
        Err(MediaError::NotVideo(why)) => why,
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_data_is_not_a_video() {
    let error = decode(Vec::new()).unwrap_err();
    assert_eq!(error.to_string(), "the clip is not a video: it is empty");
}

#[test]
fn images_and_pages_are_not_videos() {
    assert_eq!(not_video(image("pngenc")), "it is image/png");
    assert_eq!(not_video(image("jpegenc")), "it is image/jpeg");
    let page = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>".to_vec();
    assert_eq!(
        not_video(page),
        "it is text/html, starting \"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\""
    );
    let json = br#"{"detail": "Not found"}"#.to_vec();
    let why = not_video(json);
    assert!(
        why.ends_with(r#", starting "{\"detail\": \"Not found\"}""#),
        "{why}"
    );
}

#[test]
fn audio_alone_is_not_a_video() {
    let why = not_video(AUDIO_ONLY.clone());
    assert_eq!(why, "it holds no video track, only audio/x-raw");
}

#[test]
fn a_clip_without_frames_is_refused() {
    // qtdemux refuses a track without samples before decoding starts.
    let error = decode(NO_FRAMES.clone()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "decoding the edited clip failed: This file is corrupt and cannot be played."
    );
}

#[test]
fn frames_of_a_pixel_are_refused() {
    let error = decode(ONE_PIXEL.clone()).unwrap_err();
    assert_eq!(
        error,
        MediaError::TooSmall {
            width: 1,
            height: 1
        }
    );
    assert_eq!(
        error.to_string(),
        "the clip's frames are 1x1: frames under 16x16 are no edit of a window"
    );
    let smallest = vec![RgbFrame::filled(MIN_SIDE, MIN_SIDE, [1, 2, 3]); 3];
    let mp4 = media::encode_mp4(
        smallest.iter().cloned().map(Ok::<_, media::MediaError>),
        gst::Fraction::new(16, 1),
    )
    .unwrap();
    assert_eq!(decode(mp4).unwrap().len(), 3);
}

#[test]
fn clips_with_the_moov_box_last_decode() {
    let frames = decode(MOOV_LAST.clone()).unwrap();
    assert_eq!(frames.len(), 10);
    assert_eq!(frames[0].image.size(), Size::new(64, 48));
}

/// How a clip is damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Cut after this many bytes.
    Truncate(Index),
    /// Bytes XORed with non-zero values.
    Flip(Vec<(Index, u8)>),
    /// A box spliced out: its parents' sizes then lie.
    RemoveBox(Index),
    /// A box's size field overwritten.
    BoxSize(Index, u32),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        prop::collection::vec((any::<Index>(), 1..=255u8), 1..16).prop_map(Damage::Flip),
        any::<Index>().prop_map(Damage::RemoveBox),
        (
            any::<Index>(),
            prop_oneof![
                Just(0u32),
                Just(1),
                Just(7),
                Just(8),
                Just(u32::MAX),
                any::<u32>()
            ]
        )
            .prop_map(|(at, size)| Damage::BoxSize(at, size)),
    ]
}

/// The MP4 boxes in `data[start..end]` and inside those that hold boxes, as
/// (start, end) byte ranges.
fn boxes(data: &[u8], start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    const CONTAINERS: [&[u8; 4]; 6] = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"];
    let mut at = start;
    while at + 8 <= end {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if size < 8 || at + size > end {
            break;
        }
        out.push((at, at + size));
        if CONTAINERS.iter().any(|c| &data[at + 4..at + 8] == *c) {
            boxes(data, at + 8, at + size, out);
        }
        at += size;
    }
}

fn apply(mut data: Vec<u8>, damage: &Damage) -> Vec<u8> {
    let mut found = Vec::new();
    boxes(&data, 0, data.len(), &mut found);
    match damage {
        Damage::Truncate(at) => data.truncate(at.index(data.len())),
        Damage::Flip(flips) => {
            for (at, mask) in flips {
                let at = at.index(data.len());
                data[at] ^= mask;
            }
        }
        Damage::RemoveBox(which) => {
            let (start, end) = *which.get(&found);
            data.drain(start..end);
        }
        Damage::BoxSize(which, size) => {
            let (start, _) = *which.get(&found);
            data[start..start + 4].copy_from_slice(&size.to_be_bytes());
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn damaged_clips_end_and_say_why(
        clip in prop::sample::select(&["clip", "moov last", "audio only"][..]),
        damage in damage(),
    ) {
        let clip = match clip {
            "clip" => &*CLIP,
            "moov last" => &*MOOV_LAST,
            _ => &*AUDIO_ONLY,
        };
        check(apply(clip.clone(), &damage))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn arbitrary_bytes_end_and_say_why(
        data in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..4096),
            // An MP4 header over junk: typefinding passes, demuxing must fail.
            prop::collection::vec(any::<u8>(), 0..4096)
                .prop_map(|junk| [&CLIP[..32], &junk[..]].concat()),
        ],
    ) {
        check(data)?;
    }
}
