//! Replicate: `POST /v1/models/{owner}/{name}/predictions` (or `/v1/predictions` with a
//! version), poll `urls.get`, cancel `urls.cancel`; inputs uploaded to `/v1/files`.

use serde_json::{Value, json};

use super::fields::Fields;
use super::http::{Body, Call, Http};
use super::prediction::{self, ListOutput};
use super::runner::{Inputs, Job, Media, Poll, Protocol, job_url};
use super::{Model, Provider, text, url_at};
use crate::backend::BackendError;

pub const PROVIDER: Provider = Provider {
    name: "replicate",
    env: "REPLICATE_API_TOKEN",
    auth_scheme: "Bearer",
    endpoint: "https://api.replicate.com",
    model: Some("wan-video/wan-2.7-videoedit"),
    fields,
    storage: None,
};

pub struct Replicate {
    /// Its id is `owner/name`, or `owner/name:version` for a pinned version.
    pub model: Model,
}

/// The inputs of a model; others are assumed to follow the Wan 2.7 edit model.
pub fn fields(_model: &str) -> Fields {
    Fields::WAN27
}

impl Replicate {
    /// The job a create answer describes; Replicate's own paths where it gives no URLs.
    pub fn create_answer(&self, reply: &Value) -> Result<Job, BackendError> {
        let id = text(reply, "/id")?.to_owned();
        let own = |tail: &[&str]| job_url(self.model.url("v1/predictions")?, &id, tail);
        let poll = url_at(reply, "/urls/get").or_else(|_| own(&[]))?;
        let cancel = url_at(reply, "/urls/cancel").or_else(|_| own(&["cancel"]))?;
        let mut job = Job::new(id, poll);
        job.cancel = Some(cancel);
        Ok(job)
    }
}

impl Protocol for Replicate {
    async fn stage(&self, http: &Http, media: Media) -> Result<String, BackendError> {
        let call = Call::post(self.model.url("v1/files")?).body(Body::File {
            field: "content",
            file_name: media.file_name,
            content_type: media.content_type,
            data: media.data,
        });
        Ok(text(&http.send(&call).await?, "/urls/get")?.to_owned())
    }

    async fn create(&self, http: &Http, inputs: Inputs<'_>) -> Result<Job, BackendError> {
        let input = Value::Object(self.model.input(&inputs));
        let (path, body) = match self.model.id.split_once(':') {
            Some((_, version)) => (
                "v1/predictions".to_owned(),
                json!({"version": version, "input": input}),
            ),
            None => (
                format!("v1/models/{}/predictions", self.model.id),
                json!({"input": input}),
            ),
        };
        let call = Call::create(self.model.url(&path)?, body);
        self.create_answer(&http.send(&call).await?)
    }

    async fn poll(&self, http: &Http, job: &Job) -> Result<Poll, BackendError> {
        let body = http.send(&Call::get(job.poll.clone())).await?;
        prediction::poll(&body, ListOutput::First)
    }

    async fn cancel(&self, http: &Http, job: &Job) -> Result<(), BackendError> {
        prediction::cancel(http, job).await
    }
}
