//! What a VACE model is given besides the window: reference images, the mask, and the
//! frames it must keep (known frames).
//!
//! A known frame is a frame of the window whose mask is 0 everywhere: the model keeps
//! it and makes the rest of the window follow it. Two kinds are known: the `first-frame`
//! image in the first window after the start or a flush, and, with `seam=anchor`, the
//! frames a window shares with the one before (the element has already put the edit of
//! the window before in their place).

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::super::{BackendError, ConfigError, Size, WindowAnchor, WindowMask};
use crate::still::Still;
use crate::wan::{self, VaceConditions};

/// At most this many reference images: each is one more latent frame in every step.
pub const MAX_REFERENCES: usize = 4;

/// The still images of a VACE edit, decoded when the backend is made.
#[derive(Debug, Default)]
pub struct Stills {
    references: Vec<Still>,
    first_frame: Option<Still>,
}

impl Stills {
    pub fn open(
        references: &[impl AsRef<Path>],
        first_frame: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let open = |property, path: &Path| {
            Still::open(path).map_err(|e| ConfigError::Invalid {
                property,
                why: e.to_string(),
            })
        };
        Ok(Self {
            references: references
                .iter()
                .map(|p| open("reference-image", p.as_ref()))
                .collect::<Result<_, _>>()?,
            first_frame: first_frame.map(|p| open("first-frame", p)).transpose()?,
        })
    }

    /// The conditions of one window, `video` being its `[F, H, W, 3]` frames in [0, 1].
    pub fn conditions(
        &self,
        video: Tensor,
        window: u64,
        anchor: Option<&WindowAnchor>,
        mask: Option<WindowMask>,
    ) -> Result<VaceConditions, BackendError> {
        let failed = |e: wan::WanError| BackendError::Model(e.to_string());
        let tensor_failed = |e: candle_core::Error| BackendError::Model(e.to_string());
        let device = video.device().clone();
        let (frames, height, width, _) = video.dims4().map_err(tensor_failed)?;
        let size = Size::new(width as u32, height as u32);

        let mut video = video;
        let mut known = 0;
        if let Some(anchor) = anchor {
            known = anchor.shared.min(frames);
        }
        if let (Some(first), 0) = (&self.first_frame, window) {
            let image = wan::frames_from_rgb8(&[first.rgb(size).data], width, height, &device)
                .map_err(failed)?;
            let rest = video.narrow(0, 1, frames - 1).map_err(tensor_failed)?;
            video = Tensor::cat(&[&image, &rest], 0).map_err(tensor_failed)?;
            known = known.max(1);
        }

        let mask = match mask {
            Some(mask) => {
                let bytes = mask.take(frames).collect::<Result<Vec<_>, _>>()?.concat();
                if bytes.len() != frames * height * width {
                    return Err(BackendError::Frames(format!(
                        "{} mask bytes for {frames} frames of {size}",
                        bytes.len()
                    )));
                }
                Some(
                    Tensor::from_vec(bytes, (frames, height, width), &device)
                        .and_then(|m| m.to_dtype(DType::F32))
                        .and_then(|m| m.affine(1.0 / 255.0, 0.0))
                        .map_err(tensor_failed)?,
                )
            }
            None if known > 0 => Some(
                Tensor::ones((frames, height, width), DType::F32, &device)
                    .map_err(tensor_failed)?,
            ),
            None => None,
        };
        let mask = match mask {
            Some(mask) if known > 0 => {
                Some(keep_frames(&mask, known, &device).map_err(tensor_failed)?)
            }
            mask => mask,
        };

        let reference_images = if self.references.is_empty() {
            None
        } else {
            let pixels: Vec<Vec<u8>> = self
                .references
                .iter()
                .map(|still| still.rgb_letterboxed(size).data)
                .collect();
            Some(wan::frames_from_rgb8(&pixels, width, height, &device).map_err(failed)?)
        };
        Ok(VaceConditions {
            video,
            mask,
            reference_images,
            conditioning_scale: vec![1.0],
        })
    }
}

