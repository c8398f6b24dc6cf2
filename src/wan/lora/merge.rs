//! A `VarBuilder` backend that reads a component's weights and adds the LoRA deltas in
//! f32 before the conversion to the model's precision.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::file::LoraFile;
use super::spec::LoraSpec;
use crate::wan::error::{Result, WanError};

/// The weights a component read, so that a LoRA tensor aimed at a weight the port never
/// reads is reported instead of silently doing nothing.
#[derive(Clone, Default)]
pub struct Reads(Arc<Mutex<HashSet<String>>>);

impl Reads {
    fn insert(&self, name: &str) {
        self.0.lock().unwrap().insert(name.to_string());
    }

    fn contains(&self, name: &str) -> bool {
        self.0.lock().unwrap().contains(name)
    }
}

pub struct MergedWeights {
    base: MmapedSafetensors,
    loras: Vec<LoraFile>,
    reads: Reads,
}

/// The LoRA targets of a component being built, checked once it is.
pub struct Pending {
    /// (file, first key, weight) of every target.
    targets: Vec<(PathBuf, String, String)>,
    reads: Reads,
}

impl Pending {
    /// Fails on the first target the component never read: its weight exists in the
    /// file but the port has no use for it, so merging it would change nothing.
    pub fn check(&self) -> Result<()> {
        match self
            .targets
            .iter()
            .find(|(_, _, w)| !self.reads.contains(w))
        {
            None => Ok(()),
            Some((file, key, weight)) => Err(WanError::LoraKey {
                file: file.clone(),
                key: key.clone(),
                message: format!("targets `{weight}`, which this port does not use"),
            }),
        }
    }
}

impl MergedWeights {
    /// Opens every LoRA file and checks, from the headers alone, that each weight it
    /// targets exists in `base` with a shape its delta fits.
    pub fn new(base: MmapedSafetensors, specs: &[LoraSpec]) -> Result<(Self, Pending)> {
        let loras = specs
            .iter()
            .map(LoraFile::open)
            .collect::<Result<Vec<_>>>()?;
        let mut targets = Vec::new();
        for lora in &loras {
            for (weight, contributions) in &lora.targets {
                let key = contributions[0].key().to_string();
                let Ok(view) = base.get(weight) else {
                    return Err(WanError::LoraKey {
                        file: lora.path.clone(),
                        key,
                        message: format!("targets `{weight}`, which the transformer does not have"),
                    });
                };
                lora.check_shapes(weight, view.shape())?;
                targets.push((lora.path.clone(), key, weight.clone()));
            }
        }
        let reads = Reads::default();
        let pending = Pending {
            targets,
            reads: reads.clone(),
        };
        Ok((Self { base, loras, reads }, pending))
    }

    fn merged(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.reads.insert(name);
        let base = self.base.load(name, dev)?;
        let mut sum: Option<Tensor> = None;
        for lora in &self.loras {
            let delta = lora
                .delta(name, base.dims(), dev)
                // Carried through candle's error to the loader, which names the base file
                // too; the message names the LoRA file and key.
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            if let Some(delta) = delta {
                let acc = match sum {
                    Some(s) => s,
                    None => base.to_dtype(DType::F32)?,
                };
                sum = Some((acc + delta)?);
            }
        }
        match sum {
            Some(merged) => merged.to_dtype(dtype),
            None => base.to_dtype(dtype),
        }
    }
}

impl SimpleBackend for MergedWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.merged(name, dtype, dev)?;
        if tensor.shape() != &s {
            Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: tensor.shape().clone(),
            }
            .bt())?
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.merged(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.base.get(name).is_ok()
    }
}
