//! The Wan VAE (`AutoencoderKLWan`), both the 2.1 and the 2.2 (residual, patchified)
//! variants.
//!
//! Video is encoded one frame and then four frames at a time, and decoded one latent
//! frame at a time; every causal convolution keeps the last two frames it saw in a
//! [`FeatureCache`] slot, so that chunked processing equals processing the whole clip
//! (except where diffusers deliberately treats the first chunk apart), while memory
//! stays bounded by the chunk.
//!
//! Inside, video is held frame-major, `[B, T, C, H, W]`, so that the per-frame 2D work
//! (convolutions, attention, resampling) sees a batch of frames without a copy; the
//! public methods take and give diffusers' `[B, C, T, H, W]`.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

use super::attention::attention;
use super::config::VaeConfig;

/// Frames a causal convolution remembers from the previous chunk.
const CACHE_FRAMES: usize = 2;

/// What a cached layer remembers between chunks.
#[derive(Debug, Clone, Default)]
enum Slot {
    /// Not called yet: the first chunk.
    #[default]
    Empty,
    /// A temporal upsampler that passed its first chunk through untouched.
    FirstSkipped,
    /// The last input frames.
    Frames(Tensor),
}

/// The per-layer memory of one chunked encode or decode; layers take their slots in
/// call order, which is the same for every chunk.
#[derive(Debug, Default)]
struct FeatureCache {
    slots: Vec<Slot>,
    next: usize,
}

impl FeatureCache {
    fn start_chunk(&mut self) {
        self.next = 0;
    }

    fn take(&mut self) -> Slot {
        if self.next == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        std::mem::take(&mut self.slots[self.next])
    }

    fn put(&mut self, slot: Slot) {
        self.slots[self.next] = slot;
        self.next += 1;
    }
}

/// The time axis of frame-major tensors.
const TIME: usize = 1;
/// The channel axis of frame-major tensors.
const CHANNELS: usize = 2;

fn last_frames(xs: &Tensor, n: usize) -> Result<Tensor> {
    let t = xs.dim(TIME)?;
    xs.narrow(TIME, t.saturating_sub(n), t.min(n))
}

/// What a cached layer keeps after seeing chunk `xs`: its last [`CACHE_FRAMES`] frames,
/// with the last frame of `before` in front when the chunk is shorter.
fn frames_to_keep(xs: &Tensor, before: Option<&Tensor>) -> Result<Tensor> {
    let keep = last_frames(xs, CACHE_FRAMES)?;
    match before {
        Some(before) if keep.dim(TIME)? < CACHE_FRAMES => {
            Tensor::cat(&[&last_frames(before, 1)?, &keep], TIME)
        }
        _ => Ok(keep),
    }
}

/// `[B, T, C, H, W]` to `[B*T, C, H, W]` and back, for per-frame 2D work.
fn frames_to_batch(xs: &Tensor) -> Result<Tensor> {
    let (b, t, c, h, w) = xs.dims5()?;
    xs.reshape((b * t, c, h, w))
}

fn batch_to_frames(xs: &Tensor, b: usize) -> Result<Tensor> {
    let (bt, c, h, w) = xs.dims4()?;
    xs.reshape((b, bt / b, c, h, w))
}

/// diffusers' `[B, C, T, H, W]` to frame-major and back (the same permutation).
fn swap_time_channels(xs: &Tensor) -> Result<Tensor> {
    xs.permute((0, 2, 1, 3, 4))?.contiguous()
}

/// A Conv3d causal in time (padded on the left only). Candle has no Conv3d: the
/// temporal taps are stacked on the input channels, so that one Conv2d over frames
/// carrying their `kt - 1` predecessors computes all taps at once.
#[derive(Debug, Clone)]
struct CausalConv3d {
    /// `[out, kt * in, kh, kw]`, tap-major on the input channels.
    weight: Tensor,
    bias: Tensor,
    taps: usize,
    time_pad: usize,
    time_stride: usize,
    spatial_pad: usize,
}

impl CausalConv3d {
    fn new(
        in_c: usize,
        out_c: usize,
        kernel: [usize; 3],
        time_stride: usize,
        padding: [usize; 3],
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get((out_c, in_c, kernel[0], kernel[1], kernel[2]), "weight")?;
        let weight = weight
            .permute((0, 2, 1, 3, 4))?
            .reshape((out_c, kernel[0] * in_c, kernel[1], kernel[2]))?
            .contiguous()?;
        Ok(Self {
            weight,
            bias: vb.get(out_c, "bias")?,
            taps: kernel[0],
            time_pad: 2 * padding[0],
            time_stride,
            spatial_pad: padding[1],
        })
    }

