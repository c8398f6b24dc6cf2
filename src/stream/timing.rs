//! Maps an edited clip back onto the window's frames by time, not by index.

use crate::frame::{ClipFrame, Picture, frame_time};

/// Maps a clip's frames, given in time order, to a window's `count` frames (frame `i` at
/// `i / frame_rate`): each window frame gets the clip frame nearest in time, ties going
/// to the earlier. The clip's timeline starts at its first frame, so a provider that
/// starts its timestamps elsewhere maps the same way. At most one clip frame is held:
/// a clip is mapped as it is decoded.
pub struct ByTime {
    count: usize,
    frame_rate: gst::Fraction,
    origin: Option<gst::ClockTime>,
    /// The window frame to map next.
    next: usize,
    /// The latest clip frame, on the clip's timeline.
    held: Option<(gst::ClockTime, Picture)>,
}

impl ByTime {
    pub fn new(count: usize, frame_rate: gst::Fraction) -> Self {
        Self {
            count,
            frame_rate,
            origin: None,
            next: 0,
            held: None,
        }
    }

    /// Takes the clip's next frame, and hands `map` the window frames whose nearest clip
    /// frame is now known (in order, each by the clip frame it gets).
    pub fn push<E>(
        &mut self,
        frame: ClipFrame,
        mut map: impl FnMut(&Picture) -> Result<(), E>,
    ) -> Result<(), E> {
        let origin = *self.origin.get_or_insert(frame.pts);
        let at = frame.pts.saturating_sub(origin);
        if let Some((held_at, held)) = &self.held {
            // Later window frames are nearer to the new clip frame once one is.
            while self.next < self.count {
                let t = frame_time(self.next as u64, self.frame_rate);
                if at.absdiff(t) < held_at.absdiff(t) {
                    break;
                }
                map(held)?;
                self.next += 1;
            }
        }
        self.held = Some((at, frame.image));
        Ok(())
    }

    /// Ends the clip: the window frames left get its last frame. Returns whether the clip
    /// had a frame at all (an empty one maps to nothing).
    pub fn finish<E>(mut self, mut map: impl FnMut(&Picture) -> Result<(), E>) -> Result<bool, E> {
        let Some((_, last)) = self.held.take() else {
            return Ok(false);
        };
        for _ in self.next..self.count {
            map(&last)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RgbFrame;

    /// The clip frame (by its number) each of `count` window frames at `fps` gets.
    fn picked(pts_ms: &[u64], count: usize, fps: i32) -> Vec<u8> {
        let mut by_time = ByTime::new(count, gst::Fraction::new(fps, 1));
        let mut picked = Vec::new();
        let mut map = |image: &Picture| {
            let Picture::Rgb(image) = image else {
                unreachable!("the clip is RGB")
            };
            picked.push(image.data[0]);
            Ok::<_, ()>(())
        };
        for (i, &ms) in pts_ms.iter().enumerate() {
            let frame = ClipFrame {
                pts: gst::ClockTime::from_mseconds(ms),
                image: RgbFrame::filled(1, 1, [i as u8, 0, 0]).into(),
            };
            by_time.push(frame, &mut map).unwrap();
        }
        assert_eq!(by_time.finish(&mut map), Ok(!pts_ms.is_empty()));
        picked
    }

    #[test]
    fn same_rate_maps_one_to_one() {
        assert_eq!(picked(&[0, 100, 200, 300], 4, 10), [0, 1, 2, 3]);
    }

    #[test]
    fn double_rate_takes_every_other_frame() {
        assert_eq!(picked(&[0, 50, 100, 150, 200, 250], 3, 10), [0, 2, 4]);
    }

    #[test]
    fn half_rate_repeats_frames_and_short_clips_hold_the_last_frame() {
        assert_eq!(picked(&[1000, 1200], 5, 10), [0, 0, 1, 1, 1]);
    }

    #[test]
    fn ties_go_to_the_earlier_frame_and_extra_frames_are_left() {
        // Window frames at 0, 100, 200 ms; clip frames at 0, 50, 150, 250, 300, 400 ms.
        assert_eq!(picked(&[0, 50, 150, 250, 300, 400], 3, 10), [0, 1, 2]);
    }

    #[test]
    fn empty_clip_maps_to_nothing() {
        assert!(picked(&[], 3, 16).is_empty());
    }
}
