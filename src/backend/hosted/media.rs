//! MP4 in and out, in-process with GStreamer.
//!
//! Providers take and give H.264 MP4. Both directions run a small GStreamer pipeline in
//! the calling thread (call them from a blocking task): `appsrc ! videoconvert ! x264enc !
//! mp4mux ! appsink` and `appsrc ! decodebin ! videoconvert ! appsink`. Decoded frames stay
//! in the decoder's raw format: the element converts only those its window takes.

use gst::glib;
use gst::prelude::*;
use std::sync::{Arc, Mutex};

use crate::backend::{BackendError, ClipFrame, Picture, RgbFrame, Size, frame_time};

/// No clip of 81 frames takes this long to encode or decode; a pipeline that does has hung.
const PIPELINE_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(300);

/// Sides under this are refused in a returned clip. No Wan model outputs less than 480 px
/// on a side, and a frame smaller than one H.264 macroblock (16x16) is a placeholder or a
/// broken answer, not an edit; the small clips of the tests (64x48, halved by their
/// servers) stay above it.
pub const MIN_SIDE: u32 = 16;

/// The most a returned clip may decode to, counted as packed RGB. The hosted models'
/// longest clip (10 s) at 60 fps and their largest size (1080p) stays below it; past it a
/// clip is no edit of a window, and decoding on would exhaust memory (a small H.264 file
/// can hold huge frames).
const MAX_DECODED_BYTES: usize = 4 << 30;

/// Sides over this are refused in any clip decoded: 8K, far past what a Wan model makes.
const MAX_SIDE: u32 = 8192;

/// An edit may have sides up to this whatever the window's size: the hosted models make up
/// to 1080p, either way round, from windows of any size.
const EDIT_SIDE_FLOOR: u32 = 1920;

/// Why a clip could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The data is no video: another kind of file, or a file without a video track.
    #[error("the clip is not a video: {0}")]
    NotVideo(String),
    #[error("the clip holds no video frames")]
    NoFrames,
    #[error(
        "the clip's frames are {width}x{height}: frames under {MIN_SIDE}x{MIN_SIDE} are no \
         edit of a window"
    )]
    TooSmall { width: u32, height: u32 },
    #[error("the clip decodes to more than {} MiB of frames", .0 >> 20)]
    TooLarge(usize),
    #[error(
        "the clip declares {width}x{height} frames, over the {largest} that an edit of this \
         window may have: it is no edit of the window"
    )]
    Oversized {
        width: u32,
        height: u32,
        largest: Size,
    },
    /// What GStreamer, or the frames given to encode, did not allow.
    #[error("{0}")]
    Pipeline(String),
}

impl MediaError {
    fn new(text: impl Into<String>) -> Self {
        Self::Pipeline(text.into())
    }
}

impl From<glib::BoolError> for MediaError {
    fn from(e: glib::BoolError) -> Self {
        Self::new(e.to_string())
    }
}

impl From<MediaError> for BackendError {
    fn from(e: MediaError) -> Self {
        BackendError::Output(e.to_string())
    }
}

impl From<glib::Error> for MediaError {
    fn from(e: glib::Error) -> Self {
        Self::new(e.to_string())
    }
}

fn make(factory: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        MediaError::new(format!(
            "the GStreamer element {factory} is missing: install its plugin"
        ))
    })
}

/// Frames queued in front of the encoder at most.
const ENCODE_QUEUE_FRAMES: u64 = 4;

/// Decoded frames waiting to be taken at most.
const DECODE_QUEUE_FRAMES: u32 = 2;

