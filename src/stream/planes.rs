//! Resizing 8-bit video plane by plane with pic-scale's SIMD convolution.
//!
//! `VideoConverter`'s scalers take about 10 ms to bring a 1080p I420 frame to RGB at the
//! 848x480 bucket, or such an RGB frame back to 1080p I420, on one core of the
//! development machine (`cargo bench --bench stream -- scale`): that is most of what live
//! 1080p60 leaves on two cores. Here each plane of a planar or semi-planar 8-bit YUV
//! frame, or the one plane of packed 8-bit RGB, is resized on its own with a Mitchell
//! filter (the cubic `VideoConverter` uses by default), widened with the scale when
//! shrinking so that nothing aliases. Colours are not touched: [`super::convert`]
//! converts them with `VideoConverter` at the smaller size.
//!
//! Chroma planes are resized as if their samples sat at the centre of the luma samples
//! they cover. For co-sited chroma (MPEG-2 4:2:0) that moves chroma by under a third of
//! a luma pixel between 1080p and 480p, far below what a diffusion edit changes.

use std::sync::{Arc, Mutex};

use gst_video::prelude::*;
use gst_video::{VideoFormat, VideoFrameRef, VideoInfo};
use pic_scale::{
    ImageSize, ImageStore, ImageStoreMut, PicScaleError, Resampling, ResamplingFunction, Scaler,
};

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
    #[error("plane {plane}: {source}")]
    Resize {
        plane: usize,
        #[source]
        source: PicScaleError,
    },
}

/// A plane's resampling, planned once for its two sizes, by the bytes a pixel takes.
enum Plan {
    One(Passes<1>),
    Two(Passes<2>),
    Three(Passes<3>),
    Four(Passes<4>),
}

/// How a plane is resized. pic-scale resizes the columns first and then the rows, each
/// output row from the resized columns: right for shrinking, but a plane that grows
/// taller then has its rows (the costlier pass, one gather per sample) resized at the
/// output's height. Such a plane has its rows resized first, at the input's height, and
/// its columns then: growing 848x480 to 1080p, the row pass then makes 480 rows, not 1080
/// (`cargo bench --bench stream -- scale`: a fifth less time for the whole growing).
struct Passes<const N: usize> {
    first: Arc<Resampling<u8, N>>,
    /// The columns, resized after `first` resized the rows into a plane of the output's
    /// width and the input's height.
    columns: Option<Arc<Resampling<u8, N>>>,
    /// That plane's samples, kept from frame to frame: made once, not for every frame.
    between: Mutex<Vec<u8>>,
}

impl<const N: usize> Passes<N> {
    fn plan(
        from: ImageSize,
        to: ImageSize,
        plan: impl Fn(ImageSize, ImageSize) -> Result<Arc<Resampling<u8, N>>, PicScaleError>,
    ) -> Result<Self, PicScaleError> {
        let (first, columns) = if to.height > from.height && to.width != from.width {
            let between = ImageSize::new(to.width, from.height);
            (plan(from, between)?, Some(plan(between, to)?))
        } else {
            (plan(from, to)?, None)
        };
        Ok(Self {
            first,
            columns,
            between: Mutex::new(Vec::new()),
        })
    }
}

/// Which plane of the output each plane of the input is resized into, and how.
struct PlaneMap {
    from: usize,
    to: usize,
    from_size: ImageSize,
    to_size: ImageSize,
    plan: Plan,
}

/// Resizes frames from one size to another, plane by plane: within one format, or from
/// one planar 8-bit YUV format to another (their chroma resized to the other's
/// subsampling).
pub struct PlaneScaler {
    planes: Vec<PlaneMap>,
}

