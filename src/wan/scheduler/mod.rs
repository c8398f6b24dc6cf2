//! The flow-matching schedulers of the Wan pipelines, configured by `scheduler/`.

mod flow_match;
mod unipc;

use std::path::Path;

use candle_core::{Result, Tensor};
use serde::Deserialize;

use super::config::read_json;
use super::error::{self, WanError};

pub use flow_match::FlowMatchEuler;
pub use unipc::UniPc;

/// `scheduler/scheduler_config.json`: the union of the fields the two schedulers read.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    /// FlowMatchEulerDiscrete's shift.
    #[serde(default = "one")]
    pub shift: f64,
    /// UniPC's shift when `use_flow_sigmas` is set.
    #[serde(default = "one")]
    pub flow_shift: f64,
    #[serde(default)]
    pub use_flow_sigmas: bool,
    #[serde(default)]
    pub prediction_type: Option<String>,
    #[serde(default = "two")]
    pub solver_order: usize,
    #[serde(default)]
    pub solver_type: Option<String>,
    #[serde(default = "yes")]
    pub predict_x0: bool,
    #[serde(default = "yes")]
    pub lower_order_final: bool,
    #[serde(default)]
    pub final_sigmas_type: Option<String>,
    #[serde(default)]
    pub disable_corrector: Vec<usize>,
    #[serde(default)]
    pub use_dynamic_shifting: bool,
    #[serde(default)]
    pub use_karras_sigmas: bool,
    #[serde(default)]
    pub use_exponential_sigmas: bool,
    #[serde(default)]
    pub use_beta_sigmas: bool,
    #[serde(default)]
    pub invert_sigmas: bool,
    #[serde(default)]
    pub stochastic_sampling: bool,
    #[serde(default)]
    pub shift_terminal: Option<f64>,
    #[serde(default)]
    pub thresholding: bool,
}

fn default_train_steps() -> usize {
    1000
}
fn one() -> f64 {
    1.0
}
fn two() -> usize {
    2
}
fn yes() -> bool {
    true
}

impl SchedulerConfig {
    /// Reads `dir/scheduler_config.json`; options the port does not implement are
    /// refused here rather than ignored later.
    pub fn load(dir: &Path) -> error::Result<Self> {
        let path = dir.join("scheduler_config.json");
        let cfg: SchedulerConfig = read_json(&path)?;
        let unsupported = [
            ("use_dynamic_shifting", cfg.use_dynamic_shifting),
            ("use_karras_sigmas", cfg.use_karras_sigmas),
            ("use_exponential_sigmas", cfg.use_exponential_sigmas),
            ("use_beta_sigmas", cfg.use_beta_sigmas),
            ("invert_sigmas", cfg.invert_sigmas),
            ("stochastic_sampling", cfg.stochastic_sampling),
            ("shift_terminal", cfg.shift_terminal.is_some()),
            ("thresholding", cfg.thresholding),
        ];
        let problem = if let Some((name, _)) = unsupported.iter().find(|(_, on)| *on) {
            Some(format!("`{name}` is not supported"))
        } else {
            match cfg.class_name.as_str() {
                "FlowMatchEulerDiscreteScheduler" => None,
                "UniPCMultistepScheduler" => UniPc::validate(&cfg).err(),
                other => {
                    return Err(WanError::UnknownClass {
                        path,
                        class: other.to_string(),
                    });
                }
            }
        };
        match problem {
            Some(message) => Err(WanError::InvalidConfig { path, message }),
            None => Ok(cfg),
        }
    }
}

/// A scheduler with its timesteps set.
#[derive(Debug, Clone)]
pub enum Scheduler {
    FlowMatch(FlowMatchEuler),
    UniPc(UniPc),
}

impl Scheduler {
    /// A scheduler of a validated configuration, set to `steps` (at least one) steps.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Self {
        if cfg.class_name == "UniPCMultistepScheduler" {
            Self::UniPc(UniPc::new(cfg, steps))
        } else {
            Self::FlowMatch(FlowMatchEuler::new(cfg, steps))
        }
    }

    /// The timesteps the transformer sees, one per step.
    pub fn timesteps(&self) -> &[f32] {
        match self {
            Self::FlowMatch(s) => s.timesteps(),
            Self::UniPc(s) => s.timesteps(),
        }
    }

    /// The sigmas, one per step plus the final one.
    pub fn sigmas(&self) -> &[f32] {
        match self {
            Self::FlowMatch(s) => s.sigmas(),
            Self::UniPc(s) => s.sigmas(),
        }
    }

    /// `(1 - s) * x0 + s * noise` at the sigma of timestep `t`, as both `add_noise`
    /// (UniPC) and `scale_noise` (flow matching) compute it.
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, t: f32) -> Result<Tensor> {
        let sigma = self.sigmas()[index_for_timestep(self.timesteps(), t)] as f64;
        (x0 * (1.0 - sigma))? + (noise * sigma)?
    }

    /// One denoising step from `sample` at timestep `t` given the model output.
    pub fn step(&mut self, model_output: &Tensor, t: f32, sample: &Tensor) -> Result<Tensor> {
        match self {
            Self::FlowMatch(s) => s.step(model_output, t, sample),
            Self::UniPc(s) => s.step(model_output, t, sample),
        }
    }
}

/// diffusers' `index_for_timestep`: the position of `t` in the schedule, the second
/// one when it occurs twice (so that a restart in the middle does not skip a sigma).
pub(crate) fn index_for_timestep(timesteps: &[f32], t: f32) -> usize {
    let matches: Vec<usize> = timesteps
        .iter()
        .enumerate()
        .filter(|(_, x)| **x == t)
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [] => timesteps.len() - 1,
        [only] => *only,
        [_, second, ..] => *second,
    }
}
