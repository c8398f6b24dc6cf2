//! Shrinking 8-bit video plane by plane with fast_image_resize's SIMD convolution.
//!
//! `VideoConverter`'s scalers take about 19 ms to bring a 1080p I420 frame to RGB at the
//! 848x480 bucket on one core of the development machine (`cargo bench --bench stream --
//! scale`), more than a third of what live 1080p60 leaves on two cores. Here each plane
//! of a planar or semi-planar 8-bit YUV frame, or the one plane of packed 8-bit RGB, is
//! resized on its own with a Mitchell filter (the cubic `VideoConverter` uses by
//! default), widened with the scale so that nothing aliases. Colours are not touched:
//! [`super::convert`] converts them with `VideoConverter` at the smaller size.
//!
//! Chroma planes are resized as if their samples sat at the centre of the luma samples
//! they cover. For co-sited chroma (MPEG-2 4:2:0) that moves chroma by under a third of
//! a luma pixel between 1080p and 480p, far below what a diffusion edit changes.

use fast_image_resize::images::{TypedCroppedImageMut, TypedImage, TypedImageRef};
use fast_image_resize::pixels::{U8, U8x2, U8x3, U8x4};
use fast_image_resize::{FilterType, PixelTrait, ResizeAlg, ResizeOptions, Resizer};
use gst_video::prelude::*;
use gst_video::{VideoFormat, VideoFrameRef, VideoInfo};

/// The pixel of a format's planes, for the formats scaled here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pixel {
    /// One byte per sample in every plane (I420, YV12, Y42B, Y444, and NV12's luma).
    Planar,
    /// Luma bytes, then interleaved chroma pairs (NV12, NV21, NV16, NV24).
    SemiPlanar,
    /// Three bytes per pixel in one plane.
    Packed3,
    /// Four bytes per pixel in one plane.
    Packed4,
}

impl Pixel {
    fn of(format: VideoFormat) -> Option<Self> {
        use VideoFormat as F;
        Some(match format {
            F::I420 | F::Yv12 | F::Y42b | F::Y444 | F::Y41b | F::Gray8 => Self::Planar,
            F::Nv12 | F::Nv21 | F::Nv16 | F::Nv61 | F::Nv24 => Self::SemiPlanar,
            F::Rgb | F::Bgr => Self::Packed3,
            F::Rgba | F::Bgra | F::Argb | F::Abgr | F::Rgbx | F::Bgrx | F::Xrgb | F::Xbgr => {
                Self::Packed4
            }
            _ => return None,
        })
    }

    /// Bytes a sample of `plane` takes.
    fn size(self, plane: usize) -> usize {
        match (self, plane) {
            (Self::Planar, _) | (Self::SemiPlanar, 0) => 1,
            (Self::SemiPlanar, _) => 2,
            (Self::Packed3, _) => 3,
            (Self::Packed4, _) => 4,
        }
    }
}

