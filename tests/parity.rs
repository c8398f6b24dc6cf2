//! Parity of the Candle port with diffusers, case by case (see PARITY.md).
//!
//! Every case directory under `tests/fixtures/parity/`, and under the directory named by
//! `WANEDIT_PARITY_CASES` when it is set, is loaded with the public loader, run on the
//! CPU in f32 with the case's noise, and each tensor of `expected.safetensors` is
//! compared by relative L2 error against the case's tolerance (default 1e-4).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use gstwanedit::wan::{self, Generation, Noise, Sampling};
use serde::Deserialize;

const DEFAULT_TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct CaseSpec {
    pipeline: String,
    prompt: String,
    #[serde(default)]
    negative_prompt: String,
    num_inference_steps: usize,
    guidance_scale: f64,
    #[serde(default)]
    strength: Option<f64>,
    height: usize,
    width: usize,
    num_frames: usize,
    #[serde(default)]
    tolerance: HashMap<String, f64>,
}

/// The case directories: the committed ones, then those of `WANEDIT_PARITY_CASES`.
fn case_dirs() -> Result<Vec<PathBuf>, String> {
    let mut roots = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")];
    if let Some(extra) = std::env::var_os("WANEDIT_PARITY_CASES") {
        roots.push(PathBuf::from(extra));
    }
    let mut dirs = Vec::new();
    for root in roots {
        let entries = std::fs::read_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let mut found: Vec<PathBuf> = entries
            .map(|entry| {
                entry
                    .map(|e| e.path())
                    .map_err(|e| format!("{}: {e}", root.display()))
            })
            .collect::<Result<_, _>>()?;
        found.retain(|p| p.is_dir());
        found.sort();
        if found.is_empty() {
            return Err(format!("{}: no case directories", root.display()));
        }
        dirs.extend(found);
    }
    Ok(dirs)
}

fn relative_l2(out: &Tensor, reference: &Tensor) -> Result<f64, String> {
    if out.dims() != reference.dims() {
        return Err(format!(
            "shape {:?}, expected {:?}",
            out.dims(),
            reference.dims()
        ));
    }
    let out = out.to_dtype(DType::F64).map_err(|e| e.to_string())?;
    let reference = reference.to_dtype(DType::F64).map_err(|e| e.to_string())?;
    let norm = |t: &Tensor| -> Result<f64, candle_core::Error> {
        t.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()
    };
    let diff = (&out - &reference)
        .and_then(|d| norm(&d))
        .map_err(|e| e.to_string())?;
    let scale = norm(&reference).map_err(|e| e.to_string())?;
    Ok(if scale == 0.0 { diff } else { diff / scale })
}

/// Runs one case; returns one line per tensor checked, and whether all passed.
fn run_case(dir: &Path) -> Result<(Vec<String>, bool), String> {
    let spec_path = dir.join("case.json");
    let spec: CaseSpec = serde_json::from_str(
        &std::fs::read_to_string(&spec_path)
            .map_err(|e| format!("{}: {e}", spec_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let device = Device::Cpu;
    let load = |name: &str| {
        let path = dir.join(name);
        candle_core::safetensors::load(&path, &device)
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

    let model_dir = dir.join("model");
    let model = wan::load(
        model_dir.to_str().ok_or("non-UTF-8 path")?,
        &device,
        DType::F32,
    )
    .map_err(|e| e.to_string())?;
    let embeds = model
        .encode_prompts(&spec.prompt, &spec.negative_prompt, spec.guidance_scale)
        .map_err(|e| e.to_string())?;
    let sampling = Sampling {
        num_inference_steps: spec.num_inference_steps,
        guidance_scale: spec.guidance_scale,
        noise: Noise::Tensor(input("noise")?),
    };
    let mut progress = |_: usize, _: usize| {};
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
        other => return Err(format!("unknown pipeline `{other}`")),
    }
    .map_err(|e| e.to_string())?;

    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    let mut lines = Vec::new();
    let mut ok = true;
    for name in names {
        let ours = match name.as_str() {
            "video" => Some(&generation.video),
            "prompt_embeds" => Some(&embeds.cond),
            "negative_prompt_embeds" => embeds.uncond.as_ref(),
            "source_latents" => generation.source_latents.as_ref(),
            "first_noise_pred" => Some(&generation.first_noise_pred),
            "final_latents" => Some(&generation.final_latents),
            _ => None,
        };
        let tolerance = spec
            .tolerance
            .get(name.as_str())
            .copied()
            .unwrap_or(DEFAULT_TOLERANCE);
        let line = match ours.map(|t| relative_l2(t, &expected[name])) {
            Some(Ok(err)) if err <= tolerance => {
                format!("{name}: {err:.3e} (tolerance {tolerance:.0e})")
            }
            Some(Ok(err)) => {
                ok = false;
                format!("{name}: {err:.3e} EXCEEDS tolerance {tolerance:.0e}")
            }
            Some(Err(e)) => {
                ok = false;
                format!("{name}: {e}")
            }
            None => {
                ok = false;
                format!("{name}: the port has no such stage")
            }
        };
        lines.push(line);
    }
    Ok((lines, ok))
}

#[test]
fn parity_with_diffusers() {
    let dirs = case_dirs().unwrap_or_else(|e| panic!("parity cases unreadable: {e}"));
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match run_case(dir) {
            Ok((lines, ok)) => {
                for line in &lines {
                    println!("{name}: {line}");
                }
                if !ok {
                    failures.push(format!("{name}:\n  {}", lines.join("\n  ")));
                }
            }
            Err(e) => {
                println!("{name}: FAILED: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} parity cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
