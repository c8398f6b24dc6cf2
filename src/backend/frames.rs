//! The frames a backend takes and gives back, each made or decoded only when it is
//! needed: a window held whole as packed RGB at 832x480 is 97 MiB, and with several
//! windows in flight whole copies would hold many times what the stream itself holds.

use std::any::Any;
use std::sync::Arc;

use super::BackendError;
use crate::frame::{ClipFrame, Picture, RgbFrame, Size, frame_time};

type Make<T> = dyn FnMut(usize) -> Result<T, BackendError> + Send;

/// A window's items (frames or masks) of one size, made one at a time by their number,
/// in order, as the backend asks for them.
struct Lazy<T> {
    size: Size,
    len: usize,
    made: usize,
    make: Box<Make<T>>,
}

impl<T> Lazy<T> {
    fn new(
        size: Size,
        len: usize,
        make: impl FnMut(usize) -> Result<T, BackendError> + Send + 'static,
    ) -> Self {
        Self {
            size,
            len,
            made: 0,
            make: Box::new(make),
        }
    }

    /// The next item, refused where `misfit` says why it is not of the window's size.
    fn next(
        &mut self,
        misfit: impl FnOnce(&T, Size) -> Option<String>,
    ) -> Option<Result<T, BackendError>> {
        (self.made < self.len).then(|| {
            let i = self.made;
            self.made += 1;
            (self.make)(i).and_then(|item| match misfit(&item, self.size) {
                None => Ok(item),
                Some(why) => Err(BackendError::Frames(format!("frame {i} {why}"))),
            })
        })
    }

    fn left(&self) -> usize {
        self.len - self.made
    }
}

/// A window's frames at the size and in the form the backend takes, all of one size,
/// made one at a time as the backend asks for them (the element scales each input frame
/// then).
pub struct WindowFrames(Lazy<Picture>);

impl WindowFrames {
    /// `len` frames of `size`, frame `i` made by `make(i)`, in order.
    pub fn new(
        size: Size,
        len: usize,
        make: impl FnMut(usize) -> Result<Picture, BackendError> + Send + 'static,
    ) -> Self {
        Self(Lazy::new(size, len, make))
    }

    /// Frames made already. They must all have the size of the first.
    pub fn from_frames(frames: Vec<impl Into<Picture>>) -> Self {
        let frames: Vec<Picture> = frames.into_iter().map(Into::into).collect();
        let size = frames.first().map_or(Size::new(0, 0), Picture::size);
        let len = frames.len();
        let mut frames = frames.into_iter();
        Self::new(size, len, move |_| {
            frames
                .next()
                .ok_or_else(|| BackendError::Frames("asked for more frames than given".into()))
        })
    }

    pub fn size(&self) -> Size {
        self.0.size
    }

    /// The frames left, as packed RGB: as they come for a backend taking
    /// [`InputFormat::Rgb`](crate::frame::InputFormat::Rgb), converted for any other.
    pub fn rgb(&mut self) -> impl Iterator<Item = Result<RgbFrame, BackendError>> + '_ {
        self.map(|frame| {
            frame?
                .into_rgb()
                .map_err(|e| BackendError::Frames(e.to_string()))
        })
    }
}

impl Iterator for WindowFrames {
    type Item = Result<Picture, BackendError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next(|frame, size| {
            (frame.size() != size)
                .then(|| format!("is {}, not {size} as the window's first", frame.size()))
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.left(), Some(self.0.left()))
    }
}

impl ExactSizeIterator for WindowFrames {}

/// The `mask` of a window, for backends that regenerate only a region (VACE): frame by
/// frame in the order of the request's frames (padding repeats included), one byte a
/// pixel at the request's frame size (`frames.size()`), rows unpadded, 255 where the
/// frame is to be edited and 0 where it is kept. Each frame's mask is made when it is
/// taken, as the frames are. Backends that do not use it may drop it: the element
/// composes every edited frame with its input under the mask anyway.
pub struct WindowMask(Lazy<Vec<u8>>);

impl WindowMask {
    /// `len` masks of `size`, mask `i` made by `make(i)`, in order.
    pub fn new(
        size: Size,
        len: usize,
        make: impl FnMut(usize) -> Result<Vec<u8>, BackendError> + Send + 'static,
    ) -> Self {
        Self(Lazy::new(size, len, make))
    }

    /// `len` frames all masked alike.
    pub fn uniform(size: Size, len: usize, mask: Arc<[u8]>) -> Self {
        Self::new(size, len, move |_| Ok(mask.to_vec()))
    }

    /// The size of each frame's mask: the request's frame size.
    pub fn size(&self) -> Size {
        self.0.size
    }
}