/// Why a frame was not scaled here (the caller then lets `VideoConverter` do it).
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error("cannot map a frame: {0}")]
    Map(gst::glib::BoolError),
    #[error("cannot allocate a frame: {0}")]
    Alloc(#[from] std::io::Error),
    #[error("plane {plane}: its stride of {stride} bytes is not a whole number of pixels")]
    Stride { plane: usize, stride: usize },
    #[error("plane {plane}: {source}")]
    Resize {
        plane: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Which plane of the output each plane of the input is resized into.
#[derive(Debug, Clone, Copy)]
struct PlaneMap {
    from: usize,
    to: usize,
    /// A component the plane holds, whose subsampling gives its size.
    component: u8,
    /// Bytes a pixel of the plane takes.
    size: usize,
}

/// Resizes frames from one size to another, plane by plane: within one format, or from
/// one planar 8-bit YUV format to another (their chroma resized to the other's
/// subsampling).
#[derive(Debug, Clone)]
pub struct PlaneScaler {
    planes: Vec<PlaneMap>,
}

impl PlaneScaler {
    /// A scaler from `from` to `to`; `None` where their formats are not scaled here.
    pub fn new(from: &VideoInfo, to: &VideoInfo) -> Option<Self> {
        let pixel = Pixel::of(from.format())?;
        let planes = if from.format() == to.format() {
            (0..from.n_planes() as usize)
                .map(|plane| PlaneMap {
                    from: plane,
                    to: plane,
                    // Luma (or the packed pixels) in plane 0; both chroma components,
                    // subsampled alike, in the others.
                    component: plane.min(1) as u8,
                    size: pixel.size(plane),
                })
                .collect()
        } else if is_planar_yuv(from.format()) && is_planar_yuv(to.format()) {
            let (a, b) = (from.format_info(), to.format_info());
            (0..3)
                .map(|c| PlaneMap {
                    from: a.plane()[c] as usize,
                    to: b.plane()[c] as usize,
                    component: c as u8,
                    size: 1,
                })
                .collect()
        } else {
            return None;
        };
        Some(Self { planes })
    }

    /// Whether frames of `format` are scaled here.
    pub fn scales(format: VideoFormat) -> bool {
        Pixel::of(format).is_some()
    }

    /// The format to shrink frames of `format` into on the way to `to`: planar YUV goes
    /// straight to `to` where that is planar YUV too (no colour conversion follows, at
    /// most a change of matrix), else to 4:4:4, so that the colour conversion after it
    /// has all the chroma the bigger picture had.
    pub fn middle_format(format: VideoFormat, to: VideoFormat) -> VideoFormat {
        match (is_planar_yuv(format), is_planar_yuv(to)) {
            (true, true) => to,
            (true, false) => VideoFormat::Y444,
            (false, _) => format,
        }
    }

    pub fn scale(
        &self,
        src: &VideoFrameRef<&gst::BufferRef>,
        dst: &mut VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<(), PlaneError> {
        let mut resizer = Resizer::new();
        for map in &self.planes {
            let geometry = |frame_info: &VideoInfo| {
                let finfo = frame_info.format_info();
                (
                    finfo.scale_width(map.component, frame_info.width()),
                    finfo.scale_height(map.component, frame_info.height()),
                )
            };
            let (from_size, to_size) = (geometry(src.info()), geometry(dst.info()));
            let from_stride = src.plane_stride()[map.from] as usize;
            let to_stride = dst.plane_stride()[map.to] as usize;
            for (plane, stride) in [(map.from, from_stride), (map.to, to_stride)] {
                if stride % map.size != 0 {
                    return Err(PlaneError::Stride { plane, stride });
                }
            }
            let rows = Rows {
                from: src.plane_data(map.from as u32).map_err(PlaneError::Map)?,
                from_stride,
                from_size,
                to: dst.plane_data_mut(map.to as u32).map_err(PlaneError::Map)?,
                to_stride,
                to_size,
            };
            match map.size {
                1 => rows.resize::<U8>(&mut resizer),
                2 => rows.resize::<U8x2>(&mut resizer),
                3 => rows.resize::<U8x3>(&mut resizer),
                _ => rows.resize::<U8x4>(&mut resizer),
            }
            .map_err(|source| PlaneError::Resize {
                plane: map.from,
                source,
            })?;
        }
        Ok(())
    }
}

/// Three planes of 8-bit samples: Y, U and V, in some order and subsampling.
fn is_planar_yuv(format: VideoFormat) -> bool {
    Pixel::of(format) == Some(Pixel::Planar) && format != VideoFormat::Gray8
}

/// One plane's rows, in and out.
struct Rows<'a> {
    from: &'a [u8],
    from_stride: usize,
    from_size: (u32, u32),
    to: &'a mut [u8],
    to_stride: usize,
    to_size: (u32, u32),
}

impl Rows<'_> {
    /// Resizes the plane's pixels of type `P`. Each image is seen as its whole stride wide,
    /// then cropped to its width: rows padded past their pixels are neither read nor
    /// written.
    fn resize<P: PixelTrait>(
        self,
        resizer: &mut Resizer,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let ((sw, sh), (dw, dh)) = (self.from_size, self.to_size);
        let from_len = (self.from_stride * sh as usize).min(self.from.len());
        let src = TypedImageRef::<P>::from_buffer(
            (self.from_stride / P::size()) as u32,
            sh,
            &self.from[..from_len],
        )?;
        let mut whole =
            TypedImage::<P>::from_buffer((self.to_stride / P::size()) as u32, dh, self.to)?;
        let mut dst = TypedCroppedImageMut::from_ref(&mut whole, 0, 0, dw, dh)?;
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Mitchell))
            .crop(0.0, 0.0, sw as f64, sh as f64)
            // Alpha, or padding, is a channel like the others: never multiplied in.
            .use_alpha(false);
        resizer.resize_typed(&src, &mut dst, &options)?;
        Ok(())
    }
}
