//! The candle backend's own settings: where the model runs and in which precision.

use candle_core::{DType, Device};
use gst::glib;

use crate::backend::ConfigError;

/// The precision weights are converted to at load.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWanEditDType")]
pub enum ModelDType {
    #[default]
    #[enum_value(name = "Auto: bf16 on CUDA, f32 on the CPU", nick = "auto")]
    Auto,
    #[enum_value(name = "32-bit float", nick = "f32")]
    F32,
    #[enum_value(name = "16-bit float", nick = "f16")]
    F16,
    #[enum_value(
        name = "bfloat16 (CUDA only: Candle's CPU matmul has no bf16)",
        nick = "bf16"
    )]
    Bf16,
}

/// The device a model runs on, as the `device` property names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// Reads `cpu`, `cuda` or `cuda:N`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let invalid = |why: String| ConfigError::Invalid {
            property: "device",
            why,
        };
        match text.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| invalid(format!("`{other}` is not cpu, cuda or cuda:N"))),
        }
    }

    /// The device this build runs on by default: the first GPU where CUDA is built in.
    pub fn default_name() -> &'static str {
        if cfg!(feature = "cuda") {
            "cuda:0"
        } else {
            "cpu"
        }
    }

    pub fn open(self) -> Result<Device, ConfigError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(_) if !cfg!(feature = "cuda") => Err(ConfigError::Invalid {
                property: "device",
                why: "this build of wanedit has no CUDA: set device=cpu, or build with \
                      --features cuda"
                    .into(),
            }),
            Self::Cuda(n) => Device::new_cuda(n).map_err(|e| ConfigError::Invalid {
                property: "device",
                why: format!("cuda:{n} cannot be opened: {e}"),
            }),
        }
    }

    /// The precision `dtype` means on this device.
    pub fn dtype(self, dtype: ModelDType) -> Result<DType, ConfigError> {
        match (self, dtype) {
            (Self::Cpu, ModelDType::Auto | ModelDType::F32) => Ok(DType::F32),
            (Self::Cuda(_), ModelDType::Auto | ModelDType::Bf16) => Ok(DType::BF16),
            (Self::Cuda(_), ModelDType::F32) => Ok(DType::F32),
            (_, ModelDType::F16) => Ok(DType::F16),
            (Self::Cpu, ModelDType::Bf16) => Err(ConfigError::Invalid {
                property: "dtype",
                why: "bf16 needs device=cuda:N (Candle's CPU matmul has no bf16); use f32 \
                      or f16 on the CPU"
                    .into(),
            }),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// What the element's candle-only properties say.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleSettings {
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub dtype: ModelDType,
    /// Keep the text encoder after the embeddings of the current prompts are computed,
    /// so that a changed prompt is encoded without loading it again.
    pub keep_text_encoder: bool,
    /// LoRA files merged into the transformer at load: `path[:scale],...` as the
    /// property says it, read by `wan::LoraSpec::parse_list` when the model is keyed.
    pub lora: String,
}

impl Default for CandleSettings {
    fn default() -> Self {
        Self {
            device: DeviceSpec::default_name().to_owned(),
            dtype: ModelDType::Auto,
            keep_text_encoder: false,
            lora: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_precisions() {
        assert_eq!(DeviceSpec::parse("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(DeviceSpec::parse("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(DeviceSpec::parse("cuda:3"), Ok(DeviceSpec::Cuda(3)));
        assert!(DeviceSpec::parse("gpu").is_err());
        assert!(DeviceSpec::parse("cuda:x").is_err());
        assert_eq!(DeviceSpec::Cpu.dtype(ModelDType::Auto), Ok(DType::F32));
        assert_eq!(DeviceSpec::Cuda(0).dtype(ModelDType::Auto), Ok(DType::BF16));
        assert_eq!(DeviceSpec::Cpu.dtype(ModelDType::F16), Ok(DType::F16));
        assert!(DeviceSpec::Cpu.dtype(ModelDType::Bf16).is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_is_refused_without_the_feature() {
        let err = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