impl Iterator for WindowMask {
    type Item = Result<Vec<u8>, BackendError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next(|mask, size| {
            let pixels = size.width as usize * size.height as usize;
            (mask.len() != pixels).then(|| {
                format!(
                    "has a mask of {} bytes, not one per pixel of {size}",
                    mask.len()
                )
            })
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.left(), Some(self.0.left()))
    }
}

impl ExactSizeIterator for WindowMask {}

type ClipFrames = dyn Iterator<Item = Result<ClipFrame, BackendError>> + Send;

/// What a backend keeps of a window for the next window of the stream to continue from
/// (`seam=anchor`), opaque to the element: the Candle backend keeps its final latents.
#[derive(Clone)]
pub struct Continuation(Arc<dyn Any + Send + Sync>);

impl Continuation {
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Arc::new(value))
    }

    /// The value, if it is a `T` (another backend's continuation is not).
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for Continuation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Continuation")
    }
}

/// With `seam=anchor`: the window before, which this window continues.
#[derive(Debug, Clone)]
pub struct WindowAnchor {
    /// How many of this window's first frames it shares with the window before; in the
    /// request's frames they are already what the window before gave back.
    pub shared: usize,
    /// Where this window starts in the window before, in frames.
    pub offset: usize,
    /// What the backend kept of the window before, if it keeps anything.
    pub continuation: Option<Continuation>,
    /// `anchor-strength`: the share of the denoising steps through which a backend that
    /// anchors in latent space holds the shared frames.
    pub strength: f64,
}

/// What a backend gives back. Its frames may have another rate, count or size than the
/// request's: the element maps them to the window's frames by timestamp and scales them.
pub struct EditedClip {
    frames: Box<ClipFrames>,
    continuation: Option<Continuation>,
}

impl EditedClip {
    /// A clip of frames held in memory, in any order.
    pub fn new(mut frames: Vec<ClipFrame>) -> Self {
        frames.sort_by_key(|f| f.pts);
        Self::in_time_order(frames.into_iter().map(Ok))
    }

    /// A clip whose frames stand at `i / frame_rate`, as a request's frames do.
    pub fn at_rate(images: Vec<RgbFrame>, frame_rate: gst::Fraction) -> Self {
        Self::in_time_order(images.into_iter().enumerate().map(move |(i, image)| {
            Ok(ClipFrame {
                pts: frame_time(i as u64, frame_rate),
                image: image.into(),
            })
        }))
    }

    /// A clip whose frames come as they are decoded, in presentation order: the element
    /// converts each before the next is decoded.
    pub fn in_time_order(
        frames: impl Iterator<Item = Result<ClipFrame, BackendError>> + Send + 'static,
    ) -> Self {
        Self {
            frames: Box::new(frames),
            continuation: None,
        }
    }

    /// The clip, with what the next window of the stream may continue from.
    pub fn continued_by(mut self, continuation: Continuation) -> Self {
        self.continuation = Some(continuation);
        self
    }

    /// What the next window may continue from, taken out of the clip.
    pub fn take_continuation(&mut self) -> Option<Continuation> {
        self.continuation.take()
    }

    /// The frames, in time order.
    pub fn into_frames(self) -> impl Iterator<Item = Result<ClipFrame, BackendError>> + Send {
        self.frames
    }
}

impl std::fmt::Debug for EditedClip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EditedClip")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_frames_are_made_in_order_and_checked_for_size() {
        let mut asked = Vec::new();
        let mut frames = WindowFrames::new(Size::new(2, 1), 3, move |i| {
            asked.push(i);
            assert_eq!(asked, (0..=i).collect::<Vec<_>>());
            Ok(RgbFrame::filled(if i == 2 { 3 } else { 2 }, 1, [i as u8; 3]).into())
        });
        assert_eq!(frames.len(), 3);
        let made: Vec<_> = frames.rgb().collect();
        assert_eq!(made[1].as_ref().unwrap().pixel(1, 0), [1, 1, 1]);
        assert_eq!(
            made[2].as_ref().unwrap_err().to_string(),
            "the window's frames could not be made: frame 2 is 3x1, not 2x1 as the window's \
             first"
        );
    }

    #[test]
    fn a_held_clip_comes_in_time_order() {
        let frame = |ms, v| ClipFrame {
            pts: gst::ClockTime::from_mseconds(ms),
            image: RgbFrame::filled(1, 1, [v; 3]).into(),
        };
        let clip = EditedClip::new(vec![frame(80, 2), frame(0, 0), frame(40, 1)]);
        let order: Vec<u8> = clip
            .into_frames()
            .map(|f| f.unwrap().image.to_rgb().unwrap().data[0])
            .collect();
        assert_eq!(order, [0, 1, 2]);
    }
}