/// Encodes frames, all of one size and form, as H.264 (High profile, yuv420p) in MP4;
/// frame `i` stands at `i / frame_rate`. Each frame is taken from `frames` only when the
/// encoder has room for it, and let go once encoded: a window is never held whole.
pub fn encode_mp4<P: Into<Picture>, E: From<MediaError>>(
    frames: impl IntoIterator<Item = Result<P, E>>,
    frame_rate: gst::Fraction,
) -> Result<Vec<u8>, E> {
    gst::init().map_err(MediaError::from)?;
    let mut frames = frames.into_iter().map(|f| f.map(Into::into)).peekable();
    let info = match frames.peek() {
        Some(Ok(first)) => input_info(first, frame_rate)?,
        Some(Err(_)) => return Err(frames.next().and_then(Result::err).expect("peeked")),
        None => return Err(MediaError::new("no frames to encode").into()),
    };
    let (pipeline, src, sink) = encoder(&info)?;
    // Frames wait for the encoder a few at a time: a whole window of copies queued in
    // front of x264 would double what an edit holds.
    let queued_bytes = ENCODE_QUEUE_FRAMES * info.size() as u64;
    let frame_duration = frame_time(1, frame_rate);
    let run = Running::start(&pipeline)?;
    for (i, frame) in frames.enumerate() {
        let mut buffer = input_buffer(frame?, &info)?;
        {
            let buffer = buffer.make_mut();
            buffer.set_pts(frame_time(i as u64, frame_rate));
            buffer.set_duration(frame_duration);
        }
        run.wait_below(&src, queued_bytes)?;
        src.push_buffer(buffer)
            .map_err(|e| MediaError::new(format!("encoder refused a frame: {e:?}")))?;
    }
    src.end_of_stream()
        .map_err(|e| MediaError::new(format!("encoder refused end of stream: {e:?}")))?;
    let mut mp4 = Vec::new();
    for sample in run.samples(&sink, "encoding") {
        if let Some(buffer) = sample?.buffer() {
            mp4.extend_from_slice(&buffer.map_readable().map_err(MediaError::from)?);
        }
    }
    Ok(mp4)
}

/// What the encoder is fed, as the first frame is: RGB, or the frame's own video.
fn input_info(
    first: &Picture,
    frame_rate: gst::Fraction,
) -> Result<gst_video::VideoInfo, MediaError> {
    let size = first.size();
    let builder = match first {
        Picture::Rgb(_) => {
            gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, size.width, size.height)
        }
        Picture::Video { info, .. } => {
            gst_video::VideoInfo::builder(info.format(), size.width, size.height)
                .colorimetry(&info.colorimetry())
                .chroma_site(info.chroma_site())
        }
    };
    Ok(builder.fps(frame_rate).build()?)
}

/// A frame as the encoder takes it, once it is found to be like the first.
fn input_buffer(frame: Picture, info: &gst_video::VideoInfo) -> Result<gst::Buffer, MediaError> {
    let unlike = || MediaError::new("frames of different sizes or forms in one clip");
    if frame.size() != Size::new(info.width(), info.height()) {
        return Err(unlike());
    }
    match frame {
        Picture::Rgb(image) if info.format() == gst_video::VideoFormat::Rgb => {
            Ok(rgb_buffer(image, info))
        }
        Picture::Video {
            buffer,
            info: frame_info,
        } if frame_info.format() == info.format() => Ok(buffer),
        _ => Err(unlike()),
    }
}

