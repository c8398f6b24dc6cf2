//! Crossfades the frames two neighbouring windows share.

use gst::glib;

/// How the frames shared by two windows are mixed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWanEditBlend")]
pub enum BlendMode {
    #[default]
    #[enum_value(name = "Linear crossfade over the overlap", nick = "linear")]
    Linear,
    #[enum_value(name = "Smoothstep crossfade over the overlap", nick = "cosine")]
    Cosine,
    #[enum_value(name = "Hard cut in the middle of the overlap", nick = "cut")]
    Cut,
}

impl BlendMode {
    /// The weight of the later window on frame `j` of a shared span of `span` frames.
    ///
    /// Linear weights are `(j + 1) / (span + 1)`, so neither window ever has the whole
    /// frame inside the overlap and both ends join their windows smoothly.
    pub fn weight(self, j: u64, span: u64) -> f64 {
        debug_assert!(j < span);
        let x = (j + 1) as f64 / (span + 1) as f64;
        match self {
            BlendMode::Linear => x,
            BlendMode::Cosine => x * x * (3.0 - 2.0 * x),
            BlendMode::Cut => {
                if 2 * j >= span {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// Weights in 1/65536: exact to well under one 8-bit step, and cheap in integers.
const ONE: u32 = 1 << 16;

/// `dst = (1 - weight) * dst + weight * src`, byte by byte, rounded to nearest.
///
/// Both slices hold frames of the same video format and layout; every byte of an 8-bit
/// raw format is one sample, so the mix is the same for planar, semi-planar and packed
/// formats.
pub fn blend_into(dst: &mut [u8], src: &[u8], weight: f64) {
    assert_eq!(
        dst.len(),
        src.len(),
        "blended frames must have the same layout"
    );
    let w = (weight.clamp(0.0, 1.0) * ONE as f64).round() as u32;
    if w == 0 {
        return;
    }
    if w == ONE {
        dst.copy_from_slice(src);
        return;
    }
    let keep = ONE - w;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = ((*d as u32 * keep + s as u32 * w + ONE / 2) >> 16) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_weights_follow_the_design_formula() {
        let w: Vec<f64> = (0..3).map(|j| BlendMode::Linear.weight(j, 3)).collect();
        assert_eq!(w, vec![0.25, 0.5, 0.75]);
    }

    #[test]
    fn cosine_is_smoothstep_of_the_linear_argument() {
        assert_eq!(BlendMode::Cosine.weight(1, 3), 0.5);
        assert!((BlendMode::Cosine.weight(0, 3) - 0.15625).abs() < 1e-12);
    }

    #[test]
    fn cut_switches_in_the_middle() {
        let w: Vec<f64> = (0..4).map(|j| BlendMode::Cut.weight(j, 4)).collect();
        assert_eq!(w, vec![0.0, 0.0, 1.0, 1.0]);
        let w: Vec<f64> = (0..3).map(|j| BlendMode::Cut.weight(j, 3)).collect();
        assert_eq!(w, vec![0.0, 0.0, 1.0]);
    }

    #[test]
    fn blend_rounds_to_nearest() {
        let mut dst = vec![0u8, 255, 100, 10];
        blend_into(&mut dst, &[255, 0, 200, 11], 0.25);
        // 63.75 -> 64, 191.25 -> 191, 125, 10.25 -> 10
        assert_eq!(dst, vec![64, 191, 125, 10]);
        blend_into(&mut dst, &[1, 2, 3, 4], 1.0);
        assert_eq!(dst, vec![1, 2, 3, 4]);
    }
}
