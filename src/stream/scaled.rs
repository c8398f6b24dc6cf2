//! Input frames scaled for the backend, shared by the windows that cover them, so that a
//! frame two windows share is scaled once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::frame::Picture;

/// One input frame's picture at the backend's size, once a window has scaled it.
#[derive(Clone, Default)]
pub struct ScaledFrame(Arc<Mutex<Option<Picture>>>);

impl ScaledFrame {
    /// The picture, made by `scale` unless another window made it already. Whoever holds
    /// the frame last takes the picture; the others get a copy (of a buffer's reference,
    /// or of RGB), which costs far less than scaling again.
    pub fn get_or_scale<E>(
        &self,
        scale: impl FnOnce() -> Result<Picture, E>,
    ) -> Result<Picture, E> {
        // Locked while scaling: a second window wanting the frame waits for the picture.
        let mut held = self.0.lock().unwrap();
        let picture = match held.take() {
            Some(picture) => picture,
            None => scale()?,
        };
        if Arc::strong_count(&self.0) > 1 {
            *held = Some(picture.clone());
        }
        Ok(picture)
    }
}

/// The scaled frames of one run (between two caps or flushes), by input frame number,
/// held for the windows still to come.
#[derive(Default)]
pub struct ScaledFrames(BTreeMap<u64, ScaledFrame>);

impl ScaledFrames {
    /// The frames `start..end` of a window, to be scaled by whichever window gets to each
    /// first. Those from `keep_from` on (where the next window starts) stay held for the
    /// windows that follow; the others are let go.
    pub fn for_window(&mut self, start: u64, end: u64, keep_from: u64) -> Vec<ScaledFrame> {
        let frames = (start..end)
            .map(|n| self.0.entry(n).or_default().clone())
            .collect();
        self.0.retain(|&n, _| n >= keep_from);
        frames
    }

    /// How many frames are held for windows to come.
    pub fn held(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::convert::Infallible;

    use super::*;
    use crate::frame::RgbFrame;

    /// The red of a picture's first pixel.
    fn red(picture: Picture) -> u8 {
        let Picture::Rgb(image) = picture else {
            unreachable!("made as RGB")
        };
        image.pixel(0, 0)[0]
    }

    #[test]
    fn frames_two_windows_share_are_scaled_once() {
        let mut scaled = ScaledFrames::default();
        let scalings = Cell::new(0);
        let scale = |n: u64| {
            scalings.set(scalings.get() + 1);
            Ok::<_, Infallible>(RgbFrame::filled(2, 1, [n as u8, 0, 0]).into())
        };
        // W=5, O=2: windows [0, 5) and [3, 8).
        let first = scaled.for_window(0, 5, 3);
        assert_eq!(scaled.held(), 2, "frames 3 and 4 wait for the next window");
        for (n, frame) in (0..).zip(&first) {
            assert_eq!(red(frame.get_or_scale(|| scale(n)).unwrap()), n as u8);
        }
        let second = scaled.for_window(3, 8, 6);
        drop(first);
        for (n, frame) in (3..).zip(&second) {
            assert_eq!(red(frame.get_or_scale(|| scale(n)).unwrap()), n as u8);
        }
        assert_eq!(scalings.get(), 8, "each of the 8 frames scaled once");
        assert_eq!(scaled.held(), 2);
        // The last holder took the picture: nothing is left behind in the shared frame.
        assert!(second[0].0.lock().unwrap().is_none());
    }

    #[test]
    fn a_failed_scaling_leaves_the_frame_to_try_again() {
        let frame = ScaledFrame::default();
        assert_eq!(frame.get_or_scale(|| Err("no")).unwrap_err(), "no");
        let picture =
            frame.get_or_scale(|| Ok::<_, &str>(RgbFrame::filled(1, 1, [9, 9, 9]).into()));
        assert_eq!(red(picture.unwrap()), 9);
    }
}
