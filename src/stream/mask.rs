//! The `mask` property: where each output frame takes the edit and where it keeps the
//! input. Every edited frame, whatever the backend, is composed with its input frame as
//! `out = (m * edit + (255 - m) * input + 127) / 255` per sample, at the stream's own
//! format and depth, the input's alpha kept. Where `m` is 0 the output is the input bit
//! for bit.
//!
//! The element accepts planar, semi-planar and packed formats of 8, 10 and 12 bits, so
//! frames are composed line by line in GStreamer's unpack format (AYUV or ARGB, 8 or 16
//! bits a sample) and packed back, which holds every format alike. Packing keeps one
//! chroma sample per block of pixels (4:2:0, 4:2:2), so chroma is composed with the
//! smallest `m` of its block: a chroma sample covering any pixel to be kept is the
//! input's, and those pixels stay bit-exact.

use std::sync::Arc;

use gst::glib::translate::{IntoGlib, ToGlibPtr};
use gst_video::prelude::*;
use gst_video::{VideoFormat, VideoFrameRef, VideoInfo};
use image::GrayImage;

use crate::frame::Size;
use crate::still::{self, Still};

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("a mask cannot be applied to {0:?} frames (no line unpacking for the format)")]
    Format(VideoFormat),
    #[error("cannot map a frame to apply the mask: {0}")]
    Map(gst::glib::BoolError),
    #[error(
        "mask=alpha needs input with an alpha channel ({ALPHA_FORMATS}), not {0:?}: feed \
         one of those (videoconvert can) or set mask to none or the path of an image"
    )]
    NoAlpha(VideoFormat),
    #[error("the mask is {got} bytes, not one per pixel of {size}")]
    Size { got: usize, size: Size },
}

/// The formats `mask=alpha` reads, as the error naming them says.
pub const ALPHA_FORMATS: &str = "RGBA, BGRA, ARGB, ABGR, AYUV or A420";

/// The `mask` property made ready at READY->PAUSED (a file read and decoded then, so
/// that a bad file fails there), to be fitted to each caps.
#[derive(Debug, Clone)]
pub enum StreamMask {
    Alpha { invert: bool },
    Still { still: Arc<Still>, invert: bool },
}

impl StreamMask {
    /// The mask of frames of `info` sent to the backend at `send`: a file stretched to
    /// both sizes once, here, rather than per frame.
    pub fn for_caps(&self, info: &VideoInfo, send: Size) -> Result<FrameMask, MaskError> {
        match self {
            StreamMask::Alpha { invert } if has_alpha(info.format()) => {
                Ok(FrameMask::Alpha { invert: *invert })
            }
            StreamMask::Alpha { .. } => Err(MaskError::NoAlpha(info.format())),
            StreamMask::Still { still, invert } => {
                let fitted = |size| {
                    let mut mask = still.mask(size);
                    if *invert {
                        mask.iter_mut().for_each(|m| *m = 255 - *m);
                    }
                    mask.into()
                };
                Ok(FrameMask::Fixed {
                    stream: fitted(Size::new(info.width(), info.height())),
                    sent: fitted(send),
                })
            }
        }
    }
}

/// Where the mask of each frame of one caps comes from.
#[derive(Debug, Clone)]
pub enum FrameMask {
    /// Each input frame's alpha channel (`255 - alpha` where inverted).
    Alpha { invert: bool },
    /// One mask for every frame (a file), one byte a pixel: at the stream's size for
    /// composing, at the size windows are sent at for the backend.
    Fixed { stream: Arc<[u8]>, sent: Arc<[u8]> },
}

/// Whether frames of `format` carry an alpha channel `mask=alpha` can read.
pub fn has_alpha(format: VideoFormat) -> bool {
    gst_video::VideoFormatInfo::from_format(format).has_alpha()
}

/// `(m * edit + (255 - m) * input + 127) / 255`: the input exactly where `m` is 0, the
/// edit exactly where it is 255.
#[inline(always)]
fn mix(input: u32, edit: u32, m: u32) -> u32 {
    (m * edit + (255 - m) * input + 127) / 255
}