/// `appsrc ! videoconvert ! x264enc ! mp4mux ! appsink` for frames of `info`.
fn encoder(
    info: &gst_video::VideoInfo,
) -> Result<(gst::Pipeline, gst_app::AppSrc, gst_app::AppSink), MediaError> {
    let src = gst_app::AppSrc::builder()
        .caps(&info.to_caps()?)
        .format(gst::Format::Time)
        .max_bytes(0)
        .build();
    let convert = make("videoconvert")?;
    let yuv = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .build(),
        )
        .build()?;
    let encoder = make("x264enc")?;
    // Constant quality near visually lossless: the model should see the source, not
    // compression artefacts. Speed matters too: a window is encoded for every job.
    encoder.set_property_from_str("pass", "qual");
    encoder.set_property("quantizer", 14u32);
    encoder.set_property_from_str("speed-preset", "veryfast");
    // x264enc turns trellis quantisation on whatever the preset says (veryfast has it
    // off): it was a quarter of an encode's time and, at this quality, changed the size
    // of a test pattern's file by 0.03%.
    encoder.set_property("trellis", false);
    // No frame-type lookahead (so no macroblock tree, which at this quality changes the
    // upload's size by a few per cent): its frames would cost 20 MiB more per encoder.
    encoder.set_property("rc-lookahead", 0i32);
    // No B-frames: their reordering offsets every timestamp, and mp4mux writes no edit list
    // to take the offset back, so decoders clip the last frames at the clip's end.
    encoder.set_property("bframes", 0u32);
    let profile = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("profile", "high")
                .build(),
        )
        .build()?;
    let mux = make("mp4mux")?;
    // The moov box first: appsink cannot seek back, and providers read the file faster.
    mux.set_property("faststart", true);
    let sink = appsink(None);

    let pipeline = gst::Pipeline::new();
    let elements = [
        src.upcast_ref(),
        &convert,
        &yuv,
        &encoder,
        &profile,
        &mux,
        sink.upcast_ref(),
    ];
    pipeline.add_many(elements)?;
    gst::Element::link_many(elements)?;
    Ok((pipeline, src, sink))
}

/// Decodes the first video track of a clip to raw frames, in presentation order, their
/// times counted from the clip's first frame; each frame is decoded as the one before is
/// taken. Other tracks (audio) are ignored. Data that is no video, holds no frames, or
/// whose frames are under [`MIN_SIDE`] or over 8192 on a side is refused, with an `Err`
/// in place of the first frame where the pipeline finds out.
pub fn decode_mp4(data: Vec<u8>) -> Result<DecodedFrames, MediaError> {
    decode(data, Size::new(MAX_SIDE, MAX_SIDE), MAX_DECODED_BYTES)
}

/// [`decode_mp4`] for the edit of a window of `asked` frames: a clip whose frames are over
/// twice as wide or high (and over 1080p) is refused from the sizes its container and
/// stream declare, before any frame is decoded.
pub fn decode_edit(data: Vec<u8>, asked: Size) -> Result<DecodedFrames, MediaError> {
    let side = |asked: u32| asked.saturating_mul(2).max(EDIT_SIDE_FLOOR);
    let largest = Size::new(side(asked.width), side(asked.height));
    decode(data, largest, MAX_DECODED_BYTES)
}

