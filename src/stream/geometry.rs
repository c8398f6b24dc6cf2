//! Picks the size a window is sent to the backend at.

use crate::frame::Size;

/// The accepted size closest in aspect ratio to `input` (ties go to the earlier size), or
/// `input` itself when the backend takes any size.
pub fn choose_size(input: Size, accepted: &[Size]) -> Size {
    let log_aspect = |s: Size| (s.width as f64 / s.height as f64).ln();
    let target = log_aspect(input);
    accepted
        .iter()
        .copied()
        .min_by(|a, b| {
            let da = (log_aspect(*a) - target).abs();
            let db = (log_aspect(*b) - target).abs();
            da.total_cmp(&db)
        })
        .unwrap_or(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_bucket_closest_in_aspect_ratio() {
        let b480 = [
            Size::new(832, 480),
            Size::new(480, 832),
            Size::new(624, 624),
        ];
        assert_eq!(
            choose_size(Size::new(1920, 1080), &b480),
            Size::new(832, 480)
        );
        assert_eq!(
            choose_size(Size::new(1080, 1920), &b480),
            Size::new(480, 832)
        );
        assert_eq!(choose_size(Size::new(640, 640), &b480), Size::new(624, 624));
        assert_eq!(choose_size(Size::new(854, 480), &b480), Size::new(832, 480));
        assert_eq!(choose_size(Size::new(700, 600), &b480), Size::new(624, 624));
        let b720 = [
            Size::new(1280, 720),
            Size::new(720, 1280),
            Size::new(960, 960),
        ];
        assert_eq!(
            choose_size(Size::new(1280, 1024), &b720),
            Size::new(960, 960)
        );
        assert_eq!(choose_size(Size::new(17, 9), &[]), Size::new(17, 9));
    }
}
