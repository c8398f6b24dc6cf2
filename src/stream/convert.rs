//! Moves frames between the stream's format and what backends take and give (packed RGB,
//! I420, or a decoder's frames), scaling plane by plane ([`super::planes`]) or with
//! `gst_video::VideoConverter`.

use std::sync::{Mutex, OnceLock};

use gst_video::{VideoFormat, VideoFrameRef, VideoInfo};

use super::planes::{PlaneError, PlaneScaler};
use crate::frame::{InputFormat, Picture, RgbFrame, Size};
use crate::memory::frame_buffer;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot describe a {size} {format} frame: {source}")]
    Info {
        size: Size,
        format: VideoFormat,
        source: gst::glib::BoolError,
    },
    #[error("cannot convert {from} to {to}: {source}")]
    Converter {
        from: String,
        to: String,
        source: gst::glib::BoolError,
    },
    #[error("cannot map a frame: {0}")]
    Map(gst::glib::BoolError),
    #[error("cannot allocate a frame: {0}")]
    Alloc(#[from] std::io::Error),
    #[error("a {got}-byte RGB image cannot be {size}")]
    BadImage { got: usize, size: Size },
}

fn info_like(
    template: &VideoInfo,
    format: VideoFormat,
    size: Size,
) -> Result<VideoInfo, ConvertError> {
    // Full-range RGB in the stream's own transfer and primaries: the matrix and range of
    // the caps are undone, and nothing else is (no tone mapping of HDR, no gamut
    // mapping), so that the way back restores the stream's colorimetry exactly.
    in_light_of(
        template,
        format,
        size,
        gst_video::VideoColorRange::Range0_255,
        gst_video::VideoColorMatrix::Rgb,
    )
}

/// [`InputFormat::I420`] at `size`, holding `template`'s light: the BT.709 matrix and
/// limited range H.264 files carry, in the stream's transfer and primaries.
fn i420_like(template: &VideoInfo, size: Size) -> Result<VideoInfo, ConvertError> {
    in_light_of(
        template,
        VideoFormat::I420,
        size,
        gst_video::VideoColorRange::Range16_235,
        gst_video::VideoColorMatrix::Bt709,
    )
}

/// Frames of `format` at `size` and `template`'s rate, in `template`'s transfer and
/// primaries, with a range and matrix of their own.
fn in_light_of(
    template: &VideoInfo,
    format: VideoFormat,
    size: Size,
    range: gst_video::VideoColorRange,
    matrix: gst_video::VideoColorMatrix,
) -> Result<VideoInfo, ConvertError> {
    let stream = template.colorimetry();
    let colorimetry =
        gst_video::VideoColorimetry::new(range, matrix, stream.transfer(), stream.primaries());
    VideoInfo::builder(format, size.width, size.height)
        .fps(template.fps())
        .par(gst::Fraction::new(1, 1))
        .colorimetry(&colorimetry)
        .build()
        .map_err(|source| ConvertError::Info {
            size,
            format,
            source,
        })
}

/// Converts frames of one geometry to another, reusing its converters.
pub struct Scaler {
    in_info: VideoInfo,
    out_info: VideoInfo,
    threads: u32,
    /// Where the frame's planes can be resized on their own: much faster than
    /// `VideoConverter` scaling ([`super::planes`]).
    split: Option<Split>,
    /// `VideoConverter` doing all of it: for formats not scaled plane by plane, and
    /// frames whose layout the split cannot take. Made when first needed.
    direct: OnceLock<gst_video::VideoConverter>,
}

/// Resizing plane by plane with the colours converted by `VideoConverter` at the smaller
/// size: after the planes shrink, or before they grow.
struct Split {
    planes: PlaneScaler,
    /// The frame between the steps, at the smaller size: the input's colours at the
    /// output's size when shrinking, the output's colours at the input's size when
    /// growing.
    middle: VideoInfo,
    /// `None` where the step needs no colour conversion.
    colours: Option<gst_video::VideoConverter>,
    growing: bool,
    /// The middle frame of the last call, used again: mapping a frame of its own each
    /// time (pages made and zeroed, then unmapped) was 3-4% of the element's CPU at 1080p
    /// (`perf` of `cargo bench --bench stream -- element`). Every sample of it is written
    /// before it is read.
    spare: Mutex<Option<gst::Buffer>>,
}

