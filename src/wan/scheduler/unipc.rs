//! `UniPCMultistepScheduler` with flow sigmas (`use_flow_sigmas`, flow prediction,
//! data prediction, B(h) = expm1(h) or h), up to second order.

use candle_core::{Result, Tensor};

use super::{SchedulerConfig, index_for_timestep};

#[derive(Debug, Clone)]
pub struct UniPc {
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    order: usize,
    bh2: bool,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    // Solver state.
    step_index: Option<usize>,
    /// Data predictions of the last `order` steps, oldest first.
    outputs: Vec<Tensor>,
    last_sample: Option<Tensor>,
    lower_order_nums: usize,
    this_order: usize,
}

/// `log(alpha) - log(sigma)` with flow sigmas (`alpha = 1 - sigma`); +inf at sigma 0.
fn lambda(sigma: f32) -> f64 {
    let sigma = sigma as f64;
    (1.0 - sigma).ln() - sigma.ln()
}

impl UniPc {
    /// Refuses the configurations this port does not implement.
    pub fn validate(cfg: &SchedulerConfig) -> std::result::Result<(), String> {
        if !cfg.use_flow_sigmas {
            return Err("UniPC without `use_flow_sigmas` is not supported".into());
        }
        if cfg.prediction_type.as_deref() != Some("flow_prediction") || !cfg.predict_x0 {
            return Err("UniPC needs prediction_type `flow_prediction` with predict_x0".into());
        }
        if !(1..=2).contains(&cfg.solver_order) {
            return Err(format!(
                "UniPC solver_order {} is not supported (1 or 2)",
                cfg.solver_order
            ));
        }
        if !matches!(cfg.solver_type.as_deref(), None | Some("bh1" | "bh2")) {
            return Err("solver_type must be `bh1` or `bh2`".into());
        }
        if !matches!(
            cfg.final_sigmas_type.as_deref(),
            None | Some("zero" | "sigma_min")
        ) {
            return Err("final_sigmas_type must be `zero` or `sigma_min`".into());
        }
        Ok(())
    }

    /// The schedule of a configuration that passed [`Self::validate`].
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Self {
        let bh2 = cfg.solver_type.as_deref() != Some("bh1");
        let n = cfg.num_train_timesteps as f64;
        // np.linspace(1, 1/n, steps + 1)[:-1], shifted, in f64.
        let mut sigmas: Vec<f64> = (0..steps)
            .map(|i| {
                let s = 1.0 + (1.0 / n - 1.0) * i as f64 / steps as f64;
                cfg.flow_shift * s / (1.0 + (cfg.flow_shift - 1.0) * s)
            })
            .collect();
        // diffusers keeps the first sigma off 1 so that log(alpha) stays finite.
        if (sigmas[0] - 1.0).abs() < 1e-6 {
            sigmas[0] -= 1e-6;
        }
        // Integer timesteps (numpy's truncating cast to int64).
        let timesteps = sigmas.iter().map(|s| (s * n).trunc() as f32).collect();
        let last = if cfg.final_sigmas_type.as_deref() == Some("sigma_min") {
            sigmas[steps - 1]
        } else {
            0.0
        };
        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        sigmas.push(last as f32);
        Self {
            timesteps,
            sigmas,
            order: cfg.solver_order,
            bh2,
            lower_order_final: cfg.lower_order_final,
            disable_corrector: cfg.disable_corrector.clone(),
            step_index: None,
            outputs: Vec::new(),
            last_sample: None,
            lower_order_nums: 0,
            this_order: 1,
        }
    }

    pub fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// `(h, B(h), expm1(-h))` between sigmas `from` and `to`.
    fn coefficients(&self, from: f32, to: f32) -> (f64, f64, f64) {
        let h = lambda(to) - lambda(from);
        let hh = -h;
        let phi_1 = hh.exp_m1();
        let b_h = if self.bh2 { phi_1 } else { hh };
        (h, b_h, phi_1)
    }

    /// The predictor: from `sample` at step `i` to step `i + 1`.
    fn predict(&self, sample: &Tensor, i: usize, order: usize) -> Result<Tensor> {
        let (sigma_t, sigma_s0) = (self.sigmas[i + 1], self.sigmas[i]);
        let alpha_t = 1.0 - sigma_t as f64;
        let (h, b_h, phi_1) = self.coefficients(sigma_s0, sigma_t);
        let m0 = &self.outputs[self.outputs.len() - 1];
        let base = ((sample * (sigma_t as f64 / sigma_s0 as f64))? - (m0 * (alpha_t * phi_1))?)?;
        if order == 1 {
            return Ok(base);
        }
        let m1 = &self.outputs[self.outputs.len() - 2];
        let rk = (lambda(self.sigmas[i - 1]) - lambda(sigma_s0)) / h;
        let d1 = ((m1 - m0)? / rk)?;
        // Second order uses rho = 1/2.
        base - (d1 * (alpha_t * b_h * 0.5))?
    }

