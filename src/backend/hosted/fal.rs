//! fal.ai: submit to the queue (`POST {queue}/{endpoint id}`), then follow the
//! `status_url`, `response_url` and `cancel_url` it returns; inputs go to fal's CDN
//! through a storage token.

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::{Value, json};
use url::Url;

use super::fields::{Fields, ImageField};
use super::http::{Body, Call, Http, Kind};
use super::runner::{Inputs, Job, Media, Output, Poll, Protocol, tqdm_progress};
use super::{Model, Provider, error_text, field, join, short, text, url_at};
use crate::backend::BackendError;

pub const PROVIDER: Provider = Provider {
    name: "fal",
    env: "FAL_KEY",
    auth_scheme: "Key",
    endpoint: "https://queue.fal.run",
    model: Some("fal-ai/wan/v2.7/edit-video"),
    fields,
    // fal keeps storage on another host than the queue.
    storage: Some("https://rest.fal.ai"),
};

pub struct Fal {
    /// Its base is fal's queue.
    pub model: Model,
    pub storage: Url,
}

/// The inputs of a fal endpoint; others are assumed to follow the Wan 2.7 edit endpoint.
pub fn fields(model: &str) -> Fields {
    let wan27 = Fields {
        video: "video_url",
        reference_image: Some(ImageField::One("reference_image_url")),
        ..Fields::WAN27
    };
    if model.starts_with("fal-ai/wan/v2.2-a14b/video-to-video") {
        Fields {
            reference_image: None,
            negative_prompt: Some("negative_prompt"),
            steps: Some("num_inference_steps"),
            guidance_scale: Some("guidance_scale"),
            strength: Some("strength"),
            resolution: Some(("resolution", |r| r.nick())),
            ..wan27
        }
    } else {
        wan27
    }
}

impl Protocol for Fal {
    async fn stage(&self, http: &Http, media: Media) -> Result<String, BackendError> {
        let mut token_url = join(&self.storage, "storage/auth/token")?;
        token_url.set_query(Some("storage_type=fal-cdn-v3"));
        let (base, authorization) =
            token_answer(&http.send(&Call::post(token_url).json(json!({}))).await?)?;
        http.check_foreign_url(&base)?;
        let upload = Call::post(join(&base, "files/upload")?)
            .header(AUTHORIZATION, authorization)
            .header(
                HeaderName::from_static("x-fal-file-name"),
                HeaderValue::from_str(&media.file_name)
                    .unwrap_or_else(|_| HeaderValue::from_static("upload")),
            )
            .body(Body::Bytes {
                data: media.data,
                content_type: media.content_type,
            });
        Ok(text(&http.send(&upload).await?, "/access_url")?.to_owned())
    }

    async fn create(&self, http: &Http, inputs: Inputs<'_>) -> Result<Job, BackendError> {
        let input = Value::Object(self.model.input(&inputs));
        let call = Call::create(self.model.url(&self.model.id)?, input);
        create_answer(&http.send(&call).await?)
    }

    async fn poll(&self, http: &Http, job: &Job) -> Result<Poll, BackendError> {
        let body = http.send(&Call::get(job.poll.clone())).await?;
        if let Some(poll) = status_answer(&body)? {
            return Ok(poll);
        }
        let result_url = job.result.clone().expect("fal jobs have a response URL");
        let result = http.send(&Call::get(result_url)).await?;
        Ok(Poll::Done(result_answer(&result)?))
    }

    async fn cancel(&self, http: &Http, job: &Job) -> Result<(), BackendError> {
        if let Some(url) = &job.cancel {
            http.send(&Call::new(Method::PUT, url.clone(), Kind::Repeatable))
                .await?;
        }
        Ok(())
    }
}

/// The CDN a storage token answer names, and the authorization its uploads carry.
pub fn token_answer(token: &Value) -> Result<(Url, HeaderValue), BackendError> {
    let base = url_at(token, "/base_url")?;
    let mut authorization = HeaderValue::from_str(&format!(
        "{} {}",
        text(token, "/token_type")?,
        text(token, "/token")?
    ))
    .map_err(|_| BackendError::Protocol("the storage token cannot be sent".into()))?;
    authorization.set_sensitive(true);
    Ok((base, authorization))
}

/// The job a queue submission answer describes.
pub fn create_answer(body: &Value) -> Result<Job, BackendError> {
    // The returned URLs drop the endpoint's sub-path: use them, do not rebuild them.
    let mut job = Job::new(
        text(body, "/request_id")?.to_owned(),
        url_at(body, "/status_url")?,
    );
    job.poll.query_pairs_mut().append_pair("logs", "1");
    job.result = Some(url_at(body, "/response_url")?);
    job.cancel = Some(url_at(body, "/cancel_url")?);
    Ok(job)
}

/// Where a job stands by its status answer; `None` once it completed without an error,
/// when its result is to be fetched.
pub fn status_answer(body: &Value) -> Result<Option<Poll>, BackendError> {
    if text(body, "/status")? != "COMPLETED" {
        let progress = field(body, "/logs")
            .and_then(Value::as_array)
            .and_then(|logs| {
                logs.iter()
                    .rev()
                    .filter_map(|l| l.get("message").and_then(Value::as_str))
                    .find_map(tqdm_progress)
            });
        return Ok(Some(Poll::Pending { progress }));
    }
    // Answers may carry an empty error: that is none.
    Ok(field(body, "/error")
        .map(error_text)
        .filter(|e| !e.trim().is_empty())
        .map(Poll::Failed))
}

/// The clip in a completed job's result.
pub fn result_answer(result: &Value) -> Result<Output, BackendError> {
    let url = ["/video/url", "/video", "/videos/0/url"]
        .iter()
        .find_map(|pointer| field(result, pointer).and_then(Value::as_str))
        .ok_or_else(|| {
            BackendError::Protocol(format!("no video in the result: {}", short(result)))
        })?;
    Output::parse(url)
}
