//! The UMT5 encoder (transformers' `UMT5EncoderModel`).
//!
//! Unlike T5, every UMT5 layer owns its relative position bias, so each layer computes
//! its own bias table from the same bucketed relative positions.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder, embedding, linear_no_bias};

use super::config::Umt5Config;

/// T5's layer norm: a root-mean-square norm without mean subtraction or bias, taken
/// in f32.
#[derive(Debug, Clone)]
struct T5LayerNorm {
    weight: Tensor,
    eps: f64,
}

impl T5LayerNorm {
    fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }
}

impl Module for T5LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dtype = xs.dtype();
        let xs = xs.to_dtype(DType::F32)?;
        let variance = xs.sqr()?.mean_keepdim(D::Minus1)?;
        let xs = xs.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        xs.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

/// The bidirectional bucket of each relative position `key - query`, as T5 buckets them:
/// exact buckets for small distances, logarithmic ones up to `max_distance`.
fn relative_position_buckets(len: usize, num_buckets: usize, max_distance: usize) -> Vec<u32> {
    let half = num_buckets / 2;
    let max_exact = half / 2;
    let mut buckets = Vec::with_capacity(len * len);
    for query in 0..len {
        for key in 0..len {
            let relative = key as i64 - query as i64;
            let base = if relative > 0 { half } else { 0 };
            let n = relative.unsigned_abs() as usize;
            let bucket = if n < max_exact {
                n
            } else {
                // As torch computes it: an f32 log over a Python-float (f64) log rounded
                // to f32, truncated. Exact powers of two sit on bucket edges, so the
                // rounding must match.
                let ratio = (n as f32 / max_exact as f32).ln()
                    / ((max_distance as f64 / max_exact as f64).ln() as f32);
                let large = max_exact + (ratio * (half - max_exact) as f32) as usize;
                large.min(half - 1)
            };
            buckets.push((base + bucket) as u32);
        }
    }
    buckets
}

#[derive(Debug, Clone)]
struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    relative_attention_bias: Embedding,
    num_heads: usize,
    d_kv: usize,
    num_buckets: usize,
    max_distance: usize,
}

impl SelfAttention {
    fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        let inner = cfg.num_heads * cfg.d_kv;
        Ok(Self {
            q: linear_no_bias(cfg.d_model, inner, vb.pp("q"))?,
            k: linear_no_bias(cfg.d_model, inner, vb.pp("k"))?,
            v: linear_no_bias(cfg.d_model, inner, vb.pp("v"))?,
            o: linear_no_bias(inner, cfg.d_model, vb.pp("o"))?,
            relative_attention_bias: embedding(
                cfg.relative_attention_num_buckets,
                cfg.num_heads,
                vb.pp("relative_attention_bias"),
            )?,
            num_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
            num_buckets: cfg.relative_attention_num_buckets,
            max_distance: cfg.relative_attention_max_distance,
        })
    }

    /// The position bias `[1, heads, len, len]`.
    fn bias(&self, len: usize, device: &Device) -> Result<Tensor> {
        let buckets = relative_position_buckets(len, self.num_buckets, self.max_distance);
        let buckets = Tensor::from_vec(buckets, (len, len), device)?;
        self.relative_attention_bias
            .forward(&buckets)?
            .permute((2, 0, 1))?
            .unsqueeze(0)
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, len, _) = xs.dims3()?;
        let heads = |t: Tensor| {
            t.reshape((b, len, self.num_heads, self.d_kv))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q.forward(xs)?)?;
        let k = heads(self.k.forward(xs)?)?;
        let v = heads(self.v.forward(xs)?)?;
        // T5 folds the 1/sqrt(d) scaling into its initialisation: the scores are not
        // scaled.
        let scores = q.matmul(&k.t()?)?;
        let scores =
            scores.broadcast_add(&self.bias(len, xs.device())?.to_dtype(scores.dtype())?)?;
        let probs =
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(v.dtype())?;
        let out =
            probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, len, self.num_heads * self.d_kv))?;
        self.o.forward(&out)
    }
}

/// The gated feed-forward block: `wo(act(wi_0 x) * wi_1 x)`.
#[derive(Debug, Clone)]
struct GatedFeedForward {
    wi_0: Linear,
    wi_1: Linear,
    wo: Linear,
    gelu: bool,
}

impl GatedFeedForward {
    fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        let gelu = match cfg.feed_forward_proj.as_str() {
            "gated-gelu" => true,
            "gated-relu" => false,
            other => candle_core::bail!("unsupported feed_forward_proj `{other}`"),
        };
        Ok(Self {
            wi_0: linear_no_bias(cfg.d_model, cfg.d_ff, vb.pp("wi_0"))?,
            wi_1: linear_no_bias(cfg.d_model, cfg.d_ff, vb.pp("wi_1"))?,
            wo: linear_no_bias(cfg.d_ff, cfg.d_model, vb.pp("wo"))?,
            gelu,
        })
    }
}