/// Whether frames of `a` and `b` hold their colours alike.
fn same_colours(a: &VideoInfo, b: &VideoInfo) -> bool {
    a.format() == b.format()
        && a.colorimetry() == b.colorimetry()
        && a.chroma_site() == b.chroma_site()
}

fn converter(
    from: &VideoInfo,
    to: &VideoInfo,
    threads: u32,
) -> Result<gst_video::VideoConverter, ConvertError> {
    let mut config = gst_video::VideoConverterConfig::new();
    config.set_threads(threads.max(1));
    gst_video::VideoConverter::new(from, to, Some(config)).map_err(|source| {
        ConvertError::Converter {
            from: format!("{from:?}"),
            to: format!("{to:?}"),
            source,
        }
    })
}

impl Split {
    fn new(
        in_info: &VideoInfo,
        out_info: &VideoInfo,
        threads: u32,
    ) -> Result<Option<Self>, ConvertError> {
        let (from, to) = (
            (in_info.width(), in_info.height()),
            (out_info.width(), out_info.height()),
        );
        let shrinking = to.0 <= from.0 && to.1 <= from.1;
        let growing = to.0 >= from.0 && to.1 >= from.1;
        if from == to || !(shrinking || growing) {
            return Ok(None);
        }
        // The frame at the smaller size in the colours of the bigger one's side.
        let (scaled, colours_of, format) = if growing {
            let format = PlaneScaler::growing_middle_format(in_info.format(), out_info.format());
            (in_info, out_info, format)
        } else {
            let format = PlaneScaler::middle_format(in_info.format(), out_info.format());
            (out_info, in_info, format)
        };
        let size = Size::new(scaled.width(), scaled.height());
        let middle = VideoInfo::builder(format, size.width, size.height)
            .fps(in_info.fps())
            .par(in_info.par())
            .colorimetry(&colours_of.colorimetry())
            .chroma_site(colours_of.chroma_site())
            .build()
            .map_err(|source| ConvertError::Info {
                size,
                format,
                source,
            })?;
        // Planes resized, then colours converted, or the other way round.
        let ((resized_from, resized_to), (converted_from, converted_to)) = if growing {
            ((&middle, out_info), (in_info, &middle))
        } else {
            ((in_info, &middle), (&middle, out_info))
        };
        let Some(planes) = PlaneScaler::new(resized_from, resized_to) else {
            return Ok(None);
        };
        let colours = match same_colours(converted_from, converted_to) {
            true => None,
            false => Some(converter(converted_from, converted_to, threads)?),
        };
        Ok(Some(Self {
            planes,
            middle,
            colours,
            growing,
            spare: Mutex::new(None),
        }))
    }

    fn run(
        &self,
        src: &VideoFrameRef<&gst::BufferRef>,
        dst: &mut VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<(), PlaneError> {
        let Some(colours) = &self.colours else {
            return self.planes.scale(src, dst);
        };
        let spare = self.spare.lock().unwrap().take();
        let mut middle = match spare {
            Some(middle) => middle,
            None => frame_buffer(self.middle.size())?,
        };
        {
            let mut mid = VideoFrameRef::from_buffer_ref_writable(
                middle.get_mut().expect("the middle frame is never shared"),
                &self.middle,
            )
            .map_err(PlaneError::Map)?;
            match self.growing {
                true => colours.frame_ref(src, &mut mid),
                false => self.planes.scale(src, &mut mid)?,
            }
        }
        {
            let mid = VideoFrameRef::from_buffer_ref_readable(middle.as_ref(), &self.middle)
                .map_err(PlaneError::Map)?;
            match self.growing {
                true => self.planes.scale(&mid, dst)?,
                false => colours.frame_ref(&mid, dst),
            }
        }
        *self.spare.lock().unwrap() = Some(middle);
        Ok(())
    }
}

impl Scaler {
    /// A scaler whose colour conversions split each frame over `threads` threads.
    pub fn new(
        in_info: &VideoInfo,
        out_info: &VideoInfo,
        threads: u32,
    ) -> Result<Self, ConvertError> {
        let split = Split::new(in_info, out_info, threads)?;
        let direct = OnceLock::new();
        if split.is_none() {
            let _ = direct.set(converter(in_info, out_info, threads)?);
        }
        Ok(Self {
            in_info: in_info.clone(),
            out_info: out_info.clone(),
            threads,
            split,
            direct,
        })
    }