    fn cube(in_c: usize, out_c: usize, k: usize, vb: VarBuilder) -> Result<Self> {
        let p = k / 2;
        Self::new(in_c, out_c, [k, k, k], 1, [p, p, p], vb)
    }

    /// `previous` holds frames that precede `xs` and replace as much of the zero
    /// padding.
    fn forward(&self, xs: &Tensor, previous: Option<&Tensor>) -> Result<Tensor> {
        let mut xs = xs.clone();
        let mut pad = self.time_pad;
        if let (Some(previous), true) = (previous, pad > 0) {
            pad -= previous.dim(TIME)?.min(pad);
            xs = Tensor::cat(&[previous, &xs], TIME)?;
        }
        if pad > 0 {
            xs = xs.pad_with_zeros(TIME, pad, 0)?;
        }
        let (b, t, ..) = xs.dims5()?;
        let t_out = (t - self.taps) / self.time_stride + 1;
        let shifted = (0..self.taps)
            .map(|k| {
                if self.time_stride == 1 {
                    xs.narrow(TIME, k, t_out)
                } else {
                    let idx: Vec<u32> = (0..t_out)
                        .map(|j| (k + j * self.time_stride) as u32)
                        .collect();
                    xs.index_select(&Tensor::new(idx, xs.device())?, TIME)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let stacked = if shifted.len() == 1 {
            shifted[0].clone()
        } else {
            Tensor::cat(&shifted, CHANNELS)?
        };
        let out = frames_to_batch(&stacked)?.conv2d(&self.weight, self.spatial_pad, 1, 1, 1)?;
        let out = out.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?;
        batch_to_frames(&out, b)
    }

    /// The chunked call: feeds the cached frames, remembers the last input frames.
    fn forward_cached(&self, xs: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let previous = match cache.take() {
            Slot::Frames(frames) => Some(frames),
            _ => None,
        };
        let keep = frames_to_keep(xs, previous.as_ref())?;
        let out = self.forward(xs, previous.as_ref())?;
        cache.put(Slot::Frames(keep));
        Ok(out)
    }
}

/// `F.normalize` over channels, times `sqrt(C) * gamma`.
#[derive(Debug, Clone)]
struct ChannelRmsNorm {
    gamma: Tensor,
    scale: f64,
    channel_dim: usize,
}

impl ChannelRmsNorm {
    /// `frames`: whether the input is frame-major `[B, T, C, H, W]` (else per-frame
    /// `[N, C, H, W]`); the checkpoint shapes gamma accordingly.
    fn new(dim: usize, frames: bool, vb: VarBuilder) -> Result<Self> {
        let (gamma, channel_dim) = if frames {
            let gamma = vb.get((dim, 1, 1, 1), "gamma")?;
            (gamma.reshape((1, 1, dim, 1, 1))?, CHANNELS)
        } else {
            let gamma = vb.get((dim, 1, 1), "gamma")?;
            (gamma.reshape((1, dim, 1, 1))?, 1)
        };
        Ok(Self {
            gamma,
            scale: (dim as f64).sqrt(),
            channel_dim,
        })
    }
}

impl Module for ChannelRmsNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dtype = xs.dtype();
        let x = xs.to_dtype(DType::F32)?;
        let norm = x
            .sqr()?
            .sum_keepdim(self.channel_dim)?
            .sqrt()?
            .maximum(1e-12)?;
        let x = x.broadcast_div(&norm)?.to_dtype(dtype)?;
        (x * self.scale)?.broadcast_mul(&self.gamma)
    }
}

#[derive(Debug, Clone)]
struct ResidualBlock {
    norm1: ChannelRmsNorm,
    conv1: CausalConv3d,
    norm2: ChannelRmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResidualBlock {
    fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: ChannelRmsNorm::new(in_dim, true, vb.pp("norm1"))?,
            conv1: CausalConv3d::cube(in_dim, out_dim, 3, vb.pp("conv1"))?,
            norm2: ChannelRmsNorm::new(out_dim, true, vb.pp("norm2"))?,
            conv2: CausalConv3d::cube(out_dim, out_dim, 3, vb.pp("conv2"))?,
            shortcut: if in_dim != out_dim {
                Some(CausalConv3d::cube(
                    in_dim,
                    out_dim,
                    1,
                    vb.pp("conv_shortcut"),
                )?)
            } else {
                None
            },
        })
    }

    fn forward(&self, xs: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let h = match &self.shortcut {
            Some(conv) => conv.forward(xs, None)?,
            None => xs.clone(),
        };
        let x = self.norm1.forward(xs)?.silu()?;
        let x = self.conv1.forward_cached(&x, cache)?;
        let x = self.norm2.forward(&x)?.silu()?;
        let x = self.conv2.forward_cached(&x, cache)?;
        x + h
    }
}

