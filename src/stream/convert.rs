//! Moves frames between the stream's format and the backends' packed RGB, scaling with
//! `gst_video::VideoConverter`.

use gst_video::{VideoFormat, VideoFrameRef, VideoInfo};

use crate::frame::{RgbFrame, Size};
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
    let stream = template.colorimetry();
    let colorimetry = gst_video::VideoColorimetry::new(
        gst_video::VideoColorRange::Range0_255,
        gst_video::VideoColorMatrix::Rgb,
        stream.transfer(),
        stream.primaries(),
    );
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

/// Converts frames of one geometry to another, reusing one converter.
pub struct Scaler {
    converter: gst_video::VideoConverter,
    in_info: VideoInfo,
    out_info: VideoInfo,
}

impl Scaler {
    /// A converter that splits each frame over `threads` threads.
    pub fn new(
        in_info: &VideoInfo,
        out_info: &VideoInfo,
        threads: u32,
    ) -> Result<Self, ConvertError> {
        let mut config = gst_video::VideoConverterConfig::new();
        config.set_threads(threads.max(1));
        let converter =
            gst_video::VideoConverter::new(in_info, out_info, Some(config)).map_err(|source| {
                ConvertError::Converter {
                    from: format!("{in_info:?}"),
                    to: format!("{out_info:?}"),
                    source,
                }
            })?;
        Ok(Self {
            converter,
            in_info: in_info.clone(),
            out_info: out_info.clone(),
        })
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
            self.converter.frame_ref(&src, &mut dst);
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
        let data = plane
            .chunks(stride)
            .take(info.height() as usize)
            .flat_map(|line| &line[..row])
            .copied()
            .collect();
        Ok(RgbFrame {
            width: info.width(),
            height: info.height(),
            data,
        })
    }
}

/// Scales backend RGB images (of any size) back to the stream's format and size.
pub struct FromRgb {
    out_info: VideoInfo,
    threads: u32,
    scaler: Option<(Size, Scaler)>,
}

impl FromRgb {
    pub fn new(out_info: &VideoInfo, threads: u32) -> Self {
        Self {
            out_info: out_info.clone(),
            threads,
            scaler: None,
        }
    }

    pub fn convert(&mut self, image: &RgbFrame) -> Result<gst::Buffer, ConvertError> {
        let size = Size::new(image.width, image.height);
        if self.scaler.as_ref().is_none_or(|(s, _)| *s != size) {
            let in_info = info_like(&self.out_info, VideoFormat::Rgb, size)?;
            self.scaler = Some((size, Scaler::new(&in_info, &self.out_info, self.threads)?));
        }
        let (_, scaler) = self.scaler.as_ref().expect("set above");
        let input = packed_rgb_buffer(image, &scaler.in_info)?;
        scaler.convert(input.as_ref())
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
