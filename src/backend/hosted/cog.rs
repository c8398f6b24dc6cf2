//! A self-hosted Cog server, or a fleet of them (`endpoint=http://a:5000,http://b:5000`).
//!
//! Each server runs one prediction at a time. A window takes a free server, and sends
//! `PUT /predictions/{id}` and waits for the answer: the server answers when the
//! prediction has ended, with its output inline (a data URI) or as a URL. The asynchronous
//! form (`Prefer: respond-async`, then the same PUT again to poll) cannot be used: Cog's
//! server (coglet) forgets a prediction when it ends, and the next PUT of the same id
//! starts it again, so its end is never seen. 409 means the server is busy (someone else
//! uses it): the window waits and tries again. Dropping the edit sends
//! `POST /predictions/{id}/cancel`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::select_all;
use reqwest::Method;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::fields::Fields;
use super::http::{Call, Http, Kind};
use super::join;
use super::prediction::{self, ListOutput};
use super::runner::{Inputs, Job, Media, Poll, Protocol};
use crate::backend::{BackendError, Resolution};

pub struct Server {
    pub url: Url,
    /// One prediction at a time: Cog's default.
    slot: Arc<Semaphore>,
}

impl Server {
    pub fn new(url: Url) -> Self {
        Self {
            url,
            slot: Arc::new(Semaphore::new(1)),
        }
    }
}

pub struct Cog {
    pub servers: Vec<Server>,
    /// Where the search for a free server starts, so that the fleet is used evenly.
    next: AtomicUsize,
}

impl Cog {
    pub fn new(servers: Vec<Server>) -> Self {
        Self {
            servers,
            next: AtomicUsize::new(0),
        }
    }

    /// A free server, waiting for one if all are busy.
    async fn take_server(&self) -> (usize, OwnedSemaphorePermit) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.servers.len();
        for i in (0..count).map(|i| (start + i) % count) {
            if let Ok(permit) = self.servers[i].slot.clone().try_acquire_owned() {
                return (i, permit);
            }
        }
        let waits = self
            .servers
            .iter()
            .map(|s| Box::pin(s.slot.clone().acquire_owned()));
        let (permit, i, _) = select_all(waits).await;
        (i, permit.expect("server slots are never closed"))
    }
}

impl Protocol for Cog {
    async fn stage(&self, _http: &Http, media: Media) -> Result<String, BackendError> {
        // Cog reads data URIs; a server has no upload API of its own.
        Ok(media.data_uri())
    }

    async fn create(&self, _http: &Http, inputs: Inputs<'_>) -> Result<Job, BackendError> {
        let (server, slot) = self.take_server().await;
        let id = format!("wanedit-{:016x}", rand::random::<u64>());
        let base = &self.servers[server].url;
        let mut job = Job::new(id.clone(), join(base, &format!("predictions/{id}"))?);
        job.cancel = Some(join(base, &format!("predictions/{id}/cancel"))?);
        job.request = Some(json!({
            "id": id,
            "input": Fields::DIFFUSERS.input(&inputs, Resolution::default()),
        }));
        job.slot = Some(slot);
        Ok(job)
    }

    async fn poll(&self, http: &Http, job: &Job) -> Result<Poll, BackendError> {
        let request = job.request.clone().expect("cog jobs carry their request");
        // Kind::Create: a PUT of an ended prediction starts it again.
        let call = Call::new(Method::PUT, job.poll.clone(), Kind::Create).json(request);
        let body = match http.send(&call).await {
            Ok(body) => body,
            Err(BackendError::Http { status: 409, .. }) => {
                return Ok(Poll::Pending { progress: None });
            }
            Err(e) => return Err(e),
        };
        prediction::poll(&body, ListOutput::Last)
    }

    async fn cancel(&self, http: &Http, job: &Job) -> Result<(), BackendError> {
        prediction::cancel(http, job).await
    }
}
