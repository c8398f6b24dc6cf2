//! The loader on damaged and rearranged copies of a committed parity model: clear
//! errors naming the file, sharded weights, half-precision files, and repository ids
//! resolved through the Hugging Face cache.

mod support;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use gstwanedit::wan::{self, WanError};

const CASE: &str = "tests/fixtures/parity/t2v_square_f5_1step";

/// A fresh copy of the case's model directory, removed when dropped.
struct ModelCopy(PathBuf);

impl std::ops::Deref for ModelCopy {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ModelCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn model_copy(test: &str) -> ModelCopy {
    let dir = std::env::temp_dir().join(format!("wanedit-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    support::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(CASE)
            .join("model"),
        &dir,
    );
    ModelCopy(dir)
}

fn load(dir: &Path) -> wan::Result<wan::WanModel> {
    wan::load(dir.to_str().unwrap(), &Device::Cpu, DType::F32)
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

fn error_of(result: wan::Result<wan::WanModel>) -> WanError {
    match result {
        Ok(_) => panic!("loading succeeded"),
        Err(e) => e,
    }
}

/// A damage done to a fresh model copy, and what the load error must say of it.
struct Damage {
    name: &'static str,
    damage: fn(&Path),
    /// The error variant, where the case pins one.
    variant: Option<fn(&WanError) -> bool>,
    /// What the message must name.
    names: &'static [&'static str],
}

fn damages() -> Vec<Damage> {
    vec![
        Damage {
            name: "unknown-class",
            damage: |dir| {
                edit_json(&dir.join("model_index.json"), |v| {
                    v["_class_name"] = "StableDiffusionPipeline".into()
                })
            },
            variant: Some(|e| matches!(e, WanError::UnknownClass { .. })),
            names: &["model_index.json", "StableDiffusionPipeline"],
        },
        Damage {
            name: "missing-weights",
            damage: |dir| {
                std::fs::remove_file(dir.join("transformer/diffusion_pytorch_model.safetensors"))
                    .unwrap()
            },
            variant: None,
            names: &["transformer/diffusion_pytorch_model.safetensors"],
        },
        Damage {
            name: "missing-config",
            damage: |dir| std::fs::remove_file(dir.join("vae/config.json")).unwrap(),
            variant: None,
            names: &["vae/config.json", "missing"],
        },
        Damage {
            name: "wrong-shape",
            damage: |dir| {
                edit_json(&dir.join("transformer/config.json"), |v| {
                    v["ffn_dim"] = 50.into()
                })
            },
            variant: Some(|e| matches!(e, WanError::Weight { .. })),
            // The weight file and the tensor.
            names: &[
                "transformer/diffusion_pytorch_model.safetensors",
                "ffn.net.0.proj.weight",
            ],
        },
        Damage {
            name: "missing-shard",
            damage: |dir| {
                let index = serde_json::json!({ "weight_map": { "proj_out.weight": "diffusion_pytorch_model-00001-of-00002.safetensors" } });
                std::fs::remove_file(dir.join("transformer/diffusion_pytorch_model.safetensors"))
                    .unwrap();
                std::fs::write(
                    dir.join("transformer/diffusion_pytorch_model.safetensors.index.json"),
                    index.to_string(),
                )
                .unwrap();
            },
            variant: None,
            names: &["diffusion_pytorch_model-00001-of-00002.safetensors"],
        },
    ]
}

#[test]
fn load_errors_name_what_is_damaged() {
    for case in damages() {
        let dir = model_copy(case.name);
        (case.damage)(&dir);
        let err = error_of(load(&dir));
        let message = err.to_string();
        if let Some(variant) = case.variant {
            assert!(variant(&err), "{}: wrong variant: {message}", case.name);
        }
        for name in case.names {
            assert!(
                message.contains(name),
                "{}: `{name}` not named: {message}",
                case.name
            );
        }
    }
}

/// The transformer split over two shards with an index loads to the same model.
#[test]
fn sharded_weights_load_identically() {
    let dir = model_copy("sharded");
    let file = dir.join("transformer/diffusion_pytorch_model.safetensors");
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    std::fs::remove_file(&file).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    let mut weight_map = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        let shard = i % 2;
        shards[shard].insert((*name).clone(), tensors[*name].clone());
        let shard_name = format!(
            "diffusion_pytorch_model-0000{}-of-00002.safetensors",
            shard + 1
        );
        weight_map.insert((*name).clone(), shard_name.into());
    }
    for (i, shard) in shards.iter().enumerate() {
        let path = dir.join(format!(
            "transformer/diffusion_pytorch_model-0000{}-of-00002.safetensors",
            i + 1
        ));
        candle_core::safetensors::save(shard, path).unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        dir.join("transformer/diffusion_pytorch_model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let sharded = load(&dir).unwrap();
    let original = load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(CASE)
            .join("model"),
    )
    .unwrap();
    let latents = Tensor::randn(0f32, 1.0, (1, 16, 2, 4, 4), &Device::Cpu).unwrap();
    let text = Tensor::randn(0f32, 1.0, (1, 512, 32), &Device::Cpu).unwrap();
    let run = |m: &wan::WanModel| {
        let ctx = m.transformer().embed_text(&text).unwrap();
        m.transformer().forward(&latents, 500.0, &ctx).unwrap()
    };
    let diff = (run(&sharded) - run(&original))
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn the_text_encoder_can_be_dropped_after_encoding() {
    let mut model = load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(CASE)
            .join("model"),
    )
    .unwrap();
    assert_eq!(model.kind(), wan::PipelineKind::TextToVideo);
    let embeds = model.encode_prompts("a horse", "", 5.0).unwrap();
    assert_eq!(embeds.cond.dims(), &[1, 512, 32]);
    model.drop_text_encoder();
    assert!(model.encode_prompt("a horse").is_err());
    // The cached embeddings still drive the pipeline.
    let sampling = wan::Sampling {
        num_inference_steps: 1,
        guidance_scale: 5.0,
        noise: wan::Noise::Seed(7),
        flow_shift: None,
        anchor: None,
    };
    let out = model
        .text2video(&embeds, 5, 32, 32, &sampling, &mut |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(out.video.dims(), &[5, 32, 32, 3]);
}

/// Weights converted to half precision at load run the whole pipeline, close to f32
/// (f16: Candle's CPU matmul has no bf16).
#[test]
fn half_precision_runs_close_to_f32() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity/v2v_square_f5_4steps_cfg");
    let video = candle_core::safetensors::load(dir.join("inputs.safetensors"), &Device::Cpu)
        .unwrap()["video"]
        .clone();
    let run = |dtype: DType| {
        let model = wan::load(dir.join("model").to_str().unwrap(), &Device::Cpu, dtype).unwrap();
        let embeds = model.encode_prompts("a cat", "blurry", 5.0).unwrap();
        let sampling = wan::Sampling {
            num_inference_steps: 2,
            guidance_scale: 5.0,
            noise: wan::Noise::Seed(3),
            flow_shift: None,
            anchor: None,
        };
        model
            .video2video(&video, &embeds, &sampling, 1.0, &mut |_, _| {
                ControlFlow::Continue(())
            })
            .unwrap()
            .video
    };
    let (full, half) = (run(DType::F32), run(DType::F16));
    assert_eq!(half.dtype(), DType::F32);
    let err = wan::parity::relative_l2(&half, &full).unwrap();
    assert!(err < 0.05, "f16 relative error {err}");
    assert!(
        err > 0.0,
        "f16 gave exactly the f32 result: the dtype was not applied"
    );
}

/// The element's backend runs the model on a worker thread.
#[test]
fn the_model_can_move_to_a_worker_thread() {
    fn check<T: Send + Sync>() {}
    check::<wan::WanModel>();
    check::<wan::PromptEmbeds>();
}
