//! One LoRA file, memory-mapped: its tensors grouped by the weight they change, and the
//! f32 delta each weight receives.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::keys::{self, Part};
use super::spec::LoraSpec;
use crate::wan::error::{Result, WanError};

/// What one weight receives from one file.
#[derive(Debug, Clone)]
pub enum Contribution {
    /// `factor * up @ down`, reshaped to the weight's shape.
    LowRank {
        down: String,
        up: String,
        factor: f64,
    },
    /// `factor * tensor`: a `.diff`, `.diff_b`, or PEFT's bias of `B`.
    Full { key: String, factor: f64 },
}

impl Contribution {
    /// The key that names this contribution in errors.
    pub fn key(&self) -> &str {
        match self {
            Self::LowRank { up, .. } => up,
            Self::Full { key, .. } => key,
        }
    }
}

/// The tensors of one module, as they are found.
#[derive(Default)]
struct ModuleParts {
    down: Option<String>,
    up: Option<String>,
    up_bias: Option<String>,
    alpha: Option<String>,
    weight: String,
    bias: String,
}

pub struct LoraFile {
    pub path: PathBuf,
    tensors: MmapedSafetensors,
    /// Weight name -> what this file adds to it.
    pub targets: BTreeMap<String, Vec<Contribution>>,
}

impl LoraFile {
    pub fn open(spec: &LoraSpec) -> Result<Self> {
        let path = spec.path.clone();
        let weight_error = |source: candle_core::Error| WanError::Weight {
            file: path.clone(),
            source: Box::new(source),
        };
        // SAFETY: read only; see `ComponentWeights::open`.
        let tensors = unsafe { MmapedSafetensors::new(&path) }.map_err(weight_error)?;
        let key_error = |key: &str, message: String| WanError::LoraKey {
            file: path.clone(),
            key: key.to_string(),
            message,
        };
        let names: Vec<String> = tensors.tensors().into_iter().map(|(n, _)| n).collect();
        let layout = keys::layout_of(names.iter().map(String::as_str));
        let peft = PeftScaling::read(&path)?;

        let mut modules: BTreeMap<String, ModuleParts> = BTreeMap::new();
        let mut targets: BTreeMap<String, Vec<Contribution>> = BTreeMap::new();
        for key in &names {
            let parsed = keys::parse(key, layout).map_err(|m| key_error(key, m))?;
            let full = |target: String, targets: &mut BTreeMap<String, Vec<Contribution>>| {
                targets.entry(target).or_default().push(Contribution::Full {
                    key: key.clone(),
                    factor: spec.scale,
                });
            };
            match parsed.part {
                Part::Diff => full(parsed.weight(), &mut targets),
                Part::DiffBias => full(parsed.bias(), &mut targets),
                part => {
                    let m = modules.entry(parsed.module.clone()).or_default();
                    m.weight = parsed.weight();
                    m.bias = parsed.bias();
                    let slot = match part {
                        Part::Down => &mut m.down,
                        Part::Up => &mut m.up,
                        Part::UpBias => &mut m.up_bias,
                        _ => &mut m.alpha,
                    };
                    if slot.is_some() {
                        return Err(key_error(key, "a second tensor of the same role".into()));
                    }
                    *slot = Some(key.clone());
                }
            }
        }

        for (module, parts) in modules {
            let (down, up) = match (parts.down, parts.up) {
                (Some(down), Some(up)) => (down, up),
                (Some(one), None) | (None, Some(one)) => {
                    return Err(key_error(&one, "its other half (A or B) is missing".into()));
                }
                (None, None) => {
                    let key = parts.alpha.or(parts.up_bias).unwrap_or_default();
                    return Err(key_error(&key, "no lora_A/lora_B pair goes with it".into()));
                }
            };
            let view = tensors.get(&down).map_err(weight_error)?;
            let rank = view.shape().first().copied().unwrap_or(0);
            if rank == 0 {
                return Err(key_error(&down, "a rank of zero".into()));
            }
            // An `.alpha` tensor scales by alpha over the pair's own rank (kohya's and
            // ComfyUI's rule); a diffusers file by its PEFT configuration.
            let scaling = match &parts.alpha {
                Some(key) => scalar(&tensors, key).map_err(|m| key_error(key, m))? / rank as f64,
                None => peft.alpha(&module, rank) / peft.rank(&module, rank),
            };
            let factor = spec.scale * scaling;
            targets
                .entry(parts.weight)
                .or_default()
                .push(Contribution::LowRank { down, up, factor });
            if let Some(key) = parts.up_bias {
                targets
                    .entry(parts.bias)
                    .or_default()
                    .push(Contribution::Full { key, factor });
            }
        }
        Ok(Self {
            path,
            tensors,
            targets,
        })
    }

