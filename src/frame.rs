//! The frames and sizes that the stream machinery and the backends both speak of: the
//! backends' packed RGB images, the clips they give back, and frame times.

use gst::prelude::MulDiv;

/// A frame size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// A packed 8-bit RGB image (3 bytes a pixel, rows without padding).
#[derive(Clone, PartialEq, Eq)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// A frame of one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Self {
        let data = rgb
            .iter()
            .copied()
            .cycle()
            .take(width as usize * height as usize * 3)
            .collect();
        Self {
            width,
            height,
            data,
        }
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

impl std::fmt::Debug for RgbFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbFrame({}x{})", self.width, self.height)
    }
}

/// A picture on its way to or from a backend, in the form the backend takes or gives:
/// packed RGB for models, raw video for what travels as H.264. An edited clip's
/// pictures are converted to the stream's format and size only if a window frame takes
/// them: a clip may hold more frames than its window.
#[derive(Debug, Clone)]
pub enum Picture {
    /// Packed RGB: full range, in the stream's transfer and primaries.
    Rgb(RgbFrame),
    /// A raw video frame in any format and layout (a decoder's, or what the element made
    /// for [`InputFormat::I420`]). Its matrix and range are its `info`'s; its transfer and
    /// primaries are taken to be the stream's, as for RGB, since it holds the stream's
    /// pictures whatever a file labels them.
    Video {
        buffer: gst::Buffer,
        info: gst_video::VideoInfo,
    },
}

impl Picture {
    pub fn size(&self) -> Size {
        match self {
            Self::Rgb(image) => Size::new(image.width, image.height),
            Self::Video { info, .. } => Size::new(info.width(), info.height()),
        }
    }
}

/// The form in which a backend takes a window's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// [`Picture::Rgb`], as models take it.
    Rgb,
    /// [`Picture::Video`] in 8-bit 4:2:0 YUV (I420, BT.709 matrix, limited range), as an
    /// H.264 upload holds it: the element scales the stream's planes straight to it, with
    /// no RGB between.
    I420,
}

impl From<RgbFrame> for Picture {
    fn from(image: RgbFrame) -> Self {
        Self::Rgb(image)
    }
}

/// One frame of an edited clip, at its time on the clip's own timeline.
#[derive(Debug, Clone)]
pub struct ClipFrame {
    pub pts: gst::ClockTime,
    pub image: Picture,
}

/// The time of frame `i` at `frame_rate`.
pub fn frame_time(i: u64, frame_rate: gst::Fraction) -> gst::ClockTime {
    let (num, den) = (frame_rate.numer() as u64, frame_rate.denom() as u64);
    gst::ClockTime::from_nseconds(
        (i * den)
            .mul_div_floor(gst::ClockTime::SECOND.nseconds(), num)
            .unwrap_or(0),
    )
}
