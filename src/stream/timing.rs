//! Maps an edited clip back onto the window's frames by time, not by index.

use crate::frame::{EditedClip, RgbFrame, frame_time};

/// For each of the window's `count` frames (frame `i` at `i / frame_rate`), the clip frame
/// nearest in time; ties go to the earlier frame. The clip's timeline starts at its first
/// frame, so a provider that starts its timestamps elsewhere maps the same way.
///
/// Returns `None` for a clip without frames.
pub fn frames_by_time(
    clip: &EditedClip,
    count: usize,
    frame_rate: gst::Fraction,
) -> Option<Vec<&RgbFrame>> {
    let first = clip.frames.iter().map(|f| f.pts).min()?;
    let mut by_time: Vec<_> = clip
        .frames
        .iter()
        .map(|f| (f.pts - first, &f.image))
        .collect();
    by_time.sort_by_key(|(t, _)| *t);
    let mut k = 0;
    Some(
        (0..count as u64)
            .map(|i| {
                let t = frame_time(i, frame_rate);
                while k + 1 < by_time.len() && by_time[k + 1].0.absdiff(t) < by_time[k].0.absdiff(t)
                {
                    k += 1;
                }
                by_time[k].1
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ClipFrame;

    fn clip(pts_ms: &[u64]) -> EditedClip {
        EditedClip {
            frames: pts_ms
                .iter()
                .enumerate()
                .map(|(i, &ms)| ClipFrame {
                    pts: gst::ClockTime::from_mseconds(ms),
                    image: RgbFrame::filled(1, 1, [i as u8, 0, 0]),
                })
                .collect(),
        }
    }

    fn picked(clip: &EditedClip, count: usize, fps: i32) -> Vec<u8> {
        frames_by_time(clip, count, gst::Fraction::new(fps, 1))
            .unwrap()
            .iter()
            .map(|f| f.data[0])
            .collect()
    }

    #[test]
    fn same_rate_maps_one_to_one() {
        let c = clip(&[0, 100, 200, 300]);
        assert_eq!(picked(&c, 4, 10), vec![0, 1, 2, 3]);
    }

    #[test]
    fn double_rate_takes_every_other_frame() {
        let c = clip(&[0, 50, 100, 150, 200, 250]);
        assert_eq!(picked(&c, 3, 10), vec![0, 2, 4]);
    }

    #[test]
    fn half_rate_repeats_frames_and_short_clips_hold_the_last_frame() {
        let c = clip(&[1000, 1200]);
        assert_eq!(picked(&c, 5, 10), vec![0, 0, 1, 1, 1]);
    }

    #[test]
    fn empty_clip_maps_to_nothing() {
        assert!(frames_by_time(&EditedClip::default(), 3, gst::Fraction::new(16, 1)).is_none());
    }
}
