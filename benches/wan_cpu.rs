//! One DiT forward and one VAE decode on the CPU, at the size of the largest committed
//! parity case (`scripts/bench_wan.sh` compares them with diffusers on the same machine).

use std::hint::black_box;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use gstwanedit::wan;

/// The committed case with the most latent tokens: 13 frames of 32x64.
const CASE: &str = "tests/fixtures/parity/t2v_wide_f13_4steps_cfg_empty_negative";

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CASE);
    let device = Device::Cpu;
    let model = wan::load(dir.join("model").to_str().unwrap(), &device, DType::F32).unwrap();
    let inputs = candle_core::safetensors::load(dir.join("inputs.safetensors"), &device).unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &device).unwrap();
    let noise: &Tensor = &inputs["noise"];
    let context = model
        .transformer()
        .embed_text(&expected["prompt_embeds"])
        .unwrap();
    let latents = model.vae().denormalize(&expected["final_latents"]).unwrap();

    c.bench_function("wan_dit_forward", |b| {
        b.iter(|| black_box(model.transformer().forward(noise, 999.0, &context).unwrap()))
    });
    c.bench_function("wan_vae_decode", |b| {
        b.iter(|| black_box(model.vae().decode(&latents).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
