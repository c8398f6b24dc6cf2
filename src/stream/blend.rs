//! Crossfades the frames two neighbouring windows share.

use gst::glib;
use gst_video::VideoFormat;

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

/// How a raw video format stores its samples, which decides how its bytes are mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Samples {
    /// One sample per byte: every 8-bit format, planar, semi-planar, packed or tiled.
    U8,
    /// One sample per little-endian 16-bit word, in its low bits (10, 12 or 16 of them).
    U16Le,
    /// `depth`-bit samples in the high bits of little-endian 16-bit words, the low bits
    /// zero (P010, P012, Y210...). They are mixed at their own depth and written back with
    /// the low bits zero: readers that keep only the high bits truncate, so a result
    /// rounded at 16 bits could be almost a whole `depth`-bit step off.
    U16LeMsb { depth: u32 },
    /// Three 10-bit samples per little-endian 32-bit word, in bits 0-9, 10-19 and 20-29,
    /// bits 30-31 zero: v210 and the `10LE32` formats.
    V210,
}

impl Samples {
    /// How `format` stores its samples, or `None` for a format none of the blends mixes
    /// sample by sample (palettes, 5/6-bit RGB, big-endian words, other packings of
    /// 10-bit samples such as UYVP, NV12_10LE40, r210 or the 2-bit alpha of Y410).
    pub fn for_format(format: VideoFormat) -> Option<Samples> {
        use VideoFormat as F;
        match format {
            F::Gray8
            | F::I420
            | F::Yv12
            | F::Nv12
            | F::Nv21
            | F::Nv16
            | F::Nv61
            | F::Nv24
            | F::Y41b
            | F::Y42b
            | F::Y444
            | F::Yuv9
            | F::Yvu9
            | F::A420
            | F::Av12
            | F::Yuy2
            | F::Uyvy
            | F::Yvyu
            | F::Vyuy
            | F::Iyu1
            | F::Iyu2
            | F::V308
            | F::Ayuv
            | F::Vuya
            | F::Rgb
            | F::Bgr
            | F::Rgbx
            | F::Bgrx
            | F::Xrgb
            | F::Xbgr
            | F::Rgba
            | F::Bgra
            | F::Argb
            | F::Abgr
            | F::Gbr
            | F::Gbra
            | F::Rgbp
            | F::Bgrp
            | F::Nv1264z32
            | F::Nv124l4
            | F::Nv1232l32 => Some(Samples::U8),
            F::I42010le
            | F::I42210le
            | F::Y44410le
            | F::A42010le
            | F::A42210le
            | F::A44410le
            | F::Gbr10le
            | F::Gbra10le
            | F::I42012le
            | F::I42212le
            | F::Y44412le
            | F::Gbr12le
            | F::Gbra12le
            | F::Y44416le
            | F::P016Le
            | F::Gray16Le
            | F::V216
            | F::Rgba64Le
            | F::Bgra64Le
            | F::Argb64Le
            | F::Abgr64Le => Some(Samples::U16Le),
            // Their words are in host order.
            #[cfg(target_endian = "little")]
            F::Argb64 | F::Ayuv64 => Some(Samples::U16Le),
            F::P01010le | F::Y210 => Some(Samples::U16LeMsb { depth: 10 }),
            F::P012Le | F::Y212Le | F::Y412Le => Some(Samples::U16LeMsb { depth: 12 }),
            F::V210 | F::Gray10Le32 | F::Nv1210le32 | F::Nv1610le32 => Some(Samples::V210),
            _ => None,
        }
    }
}

/// `dst = (1 - weight) * dst + weight * src`, sample by sample, rounded to nearest.
///
/// Both slices hold frames of the same video format and layout, whose samples are
/// stored as `samples` says (see [`Samples::for_format`]).
pub fn blend(dst: &mut [u8], src: &[u8], weight: f64, samples: Samples) {
    match samples {
        Samples::U8 => blend_into(dst, src, weight),
        Samples::U16Le => blend_into_u16le(dst, src, weight),
        Samples::U16LeMsb { depth } => blend_u16le(dst, src, weight, 16 - depth),
        Samples::V210 => blend_into_v210(dst, src, weight),
    }
}

