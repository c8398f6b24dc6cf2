//! Latent anchoring: a generation continues the one before it over the frames they share.
//!
//! The latent frames that cover the shared frames are held to the earlier generation's
//! final latents: before the first step and after each anchored step they are replaced
//! by those latents noised to the level the latents are at, with fresh noise each time
//! (flow matching: `x_t = (1 - sigma) * x_0 + sigma * eps`). Held through the last step
//! (sigma 0) they end equal to the earlier latents; the other latents denoise around them.

use candle_core::Tensor;

use super::error::{Result, WanError};
use super::pipeline::standard_normal;

/// What a generation is anchored on.
#[derive(Debug, Clone)]
pub struct LatentAnchor {
    /// `[1, C, A, h, w]`: the earlier generation's final (normalised) latents for the
    /// shared frames.
    pub latents: Tensor,
    /// The first of this generation's latent frames they stand for.
    pub first: usize,
    /// The share of the steps run through which they are held: 1 through the last step,
    /// 0.5 the first half, 0 not at all (the generation is then the unanchored one, bit
    /// for bit).
    pub strength: f64,
    /// Seeds the noise drawn for each hold.
    pub seed: u64,
}

impl LatentAnchor {
    /// How many of `steps` steps hold the anchor.
    pub fn held_steps(&self, steps: usize) -> usize {
        ((self.strength.clamp(0.0, 1.0) * steps as f64).round() as usize).min(steps)
    }

    /// Checks the anchor against latents of `shape` (`[1, C, T, h, w]`).
    pub fn check(&self, shape: &[usize]) -> Result<()> {
        let dims = self.latents.dims();
        let fits = dims.len() == 5
            && shape.len() == 5
            && dims[0] == shape[0]
            && dims[1] == shape[1]
            && dims[3..] == shape[3..]
            && self.first + dims[2] <= shape[2];
        if fits && (0.0..=1.0).contains(&self.strength) {
            Ok(())
        } else {
            Err(WanError::InvalidInput(format!(
                "an anchor of latents {dims:?} from latent frame {} (strength {}) does not \
                 fit latents {shape:?}",
                self.first, self.strength
            )))
        }
    }

    /// `latents` with the anchored frames replaced by the anchor at noise level `sigma`;
    /// `draw` numbers the hold, so that each draws its own noise.
    pub fn hold(&self, latents: &Tensor, sigma: f32, draw: u64) -> Result<Tensor> {
        let anchored = if sigma == 0.0 {
            self.latents.clone()
        } else {
            let noise = standard_normal(
                self.latents.dims(),
                self.seed.wrapping_add(draw),
                self.latents.device(),
            )?;
            ((&self.latents * (1.0 - sigma as f64))? + (noise * sigma as f64)?)?
        };
        let frames = latents.dim(2)?;
        let count = self.latents.dim(2)?;
        let mut parts = Vec::with_capacity(3);
        if self.first > 0 {
            parts.push(latents.narrow(2, 0, self.first)?);
        }
        parts.push(anchored.to_dtype(latents.dtype())?);
        let after = self.first + count;
        if after < frames {
            parts.push(latents.narrow(2, after, frames - after)?);
        }
        Ok(Tensor::cat(&parts, 2)?.contiguous()?)
    }
}