/// Single-head self-attention within each frame.
#[derive(Debug, Clone)]
struct FrameAttention {
    norm: ChannelRmsNorm,
    to_qkv: Conv2d,
    proj: Conv2d,
}

impl FrameAttention {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: ChannelRmsNorm::new(dim, false, vb.pp("norm"))?,
            to_qkv: candle_nn::conv2d(dim, 3 * dim, 1, Default::default(), vb.pp("to_qkv"))?,
            proj: candle_nn::conv2d(dim, dim, 1, Default::default(), vb.pp("proj"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, _, c, h, w) = xs.dims5()?;
        let x = frames_to_batch(xs)?;
        let n = x.dim(0)?;
        let qkv = self.to_qkv.forward(&self.norm.forward(&x)?)?;
        // [N, 3C, HW] -> [N, 1, HW, 3C]: one head over all channels.
        let qkv = qkv
            .reshape((n, 3 * c, h * w))?
            .transpose(1, 2)?
            .unsqueeze(1)?;
        let part = |i: usize| qkv.narrow(D::Minus1, i * c, c)?.contiguous();
        let out = attention(&part(0)?, &part(1)?, &part(2)?, 1.0 / (c as f64).sqrt())?;
        let out = out.squeeze(1)?.transpose(1, 2)?.reshape((n, c, h, w))?;
        let out = self.proj.forward(&out)?;
        batch_to_frames(&out, b)? + xs
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ResampleMode {
    Up2d,
    Up3d,
    Down2d,
    Down3d,
}

#[derive(Debug, Clone)]
struct Resample {
    mode: ResampleMode,
    conv: Conv2d,
    time_conv: Option<CausalConv3d>,
}

impl Resample {
    fn new(dim: usize, mode: ResampleMode, up_out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let (conv, time_conv) = match mode {
            ResampleMode::Up2d | ResampleMode::Up3d => {
                let cfg = Conv2dConfig {
                    padding: 1,
                    ..Default::default()
                };
                let conv = candle_nn::conv2d(dim, up_out_dim, 3, cfg, vb.pp("resample.1"))?;
                let time = (mode == ResampleMode::Up3d)
                    .then(|| {
                        CausalConv3d::new(dim, 2 * dim, [3, 1, 1], 1, [1, 0, 0], vb.pp("time_conv"))
                    })
                    .transpose()?;
                (conv, time)
            }
            ResampleMode::Down2d | ResampleMode::Down3d => {
                let cfg = Conv2dConfig {
                    stride: 2,
                    ..Default::default()
                };
                let conv = candle_nn::conv2d(dim, dim, 3, cfg, vb.pp("resample.1"))?;
                let time = (mode == ResampleMode::Down3d)
                    .then(|| {
                        CausalConv3d::new(dim, dim, [3, 1, 1], 2, [0, 0, 0], vb.pp("time_conv"))
                    })
                    .transpose()?;
                (conv, time)
            }
        };
        Ok(Self {
            mode,
            conv,
            time_conv,
        })
    }

    fn forward(&self, xs: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let mut x = xs.clone();
        if let (ResampleMode::Up3d, Some(time_conv)) = (self.mode, &self.time_conv) {
            // The first chunk (the first latent frame) is not doubled in time; the
            // second starts from zero padding rather than from the first.
            match cache.take() {
                Slot::Empty => cache.put(Slot::FirstSkipped),
                slot => {
                    let previous = match &slot {
                        Slot::Frames(frames) => Some(frames.clone()),
                        _ => None,
                    };
                    // After the skipped first chunk, a zero frame stands in front.
                    let before = match &previous {
                        Some(previous) => previous.clone(),
                        None => last_frames(&x, 1)?.zeros_like()?,
                    };
                    let keep = frames_to_keep(&x, Some(&before))?;
                    let doubled = time_conv.forward(&x, previous.as_ref())?;
                    cache.put(Slot::Frames(keep));
                    let (b, t, c2, h, w) = doubled.dims5()?;
                    // Channels [2, C] become two consecutive frames per input frame.
                    x = doubled.reshape((b, 2 * t, c2 / 2, h, w))?;
                }
            }
        }
        let (b, ..) = x.dims5()?;
        let frames = frames_to_batch(&x)?;
        let frames = match self.mode {
            ResampleMode::Up2d | ResampleMode::Up3d => {
                let (_, _, h, w) = frames.dims4()?;
                // Nearest-exact at an integer factor of 2 is plain pixel duplication.
                let up = frames
                    .to_dtype(DType::F32)?
                    .upsample_nearest2d(2 * h, 2 * w)?
                    .to_dtype(frames.dtype())?;
                self.conv.forward(&up)?
            }
            ResampleMode::Down2d | ResampleMode::Down3d => {
                let padded = frames.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
                self.conv.forward(&padded)?
            }
        };
        let mut x = batch_to_frames(&frames, b)?;
        if let (ResampleMode::Down3d, Some(time_conv)) = (self.mode, &self.time_conv) {
            match cache.take() {
                Slot::Frames(previous) => {
                    let keep = last_frames(&x, 1)?;
                    x = time_conv.forward(
                        &Tensor::cat(&[&last_frames(&previous, 1)?, &x], TIME)?,
                        None,
                    )?;
                    cache.put(Slot::Frames(keep));
                }
                _ => cache.put(Slot::Frames(x.clone())),
            }
        }
        Ok(x)
    }
}

/// The Wan2.2 encoder's parameter-free shortcut: space and time folded into channels,
/// then averaged in groups. Chunks whose length is not a multiple of the temporal
/// factor are padded with zero frames in front.
#[derive(Debug, Clone)]
struct AvgDown3d {
    out_c: usize,
    factor_t: usize,
    factor_s: usize,
}

impl AvgDown3d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (ft, fs) = (self.factor_t, self.factor_s);
        let t = xs.dim(TIME)?;
        let pad = (ft - t % ft) % ft;
        let x = xs.pad_with_zeros(TIME, pad, 0)?;
        let (b, t, c, h, w) = x.dims5()?;
        let factor = ft * fs * fs;
        let (t2, h2, w2) = (t / ft, h / fs, w / fs);
        // Channel index c * factor + (ft, fs_h, fs_w), then averaged in groups.
        x.reshape(vec![b, t2, ft, c, h2, fs, w2, fs])?
            .permute([0, 1, 3, 2, 5, 7, 4, 6])?
            .reshape((b, t2, self.out_c, c * factor / self.out_c, h2, w2))?
            .mean(3)
    }
}