/// [`decode_mp4`], refusing a clip whose frames are over `largest` on a side, and once its
/// frames pass `budget` bytes.
fn decode(data: Vec<u8>, largest: Size, budget: usize) -> Result<DecodedFrames, MediaError> {
    gst::init()?;
    check_video(&data)?;
    let size = data.len() as u64;
    let data = Arc::new(data);
    let offset = Arc::new(Mutex::new(0u64));
    // Seekable push mode: qtdemux seeks to the moov box wherever it is in the file. (In
    // random-access pull mode decodebin swallows the errors of a file it cannot type and
    // never prerolls.)
    let src = gst_app::AppSrc::builder()
        .stream_type(gst_app::AppStreamType::Seekable)
        .size(size as i64)
        .format(gst::Format::Bytes)
        .callbacks(
            gst_app::AppSrcCallbacks::builder()
                .seek_data({
                    let offset = offset.clone();
                    move |_, to| {
                        *offset.lock().unwrap() = to;
                        to <= size
                    }
                })
                .need_data({
                    let offset = offset.clone();
                    move |src, length| {
                        let mut at = offset.lock().unwrap();
                        if *at >= size {
                            let _ = src.end_of_stream();
                            return;
                        }
                        let end = (*at + u64::from(length)).min(size);
                        let mut buffer =
                            gst::Buffer::from_slice(data[*at as usize..end as usize].to_vec());
                        buffer.get_mut().unwrap().set_offset(*at);
                        *at = end;
                        let _ = src.push_buffer(buffer);
                    }
                })
                .build(),
        )
        .build();
    let decodebin = make("decodebin")?;
    // Whatever raw format the decoder makes, in system memory: `videoconvert` passes it
    // through untouched, and converts only what a hardware decoder would hand over in
    // its own memory.
    let convert = make("videoconvert")?;
    let sink = gst_app::AppSink::builder()
        .caps(&gst::Caps::new_empty_simple("video/x-raw"))
        .sync(false)
        // The decoder waits while the frames before are being taken, instead of decoding
        // the whole clip ahead into memory.
        .max_buffers(DECODE_QUEUE_FRAMES)
        .build();

    let pipeline = gst::Pipeline::new();
    pipeline.add_many([src.upcast_ref(), &decodebin, &convert, sink.upcast_ref()])?;
    src.link(&decodebin)?;
    convert.link(&sink)?;

    let tracks = Arc::new(Mutex::new(Tracks::default()));
    // Each stream's caps on the way to a decoder (the demuxer's, the parser's) say how big
    // its frames are: a decoder plugged for a huge size would allocate frames of it (a
    // small file can declare 16000x16000), so such a stream is stopped before one is.
    decodebin.connect("autoplug-continue", false, {
        let tracks = tracks.clone();
        move |values| {
            let refused = values[2]
                .get::<gst::Caps>()
                .ok()
                .and_then(|caps| oversized(&caps, largest));
            if let (Some(error), Ok(decodebin)) = (refused, values[0].get::<gst::Element>()) {
                // Recorded first: the pipeline's error is explained by it.
                tracks.lock().unwrap().refused = Some(error.clone());
                gst::element_error!(decodebin, gst::StreamError::Format, ["{error}"]);
                return Some(false.to_value());
            }
            Some(true.to_value())
        }
    });
    decodebin.connect_pad_added({
        let pipeline = pipeline.downgrade();
        let convert = convert.clone();
        let tracks = tracks.clone();
        move |_, pad| {
            let Some(pipeline) = pipeline.upgrade() else {
                return;
            };
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let kind = caps
                .structure(0)
                .map_or_else(|| "unknown".to_owned(), |s| s.name().to_string());
            let mut tracks = tracks.lock().unwrap();
            if kind.starts_with("video/") && !tracks.video {
                tracks.video = pad.link(&convert.static_pad("sink").unwrap()).is_ok();
            } else if let Ok(fakesink) = gst::ElementFactory::make("fakesink").build() {
                // Audio, or a second video track: consumed and dropped.
                tracks.others.push(kind);
                fakesink.set_property("sync", false);
                let _ = pipeline.add(&fakesink);
                let _ = fakesink.sync_state_with_parent();
                let _ = pad.link(&fakesink.static_pad("sink").unwrap());
            }
        }
    });
    decodebin.connect_no_more_pads({
        let tracks = tracks.clone();
        move |decodebin| {
            let mut tracks = tracks.lock().unwrap();
            tracks.complete = true;
            if !tracks.video {
                // Nothing would ever end the stream at the sink: stop now.
                gst::element_error!(decodebin, gst::StreamError::WrongType, ["no video track"]);
            }
        }
    });

    Ok(DecodedFrames {
        run: Running::start(&pipeline)?,
        sink,
        tracks,
        reader: SampleReader::default(),
        origin: None,
        decoded: 0,
        largest,
        budget,
        frames: 0,
        done: false,
    })
}

/// The frames of a clip, decoded as they are taken; the pipeline stops when this is
/// dropped.
pub struct DecodedFrames {
    run: Running,
    sink: gst_app::AppSink,
    tracks: Arc<Mutex<Tracks>>,
    reader: SampleReader,
    origin: Option<gst::ClockTime>,
    /// Bytes decoded so far, counted as packed RGB.
    decoded: usize,
    largest: Size,
    budget: usize,
    frames: usize,
    done: bool,
}

