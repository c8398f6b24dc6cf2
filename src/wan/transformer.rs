//! The Wan DiT (`WanTransformer3DModel`), and `WanVACETransformer3DModel` with the VACE
//! branch of [`super::vace`].

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, Linear, RmsNorm, VarBuilder, linear};

use super::attention::attention;
use super::config::TransformerConfig;
use super::embeddings::ConditionEmbedder;
use super::rope::{self, Rope3d};
use super::vace::VaceBranch;

/// A layer norm over the last axis, taken in f32 as diffusers' `FP32LayerNorm`.
fn norm_f32(norm: &LayerNorm, xs: &Tensor) -> Result<Tensor> {
    norm.forward(&xs.to_dtype(DType::F32)?)
}

fn plain_layer_norm(dim: usize, eps: f64, device: &candle_core::Device) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        Tensor::ones(dim, DType::F32, device)?,
        Tensor::zeros(dim, DType::F32, device)?,
        eps,
    ))
}

/// Splits `[B, S, H*D]` into heads `[B, H, S, D]`.
fn heads(xs: &Tensor, num_heads: usize) -> Result<Tensor> {
    let (b, s, inner) = xs.dims3()?;
    xs.reshape((b, s, num_heads, inner / num_heads))?
        .transpose(1, 2)?
        .contiguous()
}

#[derive(Debug, Clone)]
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    norm_q: RmsNorm,
    norm_k: RmsNorm,
    num_heads: usize,
}

impl Attention {
    fn new(dim: usize, num_heads: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            to_q: linear(dim, dim, vb.pp("to_q"))?,
            to_k: linear(dim, dim, vb.pp("to_k"))?,
            to_v: linear(dim, dim, vb.pp("to_v"))?,
            to_out: linear(dim, dim, vb.pp("to_out.0"))?,
            // "rms_norm_across_heads": one norm over all heads of q and of k.
            norm_q: candle_nn::rms_norm(dim, eps, vb.pp("norm_q"))?,
            norm_k: candle_nn::rms_norm(dim, eps, vb.pp("norm_k"))?,
            num_heads,
        })
    }

    /// Self-attention when `context` is `None` (with RoPE), cross-attention otherwise.
    fn forward(
        &self,
        xs: &Tensor,
        context: Option<&Tensor>,
        rope: Option<&(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let kv_source = context.unwrap_or(xs);
        let q = heads(
            &self.norm_q.forward(&self.to_q.forward(xs)?)?,
            self.num_heads,
        )?;
        let k = heads(
            &self.norm_k.forward(&self.to_k.forward(kv_source)?)?,
            self.num_heads,
        )?;
        let v = heads(&self.to_v.forward(kv_source)?, self.num_heads)?;
        let (q, k) = match rope {
            Some((cos, sin)) => (rope::apply(&q, cos, sin)?, rope::apply(&k, cos, sin)?),
            None => (q, k),
        };
        let head_dim = q.dim(D::Minus1)?;
        let out = attention(&q, &k, &v, 1.0 / (head_dim as f64).sqrt())?;
        let (b, _, s, _) = out.dims4()?;
        let out = out.transpose(1, 2)?.reshape((b, s, ()))?;
        self.to_out.forward(&out)
    }
}

#[derive(Debug, Clone)]
struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    fn new(dim: usize, ffn_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            proj_in: linear(dim, ffn_dim, vb.pp("net.0.proj"))?,
            proj_out: linear(ffn_dim, dim, vb.pp("net.2"))?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.proj_out.forward(&self.proj_in.forward(xs)?.gelu()?)
    }
}

/// A Conv3d with kernel = stride = the patch size, taken as a matmul over patches.
#[derive(Debug, Clone)]
pub(super) struct PatchEmbed {
    weight: Tensor,
    bias: Tensor,
    patch: [usize; 3],
}

impl PatchEmbed {
    pub(super) fn new(
        in_channels: usize,
        dim: usize,
        patch: [usize; 3],
        vb: VarBuilder,
    ) -> Result<Self> {
        let [pt, ph, pw] = patch;
        Ok(Self {
            weight: vb
                .get((dim, in_channels, pt, ph, pw), "weight")?
                .reshape((dim, in_channels * pt * ph * pw))?,
            bias: vb.get(dim, "bias")?,
            patch,
        })
    }

    pub(super) fn dtype(&self) -> DType {
        self.weight.dtype()
    }

    /// The patch grid of latents `[B, C, F, H, W]`, checking that the patch divides them.
    pub(super) fn grid(&self, latents: &Tensor) -> Result<[usize; 3]> {
        let (_, _, f, h, w) = latents.dims5()?;
        let [pt, ph, pw] = self.patch;
        if !f.is_multiple_of(pt) || !h.is_multiple_of(ph) || !w.is_multiple_of(pw) {
            candle_core::bail!(
                "latent size {f}x{h}x{w} is not a multiple of the patch size {pt}x{ph}x{pw}"
            );
        }
        Ok([f / pt, h / ph, w / pw])
    }

