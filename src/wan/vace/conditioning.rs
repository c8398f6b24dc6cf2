//! The control latents of a VACE generation, built as `WanVACEPipeline` builds them.

use candle_core::{DType, Tensor};

use super::VaceConditions;
use crate::wan::WanModel;
use crate::wan::error::{Result, WanError};
use crate::wan::pipeline::pixels;

/// One conditioning scale per VACE layer: `given` as it is, or its one number repeated.
pub(super) fn scales(given: &[f64], layers: usize) -> Result<Vec<f64>> {
    match given {
        [one] => Ok(vec![*one; layers]),
        all if all.len() == layers => Ok(all.to_vec()),
        _ => Err(WanError::InvalidInput(format!(
            "{} conditioning scales for a model with {layers} VACE layers: give one, or one per layer",
            given.len()
        ))),
    }
}

/// The mask `[F, H, W]` packed as the transformer takes it: each `spatial` x `spatial`
/// block of pixels onto the channels, `[spatial^2, refs + latent_frames, H/s, W/s]`, the
/// frames taken by torch's "nearest-exact" interpolation, and `refs` zero frames first.
pub(super) fn pack_mask(
    mask: &Tensor,
    spatial: usize,
    latent_frames: usize,
    refs: usize,
) -> Result<Tensor> {
    let (f, h, w) = mask.dims3()?;
    let (hs, ws) = (h / spatial, w / spatial);
    let packed = mask
        .reshape((f, hs, spatial, ws, spatial))?
        .permute([2, 4, 0, 1, 3])?
        .reshape((spatial * spatial, f, hs, ws))?;
    // torch: a float scale, the source index computed in double.
    let scale = f64::from(f as f32 / latent_frames as f32);
    let index: Vec<u32> = (0..latent_frames)
        .map(|d| (((d as f64 + 0.5) * scale).floor() as usize).min(f - 1) as u32)
        .collect();
    let index = Tensor::new(index, mask.device())?;
    Ok(packed.index_select(&index, 1)?.pad_with_zeros(1, refs, 0)?)
}

impl WanModel {
    /// The control latents `[1, 2 z + s^2, R + T, h, w]` of `conditions` (the video's
    /// normalised latents outside and inside the mask, then the packed mask, with the R
    /// reference images' latent frames first, last image first as diffusers stacks
    /// them) and R.
    pub(super) fn vace_control(&self, conditions: &VaceConditions) -> Result<(Tensor, usize)> {
        let cfg = self.transformer.config();
        let vae = self.vae.config();
        let (z, s) = (vae.z_dim, vae.spatial_factor());
        if cfg.in_channels != z || cfg.out_channels != z {
            return Err(WanError::InvalidInput(format!(
                "vace needs a transformer whose in_channels and out_channels equal the VAE's z_dim {z}"
            )));
        }
        let expected = 2 * z + s * s;
        if cfg.vace_in_channels != Some(expected) {
            return Err(WanError::InvalidInput(format!(
                "vace_in_channels {:?} is not 2 * z_dim + {s}x{s} = {expected}",
                cfg.vace_in_channels
            )));
        }
        let &[f, h, w, 3] = conditions.video.dims() else {
            return Err(WanError::InvalidInput(format!(
                "the VACE video must be [F, H, W, 3], not {:?}",
                conditions.video.dims()
            )));
        };
        let latent_frames = self.latent_shape(f, h, w)?[2];
        let device = &self.device;
        let mask = match &conditions.mask {
            Some(m) if m.dims() == [f, h, w] => m.to_device(device)?.to_dtype(DType::F32)?,
            Some(m) => {
                return Err(WanError::InvalidInput(format!(
                    "the VACE mask is {:?}, the video needs [F, H, W] = {:?}",
                    m.dims(),
                    [f, h, w]
                )));
            }
            None => Tensor::ones((f, h, w), DType::F32, device)?,
        };
        let references = match &conditions.reference_images {
            Some(r) if r.dims()[1..] == [h, w, 3] && r.rank() == 4 => Some(r),
            Some(r) => {
                return Err(WanError::InvalidInput(format!(
                    "the reference images are {:?}, the video needs [R, H, W, 3] with H, W = {h}, {w}",
                    r.dims()
                )));
            }
            None => None,
        };

        let video = pixels(&conditions.video, device)?;
        let generate = mask
            .gt(0.5)?
            .to_dtype(DType::F32)?
            .unsqueeze(0)?
            .unsqueeze(0)?;
        let inactive = self.encode_pixels(&video.broadcast_mul(&generate.affine(-1.0, 1.0)?)?)?;
        let reactive = self.encode_pixels(&video.broadcast_mul(&generate)?)?;
        let mut latents = Tensor::cat(&[&inactive, &reactive], 1)?;
        let refs = references.map_or(0, |r| r.dim(0).unwrap_or(0));
        if let Some(references) = references {
            for i in 0..refs {
                let image = self.encode_pixels(&pixels(&references.narrow(0, i, 1)?, device)?)?;
                let image = Tensor::cat(&[&image, &image.zeros_like()?], 1)?;
                latents = Tensor::cat(&[&image, &latents], 2)?;
            }
        }
        let mask = pack_mask(&mask, s, latent_frames, refs)?.unsqueeze(0)?;
        Ok((Tensor::cat(&[&latents, &mask], 1)?, refs))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn the_mask_packs_8x8_blocks_onto_channels_and_takes_frames_nearest_exact() -> Result<()> {
        // 9 frames of 16x32, each frame filled with its index, pixel (1, 2) of every
        // 8x8 block marked with 100.
        let mut values = Vec::new();
        for frame in 0..9 {
            for y in 0..16 {
                for x in 0..32 {
                    let marked = y % 8 == 1 && x % 8 == 2;
                    values.push(if marked { 100.0 } else { frame as f32 });
                }
            }
        }
        let mask = Tensor::from_vec(values, (9, 16, 32), &Device::Cpu)?;
        let packed = pack_mask(&mask, 8, 3, 2)?;
        assert_eq!(packed.dims(), &[64, 5, 2, 4]);
        // Two zero reference frames, then frames 1, 4 and 7 (nearest-exact of 9 -> 3).
        let channel0: Vec<f32> = packed
            .get(0)?
            .mean_keepdim(2)?
            .mean_keepdim(1)?
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(channel0, vec![0.0, 0.0, 1.0, 4.0, 7.0]);
        // The marked pixel is channel 1 * 8 + 2.
        let marked: Vec<f32> = packed.get(10)?.flatten_all()?.to_vec1()?;
        assert!(marked[16..].iter().all(|&v| v == 100.0));
        // 5 frames -> 2 latent frames: frames 1 and 3.
        let five = pack_mask(&mask.narrow(0, 0, 5)?, 8, 2, 0)?;
        let frames: Vec<f32> = five
            .get(0)?
            .mean_keepdim(2)?
            .mean_keepdim(1)?
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(frames, vec![1.0, 3.0]);
        Ok(())
    }

    #[test]
    fn conditioning_scales_are_one_for_all_or_one_per_layer() -> Result<()> {
        assert_eq!(scales(&[0.5], 3)?, vec![0.5; 3]);
        assert_eq!(scales(&[0.5, 1.0], 2)?, vec![0.5, 1.0]);
        for bad in [&[][..], &[1.0, 2.0][..]] {
            let error = scales(bad, 3).unwrap_err();
            assert!(matches!(error, WanError::InvalidInput(_)), "{error}");
        }
        Ok(())
    }
}