impl DecodedFrames {
    fn next_frame(&mut self) -> Option<Result<ClipFrame, MediaError>> {
        loop {
            let sample = match self.run.next_sample(
                &self.sink,
                "decoding the edited clip",
                &mut self.reader,
            )? {
                Ok(sample) => sample,
                Err(e) => return Some(Err(self.tracks.lock().unwrap().explain(e))),
            };
            let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
                continue;
            };
            return Some(self.frame(buffer, caps));
        }
    }

    fn frame(
        &mut self,
        buffer: &gst::BufferRef,
        caps: &gst::CapsRef,
    ) -> Result<ClipFrame, MediaError> {
        let info = gst_video::VideoInfo::from_caps(caps)?;
        let (width, height) = (info.width(), info.height());
        if width < MIN_SIDE || height < MIN_SIDE {
            return Err(MediaError::TooSmall { width, height });
        }
        // A stream whose frames grew past what its caps declared.
        if let Some(error) = oversized(caps, self.largest) {
            return Err(error);
        }
        self.decoded = self
            .decoded
            .saturating_add(width as usize * height as usize * 3);
        if self.decoded > self.budget {
            return Err(MediaError::TooLarge(self.budget));
        }
        let pts = buffer
            .pts()
            .ok_or_else(|| MediaError::new("a decoded frame has no timestamp"))?;
        let origin = *self.origin.get_or_insert(pts);
        Ok(ClipFrame {
            pts: pts.saturating_sub(origin),
            image: Picture::Video {
                buffer: buffer.to_owned(),
                info,
            },
        })
    }
}

impl Iterator for DecodedFrames {
    type Item = Result<ClipFrame, MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match self.next_frame() {
            None if self.frames == 0 => Some(Err(MediaError::NoFrames)),
            next => next,
        };
        match &next {
            Some(Ok(_)) => self.frames += 1,
            // The pipeline stops at its first error: nothing follows it.
            _ => self.done = true,
        }
        next
    }
}

/// The streams decodebin found in a clip.
#[derive(Debug, Default)]
struct Tracks {
    /// Whether a video stream reached the sink.
    video: bool,
    /// The media types of the streams dropped.
    others: Vec<String>,
    /// Whether decodebin found every stream.
    complete: bool,
    /// Why a stream was stopped before its decoder, if one was.
    refused: Option<MediaError>,
}

impl Tracks {
    /// A pipeline error, as the clip's lack of a video track, or a stream stopped for its
    /// size, where that was the cause.
    fn explain(&self, error: MediaError) -> MediaError {
        if let Some(refused) = &self.refused {
            return refused.clone();
        }
        if self.video || !self.complete {
            return error;
        }
        match self.others.as_slice() {
            [] => MediaError::NotVideo("it holds no track".into()),
            others => MediaError::NotVideo(format!(
                "it holds no video track, only {}",
                others.join(", ")
            )),
        }
    }
}

/// Why frames of the size `caps` declare are refused, if they are over `largest` on a side.
fn oversized(caps: &gst::CapsRef, largest: Size) -> Option<MediaError> {
    let s = caps.structure(0)?;
    let side = |name: &str| s.get::<i32>(name).ok().and_then(|v| u32::try_from(v).ok());
    let (width, height) = (side("width")?, side("height")?);
    (width > largest.width || height > largest.height).then_some(MediaError::Oversized {
        width,
        height,
        largest,
    })
}

