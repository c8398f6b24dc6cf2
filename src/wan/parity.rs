//! The parity-case runner: a committed diffusers case (`tests/fixtures/parity/<case>/`)
//! run through the port on any device and precision, every stage compared with the
//! reference by relative L2 error. `tests/parity.rs` runs it on the CPU in f32,
//! `examples/wan_gpu.rs` on CUDA in f32 and bf16.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::{Generation, Noise, Sampling, VaceConditions};

/// The tolerance of a stage whose case names none.
pub const DEFAULT_TOLERANCE: f64 = 1e-4;

/// `case.json`: the pipeline call diffusers made.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseSpec {
    pub pipeline: String,
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    pub num_inference_steps: usize,
    pub guidance_scale: f64,
    #[serde(default)]
    pub strength: Option<f64>,
    pub height: usize,
    pub width: usize,
    pub num_frames: usize,
    /// LoRA files (relative to the case directory) merged at load, in order.
    #[serde(default)]
    pub lora: Vec<CaseLora>,
    /// Replaces the scheduler's shift, as the element's `flow-shift` does.
    #[serde(default)]
    pub flow_shift: Option<f64>,
    /// VACE: one scale for every VACE layer or one per layer (default 1).
    #[serde(default)]
    pub conditioning_scale: Option<ConditioningScale>,
    #[serde(default)]
    pub tolerance: HashMap<String, f64>,
}

/// `conditioning_scale`: a number, or a list with one per VACE layer.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConditioningScale {
    All(f64),
    PerLayer(Vec<f64>),
}

impl ConditioningScale {
    pub fn to_vec(&self) -> Vec<f64> {
        match self {
            Self::All(one) => vec![*one],
            Self::PerLayer(all) => all.clone(),
        }
    }
}

/// One LoRA of a case: `{"file": "lora.safetensors", "scale": 0.7}`.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseLora {
    pub file: String,
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

impl CaseSpec {
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join("case.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// One stage's comparison.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub name: String,
    /// The relative L2 error, or why there is none.
    pub error: Result<f64, String>,
    pub tolerance: f64,
}

impl StageResult {
    pub fn passed(&self) -> bool {
        matches!(self.error, Ok(e) if e <= self.tolerance)
    }
}

impl std::fmt::Display for StageResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, tolerance) = (&self.name, self.tolerance);
        match &self.error {
            Ok(err) if self.passed() => write!(f, "{name}: {err:.3e} (tolerance {tolerance:.0e})"),
            Ok(err) => write!(f, "{name}: {err:.3e} EXCEEDS tolerance {tolerance:.0e}"),
            Err(e) => write!(f, "{name}: {e}"),
        }
    }
}

/// `|out - reference| / |reference|` in f64 (the plain difference norm for a zero reference).
pub fn relative_l2(out: &Tensor, reference: &Tensor) -> Result<f64, String> {
    if out.dims() != reference.dims() {
        return Err(format!(
            "shape {:?}, expected {:?}",
            out.dims(),
            reference.dims()
        ));
    }
    // On the CPU: the output may come from a GPU and the reference from a file.
    let f64_on_cpu = |t: &Tensor| t.to_device(&Device::Cpu)?.to_dtype(DType::F64);
    let norm = |t: &Tensor| -> candle_core::Result<f64> {
        f64_on_cpu(t)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()
    };
    let e = |e: candle_core::Error| e.to_string();
    let diff = (f64_on_cpu(out).map_err(e)? - f64_on_cpu(reference).map_err(e)?)
        .and_then(|d| norm(&d))
        .map_err(e)?;
    let scale = norm(reference).map_err(e)?;
    Ok(if scale == 0.0 { diff } else { diff / scale })
}

/// Runs the case in `dir` on `device` in `dtype` with the case's noise and compares every
/// stage of `expected.safetensors`; `tolerance` replaces the case's own tolerances.
pub fn run_case(
    dir: &Path,
    device: &Device,
    dtype: DType,
    tolerance: Option<f64>,
) -> Result<Vec<StageResult>, String> {
    let spec = CaseSpec::read(dir)?;
    let load = |name: &str| {
        let path = dir.join(name);
        candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let inputs = load("inputs.safetensors")?;
    let expected = load("expected.safetensors")?;
    let input = |name: &str| {
        inputs
            .get(name)
            .cloned()
            .ok_or(format!("inputs.safetensors has no `{name}`"))
    };
    let fail = |e: super::WanError| e.to_string();

    let model_dir = dir.join("model");
    let loras = spec
        .lora
        .iter()
        .map(|l| {
            let path = dir.join(&l.file);
            let entry = format!("{}:{}", path.display(), l.scale);
            // Through the `lora` property's own parser, so that cases test it too.
            match super::LoraSpec::parse_list(&entry)
                .map_err(fail)?
                .as_slice()
            {
                [one] => Ok(one.clone()),
                _ => Err(format!("lora entry `{entry}` is not one file")),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    let model = super::load_with_loras(
        model_dir.to_str().ok_or("non-UTF-8 path")?,
        &loras,
        device,
        dtype,
    )
    .map_err(fail)?;
    let embeds = model
        .encode_prompts(&spec.prompt, &spec.negative_prompt, spec.guidance_scale)
        .map_err(fail)?;
    let sampling = Sampling {
        num_inference_steps: spec.num_inference_steps,
        guidance_scale: spec.guidance_scale,
        noise: Noise::Tensor(input("noise")?),
        flow_shift: spec.flow_shift,
        anchor: None,
    };
    let mut progress = |_: usize, _: usize| ControlFlow::Continue(());
    let generation: Generation = match spec.pipeline.as_str() {
        "lucy-edit" => model.lucy_edit(&input("video")?, &embeds, &sampling, &mut progress),
        "video2video" => {
            let strength = spec.strength.ok_or("video2video case without strength")?;
            model.video2video(
                &input("video")?,
                &embeds,
                &sampling,
                strength,
                &mut progress,
            )
        }
        "text2video" => model.text2video(
            &embeds,
            spec.num_frames,
            spec.height,
            spec.width,
            &sampling,
            &mut progress,
        ),
        "vace" => {
            let conditions = VaceConditions {
                video: input("video")?,
                mask: inputs.get("mask").cloned(),
                reference_images: inputs.get("reference_images").cloned(),
                conditioning_scale: spec
                    .conditioning_scale
                    .as_ref()
                    .map_or(vec![1.0], ConditioningScale::to_vec),
            };
            model.vace(&conditions, &embeds, &sampling, &mut progress)
        }
        other => return Err(format!("unknown pipeline `{other}`")),
    }
    .map_err(fail)?;

    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let ours = match name.as_str() {
                "video" => Some(&generation.video),
                "prompt_embeds" => Some(&embeds.cond),
                "negative_prompt_embeds" => embeds.uncond.as_ref(),
                "source_latents" => generation.source_latents.as_ref(),
                "first_noise_pred" => Some(&generation.first_noise_pred),
                "final_latents" => Some(&generation.final_latents),
                _ => None,
            };
            StageResult {
                name: name.clone(),
                error: ours
                    .ok_or_else(|| "the port has no such stage".to_string())
                    .and_then(|t| relative_l2(t, &expected[name])),
                tolerance: tolerance.unwrap_or_else(|| {
                    spec.tolerance
                        .get(name.as_str())
                        .copied()
                        .unwrap_or(DEFAULT_TOLERANCE)
                }),
            }
        })
        .collect())
}