/// `mask` with its first `known` frames set to 0: kept as they are.
fn keep_frames(mask: &Tensor, known: usize, device: &Device) -> candle_core::Result<Tensor> {
    let (frames, height, width) = mask.dims3()?;
    let kept = Tensor::zeros((known, height, width), DType::F32, device)?;
    if known == frames {
        return Ok(kept);
    }
    Tensor::cat(&[&kept, &mask.narrow(0, known, frames - known)?], 0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use image::{Rgb, RgbImage};

    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// 5 frames of 4x2, frame i all i/10.
    fn video() -> Tensor {
        let frames: Vec<Tensor> = (0..5)
            .map(|i| Tensor::full(i as f32 / 10.0, (1, 2, 4, 3), &Device::Cpu).unwrap())
            .collect();
        Tensor::cat(&frames, 0).unwrap()
    }

    fn still(name: &str, rgb: [u8; 3]) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("wanedit-vace-{name}-{}.png", std::process::id()));
        RgbImage::from_pixel(2, 2, Rgb(rgb)).save(&path).unwrap();
        path
    }

    fn anchor(shared: usize) -> WindowAnchor {
        WindowAnchor {
            shared,
            offset: 4,
            continuation: None,
            strength: 1.0,
        }
    }

    #[test]
    fn without_a_mask_or_known_frames_the_model_edits_everywhere() {
        let conditions = Stills::default()
            .conditions(video(), 0, None, None)
            .unwrap();
        assert!(conditions.mask.is_none());
        assert!(conditions.reference_images.is_none());
        assert_eq!(values(&conditions.video), values(&video()));
    }

    #[test]
    fn the_first_frame_is_known_in_the_first_window_only() {
        let white = still("white", [255; 3]);
        let stills = Stills::open(&[] as &[&Path], Some(&white)).unwrap();
        let first = stills.conditions(video(), 0, None, None).unwrap();
        assert_eq!(first.video.dims(), &[5, 2, 4, 3]);
        let frame0 = values(&first.video.get(0).unwrap());
        assert!(
            frame0.iter().all(|&v| v == 1.0),
            "the image stands for frame 0"
        );
        assert_eq!(
            values(&first.video.narrow(0, 1, 4).unwrap()),
            values(&video().narrow(0, 1, 4).unwrap())
        );
        let mask = values(&first.mask.unwrap());
        assert!(mask[..8].iter().all(|&m| m == 0.0), "frame 0 is kept");
        assert!(mask[8..].iter().all(|&m| m == 1.0), "the rest is generated");

        let later = stills.conditions(video(), 1, None, None).unwrap();
        assert_eq!(values(&later.video), values(&video()));
        assert!(later.mask.is_none());
    }

    #[test]
    fn an_anchored_window_keeps_the_frames_it_shares_inside_the_users_mask() {
        // The user's mask: the left half edited in every frame.
        let mask = WindowMask::uniform(
            Size::new(4, 2),
            5,
            Arc::from(vec![255, 255, 0, 0, 255, 255, 0, 0]),
        );
        let conditions = Stills::default()
            .conditions(video(), 3, Some(&anchor(2)), Some(mask))
            .unwrap();
        let mask = values(&conditions.mask.unwrap());
        assert!(
            mask[..16].iter().all(|&m| m == 0.0),
            "the 2 shared frames are known"
        );
        assert_eq!(&mask[16..24], &[1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(
            values(&conditions.video),
            values(&video()),
            "the element put the frames in place"
        );
    }

    #[test]
    fn reference_images_are_letterboxed_to_the_window() {
        let red = still("red", [255, 0, 0]);
        let blue = still("blue", [0, 0, 255]);
        let stills = Stills::open(&[&red, &blue], None).unwrap();
        let refs = stills
            .conditions(video(), 0, None, None)
            .unwrap()
            .reference_images
            .unwrap();
        assert_eq!(refs.dims(), &[2, 2, 4, 3]);
        // A square image in a 4x2 window: 2x2 in the middle, white beside it.
        let pixel =
            |r: usize, x: usize| values(&refs.get(r).unwrap().get(0).unwrap().get(x).unwrap());
        assert_eq!(pixel(0, 0), [1.0, 1.0, 1.0]);
        assert_eq!(pixel(0, 1), [1.0, 0.0, 0.0]);
        assert_eq!(pixel(1, 2), [0.0, 0.0, 1.0]);
        assert_eq!(pixel(1, 3), [1.0, 1.0, 1.0]);
    }

    #[test]
    fn a_missing_still_names_its_property_and_path() {
        let error = Stills::open(&[Path::new("/nowhere/ref.png")], None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("reference-image: /nowhere/ref.png: cannot read the file"),
            "{error}"
        );
        let error = Stills::open(&[] as &[&Path], Some(Path::new("/nowhere/first.jpg")))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("first-frame: /nowhere/first.jpg"),
            "{error}"
        );
    }
}
