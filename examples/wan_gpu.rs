//! The GPU checks of the Wan port, as one program that links no GStreamer (it uses
//! `gstwanedit::wan` only), built once with `--features cuda` and carried to a GPU
//! machine by `scripts/gpu-check.sh`:
//!
//! ```text
//! wan_gpu parity <cases dir> [device]   parity cases (f32 within 1e-3, bf16 within 2e-2)
//!                                       and the fused attention against the blocked one
//! wan_gpu bench <wan2.1-1.3b|wan2.2-5b> [device] [key=value...]
//!                                       one denoising step with CFG (two DiT forwards),
//!                                       random weights; prints one JSON line
//! wan_gpu bench attention [device] [key=value...]
//!                                       one self-attention alone; one JSON line
//! ```
//!
//! Bench options: `frames=81 height=480 width=832 layers=<all> steps=2`, for attention
//! `tokens=32760 heads=12 steps=10`; `device` is `cuda:N` (bf16) or `cpu` (f32).

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use gstwanedit::wan::{self, TransformerConfig, WanTransformer};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("parity") if args.len() >= 2 => parity(Path::new(&args[1]), device(args.get(2))?),
        Some("bench") if args.len() >= 2 => bench(&args[1], device(args.get(2))?, &args[3.min(args.len())..]),
        _ => Err("usage: wan_gpu parity <cases dir> [device] | wan_gpu bench <wan2.1-1.3b|wan2.2-5b|attention> [device] [key=value...]".into()),
    }
}

fn device(name: Option<&String>) -> Result<Device> {
    match name.map(String::as_str).unwrap_or("cuda:0") {
        "cpu" => Ok(Device::Cpu),
        other => match other.strip_prefix("cuda:").map(str::parse) {
            Some(Ok(n)) => Ok(Device::new_cuda(n)?),
            _ => Err(format!("device {other:?}: give cpu or cuda:N").into()),
        },
    }
}

/// The fused attention against the blocked one in f32 of the same bf16 values; returns
/// the number of comparisons over tolerance.
#[cfg(feature = "cuda")]
fn fused_attention(device: &Device) -> Result<usize> {
    println!("self-check: {}", wan::flash_attn::self_check(device));
    let mut failed = 0;
    // (batch, heads, queries, keys): tails of both tile sizes (128 queries, 64 keys), a
    // single key, cross-attention to the 512 text tokens, and one head of a 480p
    // self-attention.
    for (b, h, sq, skv) in [
        (1, 2, 37, 77),
        (2, 3, 129, 64),
        (1, 2, 200, 1),
        (1, 12, 1000, 512),
        (1, 1, 32760, 32760),
    ] {
        let error = wan::flash_attn::error_against_blocked(device, (b, h, sq, skv))?;
        let ok = error <= wan::flash_attn::TOLERANCE;
        failed += usize::from(!ok);
        let verdict = if ok { "within" } else { "EXCEEDS" };
        println!(
            "attention bf16 b={b} h={h} q={sq} kv={skv}: {error:.3e} ({verdict} tolerance {:.0e})",
            wan::flash_attn::TOLERANCE
        );
    }
    Ok(failed)
}

/// bf16 on CUDA, f32 on the CPU (Candle's CPU matmul has no bf16).
fn run_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    }
}

fn parity(root: &Path, device: Device) -> Result<()> {
    let mut dirs: Vec<_> = std::fs::read_dir(root)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    dirs.retain(|d| d.is_dir());
    dirs.sort();
    let mut failed = 0;
    for (dtype, tolerance) in [(DType::F32, 1e-3), (DType::BF16, 2e-2)] {
        if dtype == DType::BF16 && !device.is_cuda() {
            continue;
        }
        for dir in &dirs {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            match wan::parity::run_case(dir, &device, dtype, Some(tolerance)) {
                Ok(stages) => {
                    for stage in stages {
                        failed += usize::from(!stage.passed());
                        println!("parity {dtype:?} {name}: {stage}");
                    }
                }
                Err(e) => {
                    failed += 1;
                    println!("parity {dtype:?} {name}: FAILED: {e}");
                }
            }
        }
    }
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        failed += fused_attention(&device)?;
    }
    if failed > 0 {
        return Err(format!("{failed} parity checks failed").into());
    }
    Ok(())
}