/// The weight of each sample of an unpacked line: 0 for alpha (the input's is kept), `m`
/// for the first component, `mc` for the two others (chroma, or G and B).
fn sample_weights(weights: &mut [u8], m: &[u8], mc: &[u8]) {
    for (w, (&m, &mc)) in weights.chunks_exact_mut(4).zip(m.iter().zip(mc)) {
        w.copy_from_slice(&[0, m, mc, mc]);
    }
}

/// Composes one unpacked line of 8-bit samples into `edit`, sample by sample.
///
/// In 16-bit lanes, so that the loop vectorises wide: `m * e + (255 - m) * i + 127` is
/// at most 65152, and below 65535 `x / 255` is `(x + 1 + (x >> 8)) >> 8`.
fn compose_u8(edit: &mut [u8], input: &[u8], weights: &[u8]) {
    for ((e, &i), &m) in edit.iter_mut().zip(input).zip(weights) {
        let (e16, i16, m16) = (u16::from(*e), u16::from(i), u16::from(m));
        let x = m16 * e16 + (255 - m16) * i16 + 127;
        *e = ((x + 1 + (x >> 8)) >> 8) as u8;
    }
}

/// Composes one unpacked line of native-endian 16-bit words into `edit`. Samples are
/// `depth`-bit values in the high bits of their word (unpacked with `TRUNCATE_RANGE`),
/// mixed at that depth so that the packed result is the mix of the stream's own samples.
fn compose_u16(edit: &mut [u8], input: &[u8], weights: &[u8], shift: u32) {
    let (edit, _) = edit.as_chunks_mut::<2>();
    let (input, _) = input.as_chunks::<2>();
    for ((e, i), &m) in edit.iter_mut().zip(input).zip(weights) {
        let (ev, iv) = (
            u16::from_ne_bytes(*e) >> shift,
            u16::from_ne_bytes(*i) >> shift,
        );
        let mixed = mix(iv.into(), ev.into(), m.into()) << shift;
        *e = (mixed as u16).to_ne_bytes();
    }
}

/// The alpha of an unpacked line (AYUV/ARGB, or their 64-bit forms where `wide`), in
/// 8 bits, or `255 - alpha` where `invert`.
fn alpha_of(line: &[u8], wide: bool, invert: bool, out: &mut [u8]) {
    let pixel = if wide { 8 } else { 4 };
    let flip = if invert { 255 } else { 0 };
    for (o, p) in out.iter_mut().zip(line.chunks_exact(pixel)) {
        let alpha = match wide {
            true => (u16::from_ne_bytes([p[0], p[1]]) >> 8) as u8,
            false => p[0],
        };
        *o = alpha ^ flip;
    }
}

/// GStreamer's line packing and unpacking of one format.
///
/// `VideoFormatInfo::{pack, unpack}` check each plane as if it had the frame's height,
/// which subsampled chroma planes have not: they would panic on the last lines of an
/// I420 frame. The format's own functions are called instead, with the frame's planes
/// as mapped.
struct Lines {
    format: gst_video::VideoFormatInfo,
    /// Bytes a pixel of the unpack format.
    pixel: usize,
    /// The unpack line's width rounded up, with room for the formats that unpack whole
    /// groups of pixels (v210: six).
    room: usize,
}

impl Lines {
    fn new(format: VideoFormat, width: u32) -> Result<Self, MaskError> {
        let info = gst_video::VideoFormatInfo::from_format(format);
        let pixel = match info.unpack_format() {
            VideoFormat::Ayuv | VideoFormat::Argb => 4,
            VideoFormat::Ayuv64 | VideoFormat::Argb64 => 8,
            _ => return Err(MaskError::Format(format)),
        };
        let raw = Self::raw(&info);
        if raw.pack_func.is_none() || raw.unpack_func.is_none() || raw.pack_lines != 1 {
            return Err(MaskError::Format(format));
        }
        Ok(Self {
            format: info,
            pixel,
            room: (width as usize + 64) * pixel,
        })
    }

