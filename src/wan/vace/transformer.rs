//! The VACE branch of `WanVACETransformer3DModel`: the control latents patch-embedded,
//! run through Wan blocks with input and output projections, one hint per VACE layer.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

use crate::wan::config::TransformerConfig;
use crate::wan::transformer::{Block, PatchEmbed};

/// One VACE block: `proj_in` (the first block only) adds the projected control states
/// to the main latents' tokens; `proj_out` makes the hint of the block's output.
#[derive(Debug, Clone)]
struct VaceBlock {
    proj_in: Option<Linear>,
    block: Block,
    proj_out: Linear,
}

/// The control path of a VACE transformer.
#[derive(Debug, Clone)]
pub(in crate::wan) struct VaceBranch {
    patch: PatchEmbed,
    blocks: Vec<VaceBlock>,
    /// For each main block, the index of the hint added after it.
    slots: Vec<Option<usize>>,
}

impl VaceBranch {
    pub(in crate::wan) fn new(
        cfg: &TransformerConfig,
        layers: &[usize],
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut sorted = layers.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != layers.len() || sorted.first() != Some(&0) {
            candle_core::bail!("vace_layers {layers:?} must be distinct and include layer 0");
        }
        if sorted.last().is_some_and(|&l| l >= cfg.num_layers) {
            candle_core::bail!(
                "vace_layers {layers:?} exceed the {} transformer layers",
                cfg.num_layers
            );
        }
        let in_channels = cfg.vace_in_channels.ok_or_else(|| {
            candle_core::Error::Msg("a VACE config needs vace_in_channels".into())
        })?;
        let dim = cfg.inner_dim();
        let blocks = (0..layers.len())
            .map(|i| {
                let vb = vb.pp(format!("vace_blocks.{i}"));
                Ok(VaceBlock {
                    proj_in: if i == 0 {
                        Some(linear(dim, dim, vb.pp("proj_in"))?)
                    } else {
                        None
                    },
                    block: Block::new(cfg, vb.clone())?,
                    proj_out: linear(dim, dim, vb.pp("proj_out"))?,
                })
            })
            .collect::<Result<_>>()?;
        // diffusers pops the hints in order at each main block listed in vace_layers, so
        // the k-th hint goes after the k-th of those blocks in ascending order.
        let mut slots = vec![None; cfg.num_layers];
        for (k, &layer) in sorted.iter().enumerate() {
            slots[layer] = Some(k);
        }
        Ok(Self {
            patch: PatchEmbed::new(
                in_channels,
                dim,
                cfg.patch_size,
                vb.pp("vace_patch_embedding"),
            )?,
            blocks,
            slots,
        })
    }

    /// The number of VACE layers.
    pub(in crate::wan) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// The hint added after main block `block`, if any.
    pub(in crate::wan) fn hint_after(&self, block: usize) -> Option<usize> {
        self.slots.get(block).copied().flatten()
    }

    /// The hints `[B, S, dim]` of control latents `[B, vace_in, F, H, W]`, given the
    /// main latents' tokens `xs` before the first block.
    pub(in crate::wan) fn hints(
        &self,
        xs: &Tensor,
        control: &Tensor,
        context: &Tensor,
        modulation: &Tensor,
        rope: &(Tensor, Tensor),
    ) -> Result<Vec<Tensor>> {
        let mut states = self.patch.forward(control)?;
        let (tokens, control_tokens) = (xs.dim(1)?, states.dim(1)?);
        if control_tokens > tokens {
            candle_core::bail!(
                "the control latents have {control_tokens} tokens, the latents only {tokens}"
            );
        }
        // Fewer control tokens than latent ones are zero-padded at the end, as diffusers does.
        states = states.pad_with_zeros(1, 0, tokens - control_tokens)?;
        let mut hints = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            if let Some(proj_in) = &block.proj_in {
                states = (proj_in.forward(&states)? + xs)?;
            }
            states = block.block.forward(&states, context, modulation, rope)?;
            hints.push(block.proj_out.forward(&states)?);
        }
        Ok(hints)
    }
}