impl PlaneScaler {
    /// A scaler from `from` to `to`; `None` where their formats are not scaled here (or
    /// pic-scale cannot plan their sizes).
    pub fn new(from: &VideoInfo, to: &VideoInfo) -> Option<Self> {
        let pixel = Pixel::of(from.format())?;
        // (plane in, plane out, a component the planes hold, bytes a pixel takes)
        let maps: Vec<(usize, usize, u8, usize)> = if from.format() == to.format() {
            (0..from.n_planes() as usize)
                // Luma (or the packed pixels) in plane 0; both chroma components,
                // subsampled alike, in the others.
                .map(|plane| (plane, plane, plane.min(1) as u8, pixel.size(plane)))
                .collect()
        } else if is_planar_yuv(from.format()) && is_planar_yuv(to.format()) {
            let (a, b) = (from.format_info(), to.format_info());
            (0..3)
                .map(|c| (a.plane()[c] as usize, b.plane()[c] as usize, c as u8, 1))
                .collect()
        } else {
            return None;
        };
        let scaler = Scaler::new(ResamplingFunction::MitchellNetravalli);
        let planes = maps
            .into_iter()
            .map(|(from_plane, to_plane, component, size)| {
                let (from_size, to_size) = (plane_size(from, component), plane_size(to, component));
                let plan = match size {
                    1 => Plan::One(
                        Passes::plan(from_size, to_size, |a, b| {
                            scaler.plan_planar_resampling(a, b)
                        })
                        .ok()?,
                    ),
                    2 => Plan::Two(
                        Passes::plan(from_size, to_size, |a, b| scaler.plan_cbcr_resampling(a, b))
                            .ok()?,
                    ),
                    3 => Plan::Three(
                        Passes::plan(from_size, to_size, |a, b| scaler.plan_rgb_resampling(a, b))
                            .ok()?,
                    ),
                    // Alpha, or padding, is a channel like the others: never multiplied in.
                    _ => Plan::Four(
                        Passes::plan(from_size, to_size, |a, b| {
                            scaler.plan_rgba_resampling(a, b, false)
                        })
                        .ok()?,
                    ),
                };
                Some(PlaneMap {
                    from: from_plane,
                    to: to_plane,
                    from_size,
                    to_size,
                    plan,
                })
            })
            .collect::<Option<_>>()?;
        Some(Self { planes })
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

    /// The format to convert frames of `format` into, at their own size, before they
    /// grow into `to`: planar YUV stays as it is where `to` is planar YUV too (at most a
    /// change of matrix comes first); other formats go to 4:4:4 on their way to planar
    /// YUV, so that the chroma grows from all the colour the smaller picture has; and to
    /// any other format, the frame is converted to `to` itself.
    pub fn growing_middle_format(format: VideoFormat, to: VideoFormat) -> VideoFormat {
        match (is_planar_yuv(format), is_planar_yuv(to)) {
            (true, true) => format,
            (false, true) => VideoFormat::Y444,
            (_, false) => to,
        }
    }

    /// Resizes `src` into `dst`, which must be of the infos the scaler was made for.
    pub fn scale(
        &self,
        src: &VideoFrameRef<&gst::BufferRef>,
        dst: &mut VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<(), PlaneError> {
        for map in &self.planes {
            let from_stride = src.plane_stride()[map.from] as usize;
            let to_stride = dst.plane_stride()[map.to] as usize;
            let rows = Rows {
                from: src.plane_data(map.from as u32).map_err(PlaneError::Map)?,
                from_stride,
                from_size: map.from_size,
                to: dst.plane_data_mut(map.to as u32).map_err(PlaneError::Map)?,
                to_stride,
                to_size: map.to_size,
            };
            match &map.plan {
                Plan::One(passes) => rows.resize(passes),
                Plan::Two(passes) => rows.resize(passes),
                Plan::Three(passes) => rows.resize(passes),
                Plan::Four(passes) => rows.resize(passes),
            }
            .map_err(|source| PlaneError::Resize {
                plane: map.from,
                source,
            })?;
        }
        Ok(())
    }
}

/// The pixels a plane holding `component` has in frames of `info`.
fn plane_size(info: &VideoInfo, component: u8) -> ImageSize {
    let finfo = info.format_info();
    ImageSize::new(
        finfo.scale_width(component, info.width()) as usize,
        finfo.scale_height(component, info.height()) as usize,
    )
}

/// Three planes of 8-bit samples: Y, U and V, in some order and subsampling.
fn is_planar_yuv(format: VideoFormat) -> bool {
    Pixel::of(format) == Some(Pixel::Planar) && format != VideoFormat::Gray8
}

/// One plane's rows, in and out.
struct Rows<'a> {
    from: &'a [u8],
    from_stride: usize,
    from_size: ImageSize,
    to: &'a mut [u8],
    to_stride: usize,
    to_size: ImageSize,
}

impl Rows<'_> {
    /// Resizes the plane's pixels of `N` bytes. Strides count bytes, so rows padded past
    /// their pixels (by any number of bytes) are neither read nor written.
    fn resize<const N: usize>(self, passes: &Passes<N>) -> Result<(), PicScaleError> {
        let mut src = ImageStore::<u8, N>::from_slice(
            self.from,
            self.from_size.width,
            self.from_size.height,
        )?;
        src.stride = self.from_stride;
        let mut dst =
            ImageStoreMut::<u8, N>::from_slice(self.to, self.to_size.width, self.to_size.height)?;
        dst.stride = self.to_stride;
        match &passes.columns {
            None => passes.first.resample(&src, &mut dst),
            Some(columns) => {
                let (width, height) = (self.to_size.width, self.from_size.height);
                let mut scratch = passes.between.lock().unwrap();
                scratch.resize(width * height * N, 0);
                let mut between = ImageStoreMut::<u8, N>::from_slice(&mut scratch, width, height)?;
                passes.first.resample(&src, &mut between)?;
                columns.resample(&between.to_immutable(), &mut dst)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `info` whose every plane holds one value: 40, 90, 140, 190 by plane.
    fn flat(info: &VideoInfo) -> gst::Buffer {
        let mut buffer = gst::Buffer::with_size(info.size()).unwrap();
        {
            let mut frame =
                VideoFrameRef::from_buffer_ref_writable(buffer.get_mut().unwrap(), info).unwrap();
            for plane in 0..frame.n_planes() {
                frame
                    .plane_data_mut(plane)
                    .unwrap()
                    .fill(40 + 50 * plane as u8);
            }
        }
        buffer
    }

    #[test]
    fn flat_planes_stay_flat_at_any_size_down_to_a_pixel() {
        gst::init().unwrap();
        // Every pair of sides from 1 to 17 pixels, odd and even: each side grows, shrinks
        // or stays while the other does any of these.
        let sides = [1u32, 2, 3, 5, 8, 17];
        let sizes: Vec<(u32, u32)> = sides
            .iter()
            .flat_map(|&w| sides.iter().map(move |&h| (w, h)))
            .collect();
        for format in [VideoFormat::I420, VideoFormat::Nv12, VideoFormat::Rgb] {
            for &(fw, fh) in &sizes {
                for &(tw, th) in &sizes {
                    let from = VideoInfo::builder(format, fw, fh).build().unwrap();
                    let to = VideoInfo::builder(format, tw, th).build().unwrap();
                    let scaler = PlaneScaler::new(&from, &to).expect("8-bit formats are scaled");
                    let input = flat(&from);
                    let mut output = gst::Buffer::with_size(to.size()).unwrap();
                    let src =
                        VideoFrameRef::from_buffer_ref_readable(input.as_ref(), &from).unwrap();
                    let mut dst =
                        VideoFrameRef::from_buffer_ref_writable(output.get_mut().unwrap(), &to)
                            .unwrap();
                    scaler.scale(&src, &mut dst).unwrap();
                    for plane in 0..dst.n_planes() {
                        let want = 40 + 50 * plane as u8;
                        let stride = dst.plane_stride()[plane as usize] as usize;
                        let size = plane_size(&to, plane.min(1) as u8);
                        let bytes = size.width * Pixel::of(format).unwrap().size(plane as usize);
                        let data = dst.plane_data(plane).unwrap();
                        for row in data.chunks(stride).take(size.height) {
                            assert!(
                                row[..bytes].iter().all(|&v| v.abs_diff(want) <= 1),
                                "{format:?} {fw}x{fh} -> {tw}x{th}, plane {plane}: {:?}",
                                &row[..bytes]
                            );
                        }
                    }
                }
            }
        }
    }
}