    fn direct(&self) -> Result<&gst_video::VideoConverter, ConvertError> {
        if let Some(direct) = self.direct.get() {
            return Ok(direct);
        }
        let made = converter(&self.in_info, &self.out_info, self.threads)?;
        Ok(self.direct.get_or_init(|| made))
    }

    /// Converts `input` (laid out as `in_info`, or as its own VideoMeta says) into a new
    /// buffer in the default layout of `out_info`.
    pub fn convert(&self, input: &gst::BufferRef) -> Result<gst::Buffer, ConvertError> {
        let src = VideoFrameRef::from_buffer_ref_readable(input, &self.in_info)
            .map_err(ConvertError::Map)?;
        let mut out = frame_buffer(self.out_info.size())?;
        {
            let out = out.get_mut().expect("a new buffer is writable");
            let mut dst = VideoFrameRef::from_buffer_ref_writable(out, &self.out_info)
                .map_err(ConvertError::Map)?;
            // A frame the split cannot take (rows padded to no whole pixel) is scaled by
            // `VideoConverter`, which takes any: same picture, more time.
            let split = self.split.as_ref().map(|split| split.run(&src, &mut dst));
            if !matches!(split, Some(Ok(()))) {
                self.direct()?.frame_ref(&src, &mut dst);
            }
        }
        Ok(out)
    }
}

/// Scales stream frames to packed RGB at `size`, for a backend.
pub struct ToRgb {
    scaler: Scaler,
}

impl ToRgb {
    pub fn new(in_info: &VideoInfo, size: Size, threads: u32) -> Result<Self, ConvertError> {
        let out_info = info_like(in_info, VideoFormat::Rgb, size)?;
        Ok(Self {
            scaler: Scaler::new(in_info, &out_info, threads)?,
        })
    }

    pub fn convert(&self, input: &gst::BufferRef) -> Result<RgbFrame, ConvertError> {
        let out = self.scaler.convert(input)?;
        let info = &self.scaler.out_info;
        let frame = VideoFrameRef::from_buffer_ref_readable(out.as_ref(), info)
            .map_err(ConvertError::Map)?;
        let row = info.width() as usize * 3;
        let stride = info.stride()[0] as usize;
        let plane = frame.plane_data(0).map_err(ConvertError::Map)?;
        let mut data = Vec::with_capacity(row * info.height() as usize);
        for line in plane.chunks(stride).take(info.height() as usize) {
            data.extend_from_slice(&line[..row]);
        }
        Ok(RgbFrame {
            width: info.width(),
            height: info.height(),
            data,
        })
    }
}

/// Scales stream frames to the size and form a backend takes.
pub enum ToBackend {
    Rgb(ToRgb),
    Video { scaler: Scaler },
}

impl ToBackend {
    pub fn new(
        in_info: &VideoInfo,
        size: Size,
        form: InputFormat,
        threads: u32,
    ) -> Result<Self, ConvertError> {
        Ok(match form {
            InputFormat::Rgb => Self::Rgb(ToRgb::new(in_info, size, threads)?),
            InputFormat::I420 => Self::Video {
                scaler: Scaler::new(in_info, &i420_like(in_info, size)?, threads)?,
            },
        })
    }

