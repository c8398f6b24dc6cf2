//! The merge on a tiny component: both layouts give the same weights, equal to
//! `W + scale * alpha / rank * B @ A`, and every way a file can be wrong is an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::*;
use crate::wan::WanError;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wanedit-lora-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn save(&self, name: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
        let path = self.0.join(name);
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, t)| (k.to_string(), t.clone()))
            .collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn t(values: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), dims, &Device::Cpu).unwrap()
}

fn ramp(n: usize, step: f32, dims: &[usize]) -> Tensor {
    let v: Vec<f32> = (0..n).map(|i| (i as f32 - 2.0) * step).collect();
    t(&v, dims)
}

/// A component with one linear (out 3, in 2) and a modulation table.
fn base(dir: &Dir) -> PathBuf {
    dir.save(
        "base.safetensors",
        &[
            ("blocks.0.attn1.to_q.weight", ramp(6, 0.5, &[3, 2])),
            ("blocks.0.attn1.to_q.bias", t(&[0.1, 0.2, 0.3], &[3])),
            ("blocks.0.scale_shift_table", ramp(6, 0.1, &[1, 6, 1])),
        ],
    )
}

fn down() -> Tensor {
    t(&[1.0, 2.0, -1.0, 0.5], &[2, 2]) // rank 2, in 2
}

fn up() -> Tensor {
    t(&[0.5, 1.0, -2.0, 0.0, 1.5, 0.25], &[3, 2]) // out 3, rank 2
}

fn merged(base: &Path, specs: &[LoraSpec]) -> (MergedWeights, Pending) {
    let mm = unsafe { MmapedSafetensors::new(base) }.unwrap();
    MergedWeights::new(mm, specs).unwrap()
}