/// Refuses data that GStreamer does not find to be a video container or stream (an image,
/// a web page, JSON), before a pipeline tries it.
fn check_video(data: &[u8]) -> Result<(), MediaError> {
    if data.is_empty() {
        return Err(MediaError::NotVideo("it is empty".into()));
    }
    let kind = gst_base::functions::type_find_helper_for_data(None::<&gst::Object>, data)
        .ok()
        .and_then(|(caps, _)| caps.structure(0).map(|s| s.name().to_string()));
    match kind {
        Some(kind) if kind.starts_with("video/") => Ok(()),
        Some(kind) => Err(MediaError::NotVideo(format!(
            "it is {kind}{}",
            text_start(data)
        ))),
        None => Err(MediaError::NotVideo(format!(
            "its format is unknown{}",
            text_start(data)
        ))),
    }
}

/// The start of data that reads as text (an error page, JSON), for an error message.
fn text_start(data: &[u8]) -> String {
    let head = &data[..data.len().min(60)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // A character cut where `head` ends is no sign of binary data.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return String::new(),
    };
    if text.trim().is_empty() || text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return String::new();
    }
    format!(", starting {text:?}")
}

/// A sink that keeps every sample until read, as fast as they come.
fn appsink(caps: Option<gst::Caps>) -> gst_app::AppSink {
    let sink = gst_app::AppSink::builder().sync(false).build();
    sink.set_caps(caps.as_ref());
    sink
}

/// A packed frame in GStreamer's layout, whose RGB rows start on 4-byte boundaries: the
/// frame's own memory where its rows already do (widths that are multiples of 4, as all
/// Wan sizes are), else a padded copy.
fn rgb_buffer(frame: RgbFrame, info: &gst_video::VideoInfo) -> gst::Buffer {
    let stride = info.stride()[0] as usize;
    let row = frame.width as usize * 3;
    if stride == row {
        return gst::Buffer::from_mut_slice(frame.data);
    }
    let mut data = vec![0u8; info.size()];
    for (y, src) in frame.data.chunks_exact(row).enumerate() {
        data[y * stride..y * stride + row].copy_from_slice(src);
    }
    gst::Buffer::from_mut_slice(data)
}

/// A pipeline set to PLAYING, stopped when dropped whatever happened.
struct Running(gst::Pipeline);

/// Where reading a sink's samples stands.
#[derive(Default)]
struct SampleReader {
    /// Time spent waiting for a sample that did not come.
    waited: gst::ClockTime,
    done: bool,
}

