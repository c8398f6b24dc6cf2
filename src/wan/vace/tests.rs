//! VACE's shapes and refusals, with the tiny model of a committed parity case.

use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor};

use super::VaceConditions;
use crate::wan::pipeline::{Generation, Noise, Sampling};
use crate::wan::{LatentAnchor, LoraSpec, PipelineKind, Result, WanError, WanModel};

fn fixture_dir(case: &str) -> String {
    format!(
        "{}/tests/fixtures/parity/{case}/model",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn fixture_model(case: &str) -> WanModel {
    crate::wan::load(&fixture_dir(case), &Device::Cpu, DType::F32).unwrap()
}

fn gray(dims: &[usize]) -> Tensor {
    Tensor::full(0.5f32, dims, &Device::Cpu).unwrap()
}

/// 5 gray 32x32 frames with one gray reference image and no mask.
fn conditions() -> VaceConditions {
    VaceConditions {
        video: gray(&[5, 32, 32, 3]),
        mask: None,
        reference_images: Some(gray(&[1, 32, 32, 3])),
        conditioning_scale: vec![1.0],
    }
}

fn sampling() -> Sampling {
    Sampling {
        num_inference_steps: 1,
        guidance_scale: 1.0,
        noise: Noise::Seed(3),
        flow_shift: None,
        anchor: None,
    }
}

fn run(model: &WanModel, conditions: &VaceConditions, sampling: &Sampling) -> Result<Generation> {
    let embeds = model.encode_prompts("a cat", "", 1.0)?;
    model.vace(conditions, &embeds, sampling, &mut |_, _| {
        ControlFlow::Continue(())
    })
}

#[test]
fn reference_frames_are_denoised_and_dropped_from_the_result() -> Result<()> {
    let model = fixture_model("vace_square_f5_reference");
    assert_eq!(model.kind(), PipelineKind::Vace);
    assert_eq!(model.kind().name(), "vace");
    assert_eq!(model.transformer().vace_layers(), Some(2));
    let out = run(&model, &conditions(), &sampling())?;
    assert_eq!(out.video.dims(), &[5, 32, 32, 3]);
    assert_eq!(out.final_latents.dims(), &[1, 16, 2, 4, 4]);
    // The transformer ran on the reference latent frame too.
    assert_eq!(out.first_noise_pred.dims(), &[1, 16, 3, 4, 4]);

    // Noise is drawn with the reference frame: a tensor without it is refused.
    let mut short = sampling();
    short.noise = Noise::Tensor(Tensor::zeros((1, 16, 2, 4, 4), DType::F32, &Device::Cpu)?);
    assert!(matches!(
        run(&model, &conditions(), &short),
        Err(WanError::InvalidInput(_))
    ));
    Ok(())
}

#[test]
fn bad_conditions_and_anchors_are_refused() {
    let model = fixture_model("vace_square_f5_reference");
    let refused = |conditions: VaceConditions, sampling: Sampling, what: &str| match run(
        &model,
        &conditions,
        &sampling,
    ) {
        Err(WanError::InvalidInput(message)) => {
            assert!(message.contains(what), "{message} (expected {what})")
        }
        other => panic!("{what}: {other:?}"),
    };
    let mask = |dims: &[usize]| VaceConditions {
        mask: Some(gray(dims)),
        ..conditions()
    };
    refused(mask(&[5, 32, 16]), sampling(), "mask");
    refused(mask(&[4, 32, 32]), sampling(), "mask");
    refused(mask(&[5, 32, 32, 1]), sampling(), "mask");
    let references = |dims: &[usize]| VaceConditions {
        reference_images: Some(gray(dims)),
        ..conditions()
    };
    refused(references(&[1, 16, 32, 3]), sampling(), "reference");
    refused(references(&[32, 32, 3]), sampling(), "reference");
    let video = VaceConditions {
        video: gray(&[5, 32, 32]),
        ..conditions()
    };
    refused(video, sampling(), "video");
    let scales = VaceConditions {
        conditioning_scale: vec![1.0; 3],
        ..conditions()
    };
    refused(scales, sampling(), "conditioning scales");
    let anchored = Sampling {
        anchor: Some(LatentAnchor {
            latents: Tensor::zeros((1, 16, 1, 4, 4), DType::F32, &Device::Cpu).unwrap(),
            first: 0,
            strength: 1.0,
            seed: 0,
        }),
        ..sampling()
    };
    refused(conditions(), anchored, "anchor");
}

#[test]
fn vace_and_the_other_pipelines_need_their_own_checkpoints() -> Result<()> {
    let vace = fixture_model("vace_square_f5_reference");
    let embeds = vace.encode_prompts("a cat", "", 1.0)?;
    let result = vace.text2video(&embeds, 5, 32, 32, &sampling(), &mut |_, _| {
        ControlFlow::Continue(())
    });
    assert!(
        matches!(result, Err(WanError::InvalidInput(_))),
        "{result:?}"
    );
    let plain = fixture_model("t2v_square_f5_1step");
    let result = run(&plain, &conditions(), &sampling());
    assert!(
        matches!(result, Err(WanError::InvalidInput(_))),
        "{result:?}"
    );
    Ok(())
}

/// A diffusers-layout LoRA of the VACE blocks merges at load: every target is read (the
/// loader checks that), and the generation changes.
#[test]
fn a_lora_merges_into_the_vace_blocks() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wanedit-vace-lora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lora.safetensors");
    let mut tensors = std::collections::HashMap::new();
    let modules = [
        "vace_blocks.0.proj_in",
        "vace_blocks.1.attn1.to_q",
        "vace_blocks.1.proj_out",
    ];
    for module in modules {
        let pair = [("lora_A", (2, 24)), ("lora_B", (24, 2))];
        for (part, dims) in pair {
            let name = format!("transformer.{module}.{part}.weight");
            tensors.insert(name, Tensor::full(0.1f32, dims, &Device::Cpu)?);
        }
    }
    candle_core::safetensors::save(&tensors, &path)?;
    let loras = LoraSpec::parse_list(&format!("{}:1.0", path.display()))?;
    let case = fixture_dir("vace_square_f5_reference");
    let merged = crate::wan::load_with_loras(&case, &loras, &Device::Cpu, DType::F32);
    std::fs::remove_dir_all(&dir).unwrap();
    let plain = run(
        &fixture_model("vace_square_f5_reference"),
        &conditions(),
        &sampling(),
    )?;
    let merged = run(&merged?, &conditions(), &sampling())?;
    let change = (&plain.final_latents - &merged.final_latents)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert!(change > 1e-4, "the LoRA changed nothing ({change})");
    Ok(())
}