/// The Wan2.2 decoder's shortcut: channels repeated and unfolded into space and time.
#[derive(Debug, Clone)]
struct DupUp3d {
    out_c: usize,
    factor_t: usize,
    factor_s: usize,
}

impl DupUp3d {
    fn forward(&self, xs: &Tensor, first_chunk: bool) -> Result<Tensor> {
        let (ft, fs) = (self.factor_t, self.factor_s);
        let (b, t, c, h, w) = xs.dims5()?;
        let repeats = self.out_c * ft * fs * fs / c;
        // Each channel repeated in place (`repeat_interleave`), the copies then unfolded
        // into (time, height, width) offsets.
        let x = xs
            .unsqueeze(3)?
            .broadcast_as(vec![b, t, c, repeats, h, w])?
            .reshape(vec![b, t, self.out_c, ft, fs, fs, h, w])?
            .permute([0, 1, 3, 2, 6, 4, 7, 5])?
            .reshape((b, t * ft, self.out_c, h * fs, w * fs))?;
        if first_chunk {
            x.narrow(TIME, ft - 1, t * ft - (ft - 1))
        } else {
            Ok(x)
        }
    }
}

#[derive(Debug, Clone)]
struct MidBlock {
    res0: ResidualBlock,
    attn: FrameAttention,
    res1: ResidualBlock,
}