    fn raw(info: &gst_video::VideoFormatInfo) -> &'static gst_video::ffi::GstVideoFormatInfo {
        // SAFETY: format infos are the library's static tables, never freed.
        unsafe { &*info.to_glib_none().0 }
    }

    fn line(&self) -> Vec<u8> {
        vec![0; self.room]
    }

    /// Unpacks line `y` of `frame` into `dest`.
    fn unpack<T>(&self, frame: &VideoFrameRef<T>, y: u32, dest: &mut [u8]) {
        assert!(y < frame.height() && dest.len() >= self.room);
        let info = Self::raw(&self.format);
        let unpack = info.unpack_func.expect("checked in new");
        let mapped = frame.as_ptr();
        // SAFETY: `frame` is mapped, with its planes and strides in `mapped`; `y` is one of
        // its lines and `width` its width, so the format's function reads inside the
        // planes; `dest` holds the line with room to spare (checked above).
        unsafe {
            unpack(
                info,
                gst_video::ffi::GST_VIDEO_PACK_FLAG_TRUNCATE_RANGE,
                dest.as_mut_ptr().cast(),
                (*mapped).data.as_ptr().cast(),
                (*mapped).info.stride.as_ptr(),
                0,
                y as i32,
                frame.width() as i32,
            );
        }
    }

    /// Packs `src` into line `y` of `frame`.
    fn pack(&self, src: &[u8], frame: &mut VideoFrameRef<&mut gst::BufferRef>, y: u32) {
        assert!(y < frame.height() && src.len() >= self.room);
        let info = Self::raw(&self.format);
        let pack = info.pack_func.expect("checked in new");
        let site = frame.info().chroma_site().into_glib();
        let mapped = frame.as_mut_ptr();
        // SAFETY: as in `unpack`, with `frame` mapped writable; the function only reads
        // `src`, which holds the line.
        unsafe {
            pack(
                info,
                gst_video::ffi::GST_VIDEO_PACK_FLAG_NONE,
                src.as_ptr().cast_mut().cast(),
                src.len() as i32,
                (*mapped).data.as_mut_ptr(),
                (*mapped).info.stride.as_ptr(),
                site,
                y as i32,
                frame.width() as i32,
            );
        }
    }
}

/// Composes edited frames with their inputs for one caps, reusing its line buffers.
pub struct MaskCompositor {
    info: VideoInfo,
    mask: FrameMask,
    lines: Lines,
    /// Samples are `depth`-bit values in the high bits of 16-bit words: the shift down.
    shift: u32,
    wide: bool,
    /// Whether the format has alpha, which the input's must replace in every row.
    alpha: bool,
    /// log2 of the chroma block's width and height.
    chroma_sub: (u32, u32),
    /// One chroma block's rows: the input's and the edit's unpacked lines, and the mask.
    input: Vec<Vec<u8>>,
    edit: Vec<Vec<u8>>,
    masks: Vec<Vec<u8>>,
    /// The smallest mask over each pixel's chroma block.
    chroma: Vec<u8>,
    /// The weight of each sample of a line (see [`sample_weights`]).
    weights: Vec<u8>,
}

impl MaskCompositor {
    pub fn new(info: &VideoInfo, mask: FrameMask) -> Result<Self, MaskError> {
        let width = info.width() as usize;
        if let FrameMask::Fixed { stream, .. } = &mask
            && stream.len() != width * info.height() as usize
        {
            return Err(MaskError::Size {
                got: stream.len(),
                size: Size::new(info.width(), info.height()),
            });
        }
        let lines = Lines::new(info.format(), info.width())?;
        let finfo = info.format_info();
        let chroma_sub = match (finfo.n_components() >= 3, finfo.is_yuv()) {
            (true, true) => (finfo.w_sub()[1], finfo.h_sub()[1]),
            _ => (0, 0),
        };
        let wide = lines.pixel == 8;
        let depth = finfo.depth()[0];
        let rows = 1 << chroma_sub.1;
        Ok(Self {
            info: info.clone(),
            mask,
            shift: if wide { 16 - depth } else { 0 },
            wide,
            alpha: finfo.has_alpha(),
            chroma_sub,
            input: (0..rows).map(|_| lines.line()).collect(),
            edit: (0..rows).map(|_| lines.line()).collect(),
            masks: vec![vec![0; width]; rows],
            chroma: vec![0; width],
            weights: vec![0; 4 * width],
            lines,
        })
    }

