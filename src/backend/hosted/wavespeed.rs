//! WaveSpeed AI: `POST /api/v3/{model}`, poll `/api/v3/predictions/{id}/result`; inputs
//! uploaded through a presigned PUT. Every answer is wrapped in `{"code", "data"}`.
//! WaveSpeed has no cancel request: an abandoned job runs to its end remotely.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::fields::{Fields, ImageField};
use super::http::{Body, Call, Http, Kind};
use super::runner::{Inputs, Job, Media, Output, Poll, Protocol};
use super::{Model, Provider, field, text, url_at};
use crate::backend::BackendError;

pub const PROVIDER: Provider = Provider {
    name: "wavespeed",
    env: "WAVESPEED_API_KEY",
    auth_scheme: "Bearer",
    endpoint: "https://api.wavespeed.ai",
    model: Some("alibaba/wan-2.7/video-edit"),
    fields,
    storage: None,
};

pub struct Wavespeed {
    pub model: Model,
}

/// The inputs of a model; others are assumed to follow Alibaba's Wan 2.7 video edit.
pub fn fields(_model: &str) -> Fields {
    Fields {
        reference_image: Some(ImageField::List("images")),
        negative_prompt: Some("negative_prompt"),
        ..Fields::WAN27
    }
}

/// The `data` of an answer, refusing an answer whose own `code` says it failed.
fn data(mut body: Value) -> Result<Value, BackendError> {
    match body.get("code").and_then(Value::as_u64) {
        Some(200) | None => Ok(body.get_mut("data").map(Value::take).unwrap_or(Value::Null)),
        Some(code) => Err(BackendError::Http {
            status: code as u16,
            message: field(&body, "/message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned(),
        }),
    }
}

impl Protocol for Wavespeed {
    async fn stage(&self, http: &Http, media: Media) -> Result<String, BackendError> {
        let ticket = Call::post(self.model.url("api/v3/media/uploads")?).json(json!({
            "filename": media.file_name,
            "size": media.data.len(),
            "content_type": media.content_type,
        }));
        let ticket = data(http.send(&ticket).await?)?;
        let target = url_at(&ticket, "/upload/url")?;
        http.check_foreign_url(&target)?;
        let method = match field(&ticket, "/upload/method").and_then(Value::as_str) {
            Some(method) => Method::from_bytes(method.as_bytes())
                .map_err(|_| BackendError::Protocol(format!("upload method {method:?}")))?,
            None => Method::PUT,
        };
        let mut upload = Call::new(method, target, Kind::Repeatable).body(Body::Bytes {
            data: media.data,
            content_type: media.content_type,
        });
        if let Some(headers) = field(&ticket, "/upload/headers").and_then(Value::as_object) {
            for (name, value) in headers {
                let (Ok(name), Some(Ok(value))) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    value.as_str().map(HeaderValue::from_str),
                ) else {
                    return Err(BackendError::Protocol(format!("upload header {name:?}")));
                };
                upload = upload.header(name, value);
            }
        }
        http.send(&upload).await?;
        Ok(text(&ticket, "/download_url")?.to_owned())
    }

    async fn create(&self, http: &Http, inputs: Inputs<'_>) -> Result<Job, BackendError> {
        let input = Value::Object(self.model.input(&inputs));
        let call = Call::create(self.model.url(&format!("api/v3/{}", self.model.id))?, input);
        let job = data(http.send(&call).await?)?;
        let id = text(&job, "/id")?.to_owned();
        let poll = url_at(&job, "/urls/get")
            .or_else(|_| self.model.url(&format!("api/v3/predictions/{id}/result")))?;
        Ok(Job::new(id, poll))
    }

    async fn poll(&self, http: &Http, job: &Job) -> Result<Poll, BackendError> {
        let state = data(http.send(&Call::get(job.poll.clone())).await?)?;
        Ok(match text(&state, "/status")? {
            "completed" => Poll::Done(Output::parse(text(&state, "/outputs/0")?)?),
            status @ ("failed" | "cancelled" | "timeout") => Poll::Failed(
                field(&state, "/error")
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty())
                    .map_or_else(|| format!("prediction {status}"), str::to_owned),
            ),
            _ => Poll::Pending { progress: None },
        })
    }
}
