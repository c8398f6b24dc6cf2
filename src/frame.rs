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

/// A picture of an edited clip, in the form its backend has it. It is converted to the
/// stream's format and size only if a window frame takes it: a clip may hold more
/// frames than its window.
#[derive(Debug, Clone)]
pub enum Picture {
    /// Packed RGB as a model makes it: full range, in the stream's transfer and primaries.
    Rgb(RgbFrame),
    /// A frame as a decoder gave it, in the decoder's own raw format and layout. Its
    /// matrix and range are its caps'; its transfer and primaries are taken to be the
    /// stream's, as for RGB, since the clip was made from the stream's pictures.
    Decoded {
        buffer: gst::Buffer,
        info: gst_video::VideoInfo,
    },
}

impl Picture {
    pub fn size(&self) -> Size {
        match self {
            Self::Rgb(image) => Size::new(image.width, image.height),
            Self::Decoded { info, .. } => Size::new(info.width(), info.height()),
        }
    }
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