    pub fn convert(&self, input: &gst::BufferRef) -> Result<Picture, ConvertError> {
        Ok(match self {
            Self::Rgb(to_rgb) => Picture::Rgb(to_rgb.convert(input)?),
            Self::Video { scaler } => Picture::Video {
                buffer: scaler.convert(input)?,
                info: scaler.out_info.clone(),
            },
        })
    }
}

/// Scales the pictures of edited clips (of any size, RGB or decoded) back to the stream's
/// format and size.
pub struct ToStream {
    out_info: VideoInfo,
    threads: u32,
    /// The scaler for the last kind of picture seen: a clip's pictures are all alike.
    scaler: Option<Scaler>,
}

impl ToStream {
    pub fn new(out_info: &VideoInfo, threads: u32) -> Self {
        Self {
            out_info: out_info.clone(),
            threads,
            scaler: None,
        }
    }

    pub fn convert(&mut self, picture: &Picture) -> Result<gst::Buffer, ConvertError> {
        let in_info = match picture {
            Picture::Rgb(_) => info_like(&self.out_info, VideoFormat::Rgb, picture.size())?,
            Picture::Video { info, .. } => in_streams_light(info, &self.out_info)?,
        };
        if self.scaler.as_ref().is_none_or(|s| s.in_info != in_info) {
            self.scaler = Some(Scaler::new(&in_info, &self.out_info, self.threads)?);
        }
        let scaler = self.scaler.as_ref().expect("set above");
        match picture {
            Picture::Rgb(image) => scaler.convert(packed_rgb_buffer(image, &in_info)?.as_ref()),
            Picture::Video { buffer, .. } => scaler.convert(buffer.as_ref()),
        }
    }
}

/// A decoded picture's `info`, in the stream's transfer, primaries and frame rate: a
/// provider's clip holds the stream's pictures however its file labels them (see
/// [`info_like`]), so a picture in the stream's format and matrix needs no colour
/// conversion at all. (`VideoConverter` converts no rates; the clip's frames are mapped
/// to the window's by time before.)
fn in_streams_light(info: &VideoInfo, stream: &VideoInfo) -> Result<VideoInfo, ConvertError> {
    let (own, light) = (info.colorimetry(), stream.colorimetry());
    let colorimetry = gst_video::VideoColorimetry::new(
        own.range(),
        own.matrix(),
        light.transfer(),
        light.primaries(),
    );
    VideoInfo::builder(info.format(), info.width(), info.height())
        .fps(stream.fps())
        .par(info.par())
        .colorimetry(&colorimetry)
        .chroma_site(info.chroma_site())
        .build()
        .map_err(|source| ConvertError::Info {
            size: Size::new(info.width(), info.height()),
            format: info.format(),
            source,
        })
}

// Here rather than in `frame`, which the conversions build on.
impl Picture {
    /// The picture as packed RGB at its own size, converted as [`ToRgb`] converts.
    pub fn into_rgb(self) -> Result<RgbFrame, ConvertError> {
        let size = self.size();
        match self {
            Self::Rgb(image) => Ok(image),
            Self::Video { buffer, info } => ToRgb::new(&info, size, 1)?.convert(&buffer),
        }
    }

    /// [`Picture::into_rgb`] of a copy (of the buffer's reference, for video).
    pub fn to_rgb(&self) -> Result<RgbFrame, ConvertError> {
        self.clone().into_rgb()
    }
}

/// Lays a packed RGB image out in `info`'s default layout (rows padded to 4 bytes).
fn packed_rgb_buffer(image: &RgbFrame, info: &VideoInfo) -> Result<gst::Buffer, ConvertError> {
    let row = image.width as usize * 3;
    if image.data.len() != row * image.height as usize {
        return Err(ConvertError::BadImage {
            got: image.data.len(),
            size: Size::new(image.width, image.height),
        });
    }
    let stride = info.stride()[0] as usize;
    if stride == row {
        return Ok(gst::Buffer::from_slice(image.data.clone()));
    }
    let mut data = vec![0u8; info.size()];
    for (dst, src) in data.chunks_mut(stride).zip(image.data.chunks(row)) {
        dst[..row].copy_from_slice(src);
    }
    Ok(gst::Buffer::from_mut_slice(data))
}

/// Threads each of `concurrent` converters may use: the cores, shared, so that one alone
/// uses them all and several do not fight over them.
pub fn threads_for(concurrent: usize) -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / concurrent.max(1)).max(1) as u32
}

