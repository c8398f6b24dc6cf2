//! The DiT's timestep and text conditioning (`WanTimeTextImageEmbedding`).

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

/// diffusers' `get_timestep_embedding` with `flip_sin_to_cos=True` and no frequency
/// shift: `[cos(t w_j), sin(t w_j)]` with `w_j = 10000^(-j / (dim / 2))`, in f32.
pub fn timestep_embedding(timestep: f32, dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let mut emb = Vec::with_capacity(dim);
    let angles: Vec<f32> = (0..half)
        .map(|j| {
            // The operation order of torch's, so that f32 rounding agrees.
            let exponent = -(10000f32.ln()) * j as f32 / half as f32;
            timestep * exponent.exp()
        })
        .collect();
    emb.extend(angles.iter().map(|a| a.cos()));
    emb.extend(angles.iter().map(|a| a.sin()));
    if dim % 2 == 1 {
        emb.push(0.0);
    }
    Tensor::from_vec(emb, (1, dim), device)
}

#[derive(Debug, Clone)]
pub struct ConditionEmbedder {
    time_linear_1: Linear,
    time_linear_2: Linear,
    time_proj: Linear,
    text_linear_1: Linear,
    text_linear_2: Linear,
    freq_dim: usize,
}

impl ConditionEmbedder {
    pub fn new(dim: usize, freq_dim: usize, text_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            time_linear_1: linear(freq_dim, dim, vb.pp("time_embedder.linear_1"))?,
            time_linear_2: linear(dim, dim, vb.pp("time_embedder.linear_2"))?,
            time_proj: linear(dim, 6 * dim, vb.pp("time_proj"))?,
            text_linear_1: linear(text_dim, dim, vb.pp("text_embedder.linear_1"))?,
            text_linear_2: linear(dim, dim, vb.pp("text_embedder.linear_2"))?,
            freq_dim,
        })
    }

    /// `(temb [1, dim], modulation [1, 6, dim])` for one timestep.
    pub fn time(&self, timestep: f32, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let t = timestep_embedding(timestep, self.freq_dim, device)?.to_dtype(dtype)?;
        let temb = self
            .time_linear_2
            .forward(&self.time_linear_1.forward(&t)?.silu()?)?;
        let modulation = self.time_proj.forward(&temb.silu()?)?;
        let dim = temb.dim(1)?;
        Ok((temb, modulation.reshape((1, 6, dim))?))
    }

    /// Projects the text embeddings `[B, L, text_dim]` to the model width.
    pub fn text(&self, text: &Tensor) -> Result<Tensor> {
        self.text_linear_2
            .forward(&self.text_linear_1.forward(text)?.gelu()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestep_embedding_matches_diffusers() -> Result<()> {
        // diffusers 0.42.1: Timesteps(8, flip_sin_to_cos=True, downscale_freq_shift=0)
        // applied to torch.tensor([999.0]).
        let emb = timestep_embedding(999.0, 8, &Device::Cpu)?.to_vec2::<f32>()?;
        let expected = [
            0.9996498f32,
            0.80745506,
            -0.8444698,
            0.54114354,
            -0.026460752,
            -0.5899291,
            -0.53560317,
            0.8409302,
        ];
        for (a, b) in emb[0].iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        Ok(())
    }
}