    /// Composes `edit` (in the default layout of the stream's format) with `input` (laid
    /// out as the stream's buffers are), in place.
    pub fn composite(
        &mut self,
        edit: &mut gst::BufferRef,
        input: &gst::BufferRef,
    ) -> Result<(), MaskError> {
        let info = &self.info;
        let src = VideoFrameRef::from_buffer_ref_readable(input, info).map_err(MaskError::Map)?;
        let mut dst =
            VideoFrameRef::from_buffer_ref_writable(edit, info).map_err(MaskError::Map)?;
        let (width, height) = (info.width() as usize, info.height());
        let rows = 1u32 << self.chroma_sub.1;
        for top in (0..height).step_by(rows as usize) {
            let block = rows.min(height - top) as usize;
            for r in 0..block {
                let y = top + r as u32;
                self.lines.unpack(&src, y, &mut self.input[r]);
                match &self.mask {
                    FrameMask::Fixed { stream, .. } => {
                        let at = y as usize * width;
                        self.masks[r].copy_from_slice(&stream[at..at + width]);
                    }
                    FrameMask::Alpha { invert } => {
                        alpha_of(&self.input[r], self.wide, *invert, &mut self.masks[r])
                    }
                }
            }
            // Rows wholly kept or wholly edited (most of them, for a lower third or a
            // logo) skip the mixing: kept rows are the input packed again, and edited
            // rows of a format without alpha are the edit as it stands.
            let rows_all = |v: u8| {
                self.masks[..block]
                    .iter()
                    .all(|m| m.iter().all(|&x| x == v))
            };
            if !self.alpha && rows_all(255) {
                continue;
            }
            let kept = rows_all(0);
            if !kept {
                self.chroma_mask(block);
            }
            for r in 0..block {
                let y = top + r as u32;
                if kept {
                    self.lines.pack(&self.input[r], &mut dst, y);
                    continue;
                }
                // The edit is read before its line is written back.
                self.lines.unpack(&dst, y, &mut self.edit[r]);
                let (edit, input) = (&mut self.edit[r], &self.input[r]);
                sample_weights(&mut self.weights, &self.masks[r], &self.chroma);
                let samples = 4 * width * if self.wide { 2 } else { 1 };
                let (edit_line, input_line) = (&mut edit[..samples], &input[..samples]);
                match self.wide {
                    true => compose_u16(edit_line, input_line, &self.weights, self.shift),
                    false => compose_u8(edit_line, input_line, &self.weights),
                }
                self.lines.pack(edit, &mut dst, y);
            }
        }
        Ok(())
    }

    /// The smallest mask over each pixel's chroma block, from the block's `rows` rows.
    fn chroma_mask(&mut self, rows: usize) {
        let (first, rest) = self.masks.split_at(1);
        self.chroma.copy_from_slice(&first[0]);
        for row in &rest[..rows - 1] {
            for (c, &m) in self.chroma.iter_mut().zip(row) {
                *c = (*c).min(m);
            }
        }
        let across = 1 << self.chroma_sub.0;
        if across > 1 {
            for block in self.chroma.chunks_mut(across) {
                let least = block.iter().copied().min().unwrap_or(0);
                block.fill(least);
            }
        }
    }