    /// The tokens `[B, F*H*W / patch, dim]`, in (F, H, W) order, of latents `[B, C, F, H, W]`.
    pub(super) fn forward(&self, latents: &Tensor) -> Result<Tensor> {
        let grid = self.grid(latents)?;
        let (b, c, ..) = latents.dims5()?;
        let [pt, ph, pw] = self.patch;
        latents
            .to_dtype(self.dtype())?
            .reshape(vec![b, c, grid[0], pt, grid[1], ph, grid[2], pw])?
            .permute([0, 2, 4, 6, 1, 3, 5, 7])?
            .reshape((b, grid.iter().product::<usize>(), c * pt * ph * pw))?
            .broadcast_matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)
    }
}

/// A Wan transformer block; the VACE blocks are these with projections around them.
#[derive(Debug, Clone)]
pub(super) struct Block {
    norm1: LayerNorm,
    attn1: Attention,
    // diffusers' norm2 is the cross-attention norm (the original code's norm3).
    norm2: Option<LayerNorm>,
    attn2: Attention,
    norm3: LayerNorm,
    ffn: FeedForward,
    scale_shift_table: Tensor,
}

impl Block {
    pub(super) fn new(cfg: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.inner_dim();
        let heads = cfg.num_attention_heads;
        let norm2 = if cfg.cross_attn_norm {
            let vb = vb.pp("norm2");
            Some(LayerNorm::new(
                vb.get(dim, "weight")?.to_dtype(DType::F32)?,
                vb.get(dim, "bias")?.to_dtype(DType::F32)?,
                cfg.eps,
            ))
        } else {
            None
        };
        Ok(Self {
            norm1: plain_layer_norm(dim, cfg.eps, vb.device())?,
            attn1: Attention::new(dim, heads, cfg.eps, vb.pp("attn1"))?,
            norm2,
            attn2: Attention::new(dim, heads, cfg.eps, vb.pp("attn2"))?,
            norm3: plain_layer_norm(dim, cfg.eps, vb.device())?,
            ffn: FeedForward::new(dim, cfg.ffn_dim, vb.pp("ffn"))?,
            scale_shift_table: vb
                .get((1, 6, dim), "scale_shift_table")?
                .to_dtype(DType::F32)?,
        })
    }

    /// `modulation` is the f32 `[1, 6, dim]` projection of the timestep.
    pub(super) fn forward(
        &self,
        xs: &Tensor,
        context: &Tensor,
        modulation: &Tensor,
        rope: &(Tensor, Tensor),
    ) -> Result<Tensor> {
        let dtype = xs.dtype();
        let m = self.scale_shift_table.broadcast_add(modulation)?;
        let chunk = |i: usize| m.narrow(1, i, 1);
        let (shift, scale, gate) = (chunk(0)?, chunk(1)?, chunk(2)?);
        let (c_shift, c_scale, c_gate) = (chunk(3)?, chunk(4)?, chunk(5)?);

        let modulated =
            |norm: &LayerNorm, xs: &Tensor, shift: &Tensor, scale: &Tensor| -> Result<Tensor> {
                norm_f32(norm, xs)?
                    .broadcast_mul(&(scale + 1.0)?)?
                    .broadcast_add(shift)?
                    .to_dtype(dtype)
            };

        let attn = self.attn1.forward(
            &modulated(&self.norm1, xs, &shift, &scale)?,
            None,
            Some(rope),
        )?;
        let xs = (xs.to_dtype(DType::F32)? + attn.to_dtype(DType::F32)?.broadcast_mul(&gate)?)?
            .to_dtype(dtype)?;

        let normed = match &self.norm2 {
            Some(norm) => norm_f32(norm, &xs)?.to_dtype(dtype)?,
            None => xs.clone(),
        };
        let xs = (&xs + self.attn2.forward(&normed, Some(context), None)?)?;

        let ff = self
            .ffn
            .forward(&modulated(&self.norm3, &xs, &c_shift, &c_scale)?)?;
        (xs.to_dtype(DType::F32)? + ff.to_dtype(DType::F32)?.broadcast_mul(&c_gate)?)?
            .to_dtype(dtype)
    }
}

/// `WanTransformer3DModel` without the image branch (text-conditioned models only), or
/// `WanVACETransformer3DModel` when the config has `vace_layers`.
#[derive(Debug, Clone)]
pub struct WanTransformer {
    patch: PatchEmbed,
    vace: Option<VaceBranch>,
    condition: ConditionEmbedder,
    blocks: Vec<Block>,
    norm_out: LayerNorm,
    proj_out: Linear,
    scale_shift_table: Tensor,
    rope: Rope3d,
    cfg: TransformerConfig,
}