    /// The corrector: refines `sample` (now at step `i`) with this step's data
    /// prediction `model_t`, from the previous sample at step `i - 1`.
    fn correct(
        &self,
        model_t: &Tensor,
        last_sample: &Tensor,
        i: usize,
        order: usize,
    ) -> Result<Tensor> {
        let (sigma_t, sigma_s0) = (self.sigmas[i], self.sigmas[i - 1]);
        let alpha_t = 1.0 - sigma_t as f64;
        let (h, b_h, phi_1) = self.coefficients(sigma_s0, sigma_t);
        let hh = -h;
        let m0 = &self.outputs[self.outputs.len() - 1];
        let base =
            ((last_sample * (sigma_t as f64 / sigma_s0 as f64))? - (m0 * (alpha_t * phi_1))?)?;
        let d1_t = (model_t - m0)?;
        if order == 1 {
            return base - (d1_t * (alpha_t * b_h * 0.5))?;
        }
        // Solve [[1, 1], [rk, 1]] rho = b with b_k = k! phi_k(h) / B(h).
        let rk = (lambda(self.sigmas[i - 2]) - lambda(sigma_s0)) / h;
        let phi_k1 = phi_1 / hh - 1.0;
        let phi_k2 = phi_k1 / hh - 0.5;
        let (b1, b2) = (phi_k1 / b_h, phi_k2 * 2.0 / b_h);
        let det = 1.0 - rk;
        let rho0 = (b1 - b2) / det;
        let rho1 = (b2 - rk * b1) / det;
        let m1 = &self.outputs[self.outputs.len() - 2];
        let d1 = ((m1 - m0)? / rk)?;
        let corr = ((d1 * rho0)? + (d1_t * rho1)?)?;
        base - (corr * (alpha_t * b_h))?
    }

    pub fn step(&mut self, model_output: &Tensor, t: f32, sample: &Tensor) -> Result<Tensor> {
        let i = *self
            .step_index
            .get_or_insert_with(|| index_for_timestep(&self.timesteps, t));
        // Flow prediction to data prediction: x0 = x - sigma * v.
        let converted = (sample - (model_output * self.sigmas[i] as f64)?)?;
        let sample = match &self.last_sample {
            Some(last) if i > 0 && !self.disable_corrector.contains(&(i - 1)) => {
                self.correct(&converted, last, i, self.this_order)?
            }
            _ => sample.clone(),
        };
        self.outputs.push(converted);
        if self.outputs.len() > self.order {
            self.outputs.remove(0);
        }
        let mut order = self.order;
        if self.lower_order_final {
            order = order.min(self.timesteps.len() - i);
        }
        self.this_order = order.min(self.lower_order_nums + 1);
        let prev = self.predict(&sample, i, self.this_order)?;
        self.last_sample = Some(sample);
        self.lower_order_nums = (self.lower_order_nums + 1).min(self.order);
        self.step_index = Some(i + 1);
        Ok(prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn config(shift: f64) -> SchedulerConfig {
        serde_json::from_value(serde_json::json!({
            "_class_name": "UniPCMultistepScheduler", "use_flow_sigmas": true,
            "prediction_type": "flow_prediction", "flow_shift": shift
        }))
        .unwrap()
    }

    #[test]
    fn schedule_matches_diffusers() {
        // UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
        // flow_shift=3.0).set_timesteps(4), diffusers 0.42.1.
        let s = UniPc::new(&config(3.0), 4);
        assert_eq!(s.timesteps(), &[999.0, 900.0, 750.0, 500.0]);
        let sigmas = [0.999_999f64, 0.900_12, 0.750_374_8, 0.500_999, 0.0];
        for (a, b) in s.sigmas().iter().zip(sigmas) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn the_few_step_recipe_lands_on_the_distillation_timesteps() {
        // The step-distilled Wan LoRAs (lightx2v, Wan2.2-Lightning) were trained at
        // timesteps 1000, 937.5, 833.3, 625: shift 5 over 4 steps. diffusers 0.42.1,
        // `UniPCMultistepScheduler.from_config(cfg, flow_shift=5.0).set_timesteps(4)`,
        // gives these timesteps and sigmas; `flow-shift=5 num-inference-steps=4` here.
        let s = UniPc::new(&config(5.0), 4);
        assert_eq!(s.timesteps(), &[999.0, 937.0, 833.0, 625.0]);
        let sigmas = [0.999_998_99f64, 0.937_578_1, 0.833_610_95, 0.625_936_1, 0.0];
        for (a, b) in s.sigmas().iter().zip(sigmas) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn steps_match_diffusers() -> Result<()> {
        // Three steps on a scalar sample 1.0 with model outputs 0.5, -0.25 and 0.125 and
        // flow_shift 3, 3 steps; diffusers 0.42.1 gives these samples.
        let mut s = UniPc::new(&config(3.0), 3);
        let mut x = Tensor::new(&[1.0f32], &Device::Cpu)?;
        let mut got = Vec::new();
        for (t, v) in s
            .timesteps()
            .to_vec()
            .into_iter()
            .zip([0.5f32, -0.25, 0.125])
        {
            x = s.step(&Tensor::new(&[v], &Device::Cpu)?, t, &x)?;
            got.push(x.to_vec1::<f32>()?[0]);
        }
        let expected = [0.9286638f32, 1.0360516, 0.9609617];
        for (a, b) in got.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
        Ok(())
    }
}
