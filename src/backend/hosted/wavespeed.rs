//! WaveSpeed AI: `POST /api/v3/{model}`, poll `/api/v3/predictions/{id}/result`; inputs
//! uploaded through a presigned PUT. Every answer is wrapped in `{"code", "data"}`.
//! WaveSpeed has no cancel request: an abandoned job runs to its end remotely.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use url::Url;

use super::fields::{Fields, ImageField};
use super::http::{Body, Call, Http, Kind, provider_message};
use super::runner::{Inputs, Job, Media, Output, Poll, Protocol, job_url};
use super::{Model, Provider, error_text, field, short, text, url_at};
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
    match body.get("code").filter(|code| code.is_number()) {
        Some(code) if code.as_f64() != Some(200.0) => {
            // An error body like those of failed requests: say it the same way, or show
            // it where its message is empty.
            let message = Some(provider_message(&body.to_string()))
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| short(&body));
            Err(match code.as_u64().and_then(|c| u16::try_from(c).ok()) {
                Some(status @ 100..=599) => BackendError::Http { status, message },
                _ => BackendError::Protocol(format!("code {code}: {message}")),
            })
        }
        _ => Ok(body.get_mut("data").map(Value::take).unwrap_or(Value::Null)),
    }
}

/// Where an upload goes, as a ticket answer says.
#[derive(Debug)]
pub struct Upload {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Where the provider reads the file once uploaded.
    pub download_url: String,
}

/// The upload an upload ticket answer describes.
pub fn ticket_answer(body: Value) -> Result<Upload, BackendError> {
    let ticket = data(body)?;
    let url = url_at(&ticket, "/upload/url")?;
    let method = match field(&ticket, "/upload/method").and_then(Value::as_str) {
        Some(method) => Method::from_bytes(method.as_bytes()).map_err(|_| {
            BackendError::Protocol(format!("upload method {}", short(&json!(method))))
        })?,
        None => Method::PUT,
    };
    let mut headers = Vec::new();
    if let Some(fields) = field(&ticket, "/upload/headers").and_then(Value::as_object) {
        for (name, value) in fields {
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) else {
                return Err(BackendError::Protocol(format!(
                    "upload header {}",
                    short(&json!(name))
                )));
            };
            headers.push((name, value));
        }
    }
    Ok(Upload {
        method,
        url,
        headers,
        download_url: text(&ticket, "/download_url")?.to_owned(),
    })
}

/// Where a job stands by its result answer.
pub fn poll_answer(body: Value) -> Result<Poll, BackendError> {
    let state = data(body)?;
    Ok(match text(&state, "/status")? {
        "completed" => Poll::Done(Output::parse(text(&state, "/outputs/0")?)?),
        status @ ("failed" | "cancelled" | "timeout") => Poll::Failed(
            field(&state, "/error")
                .map(error_text)
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| format!("prediction {status}")),
        ),
        _ => Poll::Pending { progress: None },
    })
}

impl Wavespeed {
    /// The job a submission answer describes; WaveSpeed's own path where it gives no URL.
    pub fn create_answer(&self, body: Value) -> Result<Job, BackendError> {
        let job = data(body)?;
        let id = text(&job, "/id")?.to_owned();
        let poll = url_at(&job, "/urls/get")
            .or_else(|_| job_url(self.model.url("api/v3/predictions")?, &id, &["result"]))?;
        Ok(Job::new(id, poll))
    }
}

impl Protocol for Wavespeed {
    async fn stage(&self, http: &Http, media: Media) -> Result<String, BackendError> {
        let ticket = Call::post(self.model.url("api/v3/media/uploads")?).json(json!({
            "filename": media.file_name,
            "size": media.data.len(),
            "content_type": media.content_type,
        }));
        let ticket = ticket_answer(http.send(&ticket).await?)?;
        http.check_foreign_url(&ticket.url)?;
        let mut upload = Call::new(ticket.method, ticket.url, Kind::Repeatable).body(Body::Bytes {
            data: media.data,
            content_type: media.content_type,
        });
        for (name, value) in ticket.headers {
            upload = upload.header(name, value);
        }
        http.send(&upload).await?;
        Ok(ticket.download_url)
    }

    async fn create(&self, http: &Http, inputs: Inputs<'_>) -> Result<Job, BackendError> {
        let input = Value::Object(self.model.input(&inputs));
        let call = Call::create(self.model.url(&format!("api/v3/{}", self.model.id))?, input);
        self.create_answer(http.send(&call).await?)
    }

    async fn poll(&self, http: &Http, job: &Job) -> Result<Poll, BackendError> {
        poll_answer(http.send(&Call::get(job.poll.clone())).await?)
    }
}