/// [`blend`] for 8-bit samples: every byte is one sample, so the mix is the same for
/// planar, semi-planar and packed formats.
///
/// The weight is rounded to 1/32768: every result is within half a step, plus 1/256 of
/// one, of the exact mix.
pub fn blend_into(dst: &mut [u8], src: &[u8], weight: f64) {
    let Some(w) = fixed_weight(dst, src, weight, 15) else {
        return;
    };
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if avx2::detected() {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2::mix_u8(dst, src, w) };
    }
    portable::mix_u8(dst, src, w)
}

/// [`blend`] for samples in the low bits of little-endian 16-bit words (10-, 12- and
/// 16-bit formats); `dst` and `src` hold whole words.
///
/// The weight is rounded to 2^-24: every result is within half a step, plus 1/512 of
/// one, of the exact mix.
pub fn blend_into_u16le(dst: &mut [u8], src: &[u8], weight: f64) {
    blend_u16le(dst, src, weight, 0)
}

/// [`blend_into_u16le`] on the samples in the high `16 - shift` bits of each word; the
/// low `shift` bits of the results are zero.
fn blend_u16le(dst: &mut [u8], src: &[u8], weight: f64, shift: u32) {
    assert!(shift < 16, "samples have between 1 and 16 bits");
    assert!(
        dst.len().is_multiple_of(2),
        "16-bit samples come in whole words"
    );
    let Some(w) = fixed_weight(dst, src, weight, 24) else {
        return;
    };
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if avx2::detected() {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { avx2::mix_u16le(dst, src, w, shift) };
    }
    portable::mix_u16le(dst, src, w, shift)
}

/// [`blend`] for v210: three 10-bit samples in each little-endian 32-bit word, in bits
/// 0-9, 10-19 and 20-29; bits 30-31 of the results are zero. Row padding is mixed as
/// data, which is harmless.
///
/// The weight is rounded to 2^-24: every result is within half a step, plus 1/32768 of
/// one, of the exact mix.
pub fn blend_into_v210(dst: &mut [u8], src: &[u8], weight: f64) {
    assert!(
        dst.len().is_multiple_of(4),
        "v210 comes in whole 32-bit words"
    );
    let Some(w) = fixed_weight(dst, src, weight, 24) else {
        return;
    };
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if avx2::detected() {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { avx2::mix_v210(dst, src, w) };
    }
    portable::mix_v210(dst, src, w)
}

/// `weight` in fixed point with `bits` fraction bits, or `None` when the weight leaves
/// `dst` as it is or is a plain copy of `src` (done here).
fn fixed_weight(dst: &mut [u8], src: &[u8], weight: f64, bits: u32) -> Option<i32> {
    assert_eq!(
        dst.len(),
        src.len(),
        "blended frames must have the same layout"
    );
    let one = 1i32 << bits;
    match (weight.clamp(0.0, 1.0) * f64::from(one)).round() as i32 {
        0 => None,
        w if w == one => {
            dst.copy_from_slice(src);
            None
        }
        w => Some(w),
    }
}

/// A weight with 24 fraction bits as a float: it holds it exactly, in f32 as in f64.
fn q24(w: i32) -> f64 {
    f64::from(w) / f64::from(1 << 24)
}

/// Every path computes `d + (s - d) * w` with the same integer result: the AVX2 kernels
/// eight, sixteen or twenty-four samples at a time, these one at a time (and the tails
/// of the AVX2 kernels). The result lies between `d` and `s`, so it is always in range.
mod portable {
    /// 8-bit samples, `w` with 15 fraction bits, rounded half up.
    pub fn mix_u8(dst: &mut [u8], src: &[u8], w: i32) {
        for (d, &s) in dst.iter_mut().zip(src) {
            let (dv, sv) = (i32::from(*d), i32::from(s));
            *d = (dv + (((sv - dv) * w + (1 << 14)) >> 15)) as u8;
        }
    }

    /// Samples of up to 16 bits and a weight of up to 24 bits (see [`super::q24`]),
    /// rounded to nearest, ties to even.
    #[inline(always)]
    fn mix_q24(d: i32, s: i32, w: f64) -> i32 {
        // 1.5 * 2^52: sums near it keep no bits below the units, so rounding the sum is
        // rounding to an integer, ties to even, and the integer is in the low bits of
        // the sum. The product and `d + MAGIC` are exact (24 bits by 17), so this rounds
        // the exact value once, as the AVX2 kernels' FMA does near 1.5 * 2^23.
        const MAGIC: f64 = 6_755_399_441_055_744.0;
        (f64::from(s - d) * w + (f64::from(d) + MAGIC)).to_bits() as i32
    }