    /// The mask of `input` at `size`, one byte a pixel, as the backend is given it.
    pub fn sent_mask(&mut self, input: &gst::BufferRef, size: Size) -> Result<Vec<u8>, MaskError> {
        let (width, height) = (self.info.width(), self.info.height());
        let stream = match &self.mask {
            FrameMask::Fixed { sent, .. } => return Ok(sent.to_vec()),
            FrameMask::Alpha { invert } => {
                let invert = *invert;
                let src = VideoFrameRef::from_buffer_ref_readable(input, &self.info)
                    .map_err(MaskError::Map)?;
                let mut alpha = GrayImage::new(width, height);
                for (y, out) in (0..height).zip(alpha.chunks_exact_mut(width as usize)) {
                    self.lines.unpack(&src, y, &mut self.input[0]);
                    alpha_of(&self.input[0], self.wide, invert, out);
                }
                alpha
            }
        };
        Ok(still::stretch_mask(stream, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element's formats, and the ones with alpha `mask=alpha` reads.
    fn formats() -> Vec<VideoFormat> {
        crate::wanedit::FORMATS.to_vec()
    }

    /// A frame of `info` packed from pseudo-random unpacked lines: every byte a packing
    /// makes, so that unpacking and packing it again must give it back.
    fn random_frame(info: &VideoInfo, seed: u32) -> gst::Buffer {
        let lines = Lines::new(info.format(), info.width()).unwrap();
        let mut buffer = gst::Buffer::with_size(info.size()).unwrap();
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.map_writable().unwrap().fill(0);
            let mut frame = VideoFrameRef::from_buffer_ref_writable(buffer, info).unwrap();
            let mut state = seed.wrapping_mul(2_654_435_761).max(1);
            let mut line = lines.line();
            for y in 0..info.height() {
                for b in line.iter_mut() {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    *b = state as u8;
                }
                lines.pack(&line, &mut frame, y);
            }
        }
        buffer
    }

    fn info(format: VideoFormat) -> VideoInfo {
        gst::init().unwrap();
        // Odd height, and a width that is no multiple of v210's six pixels.
        VideoInfo::builder(format, 28, 9).build().unwrap()
    }

    fn composed(
        info: &VideoInfo,
        mask: Vec<u8>,
        input: &gst::Buffer,
        edit: &gst::Buffer,
    ) -> gst::Buffer {
        let n = mask.len();
        let mask = FrameMask::Fixed {
            stream: mask.into(),
            sent: vec![0; n].into(),
        };
        let mut out = edit.copy_deep().unwrap();
        let mut compositor = MaskCompositor::new(info, mask).unwrap();
        compositor.composite(out.make_mut(), input).unwrap();
        out
    }

    fn bytes(buffer: &gst::Buffer) -> Vec<u8> {
        buffer.map_readable().unwrap().to_vec()
    }

    #[test]
    fn the_element_takes_formats_with_alpha() {
        gst::init().unwrap();
        for format in [VideoFormat::Ayuv, VideoFormat::A420, VideoFormat::Rgba] {
            assert!(formats().contains(&format), "{format:?}");
            assert!(has_alpha(format));
        }
        assert!(!has_alpha(VideoFormat::I420));
    }

    #[test]
    fn outside_the_mask_every_format_keeps_the_input_bit_for_bit() {
        for format in formats() {
            let info = info(format);
            let pixels = (info.width() * info.height()) as usize;
            let input = random_frame(&info, 1);
            let edit = random_frame(&info, 2);
            assert_ne!(bytes(&input), bytes(&edit), "{format:?}");
            // Unpacking and packing again is exact.
            assert_eq!(
                bytes(&composed(&info, vec![0; pixels], &input, &edit)),
                bytes(&input),
                "{format:?}: m = 0 is not the input"
            );
            // Where m = 255, the edit's colours, the input's alpha (or padding).
            let all = composed(&info, vec![255; pixels], &input, &edit);
            for y in 0..info.height() {
                for x in 0..info.width() as usize {
                    let (o, e) = (pixel(&info, &all, x, y), pixel(&info, &edit, x, y));
                    let alpha = o.len() / 4;
                    assert_eq!(o[alpha..], e[alpha..], "{format:?} at {x},{y}");
                }
            }
        }
    }

    /// The unpacked pixel (x, y) of `buffer`.
    fn pixel(info: &VideoInfo, buffer: &gst::Buffer, x: usize, y: u32) -> Vec<u8> {
        let lines = Lines::new(info.format(), info.width()).unwrap();
        let frame = VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), info).unwrap();
        let mut line = lines.line();
        lines.unpack(&frame, y, &mut line);
        line[x * lines.pixel..(x + 1) * lines.pixel].to_vec()
    }

