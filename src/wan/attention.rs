//! Scaled dot-product attention without the full score matrix.
//!
//! This is the one place attention is computed, so that a fused kernel can replace it.

use candle_core::{DType, Result, Tensor};

/// The most f32 scores one query block may hold (256 MiB).
const SCORE_BUDGET: usize = 64 << 20;

/// `softmax(q k^T * scale) v` for `q: [B, H, Sq, D]`, `k, v: [B, H, Skv, D]`.
///
/// Queries are processed in blocks sized so that a block's scores stay within a fixed
/// budget whatever the sequence length: at 75k tokens the full matrix of one head would
/// need 21 GiB. The scores and softmax are taken in f32.
///
/// On CUDA, bf16 with head dim 128 (every Wan model) runs the fused kernel of
/// `flash_attn` instead, once its self-check has passed.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if super::flash_attn::supports(q) && super::flash_attn::self_check(q.device()).passed() {
        return super::flash_attn::flash_attention(q, k, v, scale);
    }
    blocked_attention(q, k, v, scale)
}

/// The blocked attention on any device: the reference the fused kernel is checked
/// against.
pub fn blocked_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    blocked(q, k, v, scale, SCORE_BUDGET)
}

fn blocked(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, budget: usize) -> Result<Tensor> {
    let (b, h, sq, _) = q.dims4()?;
    let skv = k.dim(2)?;
    let dtype = q.dtype();
    let k_t = k.to_dtype(DType::F32)?.transpose(2, 3)?.contiguous()?;
    let v = v.to_dtype(DType::F32)?.contiguous()?;
    let block = (budget / (b * h * skv).max(1)).clamp(1, sq.max(1));
    let mut outputs = Vec::with_capacity(sq.div_ceil(block));
    for start in (0..sq).step_by(block) {
        let len = block.min(sq - start);
        let q_block = (q.narrow(2, start, len)?.to_dtype(DType::F32)? * scale)?;
        let scores = q_block.contiguous()?.matmul(&k_t)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        outputs.push(probs.matmul(&v)?);
    }
    Tensor::cat(&outputs, 2)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn blocked_equals_direct() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 2, 37, 8), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, 2, 11, 8), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (1, 2, 11, 8), &dev)?;
        let scale = 1.0 / 8f64.sqrt();
        let direct =
            candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? * scale)?)?.matmul(&v)?;
        // A budget of 5 query rows per block: 8 blocks, the last one short.
        let out = blocked(&q, &k, &v, scale, 2 * 11 * 5)?;
        let diff = (out - direct)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }
}