impl Running {
    fn start(pipeline: &gst::Pipeline) -> Result<Self, MediaError> {
        let running = Running(pipeline.clone());
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| running.error_or("the pipeline did not start"))?;
        Ok(running)
    }

    /// The samples reaching `sink` until the end of the stream; an error of the pipeline,
    /// or a stream that does not end within `PIPELINE_TIMEOUT`, ends the iteration with
    /// an `Err`.
    fn samples<'s>(
        &'s self,
        sink: &'s gst_app::AppSink,
        what: &'s str,
    ) -> impl Iterator<Item = Result<gst::Sample, MediaError>> + 's {
        let mut reader = SampleReader::default();
        std::iter::from_fn(move || self.next_sample(sink, what, &mut reader))
    }

    /// The next of [`Running::samples`].
    fn next_sample(
        &self,
        sink: &gst_app::AppSink,
        what: &str,
        reader: &mut SampleReader,
    ) -> Option<Result<gst::Sample, MediaError>> {
        let poll = gst::ClockTime::from_mseconds(50);
        while !reader.done {
            if let Some(sample) = sink.try_pull_sample(poll) {
                return Some(Ok(sample));
            }
            if sink.is_eos() {
                // EOS may be flagged while samples still wait: drain them first.
                let last = sink.try_pull_sample(gst::ClockTime::ZERO);
                reader.done = last.is_none();
                return last.map(Ok);
            }
            let failed = self
                .0
                .bus()
                .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
                .map(|m| match m.view() {
                    gst::MessageView::Error(e) => format!("{what} failed: {}", e.error()),
                    _ => unreachable!("filtered on errors"),
                });
            reader.waited += poll;
            let failed = failed.or_else(|| {
                (reader.waited > PIPELINE_TIMEOUT)
                    .then(|| format!("{what} did not finish within {PIPELINE_TIMEOUT}"))
            });
            if let Some(text) = failed {
                reader.done = true;
                return Some(Err(MediaError::new(text)));
            }
        }
        None
    }

    /// Waits until `src` holds less than `bytes`, or the pipeline fails or stalls.
    fn wait_below(&self, src: &gst_app::AppSrc, bytes: u64) -> Result<(), MediaError> {
        let bus = self.0.bus().expect("a pipeline has a bus");
        let poll = gst::ClockTime::from_mseconds(5);
        let mut waited = gst::ClockTime::ZERO;
        while src.current_level_bytes() >= bytes {
            if let Some(message) = bus.timed_pop_filtered(poll, &[gst::MessageType::Error]) {
                let gst::MessageView::Error(e) = message.view() else {
                    unreachable!("filtered on errors");
                };
                return Err(MediaError::new(format!("encoding failed: {}", e.error())));
            }
            waited += poll;
            if waited > PIPELINE_TIMEOUT {
                return Err(MediaError::new(format!(
                    "the encoder took no frame within {PIPELINE_TIMEOUT}"
                )));
            }
        }
        Ok(())
    }

    fn error_or(&self, fallback: &str) -> MediaError {
        let error = self.0.bus().and_then(|bus| {
            bus.pop_filtered(&[gst::MessageType::Error])
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(e.error().to_string()),
                    _ => None,
                })
        });
        MediaError::new(error.unwrap_or_else(|| fallback.to_owned()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::InputFormat;
    use crate::stream::convert::ToBackend;

    fn clip(count: usize, width: u32, height: u32) -> Vec<RgbFrame> {
        (0..count)
            .map(|i| RgbFrame::filled(width, height, [(i * 20) as u8, 128, 255 - (i * 20) as u8]))
            .collect()
    }

    fn encode(
        frames: &[impl Into<Picture> + Clone],
        rate: gst::Fraction,
    ) -> Result<Vec<u8>, MediaError> {
        encode_mp4(frames.iter().cloned().map(Ok::<_, MediaError>), rate)
    }

    fn decoded(mp4: Vec<u8>) -> Result<Vec<ClipFrame>, MediaError> {
        decode_mp4(mp4)?.collect()
    }

    fn close(a: [u8; 3], b: [u8; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 6)
    }

    #[test]
    fn round_trip_keeps_count_times_and_colours() {
        let rate = gst::Fraction::new(16, 1);
        // 30 is not a multiple of 4: RGB rows are padded in GStreamer and must be unpacked.
        let frames = clip(9, 30, 18);
        let mp4 = encode(&frames, rate).unwrap();
        assert_eq!(&mp4[4..8], b"ftyp");
        let decoded = decoded(mp4).unwrap();
        assert_eq!(decoded.len(), 9);
        for (i, (out, sent)) in decoded.iter().zip(&frames).enumerate() {
            assert_eq!(out.pts, frame_time(i as u64, rate));
            let image = out.image.to_rgb().unwrap();
            assert_eq!((image.width, image.height), (30, 18));
            for (x, y) in [(0, 0), (15, 9), (29, 17)] {
                assert!(
                    close(image.pixel(x, y), sent.pixel(x, y)),
                    "frame {i} at ({x},{y}): {:?} for {:?}",
                    image.pixel(x, y),
                    sent.pixel(x, y)
                );
            }
        }
    }

    #[test]
    fn a_full_window_at_wan_size_keeps_every_frame() {
        let rate = gst::Fraction::new(16, 1);
        let frames = clip(33, 832, 480);
        let decoded = decoded(encode(&frames, rate).unwrap()).unwrap();
        assert_eq!(decoded.len(), 33);
        assert_eq!(decoded[32].pts, frame_time(32, rate));
    }

    #[test]
    fn other_rates_keep_their_times() {
        let rate = gst::Fraction::new(24000, 1001);
        let decoded = decoded(encode(&clip(5, 32, 32), rate).unwrap()).unwrap();
        let times: Vec<_> = decoded.iter().map(|f| f.pts).collect();
        let expected: Vec<_> = (0..5).map(|i| frame_time(i, rate)).collect();
        for (got, want) in times.iter().zip(&expected) {
            // mp4 stores times in its own timescale: allow a rounding of a microsecond.
            assert!(
                got.nseconds().abs_diff(want.nseconds()) < 1_000,
                "{times:?}"
            );
        }
    }

    #[test]
    fn clips_past_the_budget_are_refused() {
        let mp4 = encode(&clip(9, 32, 32), gst::Fraction::new(16, 1)).unwrap();
        let frame = 32 * 32 * 3;
        assert_eq!(
            decode(mp4.clone(), Size::new(MAX_SIDE, MAX_SIDE), 9 * frame)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .unwrap()
                .len(),
            9
        );
        assert_eq!(
            decode(mp4, Size::new(MAX_SIDE, MAX_SIDE), 9 * frame - 1)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .unwrap_err(),
            MediaError::TooLarge(9 * frame - 1)
        );
    }

    #[test]
    fn edits_over_twice_the_window_or_1080p_are_refused_before_decoding() {
        let mp4 = encode(&clip(3, 64, 48), gst::Fraction::new(16, 1)).unwrap();
        // Any window may come back at 1080p.
        let frames = decode_edit(mp4.clone(), Size::new(16, 16))
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .unwrap();
        assert_eq!(frames.len(), 3);
        // Past the bound on one side, the clip's caps refuse it.
        let within = |side: u32| {
            decode(mp4.clone(), Size::new(side, side), MAX_DECODED_BYTES)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        };
        assert_eq!(
            within(63).unwrap_err(),
            MediaError::Oversized {
                width: 64,
                height: 48,
                largest: Size::new(63, 63)
            }
        );
        assert_eq!(within(64).unwrap().len(), 3);
    }

    #[test]
    fn truncated_and_garbage_clips_are_errors() {
        let mp4 = encode(&clip(9, 32, 32), gst::Fraction::new(16, 1)).unwrap();
        let truncated = mp4[..mp4.len() / 3].to_vec();
        assert!(decoded(truncated).is_err());
        assert!(decoded(b"<html>not found</html>".to_vec()).is_err());
    }

    #[test]
    fn video_pictures_encode_as_they_are_and_forms_do_not_mix() {
        gst::init().unwrap();
        let rate = gst::Fraction::new(16, 1);
        let rgb = clip(5, 64, 48);
        // As the element makes them for a backend taking I420.
        let rgb_info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 64, 48)
            .build()
            .unwrap();
        let to_i420 = ToBackend::new(&rgb_info, Size::new(64, 48), InputFormat::I420, 1).unwrap();
        let video: Vec<Picture> = rgb
            .iter()
            .map(|image| {
                let picture = to_i420
                    .convert(&gst::Buffer::from_slice(image.data.clone()))
                    .unwrap();
                assert!(matches!(&picture, Picture::Video { info, .. }
                    if info.format() == gst_video::VideoFormat::I420));
                picture
            })
            .collect();
        let decoded = decoded(encode(&video, rate).unwrap()).unwrap();
        assert_eq!(decoded.len(), 5);
        for (out, sent) in decoded.iter().zip(&rgb) {
            let image = out.image.to_rgb().unwrap();
            assert!(
                close(image.pixel(30, 20), sent.pixel(30, 20)),
                "{:?} for {:?}",
                image.pixel(30, 20),
                sent.pixel(30, 20)
            );
        }
        let mixed = [video[0].clone(), Picture::Rgb(rgb[1].clone())];
        assert_eq!(
            encode(&mixed, rate).unwrap_err(),
            MediaError::new("frames of different sizes or forms in one clip")
        );
    }
}
