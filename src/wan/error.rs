//! Errors of the Wan port.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a Wan model.
#[derive(Debug, thiserror::Error)]
pub enum WanError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: missing file")]
    MissingFile { path: PathBuf },
    #[error("model `{0}` is neither a directory nor a repository in the Hugging Face cache")]
    ModelNotFound(String),
    #[error("{path}: unknown class `{class}`")]
    UnknownClass { path: PathBuf, class: String },
    #[error("{path}: {message}")]
    InvalidConfig { path: PathBuf, message: String },
    /// A weight file that cannot be read, or a tensor missing from it or of the wrong
    /// shape (candle's message names the tensor).
    #[error("{file}: {source}")]
    Weight {
        file: PathBuf,
        #[source]
        source: Box<candle_core::Error>,
    },
    /// A `lora` entry whose text after the last `:` is neither a number nor part of an
    /// existing file's name.
    #[error("lora `{entry}`: `{scale}` is not a scale (a number after the last ':')")]
    LoraScale { entry: String, scale: String },
    /// A tensor of a LoRA file that cannot be merged: an unknown key, one that targets
    /// no weight of the transformer, a missing half of a pair, a shape that does not fit.
    #[error("{file}: LoRA tensor `{key}`: {message}")]
    LoraKey {
        file: PathBuf,
        key: String,
        message: String,
    },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The caller's [`Progress`](super::Progress) callback stopped the run.
    #[error("cancelled")]
    Cancelled,
    // Boxed: candle's error is large, and every `Result` here would carry its size.
    #[error(transparent)]
    Candle(Box<candle_core::Error>),
}

impl WanError {
    /// An error reading `path`: a missing file says so, other failures keep their cause.
    pub fn reading(path: &std::path::Path, source: std::io::Error) -> Self {
        let path = path.to_path_buf();
        if source.kind() == std::io::ErrorKind::NotFound {
            WanError::MissingFile { path }
        } else {
            WanError::Io { path, source }
        }
    }
}

impl From<candle_core::Error> for WanError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, WanError>;
