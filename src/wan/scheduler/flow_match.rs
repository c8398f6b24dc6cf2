//! `FlowMatchEulerDiscreteScheduler` with a static shift.

use candle_core::{Result, Tensor};

use super::{SchedulerConfig, index_for_timestep};

#[derive(Debug, Clone)]
pub struct FlowMatchEuler {
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    step_index: Option<usize>,
}

/// The shift `s' = k s / (1 + (k - 1) s)` that spends more steps at high noise.
fn shifted(shift: f64, sigma: f64) -> f64 {
    shift * sigma / (1.0 + (shift - 1.0) * sigma)
}

impl FlowMatchEuler {
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Self {
        let n_train = cfg.num_train_timesteps as f32;
        // The training schedule's ends, in f32 as diffusers builds them.
        let shift32 = cfg.shift as f32;
        let end = |t: f32| {
            let s = t / n_train;
            shift32 * s / (1.0 + (shift32 - 1.0) * s)
        };
        let (sigma_max, sigma_min) = (end(n_train) as f64, end(1.0) as f64);
        let n = cfg.num_train_timesteps as f64;
        // np.linspace between the ends' timesteps, then shifted again (as diffusers does).
        let sigmas: Vec<f32> = (0..steps)
            .map(|i| {
                let t = if steps == 1 {
                    sigma_max * n
                } else {
                    sigma_max * n + (sigma_min * n - sigma_max * n) * i as f64 / (steps - 1) as f64
                };
                shifted(cfg.shift, t / n) as f32
            })
            .collect();
        let timesteps = sigmas.iter().map(|s| s * n_train).collect();
        let mut all = sigmas;
        all.push(0.0);
        Self {
            timesteps,
            sigmas: all,
            step_index: None,
        }
    }

    pub fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    pub fn step(&mut self, model_output: &Tensor, t: f32, sample: &Tensor) -> Result<Tensor> {
        let i = *self
            .step_index
            .get_or_insert_with(|| index_for_timestep(&self.timesteps, t));
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        self.step_index = Some(i + 1);
        sample + (model_output * dt as f64)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(shift: f64) -> SchedulerConfig {
        serde_json::from_value(serde_json::json!({
            "_class_name": "FlowMatchEulerDiscreteScheduler", "shift": shift
        }))
        .unwrap()
    }

    #[test]
    fn schedule_matches_diffusers() {
        // FlowMatchEulerDiscreteScheduler(shift=5.0).set_timesteps(4), diffusers 0.42.1.
        let s = FlowMatchEuler::new(&config(5.0), 4);
        let timesteps = [1000.0f32, 909.70715, 717.31744, 24.414066];
        let sigmas = [1.0f32, 0.9097071, 0.71731746, 0.024414066, 0.0];
        for (a, b) in s.timesteps().iter().zip(timesteps) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        for (a, b) in s.sigmas().iter().zip(sigmas) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