impl MidBlock {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            res0: ResidualBlock::new(dim, dim, vb.pp("resnets.0"))?,
            attn: FrameAttention::new(dim, vb.pp("attentions.0"))?,
            res1: ResidualBlock::new(dim, dim, vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, xs: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let x = self.res0.forward(xs, cache)?;
        let x = self.attn.forward(&x)?;
        self.res1.forward(&x, cache)
    }
}

/// One stage of the encoder or decoder: residual blocks, an optional resampler, and in
/// Wan2.2 a parameter-free shortcut.
#[derive(Debug, Clone)]
struct Stage {
    resnets: Vec<ResidualBlock>,
    resample: Option<Resample>,
    down_shortcut: Option<AvgDown3d>,
    up_shortcut: Option<DupUp3d>,
}

impl Stage {
    fn forward(&self, xs: &Tensor, cache: &mut FeatureCache, first_chunk: bool) -> Result<Tensor> {
        let mut x = xs.clone();
        for resnet in &self.resnets {
            x = resnet.forward(&x, cache)?;
        }
        if let Some(resample) = &self.resample {
            x = resample.forward(&x, cache)?;
        }
        if let Some(shortcut) = &self.down_shortcut {
            x = (x + shortcut.forward(xs)?)?;
        }
        if let Some(shortcut) = &self.up_shortcut {
            x = (x + shortcut.forward(xs, first_chunk)?)?;
        }
        Ok(x)
    }
}

/// Encoder or decoder trunk: conv_in, stages (mid block first when decoding), norm,
/// SiLU, conv_out.
#[derive(Debug, Clone)]
struct Trunk {
    conv_in: CausalConv3d,
    mid: MidBlock,
    stages: Vec<Stage>,
    mid_first: bool,
    norm_out: ChannelRmsNorm,
    conv_out: CausalConv3d,
}

impl Trunk {
    fn forward(&self, xs: &Tensor, cache: &mut FeatureCache, first_chunk: bool) -> Result<Tensor> {
        cache.start_chunk();
        let mut x = self.conv_in.forward_cached(xs, cache)?;
        if self.mid_first {
            x = self.mid.forward(&x, cache)?;
        }
        for stage in &self.stages {
            x = stage.forward(&x, cache, first_chunk)?;
        }
        if !self.mid_first {
            x = self.mid.forward(&x, cache)?;
        }
        let x = self.norm_out.forward(&x)?.silu()?;
        self.conv_out.forward_cached(&x, cache)
    }
}

fn encoder(cfg: &VaeConfig, vb: VarBuilder) -> Result<Trunk> {
    let dims: Vec<usize> = std::iter::once(1)
        .chain(cfg.dim_mult.iter().copied())
        .map(|m| cfg.base_dim * m)
        .collect();
    let last = cfg.dim_mult.len() - 1;
    let mut stages = Vec::new();
    let mut flat = 0;
    for i in 0..cfg.dim_mult.len() {
        let (in_dim, out_dim) = (dims[i], dims[i + 1]);
        let down = i != last;
        let temporal = down && cfg.temperal_downsample[i];
        let mode = if temporal {
            ResampleMode::Down3d
        } else {
            ResampleMode::Down2d
        };
        if cfg.is_residual {
            let vb = vb.pp(format!("down_blocks.{i}"));
            let resnets = (0..cfg.num_res_blocks)
                .map(|j| {
                    let d = if j == 0 { in_dim } else { out_dim };
                    ResidualBlock::new(d, out_dim, vb.pp(format!("resnets.{j}")))
                })
                .collect::<Result<_>>()?;
            stages.push(Stage {
                resnets,
                resample: down
                    .then(|| Resample::new(out_dim, mode, out_dim, vb.pp("downsampler")))
                    .transpose()?,
                down_shortcut: Some(AvgDown3d {
                    out_c: out_dim,
                    factor_t: if temporal { 2 } else { 1 },
                    factor_s: if down { 2 } else { 1 },
                }),
                up_shortcut: None,
            });
        } else {
            // Wan2.1 keeps its encoder layers in one flat list.
            let mut resnets = Vec::new();
            let mut d = in_dim;
            for _ in 0..cfg.num_res_blocks {
                resnets.push(ResidualBlock::new(
                    d,
                    out_dim,
                    vb.pp(format!("down_blocks.{flat}")),
                )?);
                flat += 1;
                d = out_dim;
            }
            let resample = if down {
                flat += 1;
                Some(Resample::new(
                    out_dim,
                    mode,
                    out_dim,
                    vb.pp(format!("down_blocks.{}", flat - 1)),
                )?)
            } else {
                None
            };
            stages.push(Stage {
                resnets,
                resample,
                down_shortcut: None,
                up_shortcut: None,
            });
        }
    }
    let top = dims[dims.len() - 1];
    Ok(Trunk {
        conv_in: CausalConv3d::cube(cfg.in_channels, dims[0], 3, vb.pp("conv_in"))?,
        mid: MidBlock::new(top, vb.pp("mid_block"))?,
        stages,
        mid_first: false,
        norm_out: ChannelRmsNorm::new(top, true, vb.pp("norm_out"))?,
        conv_out: CausalConv3d::cube(top, 2 * cfg.z_dim, 3, vb.pp("conv_out"))?,
    })
}