fn read(w: &MergedWeights, name: &str, dims: &[usize]) -> Tensor {
    w.get(
        dims.into(),
        name,
        candle_nn::Init::Const(0.0),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

fn spec(path: PathBuf, scale: f64) -> LoraSpec {
    LoraSpec { path, scale }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn both_layouts_merge_the_same_weight() {
    let dir = Dir::new("layouts");
    let base = base(&dir);
    let alpha = Tensor::new(&[3.0f32], &Device::Cpu).unwrap();
    let diffusers = dir.save(
        "diffusers.safetensors",
        &[
            ("transformer.blocks.0.attn1.to_q.lora_A.weight", down()),
            ("transformer.blocks.0.attn1.to_q.lora_B.weight", up()),
            ("transformer.blocks.0.attn1.to_q.alpha", alpha.clone()),
        ],
    );
    let comfy = dir.save(
        "comfy.safetensors",
        &[
            // bf16 storage, as kijai's files: these values are exact in bf16.
            (
                "diffusion_model.blocks.0.self_attn.q.lora_down.weight",
                down().to_dtype(DType::BF16).unwrap(),
            ),
            (
                "diffusion_model.blocks.0.self_attn.q.lora_up.weight",
                up().to_dtype(DType::BF16).unwrap(),
            ),
            ("diffusion_model.blocks.0.self_attn.q.alpha", alpha),
            (
                "diffusion_model.blocks.0.self_attn.q.diff_b",
                t(&[1.0, -1.0, 2.0], &[3]),
            ),
            (
                "diffusion_model.blocks.0.modulation.diff",
                ramp(6, 1.0, &[1, 6, 1]),
            ),
        ],
    );
    let scale = 0.8;
    let (a, _) = merged(&base, &[spec(diffusers, scale)]);
    let (b, _) = merged(&base, &[spec(comfy, scale)]);
    let w = "blocks.0.attn1.to_q.weight";
    let (wa, wb) = (read(&a, w, &[3, 2]), read(&b, w, &[3, 2]));
    assert_eq!(wa.to_vec2::<f32>().unwrap(), wb.to_vec2::<f32>().unwrap());

    // W + scale * alpha / rank * B @ A, by hand.
    let expected = (ramp(6, 0.5, &[3, 2])
        + (up().matmul(&down()).unwrap() * (scale * 3.0 / 2.0)).unwrap())
    .unwrap();
    assert!(max_diff(&wa, &expected) < 1e-6, "{wa} vs {expected}");

    // The full deltas are scaled by the strength alone.
    let bias = read(&b, "blocks.0.attn1.to_q.bias", &[3]);
    let expected = t(&[0.1 + 0.8, 0.2 - 0.8, 0.3 + 1.6], &[3]);
    assert!(max_diff(&bias, &expected) < 1e-6, "{bias}");
    let table = read(&b, "blocks.0.scale_shift_table", &[1, 6, 1]);
    let expected = (ramp(6, 0.1, &[1, 6, 1]) + (ramp(6, 1.0, &[1, 6, 1]) * 0.8).unwrap()).unwrap();
    assert!(max_diff(&table, &expected) < 1e-6);
    // Untouched by the diffusers file.
    assert_eq!(
        read(&a, "blocks.0.attn1.to_q.bias", &[3])
            .to_vec1::<f32>()
            .unwrap(),
        vec![0.1, 0.2, 0.3]
    );
}

#[test]
fn files_add_up_in_order_and_convert_after_merging() {
    let dir = Dir::new("stack");
    let base = base(&dir);
    let one = dir.save(
        "one.safetensors",
        &[
            ("blocks.0.attn1.to_q.lora_A.weight", down()),
            ("blocks.0.attn1.to_q.lora_B.weight", up()),
        ],
    );
    let (w, _) = merged(&base, &[spec(one.clone(), 0.5), spec(one, 0.25)]);
    let got = read(&w, "blocks.0.attn1.to_q.weight", &[3, 2]);
    let expected =
        (ramp(6, 0.5, &[3, 2]) + (up().matmul(&down()).unwrap() * 0.75).unwrap()).unwrap();
    assert!(max_diff(&got, &expected) < 1e-6);
    let f16 = w
        .get(
            (3, 2).into(),
            "blocks.0.attn1.to_q.weight",
            candle_nn::Init::Const(0.0),
            DType::F16,
            &Device::Cpu,
        )
        .unwrap();
    assert_eq!(f16.dtype(), DType::F16);
    assert_eq!(
        f16.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap(),
        expected
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    );
}

#[test]
fn peft_metadata_sets_the_scaling() {
    let dir = Dir::new("peft");
    let base = base(&dir);
    let path = dir.0.join("peft.safetensors");
    let map: HashMap<String, Tensor> = [
        (
            "transformer.blocks.0.attn1.to_q.lora_A.weight".to_string(),
            down(),
        ),
        (
            "transformer.blocks.0.attn1.to_q.lora_B.weight".to_string(),
            up(),
        ),
    ]
    .into();
    // candle writes no header metadata: splice diffusers' into the JSON header.
    candle_core::safetensors::save(&map, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = serde_json::json!({"transformer.r": 2, "transformer.lora_alpha": 6}).to_string();
    header["__metadata__"] = serde_json::json!({ "lora_adapter_metadata": meta, "format": "pt" });
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(&path, out).unwrap();

    let (w, _) = merged(&base, &[spec(path, 1.0)]);
    let got = read(&w, "blocks.0.attn1.to_q.weight", &[3, 2]);
    let expected =
        (ramp(6, 0.5, &[3, 2]) + (up().matmul(&down()).unwrap() * 3.0).unwrap()).unwrap();
    assert!(max_diff(&got, &expected) < 1e-6);
}

fn error(base: &Path, lora: &[(&str, Tensor)], dir: &Dir) -> (PathBuf, String) {
    let path = dir.save("bad.safetensors", lora);
    let mm = unsafe { MmapedSafetensors::new(base) }.unwrap();
    match MergedWeights::new(mm, &[spec(path.clone(), 1.0)]) {
        Err(e @ WanError::LoraKey { .. }) => (path.clone(), e.to_string()),
        Err(other) => panic!("not a LoRA key error: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn bad_files_are_errors_naming_file_and_key() {
    let dir = Dir::new("errors");
    let base = base(&dir);
    let (path, e) = error(
        &base,
        &[("blocks.0.attn1.to_q.lora_mid.weight", down())],
        &dir,
    );
    assert_eq!(
        e,
        format!(
            "{}: LoRA tensor `blocks.0.attn1.to_q.lora_mid.weight`: not a LoRA tensor (expected \
             lora_A/lora_B, lora_down/lora_up, alpha, diff or diff_b)",
            path.display()
        )
    );
    let (_, e) = error(
        &base,
        &[
            (
                "diffusion_model.blocks.7.self_attn.k.lora_down.weight",
                down(),
            ),
            ("diffusion_model.blocks.7.self_attn.k.lora_up.weight", up()),
        ],
        &dir,
    );
    assert!(
        e.ends_with(
            "LoRA tensor `diffusion_model.blocks.7.self_attn.k.lora_up.weight`: targets \
             `blocks.7.attn1.to_k.weight`, which the transformer does not have"
        ),
        "{e}"
    );
    let (_, e) = error(
        &base,
        &[("blocks.0.attn1.to_q.lora_A.weight", down())],
        &dir,
    );
    assert!(
        e.ends_with("`blocks.0.attn1.to_q.lora_A.weight`: its other half (A or B) is missing"),
        "{e}"
    );
    let (_, e) = error(
        &base,
        &[
            ("blocks.0.attn1.to_q.lora_A.weight", t(&[1.0; 6], &[2, 3])),
            ("blocks.0.attn1.to_q.lora_B.weight", up()),
        ],
        &dir,
    );
    assert!(
        e.ends_with("B @ A is 3x3, the weight `blocks.0.attn1.to_q.weight` [3, 2]"),
        "{e}"
    );
    let (_, e) = error(
        &base,
        &[("diffusion_model.unknown.0.lora_down.weight", down())],
        &dir,
    );
    assert!(
        e.ends_with("`unknown.0` is not a module of the Wan transformer this port knows"),
        "{e}"
    );
}

#[test]
fn a_target_the_component_never_reads_is_an_error() {
    let dir = Dir::new("unread");
    let base = base(&dir);
    let path = dir.save(
        "lora.safetensors",
        &[("blocks.0.attn1.to_q.diff_b", t(&[1.0; 3], &[3]))],
    );
    let (w, pending) = merged(&base, &[spec(path.clone(), 1.0)]);
    read(&w, "blocks.0.attn1.to_q.weight", &[3, 2]);
    assert_eq!(
        pending.check().unwrap_err().to_string(),
        format!(
            "{}: LoRA tensor `blocks.0.attn1.to_q.diff_b`: targets `blocks.0.attn1.to_q.bias`, \
             which this port does not use",
            path.display()
        )
    );
    read(&w, "blocks.0.attn1.to_q.bias", &[3]);
    pending.check().unwrap();
}