    #[test]
    fn a_chroma_sample_covering_a_kept_pixel_is_the_input() {
        for format in formats() {
            let info = info(format);
            let (width, height) = (info.width() as usize, info.height());
            let input = random_frame(&info, 3);
            let edit = random_frame(&info, 4);
            // Edit everywhere but pixel (1, 1).
            let mut mask = vec![255; width * height as usize];
            mask[width + 1] = 0;
            let out = composed(&info, mask, &input, &edit);
            assert_eq!(
                pixel(&info, &out, 1, 1),
                pixel(&info, &input, 1, 1),
                "{format:?}"
            );
            // Far from it, the edit (alpha aside).
            let (far, edited) = (pixel(&info, &out, 20, 6), pixel(&info, &edit, 20, 6));
            let alpha = far.len() / 4;
            assert_eq!(far[alpha..], edited[alpha..], "{format:?}");
        }
    }

    #[test]
    fn samples_mix_at_the_streams_depth_and_alpha_is_kept() {
        // 10-bit: the mix of the 10-bit samples, not of their 16-bit unpacking.
        for (format, m) in [(VideoFormat::I42010le, 128u8), (VideoFormat::Rgba, 77)] {
            let info = info(format);
            let pixels = (info.width() * info.height()) as usize;
            let (input, edit) = (random_frame(&info, 5), random_frame(&info, 6));
            let out = composed(&info, vec![m; pixels], &input, &edit);
            let (o, i, e) = (
                pixel(&info, &out, 3, 2),
                pixel(&info, &input, 3, 2),
                pixel(&info, &edit, 3, 2),
            );
            if format == VideoFormat::Rgba {
                assert_eq!(o[0], i[0], "alpha is the input's");
                for c in 1..4 {
                    let want = mix(i[c].into(), e[c].into(), m.into());
                    assert_eq!(u32::from(o[c]), want);
                }
            } else {
                let word = |p: &[u8]| u32::from(u16::from_ne_bytes([p[2], p[3]])) >> 6;
                assert_eq!(word(&o), mix(word(&i), word(&e), m.into()));
            }
        }
    }

    #[test]
    fn alpha_is_the_mask_and_is_sent_at_the_backends_size() {
        let info = info(VideoFormat::Rgba);
        let input = random_frame(&info, 7);
        let edit = random_frame(&info, 8);
        let mut out = edit.copy_deep().unwrap();
        let mut compositor =
            MaskCompositor::new(&info, FrameMask::Alpha { invert: false }).unwrap();
        compositor.composite(out.make_mut(), &input).unwrap();
        let (o, i, e) = (bytes(&out), bytes(&input), bytes(&edit));
        for p in (0..o.len()).step_by(4) {
            let a = u32::from(i[p + 3]);
            assert_eq!(o[p + 3], i[p + 3]);
            for c in 0..3 {
                let want = mix(i[p + c].into(), e[p + c].into(), a);
                assert_eq!(u32::from(o[p + c]), want);
            }
        }
        let full = compositor.sent_mask(&input, Size::new(28, 9)).unwrap();
        let alphas: Vec<u8> = i.chunks_exact(4).map(|p| p[3]).collect();
        assert_eq!(full, alphas);
        assert_eq!(
            compositor
                .sent_mask(&input, Size::new(14, 5))
                .unwrap()
                .len(),
            70
        );
    }

    #[test]
    fn alpha_needs_a_format_with_alpha() {
        let i420 = info(VideoFormat::I420);
        let error = StreamMask::Alpha { invert: false }
            .for_caps(&i420, Size::new(8, 8))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("RGBA, BGRA, ARGB, ABGR, AYUV or A420"),
            "{error}"
        );
        assert!(error.contains("I420"), "{error}");
        assert!(error.contains("set mask to none"), "{error}");
    }
}