fn decoder(cfg: &VaeConfig, vb: VarBuilder) -> Result<Trunk> {
    let base = cfg.decoder_base_dim.unwrap_or(cfg.base_dim);
    let mults: Vec<usize> = std::iter::once(cfg.dim_mult[cfg.dim_mult.len() - 1])
        .chain(cfg.dim_mult.iter().rev().copied())
        .collect();
    let dims: Vec<usize> = mults.iter().map(|m| base * m).collect();
    let upsample: Vec<bool> = cfg.temperal_downsample.iter().rev().copied().collect();
    let last = cfg.dim_mult.len() - 1;
    let mut stages = Vec::new();
    for i in 0..cfg.dim_mult.len() {
        let (mut in_dim, out_dim) = (dims[i], dims[i + 1]);
        // Wan2.1's upsamplers halve the channels, which the next stage takes in.
        if i > 0 && !cfg.is_residual {
            in_dim /= 2;
        }
        let up = i != last;
        let temporal = up && upsample[i];
        let mode = if temporal {
            ResampleMode::Up3d
        } else {
            ResampleMode::Up2d
        };
        let vb = vb.pp(format!("up_blocks.{i}"));
        let resnets = (0..=cfg.num_res_blocks)
            .map(|j| {
                let d = if j == 0 { in_dim } else { out_dim };
                ResidualBlock::new(d, out_dim, vb.pp(format!("resnets.{j}")))
            })
            .collect::<Result<_>>()?;
        let (resample, up_shortcut) = match (up, cfg.is_residual) {
            (false, _) => (None, None),
            (true, true) => (
                Some(Resample::new(out_dim, mode, out_dim, vb.pp("upsampler"))?),
                Some(DupUp3d {
                    out_c: out_dim,
                    factor_t: if temporal { 2 } else { 1 },
                    factor_s: 2,
                }),
            ),
            (true, false) => (
                Some(Resample::new(
                    out_dim,
                    mode,
                    out_dim / 2,
                    vb.pp("upsamplers.0"),
                )?),
                None,
            ),
        };
        stages.push(Stage {
            resnets,
            resample,
            down_shortcut: None,
            up_shortcut,
        });
    }
    let out = dims[dims.len() - 1];
    Ok(Trunk {
        conv_in: CausalConv3d::cube(cfg.z_dim, dims[0], 3, vb.pp("conv_in"))?,
        mid: MidBlock::new(dims[0], vb.pp("mid_block"))?,
        stages,
        mid_first: true,
        norm_out: ChannelRmsNorm::new(out, true, vb.pp("norm_out"))?,
        conv_out: CausalConv3d::cube(out, cfg.out_channels, 3, vb.pp("conv_out"))?,
    })
}

/// Wan2.2 folds 2x2 pixel blocks into channels (channel index `c * 4 + pw * 2 + ph`),
/// on frame-major video.
fn patchify(xs: &Tensor, p: usize) -> Result<Tensor> {
    let (b, f, c, h, w) = xs.dims5()?;
    if !h.is_multiple_of(p) || !w.is_multiple_of(p) {
        candle_core::bail!("frame size {h}x{w} is not a multiple of the VAE patch size {p}");
    }
    xs.reshape(vec![b, f, c, h / p, p, w / p, p])?
        .permute([0, 1, 2, 6, 4, 3, 5])?
        .reshape((b, f, c * p * p, h / p, w / p))
}

