use std::time::Duration;

/// Why a window could not be edited.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The provider answered with an HTTP error; `message` is the provider's own text.
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// The request never got an answer (connection refused, reset, DNS, TLS).
    #[error("transport error: {0}")]
    Transport(String),
    /// The job ran and failed; `message` is the provider's or the model's reason.
    #[error("job {job_id} failed: {message}")]
    JobFailed { job_id: String, message: String },
    /// The job did not finish within `job-timeout` (queueing included).
    #[error("no result within job-timeout ({0:?})")]
    Timeout(Duration),
    /// The provider's answer does not follow its protocol.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The edited clip could not be used (truncated MP4, too large, no frames).
    #[error("unusable output: {0}")]
    Output(String),
    /// The in-process model failed.
    #[error("model error: {0}")]
    Model(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl BackendError {
    /// Whether the same request may succeed when sent again.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Http { status, .. } => *status == 429 || *status >= 500,
            BackendError::Transport(_) => true,
            _ => false,
        }
    }
}

/// Settings that cannot work, found before any data flows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "backend=auto found nothing to use: set model=<model directory or Hugging Face repo id> \
         for backend=candle, or set backend and api-key (or one of REPLICATE_API_TOKEN, FAL_KEY, \
         WAVESPEED_API_KEY, TOGETHER_API_KEY) for a hosted provider"
    )]
    NothingConfigured,
    #[error(
        "backend={0} is not available in this build of wanedit; choose another backend \
         or give the element a backend object with WanEdit::set_backend"
    )]
    NotBuilt(&'static str),
    #[error(
        "backend=custom needs a backend object: call WanEdit::set_backend before going to PAUSED"
    )]
    NoCustomBackend,
    #[error("backend={backend} needs an API key: set api-key or the {env} environment variable")]
    MissingKey {
        backend: &'static str,
        env: &'static str,
    },
    #[error("window-frames={0} must be 4n+1 (for example 5, 9, 17, 33, 49, 81)")]
    WindowFrames(u32),
    #[error("overlap-frames={overlap} must be smaller than window-frames={window}")]
    Overlap { overlap: u32, window: u32 },
    #[error("backend {backend} cannot edit windows of {frames} frames; {what}")]
    WindowLength {
        backend: String,
        frames: u32,
        what: String,
    },
    #[error("backend {backend} cannot honour {property}: {why}")]
    Unsupported {
        backend: String,
        property: &'static str,
        why: String,
    },
    #[error("{property}: {why}")]
    Invalid { property: &'static str, why: String },
}