impl Module for GatedFeedForward {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gate = self.wi_0.forward(xs)?;
        // "gated-gelu" means transformers' `gelu_new`, the tanh approximation.
        let gate = if self.gelu {
            gate.gelu()?
        } else {
            gate.relu()?
        };
        self.wo.forward(&(gate * self.wi_1.forward(xs)?)?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    attention_norm: T5LayerNorm,
    attention: SelfAttention,
    ff_norm: T5LayerNorm,
    ff: GatedFeedForward,
}

impl Block {
    fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        let eps = cfg.layer_norm_epsilon;
        Ok(Self {
            attention_norm: T5LayerNorm::new(cfg.d_model, eps, vb.pp("layer.0.layer_norm"))?,
            attention: SelfAttention::new(cfg, vb.pp("layer.0.SelfAttention"))?,
            ff_norm: T5LayerNorm::new(cfg.d_model, eps, vb.pp("layer.1.layer_norm"))?,
            ff: GatedFeedForward::new(cfg, vb.pp("layer.1.DenseReluDense"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = (xs + self.attention.forward(&self.attention_norm.forward(xs)?)?)?;
        &xs + self.ff.forward(&self.ff_norm.forward(&xs)?)?
    }
}

/// `UMT5EncoderModel`.
#[derive(Debug, Clone)]
pub struct Umt5Encoder {
    embed_tokens: Embedding,
    blocks: Vec<Block>,
    final_layer_norm: T5LayerNorm,
    d_model: usize,
}

impl Umt5Encoder {
    pub fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        // `save_pretrained` keeps one of the tied embedding copies.
        let embed_vb = if vb.contains_tensor("encoder.embed_tokens.weight") {
            vb.pp("encoder.embed_tokens")
        } else {
            vb.pp("shared")
        };
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::new(cfg, vb.pp(format!("encoder.block.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            embed_tokens: embedding(cfg.vocab_size, cfg.d_model, embed_vb)?,
            blocks,
            final_layer_norm: T5LayerNorm::new(
                cfg.d_model,
                cfg.layer_norm_epsilon,
                vb.pp("encoder.final_layer_norm"),
            )?,
            d_model: cfg.d_model,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.d_model
    }

    /// The last hidden state `[1, ids.len(), d_model]` of a prompt without padding.
    ///
    /// The pipelines mask the padding keys and then zero the padded positions, and the
    /// relative bias depends only on distances, so encoding the real tokens alone gives
    /// the same values at a fraction of the cost.
    pub fn forward(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let ids = Tensor::new(ids, device)?.unsqueeze(0)?;
        let mut xs = self.embed_tokens.forward(&ids)?;
        for block in &self.blocks {
            xs = block.forward(&xs)?;
        }
        self.final_layer_norm.forward(&xs)
    }
}

#[cfg(test)]
mod tests {
    use super::relative_position_buckets;

    #[test]
    fn buckets_match_transformers() {
        // Where UMT5Attention._relative_position_bucket (transformers 5.24.0, 32 buckets,
        // max distance 128, bidirectional) changes value over relative positions
        // -300..=300, and the value it changes to.
        let edges: [(i64, u32); 31] = [
            (-300, 15),
            (-90, 14),
            (-63, 13),
            (-45, 12),
            (-31, 11),
            (-22, 10),
            (-15, 9),
            (-11, 8),
            (-7, 7),
            (-6, 6),
            (-5, 5),
            (-4, 4),
            (-3, 3),
            (-2, 2),
            (-1, 1),
            (0, 0),
            (1, 17),
            (2, 18),
            (3, 19),
            (4, 20),
            (5, 21),
            (6, 22),
            (7, 23),
            (8, 24),
            (12, 25),
            (16, 26),
            (23, 27),
            (32, 28),
            (46, 29),
            (64, 30),
            (91, 31),
        ];
        // Row 300 of a 601-token table holds relative positions -300..=300.
        let table = relative_position_buckets(601, 32, 128);
        let row = &table[300 * 601..301 * 601];
        let mut expected = Vec::with_capacity(601);
        for (i, &(start, bucket)) in edges.iter().enumerate() {
            let end = edges.get(i + 1).map_or(301, |e| e.0);
            expected.extend((start..end).map(|_| bucket));
        }
        assert_eq!(row, expected.as_slice());
    }
}