fn unpatchify(xs: &Tensor, p: usize) -> Result<Tensor> {
    let (b, f, cp, h, w) = xs.dims5()?;
    xs.reshape(vec![b, f, cp / (p * p), p, p, h, w])?
        .permute([0, 1, 2, 5, 4, 6, 3])?
        .reshape((b, f, cp / (p * p), h * p, w * p))
}

/// `AutoencoderKLWan`.
#[derive(Debug, Clone)]
pub struct WanVae {
    encoder: Trunk,
    decoder: Trunk,
    quant_conv: CausalConv3d,
    post_quant_conv: CausalConv3d,
    latents_mean: Tensor,
    latents_inv_std: Tensor,
    cfg: VaeConfig,
}

impl WanVae {
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let z = cfg.z_dim;
        // Attention inside the encoder stages exists in the original code but in no
        // released checkpoint, and diffusers cannot run it; refuse it rather than guess.
        if !cfg.attn_scales.is_empty() {
            candle_core::bail!("attn_scales {:?} is not supported", cfg.attn_scales);
        }
        if cfg.latents_mean.len() != z || cfg.latents_std.len() != z {
            candle_core::bail!("latents_mean and latents_std must have z_dim = {z} entries");
        }
        let stats = |v: Vec<f32>| Tensor::from_vec(v, (1, z, 1, 1, 1), vb.device());
        Ok(Self {
            encoder: encoder(cfg, vb.pp("encoder"))?,
            decoder: decoder(cfg, vb.pp("decoder"))?,
            quant_conv: CausalConv3d::cube(2 * z, 2 * z, 1, vb.pp("quant_conv"))?,
            post_quant_conv: CausalConv3d::cube(z, z, 1, vb.pp("post_quant_conv"))?,
            // The pipelines normalise in f32 with 1/std precomputed.
            latents_mean: stats(cfg.latents_mean.iter().map(|&m| m as f32).collect())?,
            latents_inv_std: stats(cfg.latents_std.iter().map(|&s| 1.0 / s as f32).collect())?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// The distribution's mode `[B, z, 1 + (F-1)/4, H/s, W/s]` of video `[B, C, F, H, W]`
    /// in [-1, 1], encoded one frame and then one temporal-factor chunk at a time.
    pub fn encode(&self, video: &Tensor) -> Result<Tensor> {
        let x = swap_time_channels(video)?;
        let x = match self.cfg.patch_size {
            Some(p) => patchify(&x, p)?,
            None => x,
        };
        let frames = x.dim(TIME)?;
        let step = self.cfg.temporal_factor();
        let mut cache = FeatureCache::default();
        let mut outputs = vec![
            self.encoder
                .forward(&x.narrow(TIME, 0, 1)?, &mut cache, true)?,
        ];
        let mut start = 1;
        while start < frames {
            let len = step.min(frames - start);
            outputs.push(
                self.encoder
                    .forward(&x.narrow(TIME, start, len)?, &mut cache, false)?,
            );
            start += len;
        }
        let moments = self
            .quant_conv
            .forward(&Tensor::cat(&outputs, TIME)?, None)?;
        swap_time_channels(&moments.narrow(CHANNELS, 0, self.cfg.z_dim)?)
    }

    /// Video `[B, C, F, H, W]` clamped to [-1, 1] of latents `[B, z, T, h, w]`, decoded
    /// one latent frame at a time.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let z = self
            .post_quant_conv
            .forward(&swap_time_channels(latents)?, None)?;
        let mut cache = FeatureCache::default();
        let outputs = (0..z.dim(TIME)?)
            .map(|i| {
                self.decoder
                    .forward(&z.narrow(TIME, i, 1)?, &mut cache, i == 0)
            })
            .collect::<Result<Vec<_>>>()?;
        let out = Tensor::cat(&outputs, TIME)?;
        let out = match self.cfg.patch_size {
            Some(p) => unpatchify(&out, p)?,
            None => out,
        };
        swap_time_channels(&out)?.clamp(-1f32, 1f32)
    }

    /// `(x - mean) / std`, the pipelines' latent normalisation.
    pub fn normalize(&self, latents: &Tensor) -> Result<Tensor> {
        let dtype = latents.dtype();
        latents
            .to_dtype(DType::F32)?
            .broadcast_sub(&self.latents_mean)?
            .broadcast_mul(&self.latents_inv_std)?
            .to_dtype(dtype)
    }

    pub fn denormalize(&self, latents: &Tensor) -> Result<Tensor> {
        let dtype = latents.dtype();
        latents
            .to_dtype(DType::F32)?
            .broadcast_div(&self.latents_inv_std)?
            .broadcast_add(&self.latents_mean)?
            .to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::collections::HashMap;

    fn conv(weight: Vec<f32>, in_c: usize, out_c: usize, bias: f32) -> Result<CausalConv3d> {
        let dev = Device::Cpu;
        let tensors = HashMap::from([
            (
                "weight".to_string(),
                Tensor::from_vec(weight, (out_c, in_c, 3, 3, 3), &dev)?,
            ),
            ("bias".to_string(), Tensor::full(bias, out_c, &dev)?),
        ]);
        CausalConv3d::cube(
            in_c,
            out_c,
            3,
            VarBuilder::from_tensors(tensors, DType::F32, &dev),
        )
    }

    fn clip(frames: usize, offset: f32) -> Result<Tensor> {
        let values: Vec<f32> = (0..frames * 9)
            .map(|i| {
                let (t, h, w) = (i / 9, (i / 3) % 3, i % 3);
                ((t * 7 + h * 3 + w) as f32).sin() + if t >= 2 { offset } else { 0.0 }
            })
            .collect();
        Tensor::from_vec(values, (1, frames, 1, 3, 3), &Device::Cpu)
    }

    #[test]
    fn causal_conv3d_matches_diffusers() -> Result<()> {
        // WanCausalConv3d(1, 1, 3, padding=1) with weight[k, i, j] = (9k + 3i + j + 1) / 27,
        // bias 0.5, on x[t, h, w] = sin(7t + 3h + w); diffusers 0.42.1.
        let c = conv((1..=27).map(|v| v as f32 / 27.0).collect(), 1, 1, 0.5)?;
        let y = c.forward(&clip(4, 0.0)?, None)?;
        assert_eq!(y.dims(), &[1, 4, 1, 3, 3]);
        let y = y.squeeze(0)?.squeeze(1)?;
        let centre: Vec<f32> = (0..4)
            .map(|t| y.get(t)?.get(1)?.get(1)?.to_scalar::<f32>())
            .collect::<Result<_>>()?;
        let expected = [1.8117628f32, 3.0342937, 3.1474173, 1.9083314];
        for (a, b) in centre.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{centre:?}");
        }
        assert!((y.get(0)?.get(0)?.get(0)?.to_scalar::<f32>()? - 0.627_065).abs() < 1e-5);
        assert!((y.get(3)?.get(2)?.get(0)?.to_scalar::<f32>()? - 1.1410277).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn causal_conv3d_output_ignores_later_frames() -> Result<()> {
        let weight: Vec<f32> = (0..2 * 2 * 27)
            .map(|v| ((v * 37 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let c = conv(weight, 2, 2, 0.1)?;
        let base = Tensor::cat(&[clip(5, 0.0)?, clip(5, 0.0)?.affine(-1.0, 0.3)?], CHANNELS)?;
        // Frames 2.. change; outputs 0 and 1 must not, output 2 must.
        let changed = Tensor::cat(&[clip(5, 3.0)?, clip(5, 3.0)?.affine(-1.0, 0.3)?], CHANNELS)?;
        let (a, b) = (c.forward(&base, None)?, c.forward(&changed, None)?);
        let diff = |t: usize| -> Result<f32> {
            (a.narrow(TIME, t, 1)? - b.narrow(TIME, t, 1)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()
        };
        assert_eq!(diff(0)?, 0.0);
        assert_eq!(diff(1)?, 0.0);
        assert!(diff(2)? > 0.1);
        Ok(())
    }

    #[test]
    fn chunked_causal_conv3d_equals_whole_clip() -> Result<()> {
        let c = conv(
            (0..27).map(|v| (v as f32 - 13.0) / 20.0).collect(),
            1,
            1,
            -0.2,
        )?;
        let x = clip(5, 0.5)?;
        let whole = c.forward(&x, None)?;
        let mut cache = FeatureCache::default();
        let mut parts = Vec::new();
        for (start, len) in [(0, 1), (1, 1), (2, 3)] {
            cache.start_chunk();
            parts.push(c.forward_cached(&x.narrow(TIME, start, len)?, &mut cache)?);
        }
        let chunked = Tensor::cat(&parts, TIME)?;
        let diff = (whole - chunked)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }
}
