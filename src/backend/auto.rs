//! `backend=auto`: the backend the user configured.
//!
//! A `model` that is a model directory means the in-process backend; otherwise the first
//! hosted provider whose key is in the environment. `api-key` alone names no provider, so
//! it does not decide.

use std::path::Path;

use super::hosted::PROVIDERS;
use super::{BackendConfig, BackendKind, ConfigError};

pub fn choose(config: &BackendConfig) -> Result<BackendKind, ConfigError> {
    choose_with(config, |name| {
        std::env::var_os(name).is_some_and(|v| !v.is_empty())
    })
}

fn choose_with(
    config: &BackendConfig,
    has_env: impl Fn(&str) -> bool,
) -> Result<BackendKind, ConfigError> {
    if config
        .model
        .as_deref()
        .is_some_and(|model| Path::new(model).join("model_index.json").is_file())
    {
        return Ok(BackendKind::Candle);
    }
    let kinds = [
        BackendKind::Replicate,
        BackendKind::Fal,
        BackendKind::Wavespeed,
        BackendKind::Together,
    ];
    PROVIDERS
        .iter()
        .zip(kinds)
        .find(|(provider, _)| has_env(provider.env))
        .map(|(_, kind)| kind)
        .ok_or(ConfigError::NothingConfigured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_directory_means_candle() {
        let dir = std::env::temp_dir().join(format!("wanedit-auto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model_index.json"), "{}").unwrap();
        let config = BackendConfig {
            model: Some(dir.to_string_lossy().into_owned()),
            ..Default::default()
        };
        assert_eq!(choose_with(&config, |_| true), Ok(BackendKind::Candle));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            choose_with(&config, |_| false),
            Err(ConfigError::NothingConfigured)
        );
    }

    #[test]
    fn the_first_provider_with_a_key() {
        let config = BackendConfig::default();
        let only = |name: &'static str| move |env: &str| env == name;
        assert_eq!(choose_with(&config, only("FAL_KEY")), Ok(BackendKind::Fal));
        assert_eq!(
            choose_with(&config, only("TOGETHER_API_KEY")),
            Ok(BackendKind::Together)
        );
        assert_eq!(choose_with(&config, |_| true), Ok(BackendKind::Replicate));
        assert_eq!(
            choose_with(&config, |_| false),
            Err(ConfigError::NothingConfigured)
        );
    }
}
