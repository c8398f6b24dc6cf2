//! Still images the user names by path: a mask, an edited first frame, reference
//! images. Each is read and decoded once, when the stream starts, so that a bad file is
//! an error at READY->PAUSED rather than a failed window later.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{GrayImage, ImageReader, Limits, Rgb, RgbImage};

use crate::frame::{RgbFrame, Size};

/// Files above this are refused before they are read: a still of the largest side
/// below is far smaller compressed.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Pictures wider or taller than this are refused before they are decoded.
pub const MAX_SIDE: u32 = 16384;

#[derive(Debug, thiserror::Error)]
pub enum StillError {
    #[error("{path}: cannot read the file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the file is over {} MiB; name a smaller image", MAX_FILE_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("{path}: not a PNG or JPEG image this element can read: {why}")]
    NotAnImage { path: PathBuf, why: String },
}

/// A decoded still, in 8-bit RGB at its own size.
#[derive(Clone)]
pub struct Still {
    path: PathBuf,
    rgb: RgbImage,
}

impl std::fmt::Debug for Still {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Still({}, {})", self.path.display(), self.size())
    }
}

impl Still {
    /// Reads and decodes `path` (PNG or JPEG, told by its content, not its name).
    pub fn open(path: &Path) -> Result<Self, StillError> {
        let read = |source| StillError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        if file.metadata().map_err(read)?.len() > MAX_FILE_BYTES {
            return Err(StillError::TooLarge {
                path: path.to_owned(),
            });
        }
        // The length is checked again while reading: the file may grow meanwhile.
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(StillError::TooLarge {
                path: path.to_owned(),
            });
        }
        let not_an_image = |why: String| StillError::NotAnImage {
            path: path.to_owned(),
            why,
        };
        let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| not_an_image(e.to_string()))?;
        if reader.format().is_none() {
            return Err(not_an_image(
                "its content is of no known image format".into(),
            ));
        }
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        reader.limits(limits);
        let image = reader.decode().map_err(|e| not_an_image(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            rgb: image.into_rgb8(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> Size {
        Size::new(self.rgb.width(), self.rgb.height())
    }

    /// The picture stretched to `size`.
    pub fn rgb(&self, size: Size) -> RgbFrame {
        frame(self.resized(size))
    }

    /// The picture fitted inside `size` with its aspect ratio kept, centred on white:
    /// how Wan VACE takes a reference image of another shape than the video.
    pub fn rgb_letterboxed(&self, size: Size) -> RgbFrame {
        let Size { width, height } = self.size();
        let scale = f64::min(
            size.width as f64 / width as f64,
            size.height as f64 / height as f64,
        );
        let fitted = Size::new(
            ((width as f64 * scale) as u32).clamp(1, size.width),
            ((height as f64 * scale) as u32).clamp(1, size.height),
        );
        let mut canvas = RgbImage::from_pixel(size.width, size.height, Rgb([255; 3]));
        imageops::replace(
            &mut canvas,
            &self.resized(fitted),
            ((size.width - fitted.width) / 2).into(),
            ((size.height - fitted.height) / 2).into(),
        );
        frame(canvas)
    }

    /// The picture's luma stretched to `size`, one byte a pixel, rows unpadded: as a
    /// mask, 255 (white) edits fully and 0 (black) keeps the input.
    pub fn mask(&self, size: Size) -> Vec<u8> {
        stretch_mask(
            image::DynamicImage::ImageRgb8(self.rgb.clone()).into_luma8(),
            size,
        )
    }

    fn resized(&self, size: Size) -> RgbImage {
        if self.rgb.dimensions() == (size.width, size.height) {
            self.rgb.clone()
        } else {
            imageops::resize(&self.rgb, size.width, size.height, FilterType::Triangle)
        }
    }
}

/// A one-byte-a-pixel mask stretched to `size` (rows unpadded): a mask file and an
/// input's alpha channel go to the backend's size through this one filter.
pub fn stretch_mask(mask: GrayImage, size: Size) -> Vec<u8> {
    if mask.dimensions() == (size.width, size.height) {
        return mask.into_raw();
    }
    imageops::resize(&mask, size.width, size.height, FilterType::Triangle).into_raw()
}

fn frame(rgb: RgbImage) -> RgbFrame {
    RgbFrame {
        width: rgb.width(),
        height: rgb.height(),
        data: rgb.into_raw(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(dir: &Path, name: &str, image: &RgbImage) -> PathBuf {
        let path = dir.join(name);
        image.save(&path).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wanedit-still-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_png_is_read_stretched_and_masked() {
        let dir = temp_dir("png");
        // Left half white, right half black.
        let image = RgbImage::from_fn(8, 4, |x, _| Rgb(if x < 4 { [255; 3] } else { [0; 3] }));
        let path = write_png(&dir, "half.png", &image);
        let still = Still::open(&path).unwrap();
        assert_eq!(still.size(), Size::new(8, 4));
        assert_eq!(
            still.mask(Size::new(8, 4)),
            image.pixels().map(|p| p.0[0]).collect::<Vec<_>>()
        );
        let small = still.mask(Size::new(4, 2));
        assert_eq!(small.len(), 8);
        assert_eq!((small[0], small[3]), (255, 0));
        let large = still.rgb(Size::new(16, 8));
        assert_eq!((large.pixel(0, 7), large.pixel(15, 0)), ([255; 3], [0; 3]));
    }

    #[test]
    fn a_reference_of_another_shape_is_centred_on_white() {
        let dir = temp_dir("letterbox");
        let path = write_png(&dir, "black.png", &RgbImage::new(4, 4));
        let boxed = Still::open(&path).unwrap().rgb_letterboxed(Size::new(8, 4));
        assert_eq!((boxed.width, boxed.height), (8, 4));
        assert_eq!(boxed.pixel(0, 0), [255; 3], "white beside the picture");
        assert_eq!(boxed.pixel(2, 0), [0; 3]);
        assert_eq!(boxed.pixel(5, 3), [0; 3]);
        assert_eq!(boxed.pixel(6, 3), [255; 3]);
    }

    #[test]
    fn missing_and_foreign_files_are_clear_errors() {
        let dir = temp_dir("bad");
        let missing = Still::open(&dir.join("nowhere.png"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("nowhere.png: cannot read the file"),
            "{missing}"
        );

        let text = dir.join("notes.png");
        std::fs::write(&text, "not a picture").unwrap();
        let foreign = Still::open(&text).unwrap_err().to_string();
        assert!(
            foreign.contains("notes.png: not a PNG or JPEG image"),
            "{foreign}"
        );

        let truncated = dir.join("cut.png");
        let whole = std::fs::read(write_png(&dir, "whole.png", &RgbImage::new(64, 64))).unwrap();
        std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
        let cut = Still::open(&truncated).unwrap_err().to_string();
        assert!(cut.contains("cut.png: not a PNG or JPEG image"), "{cut}");
    }

    #[test]
    fn a_picture_beyond_the_largest_side_is_refused_before_decoding() {
        let dir = temp_dir("huge");
        // One row of 16385 pixels: over the side the decoder is allowed.
        let path = write_png(&dir, "wide.png", &RgbImage::new(MAX_SIDE + 1, 1));
        let error = Still::open(&path).unwrap_err().to_string();
        assert!(
            error.contains("wide.png: not a PNG or JPEG image"),
            "{error}"
        );
    }
}
