//! Together AI: `POST /v2/videos`, poll `GET /v2/videos/{id}`. Together has no upload API
//! and no cancel request: the clip goes inline as a data URI, and an abandoned job runs
//! to its end remotely.

use serde_json::{Value, json};

use super::fields::{Fields, ImageField};
use super::http::{Call, Http};
use super::runner::{Inputs, Job, Media, Output, Poll, Protocol, job_url};
use super::{Model, Provider, error_text, field, text};
use crate::backend::BackendError;

pub const PROVIDER: Provider = Provider {
    name: "together",
    env: "TOGETHER_API_KEY",
    auth_scheme: "Bearer",
    endpoint: "https://api.together.xyz",
    // Together publishes no Wan edit model under a stable id: the user names one.
    model: None,
    fields: |_| FIELDS,
    storage: None,
};

/// The flat part of the create body; the clip and the reference images are nested under
/// `media` by [`Together::create`].
pub const FIELDS: Fields = Fields {
    video: "video",
    prompt: "prompt",
    reference_image: Some(ImageField::List("reference_images")),
    negative_prompt: Some("negative_prompt"),
    seed: Some("seed"),
    steps: Some("steps"),
    guidance_scale: Some("guidance_scale"),
    strength: None,
    flow_shift: None,
    resolution: None,
};

pub struct Together {
    pub model: Model,
}

impl Protocol for Together {
    async fn stage(&self, _http: &Http, media: Media) -> Result<String, BackendError> {
        Ok(media.data_uri())
    }

    async fn create(&self, http: &Http, inputs: Inputs<'_>) -> Result<Job, BackendError> {
        let mut body = self.model.input(&inputs);
        let video = body.remove(self.model.fields.video);
        let mut media = json!({"source_video": {"video": video}});
        if let Some(images) = body.remove("reference_images") {
            media["reference_images"] = images;
        }
        body.insert("model".into(), json!(self.model.id));
        body.insert("width".into(), json!(inputs.size.width));
        body.insert("height".into(), json!(inputs.size.height));
        body.insert("media".into(), media);
        let call = Call::create(self.model.url("v2/videos")?, Value::Object(body));
        self.create_answer(&http.send(&call).await?)
    }

    async fn poll(&self, http: &Http, job: &Job) -> Result<Poll, BackendError> {
        poll_answer(&http.send(&Call::get(job.poll.clone())).await?)
    }
}

impl Together {
    /// The job a create answer names; it is polled below the API.
    pub fn create_answer(&self, body: &Value) -> Result<Job, BackendError> {
        let id = text(body, "/id")?.to_owned();
        let poll = job_url(self.model.url("v2/videos")?, &id, &[])?;
        Ok(Job::new(id, poll))
    }
}

/// Where a job stands by its answer.
pub fn poll_answer(body: &Value) -> Result<Poll, BackendError> {
    // Status words differ between API generations: anything unknown is still running,
    // and job-timeout bounds the wait.
    Ok(match text(body, "/status")? {
        "completed" | "succeeded" => Poll::Done(Output::parse(text(body, "/outputs/video_url")?)?),
        status @ ("failed" | "cancelled" | "canceled") => Poll::Failed(
            field(body, "/error/message")
                .map(error_text)
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| format!("video job {status}")),
        ),
        _ => Poll::Pending { progress: None },
    })
}