/// Copies a frame into the default layout of `info` (input buffers may carry a VideoMeta
/// with their own strides and offsets).
pub fn to_default_layout(
    input: &gst::BufferRef,
    info: &VideoInfo,
) -> Result<gst::Buffer, ConvertError> {
    let src = VideoFrameRef::from_buffer_ref_readable(input, info).map_err(ConvertError::Map)?;
    let mut out = frame_buffer(info.size())?;
    {
        let out = out.get_mut().expect("a new buffer is writable");
        let mut dst =
            VideoFrameRef::from_buffer_ref_writable(out, info).map_err(ConvertError::Map)?;
        src.copy(&mut dst).map_err(ConvertError::Map)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use gst_video::prelude::*;

    use super::*;

    /// A frame of `info` (8-bit, or 10-bit in 16-bit words) whose every sample follows
    /// slow waves across the picture (so that two good filters agree on it to within a
    /// step or two), differing per plane.
    fn waves(info: &VideoInfo) -> gst::Buffer {
        let mut buffer = gst::Buffer::with_size(info.size()).unwrap();
        {
            let b = buffer.get_mut().unwrap();
            let mut frame = VideoFrameRef::from_buffer_ref_writable(b, info).unwrap();
            let deep = info.format_info().depth()[0] > 8;
            for plane in 0..frame.n_planes() {
                let stride = frame.plane_stride()[plane as usize] as usize;
                let data = frame.plane_data_mut(plane).unwrap();
                let wave = |x: usize, y: usize| {
                    let (x, y) = (x as f64, y as f64 + 40.0 * plane as f64);
                    (128.0 + 60.0 * (x / 37.0).sin() + 50.0 * (y / 23.0).cos()) / 256.0
                };
                for (y, row) in data.chunks_mut(stride).enumerate() {
                    if deep {
                        for (x, v) in row.chunks_exact_mut(2).enumerate() {
                            v.copy_from_slice(&((wave(x, y) * 1024.0) as u16).to_le_bytes());
                        }
                    } else {
                        for (x, v) in row.iter_mut().enumerate() {
                            *v = (wave(x, y) * 256.0) as u8;
                        }
                    }
                }
            }
        }
        buffer
    }

    fn info(format: VideoFormat, width: u32, height: u32) -> VideoInfo {
        gst::init().unwrap();
        VideoInfo::builder(format, width, height).build().unwrap()
    }

    /// The largest and the mean difference between what `Scaler` and `VideoConverter`
    /// alone make of the same frame.
    fn against_converter(from: &VideoInfo, to: &VideoInfo) -> (u8, f64) {
        let input = waves(from);
        let scaled = Scaler::new(from, to, 1).unwrap().convert(&input).unwrap();
        // Zeroed as the scaler's are: rows padded past their pixels compare equal.
        let mut direct = gst::Buffer::from_mut_slice(vec![0u8; to.size()]);
        {
            let src = VideoFrameRef::from_buffer_ref_readable(input.as_ref(), from).unwrap();
            let mut dst =
                VideoFrameRef::from_buffer_ref_writable(direct.get_mut().unwrap(), to).unwrap();
            converter(from, to, 1).unwrap().frame_ref(&src, &mut dst);
        }
        let (a, b) = (
            scaled.map_readable().unwrap(),
            direct.map_readable().unwrap(),
        );
        let diffs: Vec<u8> = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| x.abs_diff(*y))
            .collect();
        let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
        (*diffs.iter().max().unwrap(), mean)
    }

    #[test]
    fn planes_scaled_apart_make_the_converters_picture() {
        use VideoFormat::*;
        let cases = [
            // Planes shrunk in the stream's format (chroma to 4:4:4), colours converted at
            // the model size.
            (info(I420, 640, 360), info(Rgb, 288, 160)),
            (info(Y42b, 640, 360), info(Bgrx, 288, 160)),
            (info(Nv12, 640, 360), info(Rgba, 288, 160)),
            (info(Rgba, 640, 360), info(Rgb, 288, 160)),
            // One format both sides: no colour conversion at all.
            (info(Nv12, 640, 360), info(Nv12, 288, 160)),
            (info(Rgb, 640, 360), info(Rgb, 288, 160)),
            // 850 RGB pixels are 2,550 bytes, padded to 2,552: no whole number of pixels.
            (info(Rgb, 850, 480), info(Rgb, 424, 240)),
            // Growing: colours converted at the model size (RGB to 4:4:4 on the way to
            // 4:2:0), then the planes grown.
            (info(Rgb, 288, 160), info(I420, 640, 360)),
            (info(Rgbx, 288, 160), info(Nv12, 640, 360)),
            (info(I420, 288, 160), info(Rgb, 640, 360)),
            (info(I420, 288, 160), info(Y444, 640, 360)),
            (info(Rgb, 424, 240), info(Rgb, 850, 480)),
        ];
        for (from, to) in cases {
            let split = Split::new(&from, &to, 1).unwrap();
            assert!(split.is_some(), "{from:?} -> {to:?} is split");
            let (worst, mean) = against_converter(&from, &to);
            assert!(
                worst <= 8 && mean <= 0.6,
                "{:?} {}x{} -> {:?} {}x{}: worst {worst}, mean {mean}",
                from.format(),
                from.width(),
                from.height(),
                to.format(),
                to.width(),
                to.height()
            );
        }
    }

    #[test]
    fn every_format_of_the_element_goes_to_rgb_and_back() {
        // A flat grey picture stays grey both ways, whatever the stream's format
        // (alpha formats such as AYUV and A420 included).
        let grey = Picture::Rgb(RgbFrame::filled(32, 18, [128; 3]));
        for &format in crate::wanedit::FORMATS {
            let stream = info(format, 64, 36);
            let back = ToStream::new(&stream, 1).convert(&grey).unwrap();
            let rgb = ToRgb::new(&stream, Size::new(32, 18), 1)
                .unwrap()
                .convert(&back)
                .unwrap();
            let worst = rgb.data.iter().map(|&v| v.abs_diff(128)).max().unwrap();
            assert!(worst <= 2, "{format:?}: grey came back {worst} off");
        }
    }

    #[test]
    fn a_scaler_used_again_makes_what_a_new_one_makes() {
        use VideoFormat::*;
        // Shrinking and growing, each through its middle frame, growing taller through
        // planes resized rows first: both are kept from frame to frame, and what one frame
        // left in them must not show in the next.
        for (from, to) in [
            (info(I420, 640, 360), info(Rgb, 288, 160)),
            (info(Rgb, 288, 160), info(I420, 640, 360)),
        ] {
            let scaler = Scaler::new(&from, &to, 1).unwrap();
            scaler.convert(&waves(&from)).unwrap();
            let flat = gst::Buffer::from_mut_slice(vec![77u8; from.size()]);
            let again = scaler.convert(&flat).unwrap();
            let fresh = Scaler::new(&from, &to, 1).unwrap().convert(&flat).unwrap();
            assert!(
                again.map_readable().unwrap().as_slice()
                    == fresh.map_readable().unwrap().as_slice(),
                "{:?} -> {:?}: the second frame differs from a new scaler's",
                from.format(),
                to.format()
            );
        }
    }

    #[test]
    fn frames_the_planes_cannot_take_go_to_the_converter() {
        use VideoFormat::*;
        // A format not scaled here, no scaling, or one side shrinking and the other
        // growing: the converter only.
        let deep = info(I42010le, 640, 360);
        for (from, to) in [
            (deep.clone(), info(Rgb, 288, 160)),
            (info(Rgb, 288, 160), deep.clone()),
            (info(I420, 640, 360), info(Rgb, 640, 360)),
            (info(I420, 640, 360), info(Rgb, 320, 400)),
        ] {
            assert!(
                Split::new(&from, &to, 1).unwrap().is_none(),
                "{from:?} -> {to:?}"
            );
            assert_eq!(against_converter(&from, &to), (0, 0.0));
        }
    }

    /// The samples of a 10-bit frame.
    fn words(buffer: &gst::Buffer) -> Vec<u16> {
        let map = buffer.map_readable().unwrap();
        map.chunks_exact(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]))
            .collect()
    }

    #[test]
    fn decoded_pictures_come_back_as_their_rgb_does() {
        use VideoFormat::*;
        gst::init().unwrap();
        let stream = VideoInfo::builder(I42010le, 320, 180)
            .colorimetry(&"bt2100-pq".parse().unwrap())
            .build()
            .unwrap();
        let size = Size::new(160, 96);
        let rgb_info = info_like(&stream, Rgb, size).unwrap();
        let rgb = waves(&rgb_info);
        let image = RgbFrame {
            width: size.width,
            height: size.height,
            data: rgb.map_readable().unwrap().to_vec(),
        };
        // The same picture as a provider's H.264 file carries it: 4:2:0 with the BT.709
        // matrix, and labelled BT.709 throughout, whatever light it holds.
        let light = stream.colorimetry();
        let yuv = |transfer, primaries| {
            VideoInfo::builder(I420, size.width, size.height)
                .fps(stream.fps())
                .colorimetry(&gst_video::VideoColorimetry::new(
                    gst_video::VideoColorRange::Range16_235,
                    gst_video::VideoColorMatrix::Bt709,
                    transfer,
                    primaries,
                ))
                .build()
                .unwrap()
        };
        let carried = yuv(light.transfer(), light.primaries());
        let mut file = frame_buffer(carried.size()).unwrap();
        {
            let src = VideoFrameRef::from_buffer_ref_readable(rgb.as_ref(), &rgb_info).unwrap();
            let mut dst =
                VideoFrameRef::from_buffer_ref_writable(file.get_mut().unwrap(), &carried).unwrap();
            converter(&rgb_info, &carried, 1)
                .unwrap()
                .frame_ref(&src, &mut dst);
        }
        let labelled = yuv(
            gst_video::VideoTransferFunction::Bt709,
            gst_video::VideoColorPrimaries::Bt709,
        );

        let mut back = ToStream::new(&stream, 1);
        let from_rgb = words(&back.convert(&Picture::Rgb(image)).unwrap());
        let from_file = words(
            &back
                .convert(&Picture::Video {
                    buffer: file,
                    info: labelled,
                })
                .unwrap(),
        );
        let worst = from_rgb
            .iter()
            .zip(&from_file)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        // 8-bit 4:2:0 against 8-bit RGB, in 10-bit steps.
        assert!(worst <= 12, "worst {worst}");
    }

    #[test]
    fn frames_for_an_h264_backend_are_i420_holding_the_rgb_picture() {
        use VideoFormat::*;
        for stream in [
            info(I420, 640, 360),
            info(Rgb, 640, 360),
            info(I420, 160, 96),
        ] {
            let input = waves(&stream);
            let size = Size::new(288, 160);
            let video = ToBackend::new(&stream, size, InputFormat::I420, 1)
                .unwrap()
                .convert(&input)
                .unwrap();
            let Picture::Video { info, .. } = &video else {
                panic!("{:?} made {video:?}", stream.format())
            };
            assert_eq!((info.format(), video.size()), (I420, size));
            let Picture::Rgb(rgb) = ToBackend::new(&stream, size, InputFormat::Rgb, 1)
                .unwrap()
                .convert(&input)
                .unwrap()
            else {
                panic!("RGB asked for")
            };
            let diffs: Vec<u8> = video
                .into_rgb()
                .unwrap()
                .data
                .iter()
                .zip(&rgb.data)
                .map(|(a, b)| a.abs_diff(*b))
                .collect();
            let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
            let worst = *diffs.iter().max().unwrap();
            // 4:2:0 and two more roundings on the way; the RGB stream's samples change
            // within a few pixels, so its chroma loses most to 4:2:0.
            assert!(
                worst <= 16 && mean <= 3.5,
                "{:?} {}x{}: worst {worst}, mean {mean}",
                stream.format(),
                stream.width(),
                stream.height()
            );
        }
    }
}
