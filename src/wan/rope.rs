//! Wan's 3D rotary position embedding.
//!
//! The head dimension is split into a frame, a height and a width band (`t = d - 2h`,
//! `h = w = 2 * (d / 6)`); each band rotates its pairs by the token's coordinate on its
//! axis, with the usual `theta^(-2j/band)` frequencies.

use candle_core::{Device, Result, Tensor};

const THETA: f64 = 10000.0;

/// The per-pair angles of the three bands for positions `0..max_len`.
#[derive(Debug, Clone)]
pub struct Rope3d {
    bands: [usize; 3],
    max_len: usize,
}

impl Rope3d {
    pub fn new(head_dim: usize, max_len: usize) -> Self {
        let h = 2 * (head_dim / 6);
        Self {
            bands: [head_dim - 2 * h, h, h],
            max_len,
        }
    }

    /// The band widths (frame, height, width) in channels.
    pub fn bands(&self) -> [usize; 3] {
        self.bands
    }

    /// `(cos, sin)` of shape `[f * h * w, head_dim / 2]`, one angle per channel pair,
    /// tokens in (frame, height, width) order. Computed in f64 and rounded once to f32,
    /// as diffusers does.
    pub fn tables(&self, grid: [usize; 3], device: &Device) -> Result<(Tensor, Tensor)> {
        if let Some(len) = grid.iter().find(|&&len| len > self.max_len) {
            candle_core::bail!(
                "{len} patches along an axis exceed rope_max_seq_len {}",
                self.max_len
            );
        }
        let freqs: Vec<Vec<f64>> = self
            .bands
            .iter()
            .map(|&band| {
                (0..band / 2)
                    .map(|j| 1.0 / THETA.powf((2 * j) as f64 / band as f64))
                    .collect()
            })
            .collect();
        let pairs: usize = self.bands.iter().sum::<usize>() / 2;
        let tokens = grid.iter().product::<usize>();
        let mut cos = Vec::with_capacity(tokens * pairs);
        let mut sin = Vec::with_capacity(tokens * pairs);
        for f in 0..grid[0] {
            for h in 0..grid[1] {
                for w in 0..grid[2] {
                    for (pos, band) in [f, h, w].into_iter().zip(&freqs) {
                        for freq in band {
                            let angle = pos as f64 * freq;
                            cos.push(angle.cos() as f32);
                            sin.push(angle.sin() as f32);
                        }
                    }
                }
            }
        }
        Ok((
            Tensor::from_vec(cos, (tokens, pairs), device)?,
            Tensor::from_vec(sin, (tokens, pairs), device)?,
        ))
    }
}

/// Rotates interleaved pairs `(x[2i], x[2i+1])` of `xs: [B, H, S, D]` by the tables.
pub fn apply(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dtype = xs.dtype();
    candle_nn::rotary_emb::rope_i(
        &xs.contiguous()?,
        &cos.to_dtype(dtype)?,
        &sin.to_dtype(dtype)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_split_the_head_as_wan_does() {
        assert_eq!(Rope3d::new(128, 1024).bands(), [44, 42, 42]);
        assert_eq!(Rope3d::new(12, 64).bands(), [4, 4, 4]);
    }

    #[test]
    fn tables_match_diffusers() -> Result<()> {
        // WanRotaryPosEmbed(12, (1, 2, 2), 64) on a [1, C, 2, 4, 6] input (diffusers
        // 0.42.1): token 5 is (f=0, h=0, w=5) ... token 13 is (f=1, h=0, w=1).
        let rope = Rope3d::new(12, 64);
        let (cos, sin) = rope.tables([2, 2, 3], &Device::Cpu)?;
        assert_eq!(cos.dims(), &[12, 6]);
        let cos = cos.to_vec2::<f32>()?;
        let sin = sin.to_vec2::<f32>()?;
        // Token 11 = (f=1, h=1, w=2): angles [1, 0.01, 1, 0.01, 2, 0.02].
        let expected = [1.0f64, 0.01, 1.0, 0.01, 2.0, 0.02];
        for (j, angle) in expected.iter().enumerate() {
            assert!((cos[11][j] as f64 - angle.cos()).abs() < 1e-7);
            assert!((sin[11][j] as f64 - angle.sin()).abs() < 1e-7);
        }
        assert_eq!(cos[0], vec![1.0; 6]);
        Ok(())
    }
}