    /// Checks, from the header alone, that every contribution to `weight` fits `dims`.
    pub fn check_shapes(&self, weight: &str, dims: &[usize]) -> Result<()> {
        let numel: usize = dims.iter().product();
        for c in self.targets.get(weight).into_iter().flatten() {
            let shape = |key: &str| -> Vec<usize> {
                self.tensors
                    .get(key)
                    .map(|v| v.shape().to_vec())
                    .unwrap_or_default()
            };
            let problem = match c {
                Contribution::LowRank { down, up, .. } => {
                    let (a, b) = (shape(down), shape(up));
                    let rows = |s: &[usize]| s.first().copied().unwrap_or(0);
                    let cols = |s: &[usize]| s.iter().skip(1).product::<usize>();
                    if cols(&b) != rows(&a) {
                        Some(format!("B {b:?} and A {a:?} do not multiply"))
                    } else if rows(&b) * cols(&a) != numel {
                        Some(format!(
                            "B @ A is {}x{}, the weight `{weight}` {dims:?}",
                            rows(&b),
                            cols(&a)
                        ))
                    } else {
                        None
                    }
                }
                Contribution::Full { key, .. } => {
                    let s = shape(key);
                    (s.iter().product::<usize>() != numel)
                        .then(|| format!("shape {s:?}, the weight `{weight}` {dims:?}"))
                }
            };
            if let Some(message) = problem {
                return Err(WanError::LoraKey {
                    file: self.path.clone(),
                    key: c.key().to_string(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// The f32 delta this file adds to `weight` (shaped `dims`), on `device`.
    pub fn delta(&self, weight: &str, dims: &[usize], device: &Device) -> Result<Option<Tensor>> {
        let Some(contributions) = self.targets.get(weight) else {
            return Ok(None);
        };
        let mut sum: Option<Tensor> = None;
        for c in contributions {
            let term = self
                .term(c, dims, device)
                .map_err(|message| WanError::LoraKey {
                    file: self.path.clone(),
                    key: c.key().to_string(),
                    message,
                })?;
            sum = Some(match sum {
                Some(s) => (s + term)?,
                None => term,
            });
        }
        Ok(sum)
    }

    fn term(
        &self,
        c: &Contribution,
        dims: &[usize],
        device: &Device,
    ) -> std::result::Result<Tensor, String> {
        let load = |key: &str| -> std::result::Result<Tensor, String> {
            self.tensors
                .load(key, device)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| e.to_string())
        };
        let numel: usize = dims.iter().product();
        let (tensor, factor) = match c {
            Contribution::LowRank { down, up, factor } => {
                // Convolutions' pairs (the patch embedding) flatten to matrices.
                let flat = |t: Tensor| -> std::result::Result<Tensor, String> {
                    let rows = t.dim(0).map_err(|e| e.to_string())?;
                    t.reshape((rows, ())).map_err(|e| e.to_string())
                };
                let (a, b) = (flat(load(down)?)?, flat(load(up)?)?);
                let product = b.matmul(&a).map_err(|_| {
                    format!("B {:?} and A {:?} do not multiply", b.dims(), a.dims())
                })?;
                (product, *factor)
            }
            Contribution::Full { key, factor } => (load(key)?, *factor),
        };
        if tensor.elem_count() != numel {
            return Err(format!(
                "its delta has shape {:?}, the weight {dims:?}",
                tensor.dims()
            ));
        }
        (tensor.reshape(dims).and_then(|t| t * factor)).map_err(|e| e.to_string())
    }
}

/// A scalar tensor's value (an alpha).
fn scalar(tensors: &MmapedSafetensors, key: &str) -> std::result::Result<f64, String> {
    let t = tensors
        .load(key, &Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.flatten_all())
        .map_err(|e| e.to_string())?;
    match t.to_vec1::<f64>().map_err(|e| e.to_string())?.as_slice() {
        [alpha] => Ok(*alpha),
        other => Err(format!("an alpha of {} values", other.len())),
    }
}

/// The scaling PEFT would use for a diffusers LoRA: `lora_alpha / r` from the adapter
/// metadata diffusers writes into the file's header (`lora_adapter_metadata`, keys
/// prefixed `transformer.`), with per-module `alpha_pattern` and `rank_pattern`; without
/// it, alpha equals the rank (a scaling of one), as diffusers assumes.
#[derive(Default)]
struct PeftScaling {
    r: Option<f64>,
    lora_alpha: Option<f64>,
    rank_pattern: HashMap<String, f64>,
    alpha_pattern: HashMap<String, f64>,
}

impl PeftScaling {
    fn read(path: &Path) -> Result<Self> {
        let io = |source| WanError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(io)?;
        let len = u64::from_le_bytes(len);
        // A header larger than this is not a safetensors file the mmap above accepted.
        let mut header = vec![0u8; len.min(100 << 20) as usize];
        file.read_exact(&mut header).map_err(io)?;
        let header: Value = serde_json::from_slice(&header).map_err(|source| WanError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let Some(raw) = header
            .get("__metadata__")
            .and_then(|m| m.get("lora_adapter_metadata"))
            .and_then(Value::as_str)
        else {
            return Ok(Self::default());
        };
        let meta: Value = serde_json::from_str(raw).map_err(|source| WanError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let field = |name: &str| meta.get(format!("transformer.{name}"));
        let pattern = |name: &str| -> HashMap<String, f64> {
            field(name)
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Self {
            r: field("r").and_then(Value::as_f64),
            lora_alpha: field("lora_alpha").and_then(Value::as_f64),
            rank_pattern: pattern("rank_pattern"),
            alpha_pattern: pattern("alpha_pattern"),
        })
    }

    /// A pattern's value for `module`: PEFT matches a pattern against the end of the
    /// module's name (patterns here are taken literally, as diffusers writes them).
    fn matching(patterns: &HashMap<String, f64>, module: &str) -> Option<f64> {
        patterns
            .iter()
            .find(|(p, _)| module == p.as_str() || module.ends_with(&format!(".{p}")))
            .map(|(_, v)| *v)
    }

    fn rank(&self, module: &str, tensor_rank: usize) -> f64 {
        Self::matching(&self.rank_pattern, module)
            .or(self.r)
            .unwrap_or(tensor_rank as f64)
    }

    fn alpha(&self, module: &str, tensor_rank: usize) -> f64 {
        Self::matching(&self.alpha_pattern, module)
            .or(self.lora_alpha)
            .unwrap_or_else(|| self.rank(module, tensor_rank))
    }
}