    pub fn mix_u16le(dst: &mut [u8], src: &[u8], w: i32, shift: u32) {
        let w = super::q24(w);
        for (d, s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(2)) {
            let d: &mut [u8; 2] = d.try_into().unwrap();
            let dv = u16::from_le_bytes(*d) >> shift;
            let sv = u16::from_le_bytes(s.try_into().unwrap()) >> shift;
            let r = mix_q24(i32::from(dv), i32::from(sv), w) as u16;
            *d = (r << shift).to_le_bytes();
        }
    }

    pub fn mix_v210(dst: &mut [u8], src: &[u8], w: i32) {
        let w = super::q24(w);
        let field = |d: u32, s: u32, shift: u32| {
            let sample = |v: u32| ((v >> shift) & 0x3ff) as i32;
            (mix_q24(sample(d), sample(s), w) as u32) << shift
        };
        for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            let d: &mut [u8; 4] = d.try_into().unwrap();
            let dv = u32::from_le_bytes(*d);
            let sv = u32::from_le_bytes(s.try_into().unwrap());
            *d = (field(dv, sv, 0) | field(dv, sv, 10) | field(dv, sv, 20)).to_le_bytes();
        }
    }
}

/// The kernels for CPUs with AVX2 (and FMA, which all of them have), chosen at run
/// time: the crate builds for baseline x86-64, where the compiler vectorises the
/// portable loops with SSE2 only, several times slower than a copy of the frame.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod avx2 {
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    use super::portable;

    /// Whether the CPU runs these kernels.
    pub fn detected() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// Runs `kernel` on each 32 bytes of `dst` and `src`, and `tail` on what is left.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn chunks(
        dst: &mut [u8],
        src: &[u8],
        kernel: impl Fn(__m256i, __m256i) -> __m256i,
        tail: impl FnOnce(&mut [u8], &[u8]),
    ) {
        let mut d_chunks = dst.chunks_exact_mut(32);
        let mut s_chunks = src.chunks_exact(32);
        for (d, s) in (&mut d_chunks).zip(&mut s_chunks) {
            // SAFETY: both chunks are 32 bytes long, and loadu/storeu accept any alignment.
            unsafe {
                let dv = _mm256_loadu_si256(d.as_ptr().cast());
                let sv = _mm256_loadu_si256(s.as_ptr().cast());
                _mm256_storeu_si256(d.as_mut_ptr().cast(), kernel(dv, sv));
            }
        }
        tail(d_chunks.into_remainder(), s_chunks.remainder());
    }

    /// [`portable::mix_u8`] on 16-bit lanes: `mulhrs` is `(a * w + 2^14) >> 15`.
    #[target_feature(enable = "avx2")]
    pub fn mix_u8(dst: &mut [u8], src: &[u8], w: i32) {
        let wv = _mm256_set1_epi16(w as i16);
        let zero = _mm256_setzero_si256();
        let mix = |d, s| _mm256_add_epi16(d, _mm256_mulhrs_epi16(_mm256_sub_epi16(s, d), wv));
        let kernel = |d, s| {
            // Widening and packing both work within each 128-bit half, so the bytes
            // come back in order.
            let lo = mix(_mm256_unpacklo_epi8(d, zero), _mm256_unpacklo_epi8(s, zero));
            let hi = mix(_mm256_unpackhi_epi8(d, zero), _mm256_unpackhi_epi8(s, zero));
            _mm256_packus_epi16(lo, hi)
        };
        chunks(dst, src, kernel, |d, s| portable::mix_u8(d, s, w))
    }

    /// `d + (s - d) * w` for samples of up to 22 bits in 32-bit lanes, rounded to
    /// nearest, ties to even, in the low 22 bits of each lane (the high bits are junk).
    ///
    /// `d` is put in the units of 1.5 * 2^23 by setting its bits in that float's
    /// mantissa; the FMA then rounds the exact sum once to those units, which is one
    /// conversion cheaper than rounding, and exact where a 32-bit product is not.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mix_q24(d: __m256i, s: __m256i, w: __m256) -> __m256i {
        let biased = _mm256_or_si256(d, _mm256_set1_epi32(0x4b40_0000));
        let a = _mm256_cvtepi32_ps(_mm256_sub_epi32(s, d));
        _mm256_castps_si256(_mm256_fmadd_ps(w, a, _mm256_castsi256_ps(biased)))
    }

    /// [`portable::mix_u16le`] on 32-bit lanes.
    #[target_feature(enable = "avx2,fma")]
    pub fn mix_u16le(dst: &mut [u8], src: &[u8], w: i32, shift: u32) {
        let wv = _mm256_set1_ps(super::q24(w) as f32);
        let low = _mm256_set1_epi32(0xffff);
        let count = _mm_cvtsi32_si128(shift as i32);
        let count_high = _mm_cvtsi32_si128(shift as i32 + 16);
        let kernel = |d, s| {
            // Even samples from the low halves of the 32-bit lanes, odd ones from the
            // high halves, so that the results go back without crossing lanes.
            let even_d = _mm256_srl_epi32(_mm256_and_si256(d, low), count);
            let even_s = _mm256_srl_epi32(_mm256_and_si256(s, low), count);
            let even = mix_q24(even_d, even_s, wv);
            let odd_d = _mm256_srl_epi32(d, count_high);
            let odd = mix_q24(odd_d, _mm256_srl_epi32(s, count_high), wv);
            let r = _mm256_blend_epi16::<0b1010_1010>(even, _mm256_slli_epi32::<16>(odd));
            _mm256_sll_epi16(r, count)
        };
        chunks(dst, src, kernel, |d, s| portable::mix_u16le(d, s, w, shift))
    }

    /// The field at `SHIFT` of each 32-bit lane, mixed and put back in place.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mix_field<const SHIFT: i32>(d: __m256i, s: __m256i, w: __m256) -> __m256i {
        let mask = _mm256_set1_epi32(0x3ff);
        let d = _mm256_and_si256(_mm256_srli_epi32::<SHIFT>(d), mask);
        let s = _mm256_and_si256(_mm256_srli_epi32::<SHIFT>(s), mask);
        let r = mix_q24(d, s, w);
        // The junk bits of `r` are all above bit 21: shifting by 10 or 20 drops them.
        if SHIFT == 0 {
            _mm256_and_si256(r, mask)
        } else {
            _mm256_slli_epi32::<SHIFT>(r)
        }
    }

    /// [`portable::mix_v210`], eight words at a time.
    #[target_feature(enable = "avx2,fma")]
    pub fn mix_v210(dst: &mut [u8], src: &[u8], w: i32) {
        let wv = _mm256_set1_ps(super::q24(w) as f32);
        let kernel = |d, s| {
            let r = _mm256_or_si256(mix_field::<0>(d, s, wv), mix_field::<10>(d, s, wv));
            _mm256_or_si256(r, mix_field::<20>(d, s, wv))
        };
        chunks(dst, src, kernel, |d, s| portable::mix_v210(d, s, w))
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

    /// Weights the blends are checked with: the composer's, thirds and seventeenths that
    /// no fixed point holds exactly, and weights close to either end.
    const WEIGHTS: [f64; 8] = [0.37, 1.0 / 3.0, 1.0 / 17.0, 0.999, 0.25, 0.5, 1e-4, 0.9999];

    /// How far a result may be from the exact mix, in steps of the samples: half a step
    /// for the rounding, plus what rounding the weight to fixed point costs.
    fn tolerance(samples: Samples) -> f64 {
        0.5 + match samples {
            Samples::U8 => 1.0 / 256.0,
            Samples::U16Le | Samples::U16LeMsb { .. } => 1.0 / 512.0,
            Samples::V210 => 1.0 / 32768.0,
        }
    }

    /// The sample values `bytes` holds.
    fn values(bytes: &[u8], samples: Samples) -> Vec<u32> {
        let words = |n| bytes.chunks_exact(n);
        match samples {
            Samples::U8 => bytes.iter().map(|&b| u32::from(b)).collect(),
            Samples::U16Le => words(2)
                .map(|w| u32::from(w[0]) | u32::from(w[1]) << 8)
                .collect(),
            Samples::U16LeMsb { depth } => words(2)
                .map(|w| (u32::from(w[0]) | u32::from(w[1]) << 8) >> (16 - depth))
                .collect(),
            Samples::V210 => words(4)
                .flat_map(|w| {
                    let w = u32::from_le_bytes(w.try_into().unwrap());
                    [w & 0x3ff, (w >> 10) & 0x3ff, (w >> 20) & 0x3ff]
                })
                .collect(),
        }
    }

    /// `after` is `before` mixed with `src` at `weight`, sample by sample, to within
    /// the tolerance of `samples`.
    fn assert_mixed(before: &[u8], src: &[u8], after: &[u8], weight: f64, samples: Samples) {
        let (d, s, r) = (
            values(before, samples),
            values(src, samples),
            values(after, samples),
        );
        for i in 0..r.len() {
            let exact = (1.0 - weight) * f64::from(d[i]) + weight * f64::from(s[i]);
            assert!(
                (f64::from(r[i]) - exact).abs() <= tolerance(samples) + 1e-9,
                "{samples:?} weight {weight}: {} and {} gave {}, exact {exact}",
                d[i],
                s[i],
                r[i]
            );
        }
    }

    /// Blends a copy of `dst` with `src` through [`blend`] (the AVX2 path where the CPU
    /// has it) and through the portable code, checks both against the exact mix and
    /// that they agree bit for bit, and returns the result.
    fn check_blend(dst: &[u8], src: &[u8], weight: f64, samples: Samples) -> Vec<u8> {
        let mut fast = dst.to_vec();
        blend(&mut fast, src, weight, samples);
        let mut portable = dst.to_vec();
        let bits = if samples == Samples::U8 { 15 } else { 24 };
        if let Some(w) = fixed_weight(&mut portable, src, weight, bits) {
            match samples {
                Samples::U8 => portable::mix_u8(&mut portable, src, w),
                Samples::U16Le => portable::mix_u16le(&mut portable, src, w, 0),
                Samples::U16LeMsb { depth } => {
                    portable::mix_u16le(&mut portable, src, w, 16 - depth)
                }
                Samples::V210 => portable::mix_v210(&mut portable, src, w),
            }
        }
        assert_eq!(fast, portable, "{samples:?} weight {weight}");
        assert_mixed(dst, src, &fast, weight, samples);
        fast
    }

    fn u16le(values: impl IntoIterator<Item = u16>) -> Vec<u8> {
        values.into_iter().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn u8_blend_is_within_half_a_step_for_every_pair_of_samples() {
        let dst: Vec<u8> = (0..=u16::MAX).map(|i| i as u8).collect();
        let src: Vec<u8> = (0..=u16::MAX).map(|i| (i >> 8) as u8).collect();
        for weight in WEIGHTS {
            check_blend(&dst, &src, weight, Samples::U8);
        }
    }

    /// Random pairs, and every pair of the extreme values.
    fn u16_pairs() -> (Vec<u16>, Vec<u16>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let edges = [0, 1, 2, 0x7fff, 0x8000, 0xfffe, u16::MAX];
        let (mut d, mut s): (Vec<u16>, Vec<u16>) =
            (0..1 << 18).map(|_| rng.random::<(u16, u16)>()).unzip();
        for a in edges {
            for b in edges {
                d.push(a);
                s.push(b);
            }
        }
        (d, s)
    }

    #[test]
    fn u16_blend_is_within_half_a_step() {
        let (d, s) = u16_pairs();
        for weight in WEIGHTS {
            check_blend(&u16le(d.clone()), &u16le(s.clone()), weight, Samples::U16Le);
        }
    }

    #[test]
    fn msb_aligned_samples_are_rounded_at_their_own_depth() {
        let (d, s) = u16_pairs();
        for depth in [10, 12] {
            let samples = Samples::U16LeMsb { depth };
            let high = |v: &Vec<u16>| u16le(v.iter().map(|v| v & !(u16::MAX >> depth)));
            for weight in WEIGHTS {
                let r = check_blend(&high(&d), &high(&s), weight, samples);
                let low_bits = values(&r, Samples::U16Le)
                    .iter()
                    .fold(0, |acc, v| acc | v & (u32::MAX >> (16 + depth)));
                assert_eq!(low_bits, 0);
            }
        }
        // 0 and 1 in 10 bits at 0.9 give 0.9: 1, where 57.6 rounded in 16 bits would read as 0.
        let mut dst = u16le([0]);
        blend(&mut dst, &u16le([64]), 0.9, Samples::U16LeMsb { depth: 10 });
        assert_eq!(dst, u16le([64]));
    }

    #[test]
    fn v210_blend_is_within_half_a_step_for_every_pair_of_samples() {
        // Field `f` of word `i` holds pair `3 * i + f`, the samples being its two 10-bit
        // halves, so that the words go through every pair once.
        let words = |sample: fn(u32) -> u32| -> Vec<u8> {
            (0..(1u32 << 20).div_ceil(3))
                .flat_map(|i| {
                    let field = |f: u32| sample((3 * i + f) & 0xf_ffff) << (10 * f);
                    (field(0) | field(1) | field(2)).to_le_bytes()
                })
                .collect()
        };
        let (dst, src) = (words(|pair| pair & 0x3ff), words(|pair| pair >> 10));
        for weight in WEIGHTS {
            check_blend(&dst, &src, weight, Samples::V210);
        }
    }

    #[test]
    fn v210_bits_30_and_31_stay_zero() {
        let dst: Vec<u8> = (0..64u32)
            .flat_map(|i| i.wrapping_mul(0x0123_4567).to_le_bytes())
            .collect();
        let src: Vec<u8> = (0..64u32)
            .flat_map(|i| i.wrapping_mul(0x89ab_cdef).to_le_bytes())
            .collect();
        let mut r = dst.clone();
        blend_into_v210(&mut r, &src, 0.37);
        assert!(r.chunks_exact(4).all(|w| w[3] & 0xc0 == 0));
    }

    const ALL: [Samples; 4] = [
        Samples::U8,
        Samples::U16Le,
        Samples::U16LeMsb { depth: 10 },
        Samples::V210,
    ];

    #[test]
    fn weights_zero_and_one_keep_and_copy_every_byte() {
        let dst: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
        let src: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        for samples in ALL {
            for (weight, expected) in [
                (0.0, &dst),
                (-0.5, &dst),
                (1e-12, &dst),
                (1.0, &src),
                (1.5, &src),
            ] {
                let mut r = dst.clone();
                blend(&mut r, &src, weight, samples);
                assert_eq!(&r, expected, "{samples:?} weight {weight}");
            }
        }
    }

    #[test]
    fn tails_and_unaligned_slices_blend_like_the_rest() {
        let dst: Vec<u8> = (0..300u32).map(|i| (i * 13) as u8 & 0x3f).collect();
        let src: Vec<u8> = (0..300u32).map(|i| (i * 7 + 100) as u8 & 0x3f).collect();
        for samples in ALL {
            let unit = match samples {
                Samples::U8 => 1,
                Samples::U16Le | Samples::U16LeMsb { .. } => 2,
                Samples::V210 => 4,
            };
            for offset in 0..4 {
                for len in (0..=200).step_by(unit) {
                    let range = offset..offset + len;
                    check_blend(&dst[range.clone()], &src[range], 0.37, samples);
                }
            }
        }
    }

    #[test]
    fn formats_map_to_how_they_store_samples() {
        use VideoFormat as F;
        assert_eq!(Samples::for_format(F::I420), Some(Samples::U8));
        assert_eq!(Samples::for_format(F::Rgba), Some(Samples::U8));
        assert_eq!(Samples::for_format(F::I42010le), Some(Samples::U16Le));
        assert_eq!(
            Samples::for_format(F::P01010le),
            Some(Samples::U16LeMsb { depth: 10 })
        );
        assert_eq!(Samples::for_format(F::V210), Some(Samples::V210));
        for f in [
            F::Uyvp,
            F::Y410,
            F::R210,
            F::Nv1210le40,
            F::I42010be,
            F::Rgb16,
            F::Rgb8p,
        ] {
            assert_eq!(Samples::for_format(f), None, "{f:?}");
        }
        gst::init().unwrap();
        for f in F::iter_raw() {
            let info = gst_video::VideoFormatInfo::from_format(f);
            if Samples::for_format(f) == Some(Samples::U8) {
                assert!(
                    info.depth().iter().all(|&d| d == 8) && !info.has_palette(),
                    "{f:?}"
                );
            }
        }
    }

    /// A frame as `info` says, one buffer per plane with room to spare, from random
    /// bytes packed by GStreamer so that it only holds values the format can hold.
    fn random_frame(info: &gst_video::VideoInfo, seed: u64) -> Vec<Vec<u8>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let finfo = info.format_info();
        let mut planes: Vec<Vec<u8>> = (0..info.n_planes() as usize)
            .map(|p| {
                (0..info.stride()[p] as usize * (info.height() as usize + 1))
                    .map(|_| rng.random())
                    .collect()
            })
            .collect();
        let mut row = vec![0u8; 8 * info.width() as usize];
        for y in 0..info.height() as i32 {
            let src: Vec<&[u8]> = planes.iter().map(|p| &p[..]).collect();
            finfo.unpack(
                TRUNCATE,
                &mut row,
                &src,
                info.stride(),
                0,
                y,
                info.width() as i32,
            );
            let mut dest: Vec<&mut [u8]> = planes.iter_mut().map(|p| &mut p[..]).collect();
            let site = gst_video::VideoChromaSite::empty();
            finfo.pack(
                TRUNCATE,
                &row,
                0,
                &mut dest,
                info.stride(),
                site,
                y,
                info.width() as i32,
            );
        }
        planes
    }

    const TRUNCATE: gst_video::VideoPackFlags = gst_video::VideoPackFlags::TRUNCATE_RANGE;

    /// The samples GStreamer reads from each row of `frame`, at the format's depth.
    fn unpacked(info: &gst_video::VideoInfo, frame: &[Vec<u8>]) -> Vec<u32> {
        let finfo = info.format_info();
        let wide = gst_video::VideoFormatInfo::from_format(finfo.unpack_format()).depth()[0] == 16;
        let shift = if wide {
            16 - finfo.depth()[0]
        } else {
            8 - finfo.depth()[0]
        };
        let mut row = vec![0u8; 8 * info.width() as usize];
        let planes: Vec<&[u8]> = frame.iter().map(|p| &p[..]).collect();
        let mut values = Vec::new();
        for y in 0..info.height() as i32 {
            finfo.unpack(
                TRUNCATE,
                &mut row,
                &planes,
                info.stride(),
                0,
                y,
                info.width() as i32,
            );
            if wide {
                values.extend(
                    row.chunks_exact(2)
                        .map(|c| u32::from(u16::from_ne_bytes([c[0], c[1]])) >> shift),
                );
            } else {
                values.extend(
                    row[..4 * info.width() as usize]
                        .iter()
                        .map(|&v| u32::from(v) >> shift),
                );
            }
        }
        values
    }

    /// Blending every format as [`Samples::for_format`] says mixes the samples GStreamer
    /// itself reads from the frames.
    #[test]
    fn formats_blend_as_gstreamer_reads_them() {
        gst::init().unwrap();
        for format in VideoFormat::iter_raw() {
            let Some(samples) = Samples::for_format(format) else {
                continue;
            };
            let info = gst_video::VideoInfo::builder(format, 64, 32)
                .build()
                .unwrap();
            if info
                .format_info()
                .flags()
                .contains(gst_video::VideoFormatFlags::TILED)
            {
                // Tiled strides are not byte counts; these are all 8-bit formats anyway.
                continue;
            }
            let (dst, src) = (random_frame(&info, 1), random_frame(&info, 2));
            let mut mixed = dst.clone();
            let weight = 0.37;
            for (m, s) in mixed.iter_mut().zip(&src) {
                blend(m, s, weight, samples);
            }
            let (d, s, r) = (
                unpacked(&info, &dst),
                unpacked(&info, &src),
                unpacked(&info, &mixed),
            );
            for i in 0..r.len() {
                let exact = (1.0 - weight) * f64::from(d[i]) + weight * f64::from(s[i]);
                assert!(
                    (f64::from(r[i]) - exact).abs() <= tolerance(samples) + 1e-9,
                    "{format:?}: {} and {} gave {}, exact {exact}",
                    d[i],
                    s[i],
                    r[i]
                );
            }
        }
    }
}