/// Weights drawn at random: the timing of a forward does not depend on their values.
struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        _: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        Tensor::randn(0f32, 0.02, s, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// The transformer configurations of the real checkpoints.
fn config(name: &str) -> Result<TransformerConfig> {
    let (heads, channels_in, channels_out, ffn) = match name {
        "wan2.1-1.3b" => (12, 16, 16, 8960),
        // Lucy-Edit-Dev: Wan2.2 TI2V-5B with the source latents on the input channels.
        "wan2.2-5b" => (24, 96, 48, 14336),
        other => return Err(format!("unknown configuration {other}").into()),
    };
    Ok(serde_json::from_value(serde_json::json!({
        "patch_size": [1, 2, 2],
        "num_attention_heads": heads,
        "attention_head_dim": 128,
        "in_channels": channels_in,
        "out_channels": channels_out,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": ffn,
        "num_layers": 30,
        "cross_attn_norm": true,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "rope_max_seq_len": 1024
    }))?)
}

/// Multiply-adds of one forward, counted as 2 FLOPs each: projections, attention and
/// feed-forward of every block (embeddings and the output head are negligible).
fn forward_flops(cfg: &TransformerConfig, tokens: usize, text: usize) -> f64 {
    let (n, t, d, f) = (
        tokens as f64,
        text as f64,
        cfg.inner_dim() as f64,
        cfg.ffn_dim as f64,
    );
    let self_attention = 4.0 * 2.0 * n * d * d + 2.0 * 2.0 * n * n * d;
    let cross_attention = 2.0 * 2.0 * n * d * d + 2.0 * 2.0 * t * d * d + 2.0 * 2.0 * n * t * d;
    let feed_forward = 2.0 * 2.0 * n * d * f;
    cfg.num_layers as f64 * (self_attention + cross_attention + feed_forward)
}

/// `key=value` options of the bench command.
fn option(options: &[String], key: &str, default: usize) -> Result<usize> {
    options
        .iter()
        .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .map_or(Ok(default), |v| Ok(v.parse()?))
}

/// Seconds per call of `f`, after one warm-up call (kernels loaded, memory pools grown).
fn seconds_per_call(device: &Device, calls: usize, f: impl Fn() -> Result<()>) -> Result<f64> {
    f()?;
    device.synchronize()?;
    let start = Instant::now();
    for _ in 0..calls {
        f()?;
    }
    device.synchronize()?;
    Ok(start.elapsed().as_secs_f64() / calls as f64)
}

/// Which attention `wan::attention` runs on this device.
fn attention_kind(device: &Device) -> &'static str {
    #[cfg(feature = "cuda")]
    if device.is_cuda() && wan::flash_attn::self_check(device).passed() {
        return "fused";
    }
    let _ = device;
    "blocked"
}

fn bench(name: &str, device: Device, options: &[String]) -> Result<()> {
    if name == "attention" {
        return bench_attention(device, options);
    }
    let mut cfg = config(name)?;
    cfg.num_layers = option(options, "layers", cfg.num_layers)?;
    let (frames, height, width, steps) = (
        option(options, "frames", 81)?,
        option(options, "height", 480)?,
        option(options, "width", 832)?,
        option(options, "steps", 2)?,
    );
    // The VAE's compression: 4x in time; 8x in space for Wan2.1, 16x for Wan2.2.
    let spatial = if cfg.out_channels == 48 { 16 } else { 8 };
    let latent = (
        1,
        cfg.in_channels,
        (frames - 1) / 4 + 1,
        height / spatial,
        width / spatial,
    );
    let [pt, ph, pw] = cfg.patch_size;
    let tokens = latent.2 / pt * (latent.3 / ph) * (latent.4 / pw);
    let dtype = run_dtype(&device);
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), dtype, device.clone());
    let model = WanTransformer::new(&cfg, vb)?;
    let latents = Tensor::randn(0f32, 1.0, latent, &device)?.to_dtype(dtype)?;
    let text = |seed: f64| -> Result<Tensor> {
        let t = (Tensor::randn(0f32, 1.0, (1, 512, 4096), &device)? + seed)?;
        Ok(model.embed_text(&t.to_dtype(dtype)?)?)
    };
    let (cond, uncond) = (text(0.0)?, text(0.1)?);
    let seconds = seconds_per_call(&device, steps, || {
        let a = model.forward(&latents, 999.0, &cond)?;
        let b = model.forward(&latents, 999.0, &uncond)?;
        // CFG as the pipelines combine it.
        let _ = (&b + ((a - &b)? * 5.0)?)?;
        Ok(())
    })?;
    let flops = 2.0 * forward_flops(&cfg, tokens, 512);
    println!(
        "{}",
        serde_json::json!({
            "impl": "candle",
            "config": name,
            "attention": attention_kind(&device),
            "frames": frames, "height": height, "width": width, "layers": cfg.num_layers,
            "tokens": tokens,
            "seconds_per_step": seconds,
            "tflop_per_step": flops / 1e12,
            "tflops": flops / seconds / 1e12,
        })
    );
    Ok(())
}

/// One self-attention of a DiT block alone (`tokens=32760 heads=12 steps=10`): the
/// kernel's own speed, apart from the projections around it.
fn bench_attention(device: Device, options: &[String]) -> Result<()> {
    let (tokens, heads, calls) = (
        option(options, "tokens", 32760)?,
        option(options, "heads", 12)?,
        option(options, "steps", 10)?,
    );
    let dtype = run_dtype(&device);
    let qkv = || Tensor::randn(0f32, 1.0, (1, heads, tokens, 128), &device)?.to_dtype(dtype);
    let (q, k, v) = (qkv()?, qkv()?, qkv()?);
    let scale = 1.0 / 128f64.sqrt();
    let seconds = seconds_per_call(&device, calls, || {
        wan::attention(&q, &k, &v, scale)?;
        Ok(())
    })?;
    let flops = 4.0 * (tokens as f64).powi(2) * 128.0 * heads as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "candle",
            "config": "attention",
            "attention": attention_kind(&device),
            "heads": heads,
            "tokens": tokens,
            "seconds_per_step": seconds,
            "tflop_per_step": flops / 1e12,
            "tflops": flops / seconds / 1e12,
        })
    );
    Ok(())
}
