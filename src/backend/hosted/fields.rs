//! The input fields a hosted model takes, and the checks that follow from them.
//!
//! A parameter the model has no field for is never sent; a parameter the user set that the
//! model cannot take is refused before data flows.

use serde_json::{Map, Value, json};

use super::runner::Inputs;
use crate::backend::{ConfigError, EditParams, Resolution};

/// How a model takes the reference image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageField {
    /// One URL.
    One(&'static str),
    /// A list of URLs (WaveSpeed's `images`, Together's `reference_images`).
    List(&'static str),
}

/// The value a model's resolution input takes for a resolution class.
pub type ResolutionValue = fn(Resolution) -> &'static str;

/// The names of a model's inputs; `None` where the model has no such input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub video: &'static str,
    pub prompt: &'static str,
    pub reference_image: Option<ImageField>,
    pub negative_prompt: Option<&'static str>,
    pub seed: Option<&'static str>,
    pub steps: Option<&'static str>,
    pub guidance_scale: Option<&'static str>,
    pub strength: Option<&'static str>,
    /// The scheduler's shift (only a server of the user's own exposes it).
    pub flow_shift: Option<&'static str>,
    /// The resolution input and the value sent for each class.
    pub resolution: Option<(&'static str, ResolutionValue)>,
}

impl Fields {
    /// The Wan 2.7 edit models (Replicate, fal, WaveSpeed): they output 720p or 1080p, so
    /// both classes ask for 720p and the element scales the result down where needed.
    pub const WAN27: Fields = Fields {
        video: "video",
        prompt: "prompt",
        reference_image: Some(ImageField::One("reference_image")),
        negative_prompt: None,
        seed: Some("seed"),
        steps: None,
        guidance_scale: None,
        strength: None,
        flow_shift: None,
        resolution: Some(("resolution", |_| "720p")),
    };

    /// Diffusers names, for servers whose schema is the user's own (Cog).
    pub const DIFFUSERS: Fields = Fields {
        video: "video",
        prompt: "prompt",
        reference_image: Some(ImageField::One("reference_image")),
        negative_prompt: Some("negative_prompt"),
        seed: Some("seed"),
        steps: Some("num_inference_steps"),
        guidance_scale: Some("guidance_scale"),
        strength: Some("strength"),
        flow_shift: Some("flow_shift"),
        resolution: None,
    };

    /// Refuses parameters the user set that this model has no input for.
    pub fn check(
        &self,
        backend: &str,
        model: &str,
        params: &EditParams,
    ) -> Result<(), ConfigError> {
        let unsupported = |property: &'static str| ConfigError::Unsupported {
            backend: backend.to_owned(),
            property,
            why: format!("model {model} takes no such input; unset it or choose another model"),
        };
        let set = [
            (
                "negative-prompt",
                params.negative_prompt.is_some(),
                self.negative_prompt.is_some(),
            ),
            ("seed", params.seed.is_some(), self.seed.is_some()),
            (
                "num-inference-steps",
                params.num_inference_steps.is_some(),
                self.steps.is_some(),
            ),
            (
                "guidance-scale",
                params.guidance_scale.is_some(),
                self.guidance_scale.is_some(),
            ),
            (
                "strength",
                params.strength.is_some(),
                self.strength.is_some(),
            ),
            (
                "reference-image",
                !params.reference_images.is_empty(),
                self.reference_image.is_some(),
            ),
            (
                "flow-shift",
                params.flow_shift.is_some(),
                self.flow_shift.is_some(),
            ),
        ];
        match set.iter().find(|(_, set, taken)| *set && !*taken) {
            Some((property, ..)) => Err(unsupported(property)),
            None => Ok(()),
        }
    }

    /// The model's input object: only what the user set, under the model's names.
    pub fn input(&self, inputs: &Inputs<'_>, resolution: Resolution) -> Map<String, Value> {
        let params = inputs.params;
        let mut input = Map::new();
        input.insert(self.video.into(), json!(inputs.video));
        input.insert(self.prompt.into(), json!(params.prompt));
        let mut put = |field: Option<&'static str>, value: Option<Value>| {
            if let (Some(field), Some(value)) = (field, value) {
                input.insert(field.into(), value);
            }
        };
        put(
            self.negative_prompt,
            params.negative_prompt.as_ref().map(|v| json!(v)),
        );
        put(self.seed, params.seed.map(|v| json!(v)));
        put(self.steps, params.num_inference_steps.map(|v| json!(v)));
        put(self.guidance_scale, params.guidance_scale.map(|v| json!(v)));
        put(self.strength, params.strength.map(|v| json!(v)));
        put(self.flow_shift, params.flow_shift.map(|v| json!(v)));
        put(
            self.resolution.map(|(field, _)| field),
            self.resolution.map(|(_, value)| json!(value(resolution))),
        );
        match (self.reference_image, inputs.reference_image) {
            (Some(ImageField::One(field)), Some(url)) => put(Some(field), Some(json!(url))),
            (Some(ImageField::List(field)), Some(url)) => put(Some(field), Some(json!([url]))),
            _ => {}
        }
        input
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Size;

    fn inputs(params: &EditParams) -> Inputs<'_> {
        Inputs {
            video: "https://files/clip.mp4",
            reference_image: Some("https://files/ref.png"),
            params,
            size: Size::new(832, 480),
        }
    }

    #[test]
    fn only_what_the_user_set_is_sent() {
        let params = EditParams {
            prompt: "make it snow".into(),
            seed: Some(7),
            ..Default::default()
        };
        let input = Fields::WAN27.input(&inputs(&params), Resolution::P480);
        assert_eq!(
            Value::Object(input),
            json!({"video": "https://files/clip.mp4", "prompt": "make it snow", "seed": 7,
                   "resolution": "720p", "reference_image": "https://files/ref.png"})
        );
        let input = Fields::DIFFUSERS.input(&inputs(&params), Resolution::P480);
        assert!(!input.contains_key("strength") && !input.contains_key("resolution"));
        let shifted = EditParams {
            flow_shift: Some(3.0),
            ..params
        };
        let input = Fields::DIFFUSERS.input(&inputs(&shifted), Resolution::P480);
        assert_eq!(
            input["flow_shift"],
            json!(3.0),
            "a Cog server of our own takes it"
        );
    }

    #[test]
    fn parameters_a_model_lacks_are_refused() {
        let params = EditParams {
            prompt: "p".into(),
            strength: Some(0.6),
            ..Default::default()
        };
        let error = Fields::WAN27
            .check("replicate", "wan-video/wan-2.7-videoedit", &params)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "backend replicate cannot honour strength: model wan-video/wan-2.7-videoedit takes \
             no such input; unset it or choose another model"
        );
        assert!(Fields::DIFFUSERS.check("cog", "cog", &params).is_ok());
        let shifted = EditParams {
            flow_shift: Some(3.0),
            ..params
        };
        assert!(Fields::DIFFUSERS.check("cog", "cog", &shifted).is_ok());
        let only_shift = EditParams {
            strength: None,
            ..shifted
        };
        let error = Fields::WAN27.check("fal", "fal-ai/wan-27", &only_shift);
        assert!(error.unwrap_err().to_string().contains("flow-shift"));
    }
}