impl WanTransformer {
    pub fn new(cfg: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.image_dim.is_some() || cfg.added_kv_proj_dim.is_some() {
            candle_core::bail!("image-conditioned Wan transformers (image_dim) are not supported");
        }
        let dim = cfg.inner_dim();
        let [pt, ph, pw] = cfg.patch_size;
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<_>>()?;
        let vace = match &cfg.vace_layers {
            Some(layers) => Some(VaceBranch::new(cfg, layers, vb.clone())?),
            None => None,
        };
        Ok(Self {
            patch: PatchEmbed::new(
                cfg.in_channels,
                dim,
                cfg.patch_size,
                vb.pp("patch_embedding"),
            )?,
            vace,
            condition: ConditionEmbedder::new(
                dim,
                cfg.freq_dim,
                cfg.text_dim,
                vb.pp("condition_embedder"),
            )?,
            blocks,
            norm_out: plain_layer_norm(dim, cfg.eps, vb.device())?,
            proj_out: linear(dim, cfg.out_channels * pt * ph * pw, vb.pp("proj_out"))?,
            scale_shift_table: vb
                .get((1, 2, dim), "scale_shift_table")?
                .to_dtype(DType::F32)?,
            rope: Rope3d::new(cfg.attention_head_dim, cfg.rope_max_seq_len),
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    /// The number of VACE layers (hints), or `None` for a transformer without VACE.
    pub fn vace_layers(&self) -> Option<usize> {
        self.vace.as_ref().map(VaceBranch::len)
    }

    /// The text context `[B, L, dim]` of prompt embeddings `[B, L, text_dim]`; it does
    /// not depend on the timestep, so a denoising loop computes it once per prompt.
    pub fn embed_text(&self, text: &Tensor) -> Result<Tensor> {
        self.condition.text(&text.to_dtype(self.patch.dtype())?)
    }

    /// The flow prediction `[B, out, F, H, W]` for latents `[B, in, F, H, W]` at
    /// `timestep`, given a context from [`Self::embed_text`].
    pub fn forward(&self, latents: &Tensor, timestep: f32, context: &Tensor) -> Result<Tensor> {
        self.forward_with(latents, timestep, context, None)
    }

    /// [`Self::forward`] of a VACE transformer, with the control latents `[B, vace_in, F,
    /// H, W]` and one conditioning scale per VACE layer.
    pub fn forward_vace(
        &self,
        latents: &Tensor,
        timestep: f32,
        context: &Tensor,
        control: &Tensor,
        scales: &[f64],
    ) -> Result<Tensor> {
        let Some(vace) = &self.vace else {
            candle_core::bail!("this transformer has no VACE layers (vace_layers)");
        };
        if scales.len() != vace.len() {
            candle_core::bail!(
                "{} conditioning scales for {} VACE layers",
                scales.len(),
                vace.len()
            );
        }
        self.forward_with(latents, timestep, context, Some((vace, control, scales)))
    }

    fn forward_with(
        &self,
        latents: &Tensor,
        timestep: f32,
        context: &Tensor,
        control: Option<(&VaceBranch, &Tensor, &[f64])>,
    ) -> Result<Tensor> {
        let dtype = self.patch.dtype();
        let (b, _, f, h, w) = latents.dims5()?;
        let [pt, ph, pw] = self.cfg.patch_size;
        let grid = self.patch.grid(latents)?;
        let mut xs = self.patch.forward(latents)?;

        let (temb, modulation) = self.condition.time(timestep, dtype, latents.device())?;
        let modulation = modulation.to_dtype(DType::F32)?;
        let rope = self.rope.tables(grid, latents.device())?;
        // The VACE hints come from the patch-embedded latents, before the first block.
        let hints = match control {
            Some((vace, control, scales)) => Some((
                vace,
                vace.hints(&xs, control, context, &modulation, &rope)?,
                scales,
            )),
            None => None,
        };
        for (i, block) in self.blocks.iter().enumerate() {
            xs = block.forward(&xs, context, &modulation, &rope)?;
            if let Some((vace, hints, scales)) = &hints
                && let Some(k) = vace.hint_after(i)
            {
                xs = (xs + (&hints[k] * scales[k])?)?;
            }
        }

        let m = self
            .scale_shift_table
            .broadcast_add(&temb.to_dtype(DType::F32)?.unsqueeze(1)?)?;
        let (shift, scale) = (m.narrow(1, 0, 1)?, m.narrow(1, 1, 1)?);
        let xs = norm_f32(&self.norm_out, &xs)?
            .broadcast_mul(&(scale + 1.0)?)?
            .broadcast_add(&shift)?
            .to_dtype(dtype)?;
        let out = self.proj_out.forward(&xs)?;
        let oc = self.cfg.out_channels;
        out.reshape(vec![b, grid[0], grid[1], grid[2], pt, ph, pw, oc])?
            .permute([0, 7, 1, 4, 2, 5, 3, 6])?
            .reshape((b, oc, f, h, w))
    }
}
