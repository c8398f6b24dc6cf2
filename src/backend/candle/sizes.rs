//! The frame sizes a Wan checkpoint is sent windows at.

use crate::backend::{Resolution, Size};

/// The Wan buckets of `resolution`, each side rounded to the nearest multiple the model
/// takes (`(width, height)` multiples), ties downwards.
///
/// Wan2.1 models take multiples of 16, so their buckets stay as they are. Wan2.2 models
/// (Lucy-Edit) take multiples of 32: 624x624 becomes 608x608 and 1280x720 becomes
/// 1280x704, the size Wan2.2 itself generates at 720p. An empty list (`native`) sends
/// windows at the input size, which must then be such a multiple.
pub fn model_buckets(resolution: Resolution, (mw, mh): (usize, usize)) -> Vec<Size> {
    let round = |side: u32, m: usize| {
        let m = m.max(1) as u32;
        ((side + (m - 1) / 2) / m).max(1) * m
    };
    resolution
        .wan_buckets()
        .into_iter()
        .map(|s| Size::new(round(s.width, mw), round(s.height, mh)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan21_keeps_the_buckets_and_wan22_rounds_to_32() {
        assert_eq!(
            model_buckets(Resolution::P480, (16, 16)),
            Resolution::P480.wan_buckets()
        );
        assert_eq!(
            model_buckets(Resolution::P480, (32, 32)),
            vec![
                Size::new(832, 480),
                Size::new(480, 832),
                Size::new(608, 608)
            ]
        );
        assert_eq!(
            model_buckets(Resolution::P720, (32, 32)),
            vec![
                Size::new(1280, 704),
                Size::new(704, 1280),
                Size::new(960, 960)
            ]
        );
        assert!(model_buckets(Resolution::Native, (32, 32)).is_empty());
    }
}
