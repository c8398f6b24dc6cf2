use std::time::Duration;

use super::retry::is_transient_status;

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
    /// The element could not make the window's frames for the backend (scaling failed).
    #[error("the window's frames could not be made: {0}")]
    Frames(String),
    /// The in-process model failed.
    #[error("model error: {0}")]
    Model(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl BackendError {
    /// Whether the same window, submitted again, may succeed: the failure was transient
    /// (a status that says "try again", a lost connection, a timeout) or the job failed
    /// for a reason other than a refusal of its content. Input errors (other 4xx), bad
    /// answers and unusable clips would only fail again.
    pub fn may_pass(&self) -> bool {
        match self {
            BackendError::Http { status, .. } => is_transient_status(*status),
            BackendError::Transport(_) | BackendError::Timeout(_) => true,
            BackendError::JobFailed { message, .. } => !is_content_refusal(message),
            _ => false,
        }
    }
}

/// Whether a job's failure is the provider refusing the content (its safety checker or
/// moderation): the same window and prompt would be refused again.
fn is_content_refusal(message: &str) -> bool {
    const WORDS: [&str; 8] = [
        "content policy",
        "content_policy",
        "nsfw",
        "safety",
        "moderation",
        "flagged",
        "inappropriate",
        "sensitive content",
    ];
    let message = message.to_ascii_lowercase();
    WORDS.iter().any(|word| message.contains(word))
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
    #[error(
        "refusing to send {credential} over plain http to {host}, another machine: use an \
         https endpoint, or set allow-insecure-http=true if the network on the way is trusted"
    )]
    PlainHttp {
        credential: &'static str,
        /// Host and port, without the userinfo.
        host: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_failed(message: &str) -> BackendError {
        BackendError::JobFailed {
            job_id: "j1".into(),
            message: message.into(),
        }
    }

    #[test]
    fn transient_failures_and_failed_jobs_may_pass_refusals_and_input_errors_do_not() {
        for status in [408, 425, 429, 500, 502, 503, 504] {
            let error = BackendError::Http {
                status,
                message: String::new(),
            };
            assert!(error.may_pass(), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 413, 422, 501] {
            let error = BackendError::Http {
                status,
                message: String::new(),
            };
            assert!(!error.may_pass(), "{status}");
        }
        assert!(BackendError::Transport("connection reset".into()).may_pass());
        assert!(BackendError::Timeout(std::time::Duration::from_secs(1)).may_pass());
        assert!(job_failed("CUDA out of memory").may_pass());
        for refusal in [
            "NSFW content detected",
            "content_policy_violation: the output was blocked",
            "Flagged by the safety checker",
            "The input violates our Content Policy",
        ] {
            assert!(!job_failed(refusal).may_pass(), "{refusal}");
        }
        assert!(!BackendError::Output("the clip holds no video frames".into()).may_pass());
        assert!(!BackendError::Protocol("no /id string".into()).may_pass());
        assert!(!BackendError::Model("shape mismatch".into()).may_pass());
    }
}
